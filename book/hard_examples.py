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
# # The effect of hard examples (Section 3.1)
#
# Section 3.1 of the paper argues that the hardest training examples hurt adversarial
# training more than standard training: pruning them late in training improves robust
# accuracy (Table 1, Fig. 1), their EL2N score {cite:p}`paul2021deep` stays far above that of easy examples and the
# gap widens with the attack size (Fig. 3), and during robust overfitting the network keeps
# fitting them while test robustness falls (Fig. 4; robust overfitting, {cite:t}`rice2020overfitting`). This chapter rebuilds those items from
# runs in the run store (`hardex.runs.ensure`); every number comes from a run record or from
# the paper's own table (`hardex.paper.report`).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# **Difficulty.** As in the paper, an example's difficulty is its clean 0-1 loss accumulated
# over epochs 1..T of the run. **Probe sets (Figs. 3, 4).** The top-k hard and top-k easy
# sets are `source="self"` probes: after every epoch the run re-ranks its training examples by
# its own accumulated 0-1 loss so far (up to T; after T the ranking, and so the sets, stay
# fixed) and measures the current sets. A separate difficulty-source run would fix the sets
# from epoch 1 but cost one more run per eps; the sets of the late epochs, which carry the
# claims, are the same either way up to the choice of run.

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (profile.yaml: the shared baseline, the 200-epoch
# setup, the stated costs; hard_examples.yaml: this chapter's blocks); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {table1: {eval: pgd20}}"
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

from hardex.book.chapter import finish, note, records_table, setup, show_profile
from hardex.experiments import count_runs, distinct_runs, hard_examples
from hardex.experiments.cost import Estimator
from hardex.paper.ledger import label_eps
from hardex.paper.report import captioned, compare, paper_value

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 2)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book = setup(globals(), "hard_examples", show=False)  # hardex.experiments.hard_examples
B = P.baseline
SMOKE_WORDS = SMOKE_TAG.strip(" ()")  # "smoke results" / "CPU rehearsal results" / ""
ROB = "PGD-20 (evaluate_run)" if P.table1.eval else f"PGD-{max(B.final_pgd_steps)}"
FIG1 = P.fig1.n_hard > 0
show_profile(P, led, f"Fig. 1 trains `{P.fig1.model}`.")

# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: the minimum detectable effect (MDE, points; 95% interval excluding
# zero with 80% power, `hardex.paper.stats.mde`) of Table 1's comparison, next to the paper's effect.
# Our robust numbers are `final.json`'s aggregate PGD-k accuracies on `baseline.final_subset` test
# images, compared unpaired (as if the two models disagreed on 50% of them), one training
# seed; with `table1.eval = "pgd20"` they are PGD-20 per-example outcomes, compared paired. The figures' claims compare probe-set and per-epoch test-sample aggregates (sizes
# `figs34.probe_max`, `baseline.eval_subset`); the paper prints no numbers for them. Stated assumptions.

# %%
for what, row in (("hard pruning - none", "hard_pruning"), ("easy pruning - none", "easy_pruning")):
    led.power("Table 1", f"{what} (paper A3, ours {ROB})", (P.table1.eval_n or 10000) if P.table1.eval else B.final_subset or 10000, 1,
              paper_value(f"table1.{row}.rob") - paper_value("table1.none.rob"),
              **({} if P.table1.eval else {"discordance": 0.5}),
              note="paired (per-example outcomes)" if P.table1.eval else "unpaired (final.json aggregates)")
