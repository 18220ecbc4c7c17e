"""Robustness evaluation (Tables 19-21, A3 vs AutoAttack, the gradient-masking check).

Two models: the profile's shared PGD-AT baseline and its DPLS continuation from T + 1
(hardest example's factor ``models.dpls_lam``), each evaluated once by
``hardex.evaluation.suite.evaluate_run`` with every attack of :func:`attack_names` on the same
seeded test examples (cached in the run's ``eval/`` folder).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost
from hardex.experiments.rounds import EvalRequest, Runs


class Models(Block):
    dpls_lam: float  # the DPLS continuation's factor of the hardest example (the paper's headline: 0.5)


class AutoAttack(Block):
    version: Literal["standard", "custom"]
    attacks: list[str]  # with "custom": AutoAttack's attacks to run
    n_iter: int  # 0 = AutoAttack's own


class Masking(Block):
    n: int  # images of the gradient-masking check (the first of the subset)
    steps: int


class Attacks(Block):
    n: int  # seeded test subset (0 = all)
    seed: int
    which: Literal["final", "best"]
    batch_size: int
    pgd_steps: int  # PGD-K and CW-K
    a3_rounds: int  # 0 = A3's reference 13-round schedule, else its first a3_rounds rounds
    md_steps: int
    md_change_point: int
    rays_queries: int
    autoattack: AutoAttack
    masking: Masking


class Checks(Block):
    a3_gap_tol_points: float  # A3 = AutoAttack within this many points (Liu et al.: a 0.04-0.4 point gap)
    a3_cost_ratio_max: float  # at most this share of AutoAttack's forward+backward passes


class Params(ChapterParams):
    baseline: Baseline
    cost: Cost
    models: Models
    attacks: Attacks
    checks: Checks


def attack_names(p: Params) -> list[str]:
    k = p.attacks.pgd_steps
    return [f"pgd{k}", f"cw{k}", "a3", "md", "rays", "autoattack", f"pgd{k}@bf16", f"cw{k}@bf16"]


def evaluate_options(p: Params) -> dict[str, Any]:
    """``evaluate_run``'s keywords for this profile's attack settings."""
    from hardex.evaluation.a3 import default_schedule

    a = p.attacks
    options: dict[str, Any] = {"batch_size": a.batch_size, "device": p.baseline.device or None,
                               "rays_queries": a.rays_queries,
                               "md_options": {"steps": a.md_steps, "change_point": a.md_change_point},
                               "masking_n": a.masking.n, "masking_steps": a.masking.steps}
    if a.a3_rounds:
        options["a3_options"] = {"schedule": default_schedule()[:a.a3_rounds]}
    aa: dict[str, Any] = {}
    if a.autoattack.version != "standard":
        aa.update(version=a.autoattack.version, attacks_to_run=list(a.autoattack.attacks))
    if a.autoattack.n_iter:
        aa["n_iter"] = a.autoattack.n_iter
    if aa:
        options["autoattack_options"] = aa
    return options


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: ("model", "pgd" | "pgd_dpls"); one evaluation of each with every attack."""
    base = ex.baseline(p.baseline)
    models = {"pgd": base, "pgd_dpls": ex.continuation(base, p.baseline.T, targets={"kind": "dpls",
                                                                                    "lam": p.models.dpls_lam})}
    a = p.attacks
    evaluations = [EvalRequest(s, tuple(attack_names(p)), a.n or None, a.seed, a.which,
                               tuple(evaluate_options(p).items())) for s in models.values()]
    return Runs({("model", k): s for k, s in models.items()}, evaluations=evaluations)
