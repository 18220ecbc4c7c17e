"""The book's chapters as sources: their order (_toc.yml), their notebooks and their parameters.

A chapter is ``book/<name>.py`` (a jupytext percent-format notebook with one cell tagged
``parameters``) listed in ``_toc.yml`` under ``_executed/``; its parameters for a profile are
``params/<profile>/<name>.yaml``. Every parameter file is validated against its notebook's
parameters cell before anything runs: an unknown key, a missing key or a value of the wrong
type stops the build with one line that names the file and the key. A parameter file that
holds only ``not_run: <reason>`` marks a chapter the profile does not run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hardex.paths import repo_root

PROFILES = ("smoke", "quick", "fast", "paper")
# Injected by `hardex book` itself; parameter files do not list it.
INJECTED = ("profile",)
EXECUTED_DIR = "_executed"
NOT_RUN_KEY = "not_run"  # the only key of a parameter file whose chapter the profile does not run


class ParamsError(ValueError):
    """A parameter file does not match its notebook's parameters cell."""


@dataclass(frozen=True)
class Chapter:
    name: str
    source: Path  # book/<name>.py


def toc_chapters(root: Path | None = None) -> list[Chapter]:
    """The chapters in the order of _toc.yml: every entry under _executed/ is one notebook."""
    root = root or repo_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts") or toc.get("chapters") or [])
    chapters = []
    for f in files:
        parts = Path(f).parts
        if parts and parts[0] == EXECUTED_DIR:
            name = Path(f).stem
            chapters.append(Chapter(name, root / "book" / f"{name}.py"))
    return chapters


def _read_notebook(source: Path):
    try:
        import jupytext
    except ImportError:  # e.g. a GPU machine without the book's rendering stack: the same cells
        from hardex.book.cells import read_notebook

        return read_notebook(source)
    return jupytext.read(source)


def notebook_parameters(source: Path) -> dict[str, Any]:
    """Names and default values of the assignments in the cell tagged ``parameters``."""
    nb = _read_notebook(source)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{source}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        else:
            continue
        try:
            params[target] = ast.literal_eval(value)
        except ValueError as err:
            raise ParamsError(f"{source}: parameter {target!r} must have a literal default ({err})") from None
    return params


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_type(key: str, value: Any, default: Any, where: str) -> None:
    if default is None:
        return
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, list)
        if ok and default:
            for i, item in enumerate(value):
                _check_type(f"{key}[{i}]", item, default[0], where)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParamsError(
            f"{where}: key {key!r} has type {_type_name(value)} ({value!r}); expected {_type_name(default)}"
        )


def not_run_reason(profile: str, chapter: Chapter, root: Path | None = None) -> str | None:
    """Why ``profile`` does not run ``chapter`` (its parameter file holds only ``not_run:
    <reason>``), else None."""
    path = (root or repo_root()) / "params" / profile / f"{chapter.name}.yaml"
    try:
        values = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError:
        return None  # load_params reports it
    if isinstance(values, dict) and set(values) == {NOT_RUN_KEY}:
        return str(values[NOT_RUN_KEY])
    return None


def load_params(profile: str, chapter: Chapter, root: Path | None = None) -> dict[str, Any]:
    """Read params/<profile>/<chapter>.yaml and validate it against the parameters cell."""
    root = root or repo_root()
    if profile not in PROFILES:
        raise ParamsError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    path = root / "params" / profile / f"{chapter.name}.yaml"
    where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    if not path.exists():
        raise ParamsError(f"{where}: missing parameter file for chapter {chapter.name!r}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping of parameter names to values")
    if set(values) == {NOT_RUN_KEY}:
        raise ParamsError(f"{where}: chapter {chapter.name!r} is not run on profile {profile!r} "
                          f"({values[NOT_RUN_KEY]})")
    defaults = notebook_parameters(chapter.source)
    allowed = [k for k in defaults if k not in INJECTED]
    for key in values:
        if key not in allowed:
            raise ParamsError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
    for key in allowed:
        if key not in values:
            raise ParamsError(f"{where}: missing key {key!r}")
        _check_type(key, values[key], defaults[key], where)
    return {**values, "profile": profile}
