"""What a chapter compared with the paper: its tables and its verdicts on the paper's claims.

Every chapter keeps one :class:`Ledger`. It records each table built with
:func:`hardex.report.compare` (the paper's number, ours, the difference, per cell) and each
qualitative claim of the paper with a computed verdict, then saves itself as JSON. The
appendix "Paper vs reproduction" reads every chapter's ledger (:func:`load_ledgers`), so
it shows only what chapters actually computed in this build.

A verdict is computed, never typed: ``claim(..., holds=<a bool computed from records>)``.
On the smoke profile no verdict is drawn (tiny models, a few epochs): the claim is stored
as ``"no verdict (smoke)"`` whatever ``holds`` says. ``holds=None`` means the claim's runs
were not made on this profile ("not run").

Where ledgers go: ``$HARDEX_LEDGER_DIR`` (``hardex book`` sets it to ``<out>/ledger``), else
``<repo>/_executed/ledger``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from hardex.paths import repo_root

HOLDS, FAILS, NOT_RUN, NO_VERDICT = "holds", "does not hold", "not run", "no verdict (smoke)"
VERDICTS = (HOLDS, FAILS, NOT_RUN, NO_VERDICT)


def ledger_dir() -> Path:
    env = os.environ.get("HARDEX_LEDGER_DIR")
    return Path(env) if env else repo_root() / "_executed" / "ledger"


def label_eps(eps: float) -> str:
    """``eps 8/255`` for an l-inf radius in [0, 1]; ``STD (eps 0)`` for standard training."""
    return f"eps {round(eps * 255)}/255" if eps > 0 else "STD (eps 0)"


def data_label(dataset: str, root: str | os.PathLike | None = None) -> str:
    """How the book names the data a number was measured on: the offline JPEG copy of
    CIFAR-10 (an image-folder layout under the data root) is never called plain CIFAR-10."""
    from hardex import paths

    base = Path(root) if root is not None else paths.data_root()
    if dataset == "cifar10" and (base / dataset / "train").is_dir():
        return "CIFAR-10 (JPEG copy)"
    return {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN",
            "stl10": "STL-10"}.get(dataset, dataset)


def banner(profile: str, data: str, train_subset: int, details: str, smoke_caveat: str = "") -> str:
    """The chapter's opening line (Markdown): profile, data, training sample and ``details``;
    on the smoke profile also the warning that its numbers carry no verdict (``smoke_caveat``
    adds what else was shortened, e.g. ", with shortened attacks,")."""
    text = (f"**Profile `{profile}`**, data: {data}"
            + (f" ({train_subset} class-balanced training images)" if train_subset else "")
            + f", {details} ")
    if profile == "smoke":
        text += ("**Smoke profile: plumbing only, no verdict.** Its numbers come from a tiny CNN trained "
                 f"for a few epochs on a small sample{smoke_caveat} and say nothing about the paper's claims.")
    return text


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


class Ledger:
    """One chapter's comparisons with the paper (see the module docstring)."""

    def __init__(self, chapter: str, profile: str, data: str):
        self.chapter, self.profile, self.data = chapter, profile, data
        self.cells: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def table(self, item: str, table: pd.DataFrame, note: str = "") -> pd.DataFrame:
        """Record a :func:`hardex.report.compare` table (columns: (metric, paper|ours|diff))
        under ``item`` (e.g. ``"Table 3"``); returns the table, for display."""
        if not isinstance(table.columns, pd.MultiIndex) or table.columns.nlevels != 2:
            raise ValueError(f"{item}: expected a compare() table with (metric, paper/ours/diff) columns")
        for row in table.index:
            for metric in dict.fromkeys(table.columns.get_level_values(0)):
                self.cells.append({
                    "item": item, "row": str(row), "metric": str(metric),
                    "paper": _num(table.loc[row, (metric, "paper")]),
                    "ours": _num(table.loc[row, (metric, "ours")]),
                    "diff": _num(table.loc[row, (metric, "diff")]), "note": note,
                })
        return table

    def claim(self, item: str, claim: str, holds: bool | None, evidence: str = "") -> str:
        """Record the paper's ``claim`` (made in ``item``) and this run's verdict; returns it."""
        if holds is None:
            verdict = NOT_RUN
        elif self.smoke:
            verdict = NO_VERDICT
        else:
            verdict = HOLDS if bool(holds) else FAILS
        self.claims.append({"item": item, "claim": claim, "verdict": verdict, "evidence": evidence})
        return verdict

    def verdicts(self) -> pd.DataFrame:
        """The claims as a table for the chapter's closing section."""
        cols = ["item", "claim", "verdict", "evidence"]
        return pd.DataFrame(self.claims, columns=cols)

    def to_dict(self) -> dict[str, Any]:
        return {"chapter": self.chapter, "profile": self.profile, "data": self.data,
                "cells": self.cells, "claims": self.claims}

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``<dir>/<chapter>.json`` atomically; returns the path."""
        d = Path(directory) if directory is not None else ledger_dir()
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{self.chapter}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        os.replace(tmp, path)
        return path


def load_ledgers(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Every saved ledger in ``directory`` (default :func:`ledger_dir`), by chapter name."""
    d = Path(directory) if directory is not None else ledger_dir()
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        rec = json.loads(path.read_text())
        out[rec["chapter"]] = rec
    return out
