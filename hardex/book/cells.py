"""The book's chapters as cells, without jupytext: a reader for the *percent* format they use.

A chapter ``book/<name>.py`` is a jupytext percent-format script: an optional YAML header
between ``# ---`` lines, then cells, each opened by a line ``# %%`` (code), ``# %% [markdown]``
(markdown, every line commented ``# ``) or either with metadata after it, of which the
book uses only ``tags=[...]``. This module reads that much and nothing more, so that code
which only needs a chapter's code cells and tags (the parameters cell, the planning pass,
`hardex gpu-check`'s plain-Python execution) runs where jupytext and nbformat are not
installed, e.g. on a GPU machine with only the core dependencies.

:func:`read_notebook` returns an object with the attributes those callers read from a
jupytext notebook (``nb.cells[i].cell_type``, ``.source``, ``.metadata["tags"]``);
``tests/test_cells.py`` checks it against jupytext on every chapter of the book.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MARKER = re.compile(r"^# %%(?P<rest>.*)$")


@dataclass
class Cell:
    cell_type: str  # "code" or "markdown"
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:  # as nbformat's dict-like cells
        return getattr(self, key, default)


@dataclass
class Notebook:
    cells: list[Cell]
    metadata: dict[str, Any] = field(default_factory=dict)


def _metadata(rest: str, where: str) -> tuple[str, dict[str, Any]]:
    """``[markdown] tags=["a", "b"]`` -> ("markdown", {"tags": ["a", "b"]})."""
    rest = rest.strip()
    kind = "code"
    if rest.startswith("[markdown]") or rest.startswith("[md]"):
        kind, rest = "markdown", rest.split("]", 1)[1].strip()
    meta: dict[str, Any] = {}
    if rest:
        m = re.fullmatch(r"tags=(\[.*\])", rest)
        if m is None:
            raise ValueError(f"{where}: cell metadata {rest!r} is not understood (only tags=[...] is)")
        meta["tags"] = list(ast.literal_eval(m.group(1)))
    return kind, meta


def _strip_blank(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _uncomment(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            out.append(line)
    return out


def read_notebook(path: str | Path) -> Notebook:
    """The cells of a percent-format chapter (see the module docstring)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    i = 0
    if lines and lines[0].rstrip() == "# ---":  # the YAML header (jupytext metadata)
        i = next((j for j in range(1, len(lines)) if lines[j].rstrip() == "# ---"), len(lines) - 1) + 1
    cells: list[Cell] = []
    current: tuple[str, dict[str, Any]] | None = None
    body: list[str] = []

    def close() -> None:
        if current is None:
            return
        kind, meta = current
        src = _strip_blank(body)
        if kind == "markdown":
            src = _uncomment(src)
        cells.append(Cell(kind, "\n".join(src), meta))

    for n, line in enumerate(lines[i:], start=i + 1):
        m = _MARKER.match(line)
        if m is not None and (not m.group("rest") or m.group("rest").startswith(" ")):
            close()
            current, body = _metadata(m.group("rest"), f"{path}:{n}"), []
        elif current is None:
            if line.strip():  # code before the first marker: jupytext makes it a cell of its own
                current, body = ("code", {}), [line]
        else:
            body.append(line)
    close()
    return Notebook(cells)


def code_cells(path: str | Path) -> list[Cell]:
    return [c for c in read_notebook(path).cells if c.cell_type == "code"]
