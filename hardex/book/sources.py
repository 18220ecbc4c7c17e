"""The book's chapters as sources: their order (_toc.yml), their notebooks and their parameters.

A chapter is ``book/<name>.py``, a jupytext percent-format notebook, listed in ``_toc.yml``
under ``_executed/``. Its parameters are those of its experiment
(:mod:`hardex.experiments`; the pages that train nothing have theirs here), read from
``params/<profile>/`` by :func:`hardex.experiments.params.load`: written once per profile,
validated before anything runs, errors naming the file and the key. Its notebook's cell
tagged ``parameters`` holds only ``profile``, ``build`` (how `hardex book` runs it) and
``overrides`` (nested keys that replace the files', for a papermill run: ``-y "overrides:
{table3: {seeds: [0, 1]}}"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hardex import experiments
from hardex.experiments.params import (NOT_RUN_KEY, PROFILES, Block, ChapterParams, ParamsError,  # noqa: F401
                                       load, not_run_reason)
from hardex.paths import repo_root

EXECUTED_DIR = "_executed"


class Reports(Block):
    bench_dir: str  # the committed `hardex bench` reports
    max_bench: int  # the newest this many are shown
    checks_dir: str  # the committed `hardex gpu-check` summaries


class PerformanceParams(ChapterParams):
    reports: Reports


class AppendixParams(ChapterParams):
    """The appendix reads the ledgers of this build; it has no parameters of its own."""


PAGES: dict[str, type[ChapterParams]] = {"performance": PerformanceParams, "reproduction": AppendixParams}


@dataclass(frozen=True)
class Chapter:
    name: str
    source: Path  # book/<name>.py

    @property
    def trains(self) -> bool:
        """Whether the chapter asks the run store for runs (its experiment has ``runs``)."""
        return self.name in experiments.TRAINING


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


def read_notebook(source: Path):
    """The chapter's cells: jupytext's notebook, or :mod:`hardex.book.cells`' reading of the same
    percent format where jupytext is not installed (a GPU machine without the book's stack)."""
    try:
        import jupytext
    except ImportError:
        from hardex.book.cells import read_notebook as read

        return read(source)
    return jupytext.read(source)


def params_model(chapter: str) -> type[ChapterParams]:
    """The pydantic model of a chapter's parameters: its experiment's, a page's, else none
    (a chapter of another project that reads no parameter file)."""
    if chapter in PAGES:
        return PAGES[chapter]
    if chapter in experiments.EXPERIMENTS:
        return experiments.module(chapter).Params
    return ChapterParams


def load_params(profile: str, chapter: str | Chapter, root: Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> ChapterParams:
    """The chapter's parameters on ``profile`` (:func:`hardex.experiments.params.load`)."""
    name = chapter.name if isinstance(chapter, Chapter) else chapter
    return load(params_model(name), profile, name, root, overrides)
