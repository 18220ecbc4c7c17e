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
# # Label smoothing on hard examples (Section 4.1)
#
# Pruning the hardest examples late in training raises robust accuracy, but only up to a
# dataset- and eps-dependent share (Fig. 7). Section 4.1 of the paper asks whether a softer
# intervention does the same: it continues the PGD baseline from epoch T + 1 with label
# smoothing (LS {cite:p}`szegedy2016rethinking`, factor 0.9 on the true class) applied only to the top n% hard examples, or
# only to the top n% "normal" (easy) ones, for 0 <= n <= 20% (Fig. 8). The paper finds that LS
# on hard examples raises robust accuracy about as much as pruning them, with a smaller loss of
# standard accuracy, while LS on normal examples lowers it. Every number here comes from a run
# record (`hardex.runs.ensure`) or from the paper's text (`hardex.paper.report`).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# **How LS on a subset is run.** `targets.kind = "dpls"` gives example i the factor
# `1 - (1 - lam) * minmax(S)[i]` (Algorithm 2). With `S` the indicator of the chosen set
# (1 inside, 0 outside; `measure="external"`, an .npz score file whose sha256 enters the run's
# hash) this is exactly LS with factor `lam` on the set and one-hot labels elsewhere. The set is
# the top n% hard (or easy) examples of the baseline by its clean 0-1 loss accumulated over
# epochs 1..T, the ranking the pruning runs use (`source="self"` at the branch point).
# **"Normal"** is read as the top n% easiest examples, as in Fig. 7, where the paper's "Normal"
# curve prunes the easy end.

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (profile.yaml: the shared baseline, the 200-epoch
# setup, the stated costs; label_smoothing.yaml: this chapter's blocks); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {fig8: {ratios: [0.1, 0.2]}}"
profile = "smoke"
build = {}
overrides = {}

# %%
import time
from pathlib import Path

import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from hardex.book.chapter import finish, note, setup, show_profile
from hardex.experiments import count_runs, distinct_runs, label_smoothing
from hardex.experiments.cost import Estimator
from hardex.paper.ledger import label_eps

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 2)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book = setup(globals(), "label_smoothing", show=False)  # hardex.experiments.label_smoothing
B = P.baseline
K = max(B.final_pgd_steps)
ROB = f"PGD-{K}"
show_profile(P, led, f"PGD-AT {label_eps(B.eps)}; every run branches from the baseline after epoch T = {B.T}.")

# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: the smallest robust-accuracy difference (MDE, points; 95% interval
# excluding zero with 80% power, `hardex.paper.stats.mde`) this profile can detect between two of
# Fig. 8's runs, and the smallest equivalence margin it can confirm (Fig. 8c). Our numbers are
# `final.json`'s aggregate accuracies on `baseline.final_subset` test images, compared unpaired (as if
# the models disagreed on 50% of them), one training seed. The paper prints Fig. 8 as curves
# only, so there is no paper effect to set next to them. Stated assumptions.

# %%
N_FINAL = B.final_subset or 10000
led.power("Fig. 8b", "LS hard / LS normal - baseline", N_FINAL, 1, None, discordance=0.5, note="unpaired")
led.power("Fig. 8c", "LS hard = pruning hard within ±1 point (margin)", N_FINAL, 1, 1.0, discordance=0.5,
          equivalence=True, note="unpaired")
