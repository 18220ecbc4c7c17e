"""Other remedies and DPLS combined with them: Tables 4, 6, 11 and 13 (Table 12 and RST's rows
of Table 6 need generated data that cannot be had offline).

Every method branches from the baseline after T and starts at T + 1 (SAT, TE, SWA, AWP, Liu
et al.); TE's weight ramps up over the remaining epochs; KD+SWA distils from the profile's
standard-trained baseline and from the PGD baseline's early-stopped (best) model. Only the
rows of ``runs.rows`` are trained (``{}`` = every row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import model_validator

from hardex.experiments import builders as ex
from hardex.experiments.params import Baseline, Block, ChapterParams, Cost
from hardex.experiments.rounds import Runs
from hardex.runs.spec import Evaluation, RunSpec


class KD(Block):
    temperature: float
    std_weight: float  # the standard-trained teacher's weight
    robust_weight: float  # the early-stopped robust teacher's weight


class Liu(Block):
    onehot_weight: float  # the adaptive target's one-hot weight
    reweight_mode: str  # hardex.config ReweightConfig.mode, e.g. nat_prob


class Methods(Block):
    lam: float  # DPLS factor of the hardest example (Table 9: 0.5 for CIFAR-10)
    momentum: float  # SAT / TE / adaptive-target momentum (their code: 0.9)
    te_weight: float  # TE's consistency weight (their code: 300)
    awp_gamma: float  # AWP's gamma for PGD-AT (their code: 0.01)
    kd: KD
    mart_beta: float  # (their code: 6.0)
    liu: Liu


class RunRows(Block):
    rows: dict[str, list[str]]  # rows trained per table ({} = every row); the others show the paper's number only
    evaluate_best: bool  # final.json also evaluates the best (early-stopped) model of the chapter's own runs


class Params(ChapterParams):
    baseline: Baseline
    cost: Cost
    methods: Methods
    runs: RunRows

    @model_validator(mode="after")
    def _rows_exist(self) -> Params:
        tables = table_rows(self)
        for t, rows in self.runs.rows.items():
            if t not in tables or not set(rows) <= set(tables[t]):
                raise ValueError(f"runs.rows.{t}: {rows!r}; allowed tables {sorted(tables)}, rows of {t}: "
                                 f"{sorted(tables.get(t, {}))}")
        return self


def table_rows(p: Params) -> dict[str, dict[str, Callable[[], RunSpec]]]:
    """Each table's rows: a function making the row's spec, so rows not trained are never built."""
    b, m, T = p.baseline, p.methods, p.baseline.T
    base = ex.baseline(b)
    dpls = {"kind": "dpls", "lam": m.lam}
    start = T + 1
    final_only = Evaluation(which=("final",))

    def own(spec: RunSpec) -> RunSpec:
        return spec if p.runs.evaluate_best else spec.model_copy(update={"evaluation": final_only})

    def cont(parent=base, teachers=None, scores_from=None, **changes) -> RunSpec:
        return own(ex.continuation(parent, T, scores_from=scores_from, teachers=teachers, **changes))

    std_teacher = ex.baseline(b, eps=0)
    swa = {"from_epoch": start}
    mart = own(ex.baseline(b, algorithm="mart", beta=m.mart_beta))
    trades = ex.baseline(b, algorithm="trades")
    awp = {"gamma": m.awp_gamma, "from_epoch": start}
    adaptive = {"from_epoch": start, "momentum": m.momentum, "onehot_weight": m.liu.onehot_weight}
    reweight = {"mode": m.liu.reweight_mode, "from_epoch": start}
    tables: dict[str, dict[str, Callable[[], RunSpec]]] = {
        "table4": {
            "pgd": lambda: base,
            "pgd_sat": lambda: cont(sat={"from_epoch": start, "momentum": m.momentum}),
            "pgd_kd_swa": lambda: cont(
                kd={"teachers": {"std": m.kd.std_weight, "robust": m.kd.robust_weight},
                    "temperature": m.kd.temperature},
                swa=swa, teachers={"std": {"run": std_teacher, "which": "final"},
                                   "robust": {"run": base, "which": "best"}}),
            "pgd_te": lambda: cont(te={"from_epoch": start, "ramp_until": b.epochs, "weight": m.te_weight,
                                       "momentum": m.momentum}),
            "pgd_dpls": lambda: cont(targets=dpls),
            "pgd_dpls_swa": lambda: cont(targets=dpls, swa=swa),
            "pgd_swa (not in the paper)": lambda: cont(swa=swa),
        },
        "table6": {
            "awp": lambda: cont(awp=awp),
            "awp_dpls": lambda: cont(awp=awp, targets=dpls),
            "mart": lambda: mart,
            "mart_dpls": lambda: cont(mart, targets={**dpls, "source": "trades"},
                                      scores_from={"trades": ex.scores_source(trades, T)}),
        },
        "table11": {
            "none": lambda: mart,
            "difficulty_mart": lambda: cont(mart, targets=dpls),
            "difficulty_trades": lambda: tables["table6"]["mart_dpls"](),
        },
        "table13": {
            "pgd": lambda: base,
            "pgd_dpls": lambda: tables["table4"]["pgd_dpls"](),
            "reweight_liu": lambda: cont(reweight=reweight),
            "adaptive_target_liu": lambda: cont(adaptive_target=adaptive),
            "reweight_adaptive_target_liu": lambda: cont(reweight=reweight, adaptive_target=adaptive),
        },
    }
    return tables


def trained_rows(p: Params) -> dict[str, list[str]]:
    """The rows this profile trains, per table."""
    tables, rows = table_rows(p), p.runs.rows
    return {t: list(rows[t]) if rows else list(r) for t, r in tables.items() if not rows or t in rows}


def runs(p: Params, records: Mapping[str, Any] | None = None, *, workdir: Path | None = None) -> Runs:
    """Keys: ("cell", "<table>/<row>") for each trained row; one round (teachers and score
    sources are runs the cells need, trained before them)."""
    tables = table_rows(p)
    return Runs({("cell", f"{t}/{row}"): tables[t][row]() for t, rows in trained_rows(p).items() for row in rows})
