"""Section 3.3 and Appendix B.6, the memorization of hard examples: Figs. 5-7 (+13), Tables 2, 7, 8.

* **Difficulty sources** (the 200-epoch setup): one run per eps of Fig. 5 (and the profile's
  eps, for Fig. 6 / Table 8), each probing its own top-k hard and easy sets every epoch
  (``source="self"``: from T on, exactly the sets the other runs get from it); built as the
  hard_examples chapter builds its Figs. 3/4 runs, so with equal parameters they are the same
  runs. For the 110-epoch setup, the baseline (the eps-8 source when both setups agree).
* **Fig. 5 / 13**: per eps, the source ("with" the sets) and runs pruned of its top-k hard or
  easy examples from epoch 1 ("without"), probing the same sets.
* **Table 2 / 7**: runs that keep only the baseline's top-k easy or hard examples from epoch 1.
* **Fig. 6 / Table 8**: random labels on the source's top-k hard or easy examples; Table 8's
  "normal" is the source, "pruned" the Fig. 5 prune-hard run (TRADES: its own source run).
* **Fig. 7**: the baseline (and an STD baseline) continued from T + 1 without the top n% easy
  or hard examples; ratio 0 is the baseline itself. (c): per eps, the source pruned at T.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost, Schedule
from hardex.experiments.rounds import Runs


class Sets(Block):
    k: int  # the top-k hard / easy sets of the 200-epoch setup (Figs. 5, 6, Table 8)
    probe_max: int  # examples measured per set (0 = all)


class Fig5(Block):
    eps: list[float]


class Table2(Block):
    k: int  # train only on the baseline's top-k easy or hard examples
    eps: list[float]


class Table8(Block):
    algorithms: list[Literal["pgd", "trades"]]


class Fig7(Block):
    ratios: list[float]  # prune the top n% easy / hard at T
    algorithms: list[Literal["std", "pgd"]]
    c_eps: list[float]  # (c): robust gain per eps ([] = not built)


class B6(Block):
    k: int
    n_images: int


class Params(ChapterParams):
    baseline: Baseline
    setup200: Schedule
    cost: Cost
    sets: Sets
    fig5: Fig5
    table2: Table2
    table8: Table8
    fig7: Fig7
    b6: B6


GROUPS = ("fig5", "table2", "fig6", "table8", "fig7", "fig7c", "b6")


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: (group, *key) for the groups of :data:`GROUPS` (one round)."""
    b, s = p.baseline, p.setup200
    mem = dict(epochs=s.epochs, milestones=s.milestones, T=s.T)

    def run_probes(e: float, source: str) -> list[dict]:
        sets = ("hard", "easy", "all") if source == "self" else ("hard", "easy")
        return ex.difficulty_probes(e, p.sets.k, p.sets.probe_max, source=source, sets=sets)

    def source(e: float, algorithm: str = "pgd"):
        if algorithm == "trades":
            return ex.baseline(b, eps=e, algorithm="trades", **mem)
        return ex.baseline(b, eps=e, probes=run_probes(e, "self"), **mem)

    def edited(e: float, kind: str, which: str, algorithm: str = "pgd"):
        extra = {"algorithm": "trades"} if algorithm == "trades" else {"probes": run_probes(e, "source")}
        return ex.from_source(b, source(e, algorithm), eps=e, **mem, **extra,
                              edits=[ex.by_difficulty(kind, which, k=p.sets.k, seed=b.seed)])

    same_setup = (s.epochs, list(s.milestones), s.T) == (b.epochs, list(b.milestones), b.T)
    base = source(b.eps) if same_setup else ex.baseline(b)
    groups: dict[str, dict] = {
        "fig5": {(e, arm): (source(e) if arm == "with" else edited(e, "prune", arm.split()[-1]))
                 for e in p.fig5.eps for arm in ("with", "without hard", "without easy")},
        "table2": {(w, e): ex.from_source(b, base, eps=e, edits=[ex.by_difficulty("keep", w, k=p.table2.k)])
                   for w in ("easy", "hard") for e in p.table2.eps},
        "fig6": {w: edited(b.eps, "random_labels", w) for w in ("hard", "easy")},
        "table8": {(alg, row): (source(b.eps, alg) if row == "normal"
                                else edited(b.eps, "random_labels" if row == "corrupted" else "prune", "hard", alg))
                   for alg in p.table8.algorithms for row in ("normal", "corrupted", "pruned")},
    }

    def fig7_base(alg: str):
        return ex.baseline(b, eps=0.0) if alg == "std" else base

    groups["fig7"] = {(alg, w, r): ex.prune_fraction_from(fig7_base(alg), b.T, w, r)
                      for alg in p.fig7.algorithms for w in ("easy", "hard") for r in [0.0, *p.fig7.ratios]}
    groups["fig7c"] = {(e, r): ex.prune_fraction_from(source(e), s.T, "hard", r)
                       for e in ([b.eps, *p.fig7.c_eps] if p.fig7.c_eps else []) for r in [0.0, *p.fig7.ratios]}
    groups["b6"] = {"base": base}
    return Runs({(g, *(k if isinstance(k, tuple) else (k,))): spec for g, d in groups.items() for k, spec in d.items()})