print(f"Fig. 8 on {N_FINAL} test images, 1 training seed (profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## The runs
#
# One PGD baseline (the profile's shared baseline, the same run as the other chapters'), and
# from its checkpoint after epoch T, for each share n: LS on the top n% hard, LS on the top
# n% normal (easy), and pruning the top n% hard (Fig. 8c; the same runs as Fig. 7's hard
# pruning in the memorization chapter when the profiles agree). n = 0 is the baseline itself.
# The pruning runs are ensured together with the baseline, so the branch checkpoint at T is
# kept; the LS runs need the baseline's difficulty to write their score files and follow.

# %%
t0 = time.perf_counter()
# hardex.experiments.label_smoothing.runs: the baseline and pruning runs, then the LS runs (their
# indicator files come from the baseline's record, written into the run store's scores/ folder)
runs, R = book.experiment(label_smoothing, P)
base = runs.specs[("base",)]
base_rec = R[("base",)]
prune_recs = {k[1]: r for k, r in R.items() if k[0] == "prune"}
ls_recs = {k[1:]: r for k, r in R.items() if k[0] == "ls"}
note(f"Fig. 8 runs ready in {time.perf_counter() - t0:.1f} s")

# %%
# NBVAL_CHECK_OUTPUT
# the LS runs really smooth n% of the training set: their average factor is 1 - (1 - lam) * n
check = pd.DataFrame([{"set": w, "ratio": r, "average factor (run record)": rec.metrics[-1]["targets"]["avg_factor"],
                       "1 - (1 - lam) * n": 1 - (1 - P.fig8.lam) * r} for (w, r), rec in ls_recs.items()])
display(check)

# %% [markdown]
# ## Fig. 8: LS on the top n% hard or normal examples, and LS vs pruning
#
# (a) standard and (b) robust test accuracy of the PGD LS models against the share n of
# smoothed examples; (c) robust accuracy of LS on the hard examples next to pruning them.
# The paper evaluates its Fig. 7 runs at the best checkpoint with A3; ours reports the
# `fig8.model` checkpoint ("best": the epoch with the best per-epoch test robust accuracy, as the
# paper) under {ROB} on the final-evaluation test sample, as `final.json` stores it (A3 is not
# in the run store's final evaluation).

# %%
def acc(rec) -> dict:
    f = rec.final[P.fig8.model]
    return {"std": f["clean_acc"], "rob": f[f"pgd{K}_acc"]}


none = acc(base_rec)
rows = [{"curve": "None", "method": "None", "ratio": 0.0, **none}]
for (w, r), rec in ls_recs.items():
    rows.append({"curve": "Hard" if w == "hard" else "Normal", "method": "Label Smoothing" if w == "hard" else None,
                 "ratio": r, **acc(rec)})
for r, rec in prune_recs.items():
    rows.append({"curve": None, "method": "Pruning", "ratio": r, **acc(rec)})
f8 = pd.DataFrame(rows)
# every curve starts at the baseline (n = 0)
curves_ab = pd.concat([f8[f8.curve.isin(["Normal", "Hard"])],
                       *[f8[f8.curve == "None"].assign(curve=c) for c in ("Normal", "Hard")]])
curves_c = pd.concat([f8[f8.method.isin(["Label Smoothing", "Pruning"])],
                      *[f8[f8.method == "None"].assign(method=m) for m in ("Label Smoothing", "Pruning")]])
fig, axes = plt.subplots(1, 3, figsize=(17, 4))
for ax, col, ylabel, title in ((axes[0], "std", "Standard Accuracy", "(a)"), (axes[1], "rob", "Robust Accuracy", "(b)")):
    sns.lineplot(data=curves_ab, x="ratio", y=col, hue="curve", hue_order=["Normal", "Hard"], marker="o", ax=ax)
    ax.axhline(none[col], color="k", ls="--", lw=1, label="None")
    ax.set(xlabel="Label Smoothing Ratio", ylabel=ylabel, title=title)
    ax.legend()
sns.lineplot(data=curves_c, x="ratio", y="rob", hue="method", hue_order=["Label Smoothing", "Pruning"], marker="o",
             ax=axes[2])
axes[2].axhline(none["rob"], color="k", ls="--", lw=1, label="None")
axes[2].set(xlabel="Label Smoothing Ratio", ylabel="Robust Accuracy", title="(c)")
axes[2].legend()
fig.suptitle(f"Fig. 8: PGD + LS (lam {P.fig8.lam}) on the top n% examples ({DATA_LABEL}, {profile}{SMOKE_TAG}; "
             f"robust: {ROB}, {P.fig8.model} checkpoint)")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
tab = pd.DataFrame({"LS hard": {r: acc(ls_recs[("hard", r)]) for r in P.fig8.ratios},
                    "LS normal": {r: acc(ls_recs[("easy", r)]) for r in P.fig8.ratios},
                    "pruning hard": {r: acc(prune_recs[r]) for r in P.fig8.ratios}})
fig8 = pd.concat({m: pd.DataFrame(list(tab[m]), index=P.fig8.ratios) * 100 for m in tab}, axis=1)
fig8.loc[0.0] = [100 * none[c] for _ in tab for c in ("std", "rob")]
fig8 = fig8.sort_index()
fig8.index.name = "ratio n"
print(f"Fig. 8 in numbers (percent; std = clean, rob = {ROB}; {P.fig8.model} checkpoint; n = 0: the baseline){SMOKE_TAG}")
display(fig8)

# %% [markdown]
# The paper prints Fig. 8 only as curves (no numbers survive in its text), so there is no
# paper-vs-ours cell table for it; the ledger records the figure's four claims with verdicts
# computed from the table above: unpaired binomial intervals of `final.json`'s aggregate
# accuracies (no per-example outcomes). Margins are ours and stated in each claim.

# %%
gain = {m: {r: fig8.loc[r, (m, "rob")] - fig8.loc[0.0, (m, "rob")] for r in P.fig8.ratios} for m in tab}
dstd = {m: {r: fig8.loc[r, (m, "std")] - fig8.loc[0.0, (m, "std")] for r in P.fig8.ratios} for m in tab}


def pts(d: dict) -> str:
    return ", ".join(f"n={r:g}: {v:+.2f}" for r, v in d.items())


st, N_FINAL = led.stats, B.final_subset or 10000  # final.json's aggregate accuracies: unpaired intervals
A = {("LS hard", r): acc(ls_recs[("hard", r)]) for r in P.fig8.ratios}
A.update({("LS normal", r): acc(ls_recs[("easy", r)]) for r in P.fig8.ratios})
A.update({("pruning hard", r): acc(prune_recs[r]) for r in P.fig8.ratios})


def vs(m1: str, r: float, col: str, other: dict, direction: str = ">", **kw):
    return st.unpaired(A[(m1, r)][col], N_FINAL, other[col], N_FINAL, direction, **kw)


led.record("Fig. 8b", "LS (lam 0.9) on the top n% hard examples raises robust accuracy over the baseline "
           "(for some n <= 20%)", st.combine([vs("LS hard", r, "rob", none) for r in P.fig8.ratios], "any"),
           f"{ROB} gain, points: {pts(gain['LS hard'])}")
led.record("Fig. 8b", "LS on the top n% normal (easy) examples lowers robust accuracy (every n)",
           st.combine([vs("LS normal", r, "rob", none, "<") for r in P.fig8.ratios]),
           f"{ROB} gain, points: {pts(gain['LS normal'])}")
diff = [gain["LS hard"][r] - gain["pruning hard"][r] for r in P.fig8.ratios]
led.record("Fig. 8c", "the robust gain from LS on hard examples is similar to pruning them "
           "(here: equivalent within ±1 point at every n, TOST)",
           st.combine([vs("LS hard", r, "rob", A[("pruning hard", r)], margin=1.0) for r in P.fig8.ratios]),
           f"LS - pruning gain, points: {', '.join(f'{x:+.2f}' for x in diff)}")
_ = led.record("Fig. 8a", "LS on hard examples costs only marginal standard accuracy (here: not below the baseline "
               "by more than 1 point at every n), and not more than pruning them",
               st.combine([vs("LS hard", r, "std", none, ">=", tol=1.0) for r in P.fig8.ratios]
                          + [vs("LS hard", r, "std", A[("pruning hard", r)], ">=") for r in P.fig8.ratios]),
               f"std change, LS hard: {pts(dstd['LS hard'])}; pruning hard: {pts(dstd['pruning hard'])}")

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
    hours_own = est.hours([s for s in distinct_runs(cells) if s.hash != base.hash])
    hours_base = est.hours([base])
    display(Markdown(
        f"Expected cost of this profile: about **{hours_own + hours_base:.1f} GPU-hours** "
        f"({hours_base:.1f} of them the shared baseline, already paid when another chapter trained it), training "
        "with each run's own evaluation, scaled by the share of the training set each run sees and the epochs it "
        "trains; " + "; ".join(est.sources) + "."))
else:
    display(Markdown("Smoke profile: CPU, no GPU-hour estimate."))

# %% [markdown]
# ## Verdicts

# %%
# NBVAL_CHECK_OUTPUT
if SMOKE:
    print("smoke profile: plumbing only, no verdict (claims are recorded as 'no verdict (smoke)')")
display(led.verdicts())
print("ledger:", Path(led.save()).name)


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
