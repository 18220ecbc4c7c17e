"""The locked environment of the book: ``requirements.lock`` at the top of the checkout.

``pyproject.toml`` keeps compatible ranges for people who use hardex as a library;
``requirements.lock`` (written by ``make lock`` with pip-tools from pyproject.toml and its
``book`` and ``test`` extras, torch and torchvision pinned) names one exact version of every
package, so "regenerate the book" means the same software everywhere. ``make book`` and
``make test`` install from it and then run ``python -m hardex.tools.lockfile check``, which fails
unless the interpreter's installed distributions are exactly the locked ones.

Every run record's provenance carries :func:`lock_provenance`: the lock's sha256 and
whether this interpreter matches it, so a record says which locked environment made it
(records made elsewhere, e.g. on a GPU machine with its own torch, say ``matches: false``
and list the differences).

Names are compared in their PEP 503 normal form (``PyYAML`` = ``pyyaml``,
``typing_extensions`` = ``typing-extensions``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import re
import sys
from pathlib import Path

from hardex.paths import repo_root

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hardex.tools.lockfile", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["check", "sha256"],
                   help="check: installed distributions equal the lock; sha256: print the lock's hash")
    p.add_argument("--lock", type=Path, default=None, help=f"lock file (default: <checkout>/{LOCK_NAME})")
    args = p.parse_args(argv)
    path = args.lock or lock_path()
    if not path.is_file():
        print(f"error: no lock file at {path}", file=sys.stderr)
        return 2
    if args.command == "sha256":
        print(lock_sha256(path))
        return 0
    pins = read_lock(path)
    diff = differences(pins, installed())
    if diff:
        print(f"the environment differs from {path.name} in {len(diff)} package(s):", file=sys.stderr)
        print("\n".join(diff), file=sys.stderr)
        return 1
    print(f"environment matches {path.name}: {len(pins)} packages, sha256 {lock_sha256(path)[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