print(f"Table 1 on {(P.table1.eval_n or 10000) if P.table1.eval else B.final_subset or 10000} test images, 1 training seed "
      f"(profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## The runs
#
# One run per eps for Figs. 3/4, each logging three probe sets every epoch (top-k hard,
# top-k easy, and a sample of all training examples; clean and adversarial accuracy and
# EL2N). The Table 1 baseline is the eps-8 figure run when the profile gives both the same
# schedule (then its probes come for free); the two pruning rows are continuations of it from
# epoch T + 1, and the "none" row is the baseline itself (an un-edited continuation trains
# exactly the baseline's remaining epochs).

# %%
t0 = time.perf_counter()
# hardex.experiments.hard_examples.runs: every round (Figs. 1/10's subsets are chosen from their
# source runs' records, so they come second); R: the records by key
runs, R = book.experiment(hard_examples, P)
fig_recs, t1_recs = {k[1]: r for k, r in R.items() if k[0] == "figs34"}, {k[1]: r for k, r in R.items() if k[0] == "table1"}
table1 = runs.group("table1")
note(f"runs ready in {time.perf_counter() - t0:.1f} s")
if profile != "smoke":  # where and when each record was made (records committed under results/ come from elsewhere)
    display(records_table(R.values()))

# %% [markdown]
# ## Table 1: pruning the top-k easy or hard examples from epoch T + 1 (PGD)
#
# The paper trains PGD-AT {cite:p}`madry2018towards` (WRN-28-10 {cite:p}`zagoruyko2016wide`, eps 8/255) to epoch 90, ranks the examples by their
# clean 0-1 loss accumulated so far, and continues to epoch 110 without the 10,000 easiest or
# the 10,000 hardest; it reports robust accuracy under A3 {cite:p}`liu2022practical`. A3 is not yet part of the run
# store's final evaluation (`final.json` carries clean and PGD-k accuracy only), so our robust
# column is PGD on the final model (last epoch, full step size eps/4), labelled as such;
# PGD overestimates robust accuracy relative to A3 by a few points, so compare the row
# *differences*, not the levels.

# %%
# NBVAL_CHECK_OUTPUT
def t1_robust(r) -> dict:
    """Clean and robust accuracy (fractions) and, with table1.eval, per-example robust outcomes."""
    if P.table1.eval:
        ev = book.evaluate(r, attacks=("pgd20",), n=P.table1.eval_n or None, seed=0, which="final")
        return {"std": ev["clean_acc"], "rob": ev["robust_acc"]["pgd20"], "bits": ev["per_example"]["pgd20"]}
    f = r.final["final"]
    return {"std": f["clean_acc"], "rob": f[f"pgd{max(B.final_pgd_steps)}_acc"], "bits": None}


t1_res = {row: t1_robust(r) for row, r in t1_recs.items()}
ours = {row: {"std": v["std"], "rob": v["rob"]} for row, v in t1_res.items()}
paper = {row: paper_value(f"table1.{row}") for row in table1}
t1 = compare(ours, paper, metrics=["std", "rob"])
t1 = t1.rename(columns={"rob": f"rob (paper: A3, ours: {ROB})"}, level=0)
caption = (f"Table 1, {DATA_LABEL}: the paper and ours, profile {profile}" + SMOKE_TAG
           + f"; {f'the top {P.table1.fraction:.0%}' if P.table1.fraction else f'k = {P.table1.k}'}, T = {B.T}, {B.epochs} epochs; accuracy in %, "
           "diff = ours - paper in points")
display(captioned(led.table("Table 1", t1, note=f"robust column: paper A3, ours {ROB} (final model)"), caption, "table-1"))

# %%
r = {row: v["rob"] for row, v in ours.items()}
st, N_FINAL = led.stats, B.final_subset or 10000
if P.table1.eval:  # per-example outcomes on the same test images: paired intervals
    b = {row: v["bits"] for row, v in t1_res.items()}
    parts = [st.paired(b["hard_pruning"], b["none"]), st.paired(b["easy_pruning"], b["none"], "<=", tol=1.0)]
else:  # final.json's aggregate accuracies: unpaired intervals
    parts = [st.unpaired(r["hard_pruning"], N_FINAL, r["none"], N_FINAL),
             st.unpaired(r["easy_pruning"], N_FINAL, r["none"], N_FINAL, "<=", tol=1.0)]
_ = led.record("Table 1", "pruning the top-k hard examples from T+1 raises robust accuracy over no pruning, "
               "pruning the top-k easy ones does not (here: raises it by less than 1 point)",
               st.combine(parts),
              f"{ROB}: none {100 * r['none']:.2f}, easy pruning {100 * r['easy_pruning']:.2f}, "
              f"hard pruning {100 * r['hard_pruning']:.2f}")

# %% [markdown]
# ## Fig. 3: EL2N of the top-k hard and easy training examples
#
# EL2N $= \lVert \mathrm{softmax}(f(x)) - \mathrm{onehot}(y) \rVert_2$, averaged over each
# probe set after every epoch, on un-augmented images in eval mode; "adversarial" uses the
# run's own training attack. The paper (left) sees the hard-easy gap grow with eps and
# (right, eps 8) the adversarial gap exceed the clean one.

# %%
def probe_frame(recs: dict) -> pd.DataFrame:
    rows = []
    for e, rec in recs.items():
        for m in rec.metrics:
            for name, res in (m.get("probes") or {}).items():
                for key in ("clean_acc", "adv_acc", "el2n_clean", "el2n_adv"):
                    if key in res:
                        rows.append({"eps": label_eps(e), "eps_value": e, "epoch": m["epoch"], "subset": name,
                                     "metric": key, "value": res[key]})
    return pd.DataFrame(rows)


pf = probe_frame(fig_recs)
el2n = pf[pf.metric.isin(["el2n_clean", "el2n_adv"]) & pf.subset.isin(["hard", "easy"])]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
sns.lineplot(data=el2n[el2n.metric == "el2n_clean"], x="epoch", y="value", hue="eps", style="subset", ax=axes[0])
axes[0].set(ylabel="EL2N (clean)", title=f"top-{P.figs34.k} hard / easy, by eps")
e_max = max(P.figs34.eps)
right = el2n[el2n.eps_value == e_max].pivot_table(index=["epoch", "subset"], columns="metric", values="value")
gap = (right.xs("hard", level="subset") - right.xs("easy", level="subset")).reset_index()
gap = gap.melt(id_vars="epoch", var_name="metric", value_name="hard - easy EL2N")
sns.lineplot(data=gap, x="epoch", y="hard - easy EL2N", hue="metric", ax=axes[1])
axes[1].set(title=f"{label_eps(e_max)}: clean vs adversarial gap")
fig.suptitle(f"Fig. 3 ({DATA_LABEL}, {profile}{', ' + SMOKE_WORDS if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
last = pf[pf.epoch == pf.epoch.max()]
fig3 = (last[last.metric.isin(["el2n_clean", "el2n_adv"]) & last.subset.isin(["hard", "easy"])]
        .pivot_table(index="eps_value", columns=["metric", "subset"], values="value"))
fig3[("gap", "clean")] = fig3[("el2n_clean", "hard")] - fig3[("el2n_clean", "easy")]
if ("el2n_adv", "hard") in fig3:
    fig3[("gap", "adv")] = fig3[("el2n_adv", "hard")] - fig3[("el2n_adv", "easy")]
fig3.index = [label_eps(e) for e in fig3.index]
print(f"Fig. 3 at the last epoch ({pf.epoch.max()})" + SMOKE_TAG)
display(fig3)

# %%
gaps = fig3[("gap", "clean")].to_numpy()
top = fig3.iloc[-1]
last_probes = {e: rec.metrics[-1]["probes"] for e, rec in fig_recs.items()}
HAVE_SD = all("el2n_clean_sd" in p_.get("hard", {}) for p_ in last_probes.values())
claims3 = ("hard examples keep a higher EL2N than easy ones at every eps", "the hard-easy EL2N gap grows with eps",
           f"(right) at {label_eps(e_max)} the adversarial gap exceeds the clean gap")
ev3 = ("last-epoch clean gaps: " + ", ".join(f"{g:.3f}" for g in gaps),
       "gaps by increasing eps: " + ", ".join(f"{g:.3f}" for g in gaps),
       f"adv gap {top[('gap', 'adv')]:.3f} vs clean gap {top[('gap', 'clean')]:.3f}")
if HAVE_SD:  # the probes record each set's EL2N sd: normal intervals over the probe examples of each run
    st = led.stats
    WHAT = "EL2N units, not points; over each run's probe examples (one training seed per eps)"

    def term(e: float, name: str, metric: str = "el2n_clean") -> tuple[float, float, int]:
        p_ = last_probes[e][name]
        if metric == "gap":  # adversarial - clean EL2N of the same examples
            return p_["el2n_adv"] - p_["el2n_clean"], p_["el2n_gap_sd"], p_["n"]
        return p_[metric], p_[f"{metric}_sd"], p_["n"]

    def contrast(terms: list, weights: list):
        m, sd_, n_ = zip(*terms)
        return st.summary_contrast(m, sd_, n_, weights, what=WHAT, unit="EL2N")

    es = sorted(P.figs34.eps)
    results = (st.combine([contrast([term(e, "hard"), term(e, "easy")], [1, -1]) for e in es]),
               st.combine([contrast([term(b_, "hard"), term(b_, "easy"), term(a_, "hard"), term(a_, "easy")],
                                    [1, -1, -1, 1]) for a_, b_ in zip(es, es[1:])]),
               contrast([term(e_max, "hard", "gap"), term(e_max, "easy", "gap")], [1, -1]))
    for c, res, ev in zip(claims3, results, ev3):
        _ = led.record("Fig. 3", c, res, ev)
else:  # records without the sds: the recorded set means only
    NO_CI = "exact comparison of recorded probe-set means (no per-example values stored, so no interval)"
    holds3 = (bool((gaps > 0).all()), bool(np.all(np.diff(gaps) > 0)), bool(top[("gap", "adv")] > top[("gap", "clean")]))
    for c, h, ev in zip(claims3, holds3, ev3):
        _ = led.fact("Fig. 3", c, h, NO_CI, ev)

# %% [markdown]
# ## Fig. 4: train accuracy of all / easy / hard examples and test accuracy
#
# (a) STD: clean train accuracy of each probe set and clean test accuracy. (b) PGD at the
# largest eps: robust (adversarial) train accuracy of each set and PGD test accuracy
# (per-epoch test sample, PGD-{eval_pgd_steps}). (c) robust train accuracy of the hard set
# and test robust accuracy, per eps. The paper: after the lr decay the hard set's robust
# train accuracy rises while test robust accuracy falls (robust overfitting).

# %%
def test_frame(recs: dict) -> pd.DataFrame:
    return pd.DataFrame([{"eps": label_eps(e), "eps_value": e, "epoch": m["epoch"],
                          "test": m["test_pgd_acc"] if e > 0 else m["test_clean_acc"]}
                         for e, rec in recs.items() for m in rec.metrics if m.get("test_clean_acc") is not None])


tf = test_frame(fig_recs)
acc = pf[(pf.metric == "adv_acc") | ((pf.metric == "clean_acc") & (pf.eps_value == 0))]
fig, axes = plt.subplots(1, 3, figsize=(16, 4))
for ax, e in zip(axes[:2], (0.0, e_max)):
    d = acc[acc.eps_value == e]
    sns.lineplot(data=d, x="epoch", y="value", hue="subset", ax=ax)
    sns.lineplot(data=tf[tf.eps_value == e], x="epoch", y="test", color="k", linestyle="--", label="test", ax=ax)
    ax.set(ylabel="accuracy" if e == 0 else "robust accuracy", title=f"({'a' if e == 0 else 'b'}) {label_eps(e)}")
hard = acc[acc.subset == "hard"].rename(columns={"value": "accuracy"}).assign(curve="train (hard)")
both = pd.concat([hard[["eps", "epoch", "accuracy", "curve"]],
                  tf.rename(columns={"test": "accuracy"}).assign(curve="test")[["eps", "epoch", "accuracy", "curve"]]])
sns.lineplot(data=both, x="epoch", y="accuracy", hue="eps", style="curve", ax=axes[2])
axes[2].set(title="(c) hard-set train vs test, by eps")
for ax in axes:
    for m in P.setup200.milestones[:1]:
        ax.axvline(m + 0.5, color="grey", lw=0.8)
fig.suptitle(f"Fig. 4 ({DATA_LABEL}, {profile}{', ' + SMOKE_WORDS if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
decay = P.setup200.milestones[0]
rows = []
for e in P.figs34.eps:
    h = acc[(acc.eps_value == e) & (acc.subset == "hard")].set_index("epoch")["value"]
    t = tf[tf.eps_value == e].set_index("epoch")["test"]
    rows.append({"eps": label_eps(e), "hard train acc at decay": h.get(decay), "hard train acc last": h.iloc[-1],
                 "test acc at decay": t.get(decay), "best test acc": t.max(), "test acc last": t.iloc[-1]})
fig4 = pd.DataFrame(rows).set_index("eps")
print(f"Fig. 4 summary (first lr decay after epoch {decay})" + SMOKE_TAG)
display(fig4)

# %%
r = fig4.loc[label_eps(e_max)]
n_hard, n_test = min(P.figs34.k, P.figs34.probe_max or P.figs34.k), B.eval_subset or 10000
st = led.stats
_ = led.record("Fig. 4", f"at {label_eps(e_max)}, after the lr decay the hard set's robust train accuracy rises "
               "while test robust accuracy falls from its best (robust overfitting)",
               st.combine([st.unpaired(r["hard train acc last"], n_hard, r["hard train acc at decay"], n_hard),
                           st.unpaired(r["test acc last"], n_test, r["best test acc"], n_test, "<")]),
              f"hard train {100 * r['hard train acc at decay']:.1f} -> {100 * r['hard train acc last']:.1f}; "
              f"test best {100 * r['best test acc']:.1f}, last {100 * r['test acc last']:.1f} (unpaired binomial "
              f"intervals on {n_hard} probe / {n_test} test examples; the best epoch is selected, which the "
              "interval ignores)")

# %% [markdown]
# ## Figs. 1 and 10: training on k hard + k random examples, keeping or pruning the hard part
#
# Difficulty comes from an STD and a PGD run (model `fig1.model`) ranked by clean 0-1 loss
# accumulated to epoch `setup200.T`; each subset run trains on the `fig1.n_hard` hardest plus
# `fig1.n_random` random other examples; at the first lr decay it either goes on with all of
# them (the run itself) or continues without the hard part. The source runs are the figure
# runs above when the model, eps and schedule agree (smoke), otherwise their own runs. The
# subsets are chosen here from the source runs' records (a first `ensure`), then enter the
# subset runs' specs as explicit dataset indices, so each subset run's hash names its set.
# **Fig. 10** repeats it with `fig10.n_hard` + `fig10.n_random` examples and a third branch that
# goes on with the hard part only (fast and paper profiles; smoke skips it: `fig10.n_hard` = 0).

# %%
fig1_src = runs.group("fig1src")  # "STD" / "PGD" -> the source runs
fig1_recs = {k[1:]: r for k, r in R.items() if k[0] == "fig1"}  # (item, alg, branch) -> record
variants = {"Fig. 1": (P.fig1.n_hard, P.fig1.n_random)} if FIG1 else {}
if FIG1 and P.fig10.n_hard:
    variants["Fig. 10"] = (P.fig10.n_hard, P.fig10.n_random)
FIG1_WHY = "" if FIG1 else "not built on this profile (fig1.n_hard = 0)"
if FIG1 and len(fig1_recs) < len(runs.group("fig1")) or (FIG1 and not runs.group("fig1")):
    variants, FIG1_WHY = {}, "not run yet (no record)"  # a render-only build without these records
decay1 = P.setup200.milestones[0]
if FIG1_WHY:
    print(f"Figs. 1 and 10: {FIG1_WHY}")
elif "Fig. 10" not in variants:
    print("Fig. 10 is not built on this profile (fig10.n_hard = 0)")

# %%
f1 = pd.DataFrame([{"figure": item, "algorithm": alg, "branch": br, "epoch": m["epoch"],
                    "test accuracy": m["test_pgd_acc"] if alg == "PGD" else m["test_clean_acc"]}
                   for (item, alg, br), rec in fig1_recs.items() for m in rec.metrics
                   if m.get("test_clean_acc") is not None])
for item, (n_hard, n_random) in variants.items():
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, alg in zip(axes, ("STD", "PGD")):
        sns.lineplot(data=f1[(f1.figure == item) & (f1.algorithm == alg)], x="epoch", y="test accuracy", hue="branch", ax=ax)
        ax.axvline(decay1 + 0.5, color="grey", lw=0.8)
        ax.set(title=f"{alg} ({'clean' if alg == 'STD' else 'robust, PGD-' + str(B.eval_pgd_steps)} test accuracy)")
    fig.suptitle(f"{item}: {n_hard} hard + {n_random} random ({DATA_LABEL}, {profile}"
                 f"{', ' + SMOKE_WORDS if SMOKE else ''})")
    plt.tight_layout()
    plt.show()

# %%
# NBVAL_CHECK_OUTPUT
if variants:
    fin = (f1[f1.epoch == f1.epoch.max()]
           .pivot_table(index=["figure", "algorithm"], columns="branch", values="test accuracy"))
    fin["prune - continue"] = fin["prune hard"] - fin["continue"]
    print(f"Fig. 1 / 10, last-epoch test accuracy (STD: clean, PGD: PGD-{B.eval_pgd_steps})" + SMOKE_TAG)
    display(fin)
else:
    _ = led.claim("Fig. 1", "pruning the hard part at the lr decay helps, and more for PGD than for STD", None, FIG1_WHY)
st, n_test = led.stats, B.eval_subset or 10000  # per-epoch test sample: aggregate accuracies, unpaired
for item in variants:
    g = fin.loc[item, "prune - continue"]
    a = fin.loc[item]
    _ = led.record(item, "pruning the hard part at the lr decay helps, and more for PGD than for STD",
                   st.combine([st.unpaired(a.loc["PGD", "prune hard"], n_test, a.loc["PGD", "continue"], n_test),
                               st.contrast([a.loc["PGD", "prune hard"], a.loc["PGD", "continue"],
                                            a.loc["STD", "prune hard"], a.loc["STD", "continue"]], [n_test] * 4,
                                           [1, -1, -1, 1], what="(PGD prune - continue) - (STD prune - continue)")]),
                  f"prune - continue: STD {100 * g['STD']:+.2f}, PGD {100 * g['PGD']:+.2f} points")
if "Fig. 10" in variants:
    h = fin.loc["Fig. 10"]
    _ = led.record("Fig. 10", "training on the hard part only after the decay is worse than keeping all or pruning it",
                   st.combine([st.unpaired(h.loc[alg, "hard only"], n_test, h.loc[alg, other], n_test, "<")
                               for alg in h.index for other in ("continue", "prune hard")]),
                  "hard only - continue: " + ", ".join(f"{a} {100 * v:+.2f}" for a, v in (h["hard only"] - h["continue"]).items()))
else:
    _ = led.claim("Fig. 10", "pruning the hard part helps more for PGD than for STD (10k + 10k)", None,
                  FIG1_WHY or "not built on this profile (fig10.n_hard = 0)")

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
    hours = est.hours(distinct_runs(cells), runs.evaluations)
    by_item = {"Figs. 3/4 runs": runs.group("figs34").values(), "Table 1": runs.group("table1").values(),
               "Figs. 1/10": [*fig1_src.values(), *runs.group("fig1").values()]}
    parts = ", ".join(f"{k} {est.hours(distinct_runs(v)):.2f}" for k, v in by_item.items())
    display(Markdown(f"Budget of this chapter on profile `{profile}`: about **{hours:.2f} GPU-hours** ({parts}; a run "
                     "shared by two items is counted in each part but once in the total), training with each run's own "
                     "evaluation and probes, scaled by training-set size and epochs trained per run; "
                     + "; ".join(est.sources) + ". The memorization chapter reuses this chapter's difficulty runs and "
                     "baseline."))
else:
    display(Markdown(("Smoke profile" if profile == "smoke" else "CPU rehearsal") + ": CPU, no GPU-hour estimate."))

# %% [markdown]
# ## Verdicts

# %%
# NBVAL_CHECK_OUTPUT
print(f"profile {profile}, data {DATA_LABEL}" + (f": plumbing only, no verdict ({SMOKE_WORDS})" if SMOKE and profile != "smoke"
                                                  else ": plumbing only, no verdict" if SMOKE else ""))
display(led.verdicts())
_ = led.save()


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
