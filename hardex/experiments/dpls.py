"""Sections 4.2 and 5, DPLS: Table 3 (with Table 9's factors) and Fig. 9.

* **Table 3**: per algorithm of ``table3.algorithms`` (PGD-AT, TRADES) and eps of
  ``table3.eps``, a prefix trained to the end of its schedule (the "baseline" row; for PGD at
  the profile's eps and the baseline's schedule it is the shared baseline of the other
  chapters) and continuations from its checkpoint after T: **pruning** the top
  ``prune_fraction`` hardest examples, **DPLS** with Table 9's lam, and (round 2) **LS** with the
  DPLS run's recorded average factor rounded to Table 9's three decimals, as the paper does.
  The block at the profile's eps repeats this per training seed of ``table3.seeds``.
* **Fig. 9**: the PGD and PGD + DPLS arms continued from T of a prefix of the 200-epoch setup,
  with quintile probes; when that prefix is the Table 3 PGD prefix, the Table 3 DPLS run
  carries the probes and is the DPLS arm (probes never change a trajectory).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost, Schedule
from hardex.experiments.rounds import EvalRequest, Runs
from hardex.paper.report import paper_value

METHODS = ("", "pruning", "ls", "dpls")  # Table 3's rows per algorithm ("" = the algorithm alone)


class Table3Eval(Block):
    subset: int  # per-epoch test sample (0 = all)
    final_pgd_steps: list[int]
    final_subset: int  # final.json's test sample (0 = all)


class Table3(Block):
    algorithms: list[Literal["pgd", "trades"]]
    eps: list[float]
    schedule: Schedule | None = None  # None: the baseline's (the block branches from the shared baseline)
    eval: Table3Eval | None = None  # None: the baseline's
    prune_fraction: float  # the top share of the hardest examples pruned from T + 1
    probe_k: int  # > 0: the prefixes carry the hard_examples chapter's probe sets (top-k hard / easy, all)
    probe_max: int  # examples per probe set (0 = all)
    seeds: list[int]  # training seeds of the block at the profile's eps (the other eps: the baseline's seed)


class Evaluation(Block):
    attacks: list[Literal["pgd20", "a3"]]  # evaluate_run's attacks; [] = final.json's PGD-k only
    n: int  # test examples (0 = all)
    n_per_attack: dict[str, int]  # an attack's test examples where they differ from n (0 = all)
    verdict_attack: Literal["", "pgd20", "a3"]  # the verdicts' robust column ("" = A3 when evaluated, else PGD)

    @model_validator(mode="after")
    def _consistent(self) -> Evaluation:
        unknown = sorted(set(self.n_per_attack) - set(self.attacks))
        if unknown:
            raise ValueError(f"n_per_attack names attacks not in attacks {self.attacks}: {unknown}")
        if self.verdict_attack and self.verdict_attack not in self.attacks:
            raise ValueError(f"verdict_attack {self.verdict_attack!r} is not evaluated (attacks {self.attacks})")
        return self

    def n_of(self, attack: str) -> int:
        """Test examples ``evaluate_run`` attacks with ``attack`` (0 = the whole split)."""
        return int(self.n_per_attack.get(attack, self.n))

    def groups(self) -> dict[int, list[str]]:
        """Test examples -> the attacks evaluated on them (one evaluate_run each, cached)."""
        out: dict[int, list[str]] = {}
        for a in self.attacks:
            out.setdefault(self.n_of(a), []).append(a)
        return out


class Fig9(Block):
    enabled: bool  # False: Fig. 9 is not built on this profile
    probe_max: int  # examples per quintile (0 = all)


class Params(ChapterParams):
    baseline: Baseline
    setup200: Schedule
    cost: Cost
    table3: Table3
    evaluation: Evaluation
    fig9: Fig9

    def t3_schedule(self) -> Schedule:
        return self.table3.schedule or Schedule(epochs=self.baseline.epochs, milestones=list(self.baseline.milestones),
                                                T=self.baseline.T)

    def seeds(self) -> list[int]:
        return list(dict.fromkeys(int(x) for x in self.table3.seeds)) or [self.baseline.seed]

    def seeds_for(self, e: float) -> list[int]:
        """Table 3's training seeds at ``e``: ``table3.seeds`` at the profile's eps, else its seed."""
        return self.seeds() if e == self.baseline.eps else [self.baseline.seed]


def table9_lam(dataset: str, alg: str) -> float:
    """Table 9's DPLS factor of the hardest example for ``dataset`` and ``alg``."""
    return float(paper_value(f"table9.{dataset}.{alg}.dpls"))


