"""Appendix D / B.5, ablations: Tables 5/10 (difficulty measures), 14 (T), 15 (restart
epoch), 16/17 (lam), 18 (DPR) and 19 (pruning by each measure).

Per algorithm, the baseline to ``epochs`` and continuations of it (branch epoch in brackets):

* **DPLS** (lam = ``dpls.lam``, 0-1 loss, [T]): Table 5's 0-1 row, Table 14's T row, Table
  15's restart-at-T row, Tables 16/17's lam row and Table 18's DPLS row: one run.
* **Table 5/10**: DPLS ranked by accumulated clean CE loss or EL2N [T]; by C-scores
  (``measure="external"``) when ``table5.cscore_file`` is usable with this data.
* **Table 14**: difficulty accumulated to T' instead of T, DPLS from T' + 1 [T' if T' <= T;
  else T, tracking on to T'].
* **Table 15**: the DPLS run's factors (the baseline's difficulty to T, through
  ``scores_from``) applied from epoch R + 1 of the baseline's trajectory [R]; R = 0 is a run
  from scratch with DPLS from epoch 1; R = T is the DPLS run itself.
* **Tables 16/17**: DPLS with other lam [T]; lam = 1 is the baseline.
* **Table 18**: DPR, the same factors as per-example loss weights [T].
* **Table 19** (``table19.algorithm``): the top ``fraction`` hard examples by each measure pruned
  from T + 1 [T], over all classes or the same share of each class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import model_validator

from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost
from hardex.experiments.rounds import EvalRequest, Runs
from hardex.runs.spec import Evaluation as SpecEvaluation

Measure = Literal["zero_one", "ce", "el2n"]


class DPLS(Block):
    algorithms: list[Literal["pgd", "trades"]]
    lam: float  # the hardest example's factor of every DPLS run the tables vary


class Table5(Block):
    measures: list[Measure]
    cscore_file: str  # "" = no C-scores (an .npz with scores and labels, in this data's example order)


class Table14(Block):
    T: list[int]  # tracking epochs T' of this profile
    paper_T: list[int]  # the paper's rows they stand for (same length)


class Table15(Block):
    restart: list[int]  # restart epochs R
    paper_restart: list[int]  # the paper's rows they stand for (same length)


class Table16(Block):
    lams: list[float]


class Table19(Block):
    algorithm: Literal["pgd", "trades"]
    fraction: float
    measures: list[Measure]


class Evaluation(Block):
    attacks: list[Literal["pgd20", "cw20", "a3"]]  # evaluate_run's; PGD from final.json unless pgd20 is among them
    n: int  # test examples (0 = all)
    masking: bool  # the gradient-masking check too
    best: bool  # evaluate the best model in final.json too (the runs' spec evaluation)


class Params(ChapterParams):
    baseline: Baseline
    cost: Cost
    dpls: DPLS
    table5: Table5
    table14: Table14
    table15: Table15
    table16: Table16
    table19: Table19
    evaluation: Evaluation

    @model_validator(mode="after")
    def _paired_rows(self) -> Params:
        for name, a, b in (("table14.T", self.table14.T, self.table14.paper_T),
                           ("table15.restart", self.table15.restart, self.table15.paper_restart)):
            if len(a) != len(b):
                raise ValueError(f"{name}={a} and its paper counterpart {b} must have the same length")
        return self


def cscore_source(p: Params) -> tuple[dict | None, str]:
    """The ``scores_from`` entry of the C-scores when ``table5.cscore_file`` is usable with this
    data (its labels must match example by example), else None; and a sentence saying which."""
    from hardex import difficulty
    from hardex.data import load_dataset

    f = p.table5.cscore_file
    if not f:
        return None, ("C-scores could not be had here: they are a published download and this machine is offline "
                      "(`table5.cscore_file` is empty). The C-score rows are **not run**; every other row is.")
    path = Path(f)
    if not path.is_file():
        raise FileNotFoundError(f"table5.cscore_file={f!r} does not exist")
    labels = load_dataset(p.baseline.dataset, "train").labels
    try:
        cs = difficulty.load_external_scores(path, len(labels), labels=labels)
    except ValueError as err:
        return None, (f"C-scores in `{path.name}` cannot be used with this data: {err}. The C-score rows are "
                      "**not run**; every other row is.")
    return {"file": str(path.resolve())}, f"C-scores from `{path.name}` ({int(np.isfinite(cs).sum())} scores): rows run."


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: (group, *key) for groups base (alg), t5 (alg, measure), t14 (alg, T'), t15 (alg, R),
    t16 (alg, lam), t18 (alg, row), t19 (measure, balanced); one round."""
    b, T, lam = p.baseline, p.baseline.T, p.dpls.lam
    cscore, _ = cscore_source(p)
    cs = {"cscore": cscore} if cscore else {}
    final_only = SpecEvaluation(which=("final",))

    def leaf(spec):
        """A continuation of this chapter: final-model evaluation only unless ``evaluation.best``."""
        return spec if p.evaluation.best else spec.model_copy(update={"evaluation": final_only})

    def targets(lam_: float = lam, measure: str = "zero_one", source: str = "self", from_epoch: int | None = None,
                kind: str = "dpls") -> dict:
        t = {"kind": kind, "lam": float(lam_), "measure": measure, "source": source}
        return t if from_epoch is None else {**t, "from_epoch": int(from_epoch)}

    bases = {alg: ex.baseline(b, **({"algorithm": "trades"} if alg == "trades" else {}))
             for alg in dict.fromkeys([*p.dpls.algorithms, p.table19.algorithm])}

    def dpls_run(alg: str, measure: str = "zero_one", lam_: float = lam, kind: str = "dpls"):
        base = bases[alg]
        if measure == "cscore":
            return leaf(ex.continuation(base, T, targets=targets(lam_, "external", "cscore", T + 1, kind), scores_from=cs))
        return leaf(ex.continuation(base, T, targets=targets(lam_, measure, kind=kind)))

    def t14_run(alg: str, t: int):
        base = bases[alg]
        if t == T:
            return dpls_run(alg)
        tracking = {**base.train.tracking.model_dump(), "until_epoch": t}
        return leaf(ex.continuation(base, min(t, T), tracking=tracking, targets=targets()))

    def t15_run(alg: str, r: int):
        base = bases[alg]
        if r == T:
            return dpls_run(alg)
        src = {"base": ex.scores_source(base)}  # the finished baseline's difficulty: tracked to T only
        if r == 0:
            return leaf(ex.from_source(b, base, name="base", algorithm=base.train.algorithm,
                                       targets=targets(source="base", from_epoch=1)))
        return leaf(ex.continuation(base, r, scores_from=src, targets=targets(source="base", from_epoch=r + 1)))

    def t19_run(measure: str, balanced: bool):
        base = bases[p.table19.algorithm]
        rule = {"measure": "external" if measure == "cscore" else measure, "which": "hard",
                "fraction": float(p.table19.fraction), "balanced": balanced,
                "source": "cscore" if measure == "cscore" else "self"}
        return leaf(ex.continuation(base, T, edits=[{"kind": "prune", "from_epoch": T + 1, "rule": rule}],
                                    scores_from=cs if measure == "cscore" else None))

    algs = p.dpls.algorithms
    t5_measures = [*p.table5.measures, *(["cscore"] if cscore else [])]
    t19_measures = [*p.table19.measures, *(["cscore"] if cscore else [])]
    groups = {
        "base": dict(bases),
        "t5": {(alg, m): dpls_run(alg, m) for alg in algs for m in t5_measures},
        "t14": {(alg, t): t14_run(alg, t) for alg in algs for t in p.table14.T},
        "t15": {(alg, r): t15_run(alg, r) for alg in algs for r in p.table15.restart},
        "t16": {(alg, lam_): (bases[alg] if lam_ == 1.0 else dpls_run(alg, lam_=lam_))
                for alg in algs for lam_ in [1.0, *p.table16.lams]},
        "t18": {(alg, row): {"none": bases[alg], "dpr": dpls_run(alg, kind="dpr"), "dpls": dpls_run(alg)}[row]
                for alg in algs for row in ("none", "dpr", "dpls")},
        "t19": {(m, bal): t19_run(m, bal) for m in t19_measures for bal in (False, True)},
    }
    specs = {(g, *(k if isinstance(k, tuple) else (k,))): s for g, d in groups.items() for k, s in d.items()}
    ev = p.evaluation
    evaluations = ([EvalRequest(s, tuple(ev.attacks), ev.n or None, options=(("masking", ev.masking),))
                    for s in {s.hash: s for s in specs.values()}.values()] if ev.attacks else [])
    return Runs(specs, evaluations=evaluations)
