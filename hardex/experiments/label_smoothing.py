"""Section 4.1, label smoothing on hard examples: Fig. 8.

One PGD baseline (the profile's shared baseline) and, from its checkpoint after epoch T, for
each share n of ``fig8.ratios``: pruning the top n% hard (Fig. 8c) in round 1; in round 2,
LS with factor ``fig8.lam`` on the top n% hard and on the top n% normal (easy) examples,
one-hot labels elsewhere. LS on a set is DPLS on an indicator score (1 inside, 0 outside:
``1 - (1 - lam) * minmax(S)``); the indicator, from the baseline's 0-1 loss accumulated to
T, is an .npz score file whose sha256 (not its path) enters the run's hash, so the LS runs
wait for the baseline's record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardex import difficulty
from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost
from hardex.experiments.rounds import Runs, scores_folder
from hardex.runs.spec import FileScores


class Fig8(Block):
    lam: float  # the LS factor on the chosen set
    ratios: list[float]  # shares n of the training set
    model: Literal["best", "final"]  # the model reported (best epoch by per-epoch test robust accuracy, or final)


class Params(ChapterParams):
    baseline: Baseline
    cost: Cost
    fig8: Fig8


def ls_subset(parent, parent_record, T: int, which: str, ratio: float, lam: float, folder: Path):
    """``parent`` continued from T + 1 with LS factor ``lam`` on its top ``ratio`` ``which``
    examples (by its 0-1 loss accumulated to T) and one-hot labels elsewhere. The indicator is
    written once into ``folder`` (deterministic bytes: the same set gives the same run)."""
    d = parent_record.difficulty
    scores = np.where(d["in_train"], d["zero_one"], np.nan)
    chosen = difficulty.select(scores, fraction=ratio, which=which)
    indicator = np.zeros(len(scores))
    indicator[chosen] = 1.0
    path = folder / f"ls-subset-{parent.short_hash}-T{T}-{which}-{ratio:g}.npz"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, scores=indicator)
        tmp.replace(path)
    src = FileScores(file=str(path), lower_is_harder=False)
    return ex.continuation(parent, T, scores_from={"subset": src},
                           targets={"kind": "dpls", "lam": lam, "from_epoch": T + 1, "measure": "external",
                                    "source": "subset"})


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: ("base",), ("prune", ratio), ("ls", which, ratio) with which "hard" | "easy"."""
    records = records or {}
    T, f = p.baseline.T, p.fig8
    base = ex.baseline(p.baseline)
    specs: dict = {("base",): base, **{("prune", r): ex.prune_fraction_from(base, T, "hard", r) for r in f.ratios}}
    later: dict = {}
    base_rec = records.get(base.hash)
    for w in ("hard", "easy"):
        for r in f.ratios:
            if base_rec is not None:
                specs[("ls", w, r)] = ls_subset(base, base_rec, T, w, r, f.lam, scores_folder(workdir))
            else:  # a stand-in of the same cost: the continuation with LS from T + 1
                later[("ls", w, r)] = ex.continuation(base, T, targets={"kind": "ls", "lam": f.lam,
                                                                         "from_epoch": T + 1})
    return Runs(specs, later)
