"""`python -m hardex.runs.worker JOB.pkl SHA256`: one worker process of `LocalExecutor(slots=N)`.

The file holds a cloudpickled `hardex.runs.executors.EnsureJob`; the worker trains that one
run (or resumes it, or waits on its lock) and exits 0 when it is done. The executor reads
the outcome from the run store (final.json, or failed.json) and names this log on failure.

Unpickling runs code, so the worker unpickles only the job file its executor wrote: the
file must be ``<run store>/_jobs/<run hash>.pkl`` and its sha256 must equal the digest the
executor computed from the bytes it wrote and passed on this command line (not through the
file system). Any other file is refused with one line (exit 2) and nothing of it runs.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

_JOB_NAME = re.compile(r"^[0-9a-f]{6,64}\.pkl$")


def read_job_file(path: str | Path, sha256: str) -> bytes:
    """The bytes of a job file the executor wrote; ValueError (one line) for any other file."""
    p = Path(path)
    if p.parent.name != "_jobs" or not _JOB_NAME.match(p.name):
        raise ValueError(f"refused job file {p}: a worker runs only <run store>/_jobs/<run hash>.pkl")
    blob = p.read_bytes()
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256.lower():
        raise ValueError(f"refused job file {p}: its sha256 {got[:12]}... is not the {sha256[:12]}... its executor "
                         "wrote (changed since); nothing of it was run")
    return blob


def main(argv: list[str]) -> int:
    import cloudpickle

    if len(argv) != 2:
        print("usage: python -m hardex.runs.worker <run store>/_jobs/<hash>.pkl SHA256", file=sys.stderr)
        return 2
    try:
        blob = read_job_file(*argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    job = cloudpickle.loads(blob)
    try:
        print(job(), flush=True)
    except KeyboardInterrupt:
        print(f"run {job.spec.short_hash}: interrupted; it resumes from its newest checkpoint", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
