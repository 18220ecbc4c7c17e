"""The locked environment of the book: ``requirements.lock`` at the top of the checkout.

``pyproject.toml`` keeps compatible ranges for people who use hardex as a library;
``requirements.lock`` (written by ``make lock`` with pip-tools from pyproject.toml and its
``book`` and ``test`` extras, torch and torchvision pinned) names one exact version of every
package, so "regenerate the book" means the same software everywhere. ``make book`` and
``make test`` install from it and then run ``python -m hardex.tools.lockfile check``, which fails
unless the interpreter's installed distributions are exactly the locked ones.

Every run record's provenance carries :func:`hardex.provenance.lock_provenance`: the lock's sha256 and
whether this interpreter matches it, so a record says which locked environment made it
(records made elsewhere, e.g. on a GPU machine with its own torch, say ``matches: false``
and list the differences).

Names are compared in their PEP 503 normal form (``PyYAML`` = ``pyyaml``,
``typing_extensions`` = ``typing-extensions``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hardex.provenance import LOCK_NAME, differences, installed, lock_path, lock_sha256, read_lock


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
