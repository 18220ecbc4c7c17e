"""What a result was made from: input files' checksums, the code's commit, the locked environment.

Standard library only, so every layer can record provenance (the run store's
``provenance.json``, bench reports, gpu-check summaries) without importing the layers above.

The lock is ``requirements.lock`` at the top of the checkout (see :mod:`hardex.tools.lockfile`,
``make lock``): :func:`lock_provenance` says which locked environment made a record and
whether this interpreter matches it. Names are compared in their PEP 503 normal form
(``PyYAML`` = ``pyyaml``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

from hardex.paths import repo_root


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(root: Path | None = None) -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes to tracked files), else
    ``$HARDEX_GIT_COMMIT`` (a copy without .git, e.g. a GPU session's working tree: the commit
    it was sent from), else None."""
    root = root or repo_root()
    if (root / ".git").exists():
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return head + ("-dirty" if dirty else "")
        except (OSError, subprocess.SubprocessError):
            pass
    return os.environ.get("HARDEX_GIT_COMMIT") or None


LOCK_NAME = "requirements.lock"
# installed by hardex itself (editable) or by the venv's bootstrap; never locked
NOT_LOCKED = frozenset({"hardex", "pip"})


def normalize(name: str) -> str:
    """PEP 503 normal form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path(root: Path | None = None) -> Path:
    return (root or repo_root()) / LOCK_NAME


def read_lock(path: Path | None = None) -> dict[str, str]:
    """``{normalized name: exact version}`` of every ``name==version`` line (comments, blank
    lines and ``# via`` annotations skipped). Any other requirement form is an error: a lock
    pins exactly."""
    path = path or lock_path()
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if m is None:
            raise ValueError(f"{path.name}:{lineno}: {raw.strip()!r} is not an exact pin 'name==version'")
        name = normalize(m.group(1))
        if name in pins:
            raise ValueError(f"{path.name}:{lineno}: {m.group(1)} is pinned twice")
        pins[name] = m.group(2)
    return pins


def lock_sha256(path: Path | None = None) -> str | None:
    path = path or lock_path()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def installed() -> dict[str, str]:
    """``{normalized name: version}`` of the distributions this interpreter sees."""
    out: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(normalize(name), dist.version)
    return out


def differences(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """One line per difference between the lock and what is installed (empty = identical)."""
    lines = []
    for name in sorted(set(pins) | set(have)):
        if name in NOT_LOCKED:
            continue
        want, got = pins.get(name), have.get(name)
        if want is None:
            lines.append(f"+ {name}=={got} (installed, not in the lock)")
        elif got is None:
            lines.append(f"- {name}=={want} (locked, not installed)")
        elif want != got:
            lines.append(f"~ {name}: locked {want}, installed {got}")
    return lines


def lock_provenance(root: Path | None = None) -> dict | None:
    """``{"sha256", "matches", "differences"}`` for a run record; None without a lock file
    (hardex installed from a wheel, outside a checkout)."""
    path = lock_path(root)
    if not path.is_file():
        return None
    diff = differences(read_lock(path), installed())
    return {"file": LOCK_NAME, "sha256": lock_sha256(path), "matches": not diff, "differences": diff[:50]}
