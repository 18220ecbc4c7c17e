"""`python -m hardex.runs.worker JOB.pkl`: one worker process of `LocalExecutor(slots=N)`.

The file holds a cloudpickled `hardex.runs.executors.EnsureJob`; the worker trains that one
run (or resumes it, or waits on its lock) and exits 0 when it is done. The executor reads
the outcome from the run store (final.json, or failed.json) and names this log on failure.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import cloudpickle

    (path,) = argv
    job = cloudpickle.loads(Path(path).read_bytes())
    try:
        print(job(), flush=True)
    except KeyboardInterrupt:
        print(f"run {job.spec.short_hash}: interrupted; it resumes from its newest checkpoint", flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
