"""The two roots the library knows about: the data root and the run store root.

Both are settable by argument and by environment variable (DESIGN.md: no other global state).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else $HARDEX_DATA, else ~/.cache/hardex/data."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("HARDEX_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hardex" / "data"


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """Where the run store lives: the argument, else $HARDEX_RUNS, else ./runs."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("HARDEX_RUNS")
    if env:
        return Path(env).expanduser()
    return Path("runs")


def repo_root() -> Path:
    """The project checkout that contains book/ and params/ (the parent of the package)."""
    return Path(__file__).resolve().parent.parent
