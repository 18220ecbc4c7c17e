# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablations (Appendix D and B.5)
#
# The paper's ablations of DPLS on CIFAR-10: which difficulty measure feeds it (Table 5, with
# the full numbers in Table 10), the epoch T up to which difficulty is accumulated (Table 14),
# the epoch training restarts from with difficulty fixed at T (Table 15), the smoothing factor
# λ of the hardest example and the average factor it yields (Tables 16 and 17), label
# smoothing against loss reweighting with the same difficulty (DPR, Table 18), and pruning the
# top 10% hard examples with or without balancing the classes (Table 19). Every number comes
# from a run record (`hardex.runs.ensure`) or from the paper's own tables (`hardex.paper.report`).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# **Shared prefix.** As in the paper ("We trained the baseline model until epoch 90 and
# continued this training with the application of each method"), every DPLS, DPR and pruning
# run is a continuation of one baseline per algorithm (PGD-AT, TRADES), branched from its
# checkpoint; the baseline is the profile's `experiments.baseline(P)` (its keys are those of
# `params/<profile>/hard_examples.yaml`), so other chapters asking for it get the same run.
# Only Table 15's "restart from epoch 0" row trains from scratch, because that is what it tests.
#
# **DPLS** (Algorithms 1 and 2, `hardex.targets`): difficulty is accumulated over epochs 1..T;
# from epoch T + 1 example i trains toward `LS(y_i, 1 - (1 - λ) S_norm[i])`, S min-max
# normalised over the training set (easiest: one-hot, hardest: λ on the true class). The
# "average factor" of Tables 16/17 is the mean of these factors over the training set, read
# from each run's metrics record.

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (profile.yaml: the shared baseline, the 200-epoch
# setup, the stated costs; ablations.yaml: this chapter's blocks); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {table16: {lams: [0.5]}}"
profile = "smoke"
build = {}
overrides = {}

# %%
import time
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from hardex.book.chapter import finish, note, setup, show_profile
from hardex.experiments import ablations, count_runs, distinct_runs
from hardex.experiments.cost import Estimator
from hardex.paper.report import compare, paper_value

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 3)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book = setup(globals(), "ablations", show=False)  # hardex.experiments.ablations
B = P.baseline
K = max(B.final_pgd_steps)

# robust evaluation: evaluate_run's attacks on `evaluation.n` test examples; PGD from final.json
# unless pgd20 is among them
EVAL_N = P.evaluation.n or None
N_TXT = f"{P.evaluation.n} test examples" if P.evaluation.n else "the whole test split"
PGD_FROM_EVAL = "pgd20" in P.evaluation.attacks
HAVE_CW, HAVE_A3 = "cw20" in P.evaluation.attacks, "a3" in P.evaluation.attacks
PGD_NAME = f"PGD-{K}" if not PGD_FROM_EVAL else "PGD-20"
SRC = {"pgd": (f"PGD-20 (evaluate_run, {N_TXT})" if PGD_FROM_EVAL
               else f"PGD-{K} (final.json, {B.final_subset or 'all'} test examples)"),
       "cw": f"CW-20 (evaluate_run, {N_TXT})" if HAVE_CW else "not run",
       "a3": f"A3 (evaluate_run, {N_TXT})" if HAVE_A3 else "not run"}
ROB = "A3" if HAVE_A3 else PGD_NAME  # what "rob" means where the paper reports A3 only

show_profile(P, led, f"DPLS λ = {P.dpls.lam}. Robust columns (final model): PGD {SRC['pgd']}, CW {SRC['cw']}, "
                    f"A3 {SRC['a3']}.")

# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: the minimum detectable effect (MDE, points; 95% interval excluding
# zero with 80% power, `hardex.paper.stats.mde`) of the main comparisons of this chapter on this
# profile's test examples (one training seed), next to the paper's effect (PGD-AT rows, the
# robust column the verdicts use: A3, else PGD). Paired comparisons (per-example outcomes from
# `evaluate_run`) assume the two models disagree on 15% of test examples; comparisons of
# `final.json`'s aggregate accuracies are unpaired (as if disagreeing on 50%). Stated
# assumptions, not measurements.

