"""Section 3.1, the effect of hard examples: Table 1, Figs. 3-4 (+11, 12) and Figs. 1 and 10.

* **Figs. 3/4**: one run per eps of ``figs34.eps`` (0 = standard training) on the 200-epoch
  setup, each measuring three probe sets after every epoch (its own top-k hard and top-k
  easy examples by the 0-1 loss accumulated so far, and a sample of all; clean and
  adversarial accuracy and EL2N).
* **Table 1**: the baseline and its continuations from T + 1 without the top-k (or the top
  ``table1.fraction``) easy or hard examples; "none" is the baseline itself. The baseline is
  the Figs. 3/4 run at the profile's eps when both have the same schedule (its probes then come
  for free).
* **Figs. 1/10** (round 2): training on the ``n_hard`` hardest plus ``n_random`` random
  examples (difficulty from an STD and a PGD source run of ``fig1.model``), then at the first
  lr decay either going on or pruning the hard part (Fig. 10: also a "hard only" branch).
  The subsets are chosen from the source runs' records, so these runs exist from round 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardex import difficulty
from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost, Schedule
from hardex.experiments.rounds import EvalRequest, Runs


class Table1(Block):
    k: int  # examples pruned (hard or easy) from T + 1
    fraction: float  # > 0: the top share instead of k (the dpls chapter's pruning run when equal)
    eval: Literal["", "pgd20"]  # "": final.json's PGD-k (unpaired); "pgd20": evaluate_run's, paired per example
    eval_n: int  # test examples of evaluate_run (0 = all)


class Figs34(Block):
    k: int  # top-k hard / easy probe sets
    eps: list[float]  # one run per eps (0 = standard training)
    probe_max: int  # examples measured per probe set (0 = all)


class Fig1(Block):
    model: str
    n_hard: int  # 0 = Figs. 1/10 not built
    n_random: int
    eps: float
    step_size: float
    attack_steps: int


class Fig10(Block):
    n_hard: int  # 0 = not built
    n_random: int


class Params(ChapterParams):
    baseline: Baseline
    setup200: Schedule
    cost: Cost
    table1: Table1
    figs34: Figs34
    fig1: Fig1
    fig10: Fig10


def probes(p: Params, e: float) -> list[dict]:
    """The probe sets of the Figs. 3/4 run at ``e`` (the memorization chapter's difficulty runs
    use the same builder)."""
    return ex.difficulty_probes(e, p.figs34.k, p.figs34.probe_max)


def fig_runs(p: Params) -> dict[float, Any]:
    s = p.setup200
    return {e: ex.baseline(p.baseline, eps=e, epochs=s.epochs, milestones=s.milestones, T=s.T, probes=probes(p, e))
            for e in p.figs34.eps}


def baseline_run(p: Params, figs: Mapping[float, Any]):
    """Table 1's baseline: the Figs. 3/4 run at the profile's eps when the schedules agree."""
    b, s = p.baseline, p.setup200
    shared = b.eps in figs and (s.epochs, list(s.milestones), s.T) == (b.epochs, list(b.milestones), b.T)
    return figs[b.eps] if shared else ex.baseline(b)


def fig1_sources(p: Params, figs: Mapping[float, Any]) -> dict[str, Any]:
    """The STD and PGD runs whose difficulty chooses Fig. 1's subsets (the Figs. 3/4 runs when
    model, eps and schedule agree)."""
    if p.fig1.n_hard <= 0:
        return {}
    b, s, f = p.baseline, p.setup200, p.fig1
    fig1_b = {**b.model_dump(), "model": f.model, "epochs": s.epochs}

    def source(e: float):
        if f.model == b.model and e in figs:
            return figs[e]
        return ex.baseline(fig1_b, eps=e, milestones=s.milestones, T=s.T)

    return {"STD": source(0.0), "PGD": source(f.eps)}


def fig1_runs(p: Params, source_records: Mapping[str, Any]) -> dict[tuple, Any]:
    """Figs. 1/10's subset runs and branches, from the source runs' records (by "STD"/"PGD")."""
    b, s, f = p.baseline, p.setup200, p.fig1
    fig1_b = {**b.model_dump(), "model": f.model, "epochs": s.epochs}
    variants = {"Fig. 1": (f.n_hard, f.n_random)}
    if p.fig10.n_hard:
        variants["Fig. 10"] = (p.fig10.n_hard, p.fig10.n_random)
    rng = np.random.default_rng(b.seed)
    decay1 = s.milestones[0]
    out: dict[tuple, Any] = {}
    for item, (n_hard, n_random) in variants.items():
        for alg, rec in source_records.items():
            d = rec.difficulty
            scores = np.where(d["in_train"], d["zero_one"], np.nan)
            hard_idx = difficulty.select(scores, k=n_hard, which="hard")
            rest = np.setdiff1d(np.flatnonzero(d["in_train"]), hard_idx)
            rand_idx = np.sort(rng.choice(rest, n_random, replace=False))
            e = 0.0 if alg == "STD" else f.eps
            sub = ex.keep_indices(fig1_b, np.concatenate([hard_idx, rand_idx]), eps=e, milestones=s.milestones,
                                  T=s.T, attack={"step_size": f.step_size, "steps": f.attack_steps})
            out[(item, alg, "continue")] = sub
            out[(item, alg, "prune hard")] = ex.continuation(
                sub, decay1, edits=[{"kind": "prune", "from_epoch": decay1 + 1, "indices": hard_idx.tolist()}])
            if item == "Fig. 10":  # its third branch: only the hard part after the decay
                out[(item, alg, "hard only")] = ex.continuation(
                    sub, decay1, edits=[{"kind": "keep", "from_epoch": decay1 + 1, "indices": hard_idx.tolist()}])
    return out


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: ("figs34", eps), ("table1", row), ("fig1src", "STD" | "PGD"), ("fig1", item, alg, branch)."""
    records = records or {}
    figs = fig_runs(p)
    base = baseline_run(p, figs)
    t = p.table1

    def pruned(which: str):
        return (ex.prune_fraction_from(base, p.baseline.T, which, t.fraction) if t.fraction
                else ex.prune_from(base, p.baseline.T, which, t.k))

    table1 = {"none": ex.continuation(base, p.baseline.T), "easy_pruning": pruned("easy"),
              "hard_pruning": pruned("hard")}
    specs: dict = {**{("figs34", e): s for e, s in figs.items()}, **{("table1", r): s for r, s in table1.items()}}
    sources = fig1_sources(p, figs)
    specs.update({("fig1src", alg): s for alg, s in sources.items()})
    later: dict = {}
    got = {alg: records.get(s.hash) for alg, s in sources.items()}
    if sources and all(r is not None for r in got.values()):
        specs.update({("fig1", *k): s for k, s in fig1_runs(p, got).items()})
    elif sources:  # stand-ins: the subset runs' cost (same model, schedule and size)
        fake = {alg: _StandInRecord() for alg in sources}
        later.update({("fig1", *k): s for k, s in fig1_runs(p, fake).items()})
    evals = ([EvalRequest(s, ("pgd20",), t.eval_n or None) for s in table1.values()] if t.eval else [])
    return Runs(specs, later, evals, optional=frozenset({"fig1src", "fig1"}))


class _StandInRecord:
    """A source record of the right shape for stand-in subsets (the first examples as hard; the
    subsets' sizes, and so their cost, are the real ones)."""

    def __init__(self, n: int = 50000):
        self.difficulty = {"in_train": np.ones(n, dtype=bool), "zero_one": -np.arange(n, dtype=np.float64)}