def t3_eval(p: Params) -> Table3Eval:
    """Table 3's evaluation settings: ``table3.eval``, else the baseline's."""
    b = p.baseline
    return p.table3.eval or Table3Eval(subset=b.eval_subset, final_pgd_steps=list(b.final_pgd_steps),
                                       final_subset=b.final_subset)


def shared_baseline(p: Params):
    """The profile's baseline as this chapter asks for it (with the probe sets when
    ``table3.probe_k``): Table 3's PGD prefix at the profile's eps is this run when the
    schedules and evaluations agree."""
    t = p.table3
    return ex.baseline(p.baseline, **({"probes": ex.difficulty_probes(p.baseline.eps, t.probe_k, t.probe_max)}
                                      if t.probe_k else {}))


def prefix(p: Params, alg: str, e: float, seed: int | None = None):
    """Table 3's prefix run for ``alg`` at ``e`` and training seed ``seed`` (default: the baseline's)."""
    b, t, s = p.baseline, p.table3, p.t3_schedule()
    ev = t3_eval(p)
    ev_over = {"subset": ev.subset or None, "final_subset": ev.final_subset or None,
               "final_pgd_steps": list(ev.final_pgd_steps)}
    probes = {"probes": ex.difficulty_probes(e, t.probe_k, t.probe_max)} if t.probe_k else {}
    bb = {**b.model_dump(), "seed": b.seed if seed is None else seed}
    return ex.baseline(bb, eps=e, algorithm=alg, epochs=s.epochs, milestones=s.milestones, T=s.T, eval=ev_over,
                       **probes)


def quintiles(p: Params) -> list[dict]:
    return [{"name": "quintiles", "quantiles": {"n_bins": 5}, "metrics": ["adv_acc"],
             "max_examples": p.fig9.probe_max or None}]


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: ("t3", alg, eps, method, seed) with method in :data:`METHODS`; ("fig9", "PGD" |
    "PGD+DPLS"). Round 2 adds the LS rows (their factor is the DPLS run's average)."""
    records = records or {}
    b, T = p.baseline, p.t3_schedule().T
    setup = p.setup200
    fig9_prefix = None
    if p.fig9.enabled:
        s3 = p.t3_schedule()
        same = (setup.epochs, list(setup.milestones), setup.T) == (s3.epochs, list(s3.milestones), s3.T)
        fig9_prefix = (prefix(p, "pgd", b.eps) if same else
                       ex.baseline(b, epochs=setup.epochs, milestones=setup.milestones, T=setup.T))
    fig9_shared = fig9_prefix is not None and fig9_prefix.hash == prefix(p, "pgd", b.eps).hash
    t3: dict = {}
    for alg in p.table3.algorithms:
        lam = table9_lam(b.dataset, alg)
        for e in p.table3.eps:
            for s_ in p.seeds_for(e):
                pre = prefix(p, alg, e, s_)
                carries = fig9_shared and alg == "pgd" and e == b.eps and s_ == b.seed
                t3[(alg, e, "", s_)] = pre
                t3[(alg, e, "pruning", s_)] = ex.prune_fraction_from(pre, T, "hard", p.table3.prune_fraction)
                t3[(alg, e, "dpls", s_)] = ex.continuation(pre, T, targets={"kind": "dpls", "lam": lam},
                                                           **({"probes": quintiles(p)} if carries else {}))
    fig9: dict = {}
    if fig9_prefix is not None:
        fig9["PGD"] = ex.continuation(fig9_prefix, setup.T, probes=quintiles(p))
        fig9["PGD+DPLS"] = (t3[("pgd", b.eps, "dpls", b.seed)] if fig9_shared else
                            ex.continuation(fig9_prefix, setup.T, probes=quintiles(p),
                                            targets={"kind": "dpls", "lam": table9_lam(b.dataset, "pgd")}))
    later: dict = {}
    for (alg, e, m, s_), dpls_run in list(t3.items()):
        if m != "dpls":
            continue
        rec = records.get(dpls_run.hash)
        if rec is not None:
            avg = rec.metrics[-1]["targets"]["avg_factor"]
            t3[(alg, e, "ls", s_)] = ex.continuation(t3[(alg, e, "", s_)], T, targets={
                "kind": "ls", "lam": round(avg, 3), "from_epoch": T + 1})
        else:  # a stand-in of the same cost
            later[("t3", alg, e, "ls", s_)] = ex.continuation(t3[(alg, e, "", s_)], T, targets={
                "kind": "ls", "lam": 0.9, "from_epoch": T + 1})
    specs = {**{("t3", *k): s for k, s in t3.items()}, **{("fig9", k): s for k, s in fig9.items()}}
    evaluations = [EvalRequest(s, tuple(atts), n or None) for s in [*t3.values(), *later.values()]
                   for n, atts in p.evaluation.groups().items()]
    return Runs(specs, later, evaluations)