# %%
PAIRED_ROB = HAVE_A3 or PGD_FROM_EVAL
N_ROB = (P.evaluation.n or 10000) if PAIRED_ROB else (B.final_subset or 10000)
pcol = "a3" if HAVE_A3 else "pgd"
for item, what, eff in (
        ("Table 5", "DPLS (0-1 loss) - baseline", paper_value(f"table5_table10.pgd.zero_one.{pcol}")
         - paper_value(f"table5_table10.pgd.none.{pcol}")),
        ("Table 5", "0-1 loss - EL2N (the closest measure)", paper_value(f"table5_table10.pgd.zero_one.{pcol}")
         - paper_value(f"table5_table10.pgd.el2n.{pcol}")),
        ("Table 14", "DPLS with T = 10 (paper) - baseline (the smallest gain)",
         paper_value("table14.t10.pgd.rob") - paper_value("table5_table10.pgd.none.a3")),
        ("Table 15", "restart at 0 - baseline", paper_value("table15.reinit0.pgd.rob") - paper_value("table5_table10.pgd.none.a3")),
        ("Tables 16/17", "λ = 0.5 - λ = 1", paper_value(f"table16.lambda_0.5.{pcol}") - paper_value(f"table16.lambda_1.0.{pcol}")),
        ("Table 18", "DPLS - DPR", paper_value(f"table18.pgd.dpls.{pcol}") - paper_value(f"table18.pgd.dpr.{pcol}")),
        ("Table 19", "unbalanced - balanced pruning (0-1 loss; paper: TRADES)",
         paper_value(f"table19.zero_one.{pcol}") - paper_value(f"table19.zero_one_balanced.{pcol}"))):
    led.power(item, f"{what} ({ROB})", N_ROB, 1, eff, discordance=0.15 if PAIRED_ROB else 0.5,
              note="paired" if PAIRED_ROB else "unpaired (final.json aggregates)")
print(f"robust comparisons on {N_ROB} test examples, 1 training seed (profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## C-scores
#
# The paper's Table 5/10 and Table 19 include C-scores {cite:p}`jiang2021characterizing`: per-example
# consistency scores precomputed from many standard models trained on data subsets, published
# for CIFAR-10 in the original example order. Give them as `table5.cscore_file` (an .npz with
# `scores`, and `labels` to check the order); they enter runs through `RunSpec.scores_from`
# (the file's sha256, not its path, is part of each run's hash), low consistency = hard.
# The file's labels must match this data's labels example by example: the offline JPEG copy of
# CIFAR-10 is in a different order, so published C-scores cannot be mapped onto it.

# %%
CSCORE, cscore_note = ablations.cscore_source(P)  # the scores_from entry when usable, and why (not)
display(Markdown(cscore_note))
T5_MEASURES = [*P.table5.measures, *(["cscore"] if CSCORE else [])]
T19_MEASURES = [*P.table19.measures, *(["cscore"] if CSCORE else [])]
PAPER_ROW = {"zero_one": "zero_one", "ce": "ce_loss", "el2n": "el2n", "cscore": "c_score"}
MEASURE_NAME = {"zero_one": "0-1 loss", "ce": "CE loss", "el2n": "EL2N", "cscore": "C-score"}

# %% [markdown]
# ## The runs
#
# Per algorithm, the baseline to `epochs` and these continuations of it (branch epoch in
# brackets):
#
# * **DPLS** (λ = `dpls.lam`, 0-1 loss, [T]): Table 5's 0-1 row, Table 14's T row, Table 15's
#   restart-at-T row, the λ = `dpls.lam` row of Tables 16/17 and Table 18's DPLS row; one run.
# * **Table 5/10**: DPLS ranked by accumulated clean CE loss or EL2N instead [T]; by C-scores
#   (`measure="external"`) when they are available.
# * **Table 14**: difficulty accumulated to T' instead of T, DPLS from T' + 1 [T' if T' ≤ T;
#   else T, tracking on to T'].
# * **Table 15**: the factors of the DPLS run (the baseline's difficulty to T, through
#   `scores_from`), applied from epoch R + 1 of the baseline's trajectory [R]; R = 0 is a run
#   from scratch with DPLS from epoch 1. R = T is the DPLS run itself (the factors are the
#   same numbers: its own accumulators at T are the baseline's).
# * **Tables 16/17**: DPLS with other λ [T]; λ = 1 is the baseline.
# * **Table 18**: DPR, the same factors as per-example loss weights [T] (see `hardex.targets`).
# * **Table 19** (`table19.algorithm`): the top `table19.fraction` hard examples by each measure pruned
#   from epoch T + 1 [T], over all classes or the same share of each class.

# %%
t0 = time.perf_counter()
runs, by_key = book.experiment(ablations, P)  # hardex.experiments.ablations.runs: one round
GROUPS = ("base", "t5", "t14", "t15", "t16", "t18", "t19")
groups = {g: runs.group(g) for g in GROUPS}
R = {g: {k: by_key[(g, *(k if isinstance(k, tuple) else (k,)))] for k in d} for g, d in groups.items()}
note(f"runs ready in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Reading a run
#
# Standard and PGD accuracy of the final model come from the run record (`final.json`: PGD-k,
# step eps/4, on `baseline.final_subset` test examples) unless the profile asks `evaluate_run` for
# `pgd20`; CW-20 (PGD with the CW margin loss, Table 19) and A3 come from
# `hardex.evaluation.suite.evaluate_run` on `evaluation.n` seeded test examples (cached in each run's
# directory) when the profile lists them, and are "not run" (NaN) otherwise. Where the paper
# reports A3 only (Tables 14, 15: "Rob."), our "rob" is A3 when it was run, else PGD, and the
# column says which.

# %%
_evals: dict[str, dict] = {}
# the columns evaluate_run provides on this profile; a run is evaluated only when a table asks
# for one of them (smoke: CW-20 for Table 19's runs only)
FROM_EVAL = ({"cw"} if HAVE_CW else set()) | ({"a3", "rob"} if HAVE_A3 else set()) \
    | ({"std", "pgd", "rob"} if PGD_FROM_EVAL else set()) | ({"masking"} if P.evaluation.masking and P.evaluation.attacks else set())


def accs(rec, cols=("std", "pgd", "a3", "rob")) -> dict:
    """std / pgd / cw / a3 / rob (fractions; None = not run) and the masking check of a run's
    final model."""
    f = rec.final["final"]
    out = {"std": f["clean_acc"], "pgd": f[f"pgd{K}_acc"], "cw": None, "a3": None, "masking": None}
    if FROM_EVAL & set(cols):
        if rec.hash not in _evals:
            _evals[rec.hash] = book.evaluate(rec, attacks=tuple(P.evaluation.attacks), n=EVAL_N, seed=0, which="final",
                                            masking=P.evaluation.masking)
        ev = _evals[rec.hash]
        ra = ev["robust_acc"]
        out.update(cw=ra.get("cw20"), a3=ra.get("a3"), masking=ev.get("masking"))
        if PGD_FROM_EVAL:  # std and pgd on the same test examples
            out.update(std=ev["clean_acc"], pgd=ra["pgd20"])
    out["rob"] = out["a3"] if HAVE_A3 else out["pgd"]
    return out


def avg_factor(rec) -> float:
    """The average smoothing factor over the training set, from the run's last metrics row
    (a one-hot run trains with factor 1 for every example)."""
    t = rec.metrics[-1]["targets"]
    return 1.0 if t["kind"] == "onehot" else t["avg_factor"]


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """The table for display, each robust column naming the attack behind our numbers."""
    names = {k: f"{k} (ours: {v.split(' (')[0]})" for k, v in SRC.items()}
    return table.rename(columns=names, level=0)


ALG = {"pgd": "PGD", "trades": "TRADES"}

# %% [markdown]
# ## Table 5 (and Table 10): the difficulty measure
#
# DPLS (λ = `dpls.lam`) with difficulty from the accumulated clean 0-1 loss, CE loss or EL2N
# {cite:p}`paul2021deep` of the baseline's trajectory up to T (Algorithm 1), or from C-scores. The paper's Table 5 lists
# A3 only; Table 10 has standard, PGD and A3. The paper finds every measure helps and the
# 0-1 loss helps most ("the 0-1 loss is less affected by scale or variance at each
# checkpoint").

# %%
# NBVAL_CHECK_OUTPUT
t5_rows = {f"{ALG[alg]} / {MEASURE_NAME.get(m, 'baseline')}": (alg, m)
           for alg in ("pgd", "trades") for m in ["none", *PAPER_ROW]}
t5_ours = {}
for row, (alg, m) in t5_rows.items():
    rec = R["base"].get(alg) if m == "none" else R["t5"].get((alg, m))
    if rec is not None:
        a = accs(rec)
        t5_ours[row] = {k: a[k] for k in ("std", "pgd", "a3")}
t5_paper = {row: paper_value(f"table5_table10.{alg}.{'none' if m == 'none' else PAPER_ROW[m]}")
            for row, (alg, m) in t5_rows.items()}
t5 = led.table("Table 5 / Table 10", compare(t5_ours, t5_paper, metrics=["std", "pgd", "a3"]),
               note=f"ours: pgd = {SRC['pgd']}, a3 = {SRC['a3']}")
print(f"Table 5 / 10 on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; NaN in 'ours' = not run")
display(labelled(t5))

# %%
def outcome(rec, col: str = "rob"):
    """What a verdict compares for a run: evaluate_run's per-example outcomes (bit string) when
    the column comes from it, else the aggregate accuracy (final.json)."""
    a = accs(rec, (col,))
    ev = _evals.get(rec.hash)
    key = {"rob": "a3" if HAVE_A3 else ("pgd20" if PGD_FROM_EVAL else None), "std": "clean" if PGD_FROM_EVAL else None,
           "pgd": "pgd20" if PGD_FROM_EVAL else None, "cw": "cw20" if HAVE_CW else None}[col]
    if ev is not None and key is not None and key in ev["per_example"]:
        return ev["per_example"][key]
    return a[col]


N_AGG = B.final_subset or 10000  # final.json's test examples (aggregate accuracies)


def beats(rec_a, rec_b, col: str = "rob", direction: str = ">"):
    """The statistic for "run a's col beats run b's" (paired when per-example outcomes exist)."""
    return led.test(outcome(rec_a, col), outcome(rec_b, col), direction, n=N_AGG)


ALL = led.stats.combine
for alg in P.dpls.algorithms:
    base_rob = accs(R["base"][alg])["rob"]
    rob = {m: accs(R["t5"][(alg, m)])["rob"] for m in T5_MEASURES}
    ev = ", ".join(f"{MEASURE_NAME[m]} {100 * v:.2f}" for m, v in rob.items())
    missing = "" if CSCORE else " (C-score not run)"
    led.record("Table 5", f"{ALG[alg]}: DPLS with every difficulty measure raises robust accuracy over the baseline",
               ALL([beats(R["t5"][(alg, m)], R["base"][alg]) for m in T5_MEASURES]),
               f"{ROB}: baseline {100 * base_rob:.2f}; {ev}{missing}")
    if "zero_one" in rob and len(rob) > 1:
        led.record("Table 5", f"{ALG[alg]}: the 0-1 loss is the best difficulty measure for DPLS (highest robust accuracy)",
                   ALL([beats(R["t5"][(alg, "zero_one")], R["t5"][(alg, m)]) for m in T5_MEASURES if m != "zero_one"]),
                   f"{ROB}: {ev}{missing}")

# %% [markdown]
# ## Table 14: the difficulty epoch T
#
# DPLS with difficulty accumulated up to T' and applied from T' + 1. For T' below the
# profile's T the run branches from the baseline at T' (its accumulators are those of epochs
# 1..T'); for T' above it the run branches at T and keeps tracking to T' before applying DPLS
# (the baseline stops tracking at T). The paper (T = 10, 50, 90, 100 with the lr decay after
# 100): DPLS helps for every T, a little more with a later T, less after the decay. The
# baseline row's paper numbers are Table 10's (Table 14 has none).

# %%
# NBVAL_CHECK_OUTPUT
def two_alg_table(item: str, key: str, values: list[int], paper_values: list[int], label: str, group: str):
    """Tables 14/15: rows baseline + one per value; paper row `key.format(paper value)`."""
    ours, paper = {}, {}
    rows = {"baseline": None, **{f"{label}={v} (paper {pv})": (v, pv) for v, pv in zip(values, paper_values)}}
    for row, vp in rows.items():
        for alg in ("pgd", "trades"):
            name = ALG[alg]
            if vp is None:
                p = paper_value(f"table5_table10.{alg}.none")
                paper.setdefault(row, {}).update({f"{name} std": p["std"], f"{name} rob": p["a3"]})
            else:
                try:
                    p = paper_value(f"{key.format(vp[1])}.{alg}")
                    paper.setdefault(row, {}).update({f"{name} std": p["std"], f"{name} rob": p["rob"]})
                except KeyError:
                    pass  # no paper row for this value
            if alg in P.dpls.algorithms:
                rec = R["base"][alg] if vp is None else R[group][(alg, vp[0])]
                a = accs(rec)
                ours.setdefault(row, {}).update({f"{name} std": a["std"], f"{name} rob": a["rob"]})
    metrics = [f"{ALG[a]} {m}" for a in ("pgd", "trades") for m in ("std", "rob")]
    return led.table(item, compare(ours, paper, metrics=metrics), note=f"ours: rob = {SRC['a3'] if HAVE_A3 else SRC['pgd']}")


t14 = two_alg_table("Table 14", "table14.t{}", P.table14.T, P.table14.paper_T, "T", "t14")
print(f"Table 14 on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; rob: paper A3, ours {ROB}; NaN = not run")
display(t14)

# %%
for alg in P.dpls.algorithms:
    base_rob = accs(R["base"][alg])["rob"]
    rob = {t: accs(R["t14"][(alg, t)])["rob"] for t in P.table14.T}
    led.record("Table 14", f"{ALG[alg]}: DPLS is robust to T: every difficulty epoch T raises robust accuracy over the baseline",
               ALL([beats(R["t14"][(alg, t)], R["base"][alg]) for t in P.table14.T]),
              f"{ROB}: baseline {100 * base_rob:.2f}; " + ", ".join(f"T={t} {100 * v:.2f}" for t, v in rob.items()))
    late = [t for t in P.table14.T if t >= B.milestones[0] and t != B.T]
    if late and B.T in rob and B.T < B.milestones[0]:
        led.record("Table 14", f"{ALG[alg]}: DPLS applied from the lr decay on (T at or after it) gains less than with T before it",
                   ALL([beats(R["t14"][(alg, t)], R["t14"][(alg, B.T)], direction="<") for t in late]),
                  f"{ROB}: T={B.T} {100 * rob[B.T]:.2f}; " + ", ".join(f"T={t} {100 * rob[t]:.2f}" for t in late))

# %% [markdown]
# ## Table 15: the restart epoch, with difficulty fixed at T
#
# The DPLS factors from the baseline's difficulty up to T, applied from epoch R + 1 of the
# baseline's trajectory (R = 0: a fresh run with DPLS from its first epoch). The paper (T = 90;
# R = 0, 50, 90, 100): small differences, all better than the baseline; with Table 14 it
# concludes that the difficulty scores matter more than where they are applied.

# %%
# NBVAL_CHECK_OUTPUT
t15 = two_alg_table("Table 15", "table15.reinit{}", P.table15.restart, P.table15.paper_restart, "R", "t15")
print(f"Table 15 on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; rob: paper A3, ours {ROB}; NaN = not run")
display(t15)

# %%
for alg in P.dpls.algorithms:
    base_rob = accs(R["base"][alg])["rob"]
    rob = {r: accs(R["t15"][(alg, r)])["rob"] for r in P.table15.restart}
    led.record("Table 15", f"{ALG[alg]}: with difficulty fixed at T, every restart epoch raises robust accuracy over the baseline",
               ALL([beats(R["t15"][(alg, r)], R["base"][alg]) for r in P.table15.restart]),
              f"{ROB}: baseline {100 * base_rob:.2f}; " + ", ".join(f"R={r} {100 * v:.2f}" for r, v in rob.items()))

# %% [markdown]
# ## Tables 16 and 17: the smoothing factor λ
#
# DPLS with the hardest example's factor λ; "avg" is the average factor over the training set
# recorded by the run (Table 9 uses it as the LS factor of the Table 3 comparison). λ = 1 is the
# baseline. The paper: a smaller λ (more smoothing of the hard examples) raises robust accuracy
# down to about 0.3-0.5 and costs standard accuracy at 0.1.

# %%
# NBVAL_CHECK_OUTPUT
t16_tables = {}
for alg, item in (("pgd", "Table 16"), ("trades", "Table 17")):
    if alg not in P.dpls.algorithms:
        continue
    key = "table16" if alg == "pgd" else "table17"
    lams = [1.0, *P.table16.lams]
    rows = {f"λ={lam}": lam for lam in lams}
    ours_acc = {row: {k: accs(R["t16"][(alg, lam)])[k] for k in ("std", "pgd", "a3")} for row, lam in rows.items()}
    ours_avg = {row: {"avg": avg_factor(R["t16"][(alg, lam)])} for row, lam in rows.items()}
    paper_all = {f"λ={float(k.split('_', 1)[1])}": v for k, v in paper_value(key).items()}
    tab = pd.concat([compare(ours_avg, paper_all, metrics=["avg"], scale=1.0),
                     compare(ours_acc, paper_all, metrics=["std", "pgd", "a3"])], axis=1)
    t16_tables[alg] = led.table(item, tab, note=f"avg: fraction, not percent; ours: pgd = {SRC['pgd']}, a3 = {SRC['a3']}")
    print(f"{item} ({ALG[alg]}) on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; NaN in 'ours' = not run")
    display(labelled(tab))
for alg, item in (("pgd", "Table 16"), ("trades", "Table 17")):
    if alg not in P.dpls.algorithms:
        print(f"{item} ({ALG[alg]}): not run on this profile (dpls.algorithms: {P.dpls.algorithms})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
f16 = pd.DataFrame([{"algorithm": ALG[alg], "λ": lam, "average factor": avg_factor(rec),
                     "standard": accs(rec)["std"], f"robust ({ROB})": accs(rec)["rob"]}
                    for (alg, lam), rec in R["t16"].items()])
sns.lineplot(data=f16, x="λ", y="average factor", hue="algorithm", marker="o", ax=axes[0])
long = f16.melt(id_vars=["algorithm", "λ"], value_vars=["standard", f"robust ({ROB})"], var_name="accuracy")
sns.lineplot(data=long, x="λ", y="value", hue="algorithm", style="accuracy", marker="o", ax=axes[1])
axes[0].set(title="average smoothing factor")
axes[1].set(title="final-model test accuracy", ylabel="accuracy")
fig.suptitle(f"Tables 16/17 ({DATA_LABEL}, {profile}{', smoke results' if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
for alg in t16_tables:
    d = f16[f16.algorithm == ALG[alg]].sort_values("λ")
    led.fact("Tables 16/17", f"{ALG[alg]}: a smaller λ gives a smaller average smoothing factor",
             bool(np.all(np.diff(d["average factor"].to_numpy()) > 0)),
             "exact (deterministic: the recorded average factor over the whole training set)",
             "avg by increasing λ: " + ", ".join(f"{a:.3f}" for a in d["average factor"]))
    base_rob = float(d[d["λ"] == 1.0][f"robust ({ROB})"].iloc[0])
    others = d[d["λ"] < 1.0]
    led.record("Tables 16/17", f"{ALG[alg]}: DPLS with every λ < 1 raises robust accuracy over the baseline (λ = 1)",
               ALL([beats(R["t16"][(alg, lam)], R["t16"][(alg, 1.0)]) for lam in others["λ"]]),
              f"{ROB}: λ=1 {100 * base_rob:.2f}; "
              + ", ".join(f"λ={l} {100 * v:.2f}" for l, v in zip(others["λ"], others[f"robust ({ROB})"])))

# %% [markdown]
# ## Table 18: DPLS against difficulty-proportional reweighting (DPR)
#
# DPR scales each example's loss by the factor DPLS would give it (`1 - (1 - λ) S_norm`, same
# λ and difficulty; for TRADES the clean CE term) instead of smoothing its label. The paper:
# DPLS keeps higher standard accuracy than DPR and higher robust accuracy.

# %%
# NBVAL_CHECK_OUTPUT
t18_ours = {f"{ALG[alg]} / {row}": {k: accs(rec)[k] for k in ("std", "pgd", "a3")}
            for (alg, row), rec in R["t18"].items()}
t18_paper = {f"{ALG[alg]} / {row}": paper_value(f"table18.{alg}.{row}")
             for alg in ("pgd", "trades") for row in ("none", "dpr", "dpls")}
t18 = led.table("Table 18", compare(t18_ours, t18_paper, metrics=["std", "pgd", "a3"]),
                note=f"ours: pgd = {SRC['pgd']}, a3 = {SRC['a3']}")
print(f"Table 18 on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; NaN in 'ours' = not run")
display(labelled(t18))

# %%
for alg in P.dpls.algorithms:
    dp, dr = accs(R["t18"][(alg, "dpls")]), accs(R["t18"][(alg, "dpr")])
    led.record("Table 18", f"{ALG[alg]}: DPLS beats DPR on robust accuracy",
               beats(R["t18"][(alg, "dpls")], R["t18"][(alg, "dpr")]),
               f"{ROB}: DPLS {100 * dp['rob']:.2f}, DPR {100 * dr['rob']:.2f}")
    led.record("Table 18", f"{ALG[alg]}: DPLS keeps higher standard accuracy than DPR",
               beats(R["t18"][(alg, "dpls")], R["t18"][(alg, "dpr")], "std"),
               f"std: DPLS {100 * dp['std']:.2f}, DPR {100 * dr['std']:.2f}")

# %% [markdown]
# ## Table 19: pruning the hardest examples, class-balanced or not
#
# The top `table19.fraction` hard examples by each measure are pruned from epoch T + 1, either
# the hardest over the whole training set or the same number from each class (the top
# `table19.fraction` of each class). The paper (TRADES, 10%): unbalanced pruning consistently
# beats balanced pruning; the robust CW column is PGD with the CW (margin) loss.

# %%
# NBVAL_CHECK_OUTPUT
T19_COLS = ("std", "pgd", "cw", "a3")
t19_ours = {"baseline": {k: accs(R["base"][P.table19.algorithm], T19_COLS)[k] for k in T19_COLS}}
t19_paper = {"baseline": paper_value("table19.none")}
for m in PAPER_ROW:
    for bal in (False, True):
        row = f"{MEASURE_NAME[m]}{', balanced' if bal else ''}"
        t19_paper[row] = paper_value(f"table19.{PAPER_ROW[m]}{'_balanced' if bal else ''}")
        if (m, bal) in R["t19"]:
            t19_ours[row] = {k: accs(R["t19"][(m, bal)], T19_COLS)[k] for k in T19_COLS}
t19 = led.table("Table 19", compare(t19_ours, t19_paper, metrics=["std", "pgd", "cw", "a3"]),
                note=f"ours: {ALG[P.table19.algorithm]}, pgd = {SRC['pgd']}, cw = {SRC['cw']}, a3 = {SRC['a3']}")
print(f"Table 19 on {DATA_LABEL}, profile {profile}{SMOKE_TAG}; ours: {ALG[P.table19.algorithm]} (paper: TRADES), "
      f"top {100 * P.table19.fraction:g}% pruned from epoch {B.T + 1}; NaN in 'ours' = not run")
display(labelled(t19))

# %%
rob19 = {key: accs(rec)["rob"] for key, rec in R["t19"].items()}
evidence = "; ".join(f"{MEASURE_NAME[m]} {100 * rob19[(m, False)]:.2f} vs balanced {100 * rob19[(m, True)]:.2f}"
                     for m in T19_MEASURES)
_ = led.record("Table 19", f"{ALG[P.table19.algorithm]}: pruning the hardest examples without class balancing gives higher "
               "robust accuracy than balanced pruning, for every measure",
               ALL([beats(R["t19"][(m, False)], R["t19"][(m, True)]) for m in T19_MEASURES]),
              f"{ROB}: {evidence}" + ("" if P.table19.algorithm == "trades" else " (paper: TRADES)"))

# %% [markdown]
# ## Gradient masking
#
# Label smoothing can make PGD look stronger than it is (the paper reports a masking-like
# effect for PGD + LS on SVHN). With `evaluation.masking`, `evaluate_run` checks every evaluated
# run: the robust-accuracy curve over an eps grid must fall to ~0 at eps 0.5 and never rise,
# and one-step FGSM must not beat the iterative attack.

# %%
if P.evaluation.masking and P.evaluation.attacks:
    flags = {}
    for g, key in ((g, key) for g, d in R.items() for key in d):
        rec = R[g][key]
        m = accs(rec, ("masking",))["masking"] or {}
        row = flags.setdefault(rec.spec.short_hash, {"cells": [], "suspicious": m.get("suspicious"),
                                                     "reasons": "; ".join(m.get("reasons") or [])})
        row["cells"].append(f"{g} {key}")
    masking = pd.DataFrame.from_dict(flags, orient="index")
    with pd.option_context("display.max_colwidth", None):
        display(masking)
    led.fact("Gradient masking", "none of the ablation runs (baselines, DPLS, DPR, pruning) shows signs of gradient masking",
             not bool(masking["suspicious"].fillna(False).any()),
             "the masking check's own decision rule (hardex.evaluation.robustness.masking_check), per run",
              f"{int(masking['suspicious'].fillna(False).sum())} of {len(masking)} runs flagged by the check")
else:
    print("gradient-masking check not run on this profile (evaluation.masking is off)")

# %% [markdown]
# ## Runs and cost

# %%
# NBVAL_CHECK_OUTPUT
cells = list(runs.specs.values())
distinct, naive = count_runs(cells)
print(f"distinct training runs: {distinct} (a naive one-run-per-cell approach: {naive})")

# %%
if not SMOKE:  # hardex.experiments.cost: the estimator of `hardex book --plan` and `hardex gpu-check`
    est = Estimator.for_params(P, Path.cwd(), "gpu")
    train_h = est.hours(distinct_runs(cells))
    eval_h = est.hours([], runs.evaluations)
    display(Markdown(f"Expected cost of this profile: about **{train_h + eval_h:.1f} GPU-hours**: {train_h:.1f} h of training "
                     f"({len(distinct_runs(cells))} runs, with their own evaluation), scaled by training-set size and epochs "
                     f"trained per run, plus {eval_h:.1f} h of robust evaluation ({len(runs.evaluations)} runs, "
                     f"{P.evaluation.attacks} on {N_TXT}, at most: a run is evaluated where a table asks for it); "
                     + "; ".join(est.sources) + "."))
else:
    display(Markdown("Smoke profile: CPU, no GPU-hour estimate."))

# %% [markdown]
# ## Verdicts
#
# Each claim of the paper with a verdict computed from the records above (on the smoke profile
# none is drawn). "rob" is A3 where it was run, else PGD, as stated in the evidence.

# %%
# NBVAL_CHECK_OUTPUT
with pd.option_context("display.max_colwidth", None):
    display(led.verdicts())
print("ledger saved to", led.save().name)


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
