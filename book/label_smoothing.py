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
profile = "smoke"
seed = 0
# device: "" = cuda if available
device = "cpu"
# precision / channels_last: training autocast dtype and memory format (hardex.fastpath);
# "bf16" + True on a GPU (attacks keep fp32 perturbations; evaluation is always fp32)
precision = "fp32"
channels_last = False
dataset = "cifar10"
# train_subset: 0 = the whole training split; else a class-balanced sample
train_subset = 1000
model = "tiny_cnn"
# the shared PGD baseline (keys as params/<profile>/hard_examples.yaml): to `epochs`, difficulty up to T
epochs = 5
milestones = [3, 4]
T = 3
eps = 0.031
attack_steps = 2
lr = 0.1
weight_decay = 0.0005
batch_size = 64
# eval_subset: per-epoch test sample; 0 = all
eval_subset = 200
eval_pgd_steps = 2
final_pgd_steps = [10]
# final_subset: 0 = the whole test split
final_subset = 300
# Fig. 8: LS factor on the chosen set, shares n of the training set, which model to report
fig8_lam = 0.9
fig8_ratios = [0.1]
# fig8_model: "best" (best epoch by per-epoch test robust accuracy, as the paper's Fig. 7) or "final"
fig8_model = "best"
# stated cost estimate for this profile's hardware (minutes per PGD epoch on the full set)
minutes_per_pgd_epoch = 0.0

# %%
import time
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from hardex import difficulty, experiments as ex, paths
from hardex.book.chapter import finish, note, setup, show_profile
from hardex.paper.ledger import banner, data_label, label_eps, Ledger
from hardex.runs.spec import FileScores
from hardex.runs import ensure

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 2)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led = setup(globals(), "label_smoothing", show=False)  # P: as experiments' builders read it
K = max(final_pgd_steps)
ROB = f"PGD-{K}"
show_profile(P, led, f"PGD-AT {label_eps(eps)}; every run branches from the baseline after epoch T = {T}.")

# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: the smallest robust-accuracy difference (MDE, points; 95% interval
# excluding zero with 80% power, `hardex.paper.stats.mde`) this profile can detect between two of
# Fig. 8's runs, and the smallest equivalence margin it can confirm (Fig. 8c). Our numbers are
# `final.json`'s aggregate accuracies on `final_subset` test images, compared unpaired (as if
# the models disagreed on 50% of them), one training seed. The paper prints Fig. 8 as curves
# only, so there is no paper effect to set next to them. Stated assumptions.

# %%
N_FINAL = final_subset or 10000
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
def ls_subset(parent, parent_rec, which: str, ratio: float, lam: float):
    """``parent`` continued from T + 1 with LS factor ``lam`` on its top ``ratio`` ``which``
    examples (by its 0-1 loss accumulated to T) and one-hot labels elsewhere: DPLS on an
    indicator score. The indicator is written once to the run store (deterministic bytes, so
    the same set gives the same file hash and the same run)."""
    d = parent_rec.difficulty
    scores = np.where(d["in_train"], d["zero_one"], np.nan)
    chosen = difficulty.select(scores, fraction=ratio, which=which)
    indicator = np.zeros(len(scores))
    indicator[chosen] = 1.0
    folder = paths.runs_root().resolve() / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ls-subset-{parent.short_hash}-T{T}-{which}-{ratio:g}.npz"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, scores=indicator)
        tmp.replace(path)
    src = FileScores(file=str(path), lower_is_harder=False)
    return ex.continuation(parent, T, scores_from={"subset": src},
                           targets={"kind": "dpls", "lam": lam, "from_epoch": T + 1,
                                    "measure": "external", "source": "subset"})


base = ex.baseline(P)
prune = {r: ex.prune_fraction_from(base, T, "hard", r) for r in fig8_ratios}
t0 = time.perf_counter()
base_rec, *prune_recs = ensure([base, *prune.values()], progress=False)
ls = {(w, r): ls_subset(base, base_rec, w, r, fig8_lam) for w in ("hard", "easy") for r in fig8_ratios}
ls_recs = dict(zip(ls, ensure(list(ls.values()), progress=False)))
prune_recs = dict(zip(prune, prune_recs))
note(f"Fig. 8 runs ready in {time.perf_counter() - t0:.1f} s")

# %%
# NBVAL_CHECK_OUTPUT
# the LS runs really smooth n% of the training set: their average factor is 1 - (1 - lam) * n
check = pd.DataFrame([{"set": w, "ratio": r, "average factor (run record)": rec.metrics[-1]["targets"]["avg_factor"],
                       "1 - (1 - lam) * n": 1 - (1 - fig8_lam) * r} for (w, r), rec in ls_recs.items()])
display(check)

# %% [markdown]
# ## Fig. 8: LS on the top n% hard or normal examples, and LS vs pruning
#
# (a) standard and (b) robust test accuracy of the PGD LS models against the share n of
# smoothed examples; (c) robust accuracy of LS on the hard examples next to pruning them.
# The paper evaluates its Fig. 7 runs at the best checkpoint with A3; ours reports the
# `fig8_model` checkpoint ("best": the epoch with the best per-epoch test robust accuracy, as the
# paper) under {ROB} on the final-evaluation test sample, as `final.json` stores it (A3 is not
# in the run store's final evaluation).

# %%
def acc(rec) -> dict:
    f = rec.final[fig8_model]
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
fig.suptitle(f"Fig. 8: PGD + LS (lam {fig8_lam}) on the top n% examples ({DATA_LABEL}, {profile}{SMOKE_TAG}; "
             f"robust: {ROB}, {fig8_model} checkpoint)")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
tab = pd.DataFrame({"LS hard": {r: acc(ls_recs[("hard", r)]) for r in fig8_ratios},
                    "LS normal": {r: acc(ls_recs[("easy", r)]) for r in fig8_ratios},
                    "pruning hard": {r: acc(prune_recs[r]) for r in fig8_ratios}})
fig8 = pd.concat({m: pd.DataFrame(list(tab[m]), index=fig8_ratios) * 100 for m in tab}, axis=1)
fig8.loc[0.0] = [100 * none[c] for _ in tab for c in ("std", "rob")]
fig8 = fig8.sort_index()
fig8.index.name = "ratio n"
print(f"Fig. 8 in numbers (percent; std = clean, rob = {ROB}; {fig8_model} checkpoint; n = 0: the baseline){SMOKE_TAG}")
display(fig8)

# %% [markdown]
# The paper prints Fig. 8 only as curves (no numbers survive in its text), so there is no
# paper-vs-ours cell table for it; the ledger records the figure's four claims with verdicts
# computed from the table above: unpaired binomial intervals of `final.json`'s aggregate
# accuracies (no per-example outcomes). Margins are ours and stated in each claim.

# %%
gain = {m: {r: fig8.loc[r, (m, "rob")] - fig8.loc[0.0, (m, "rob")] for r in fig8_ratios} for m in tab}
dstd = {m: {r: fig8.loc[r, (m, "std")] - fig8.loc[0.0, (m, "std")] for r in fig8_ratios} for m in tab}


def pts(d: dict) -> str:
    return ", ".join(f"n={r:g}: {v:+.2f}" for r, v in d.items())


st, N_FINAL = led.stats, final_subset or 10000  # final.json's aggregate accuracies: unpaired intervals
A = {("LS hard", r): acc(ls_recs[("hard", r)]) for r in fig8_ratios}
A.update({("LS normal", r): acc(ls_recs[("easy", r)]) for r in fig8_ratios})
A.update({("pruning hard", r): acc(prune_recs[r]) for r in fig8_ratios})


def vs(m1: str, r: float, col: str, other: dict, direction: str = ">", **kw):
    return st.unpaired(A[(m1, r)][col], N_FINAL, other[col], N_FINAL, direction, **kw)


led.record("Fig. 8b", "LS (lam 0.9) on the top n% hard examples raises robust accuracy over the baseline "
           "(for some n <= 20%)", st.combine([vs("LS hard", r, "rob", none) for r in fig8_ratios], "any"),
           f"{ROB} gain, points: {pts(gain['LS hard'])}")
led.record("Fig. 8b", "LS on the top n% normal (easy) examples lowers robust accuracy (every n)",
           st.combine([vs("LS normal", r, "rob", none, "<") for r in fig8_ratios]),
           f"{ROB} gain, points: {pts(gain['LS normal'])}")
diff = [gain["LS hard"][r] - gain["pruning hard"][r] for r in fig8_ratios]
led.record("Fig. 8c", "the robust gain from LS on hard examples is similar to pruning them "
           "(here: equivalent within ±1 point at every n, TOST)",
           st.combine([vs("LS hard", r, "rob", A[("pruning hard", r)], margin=1.0) for r in fig8_ratios]),
           f"LS - pruning gain, points: {', '.join(f'{x:+.2f}' for x in diff)}")
_ = led.record("Fig. 8a", "LS on hard examples costs only marginal standard accuracy (here: not below the baseline "
               "by more than 1 point at every n), and not more than pruning them",
               st.combine([vs("LS hard", r, "std", none, ">=", tol=1.0) for r in fig8_ratios]
                          + [vs("LS hard", r, "std", A[("pruning hard", r)], ">=") for r in fig8_ratios]),
               f"std change, LS hard: {pts(dstd['LS hard'])}; pruning hard: {pts(dstd['pruning hard'])}")

# %% [markdown]
# ## Runs and cost

# %%
# NBVAL_CHECK_OUTPUT
cells = [base, *prune.values(), *ls.values()]
distinct, naive = ex.count_runs(cells)
print(f"distinct training runs: {distinct} (a naive one-run-per-cell approach: {naive})")

# %%
def run_minutes(spec) -> float:
    return ex.epochs_trained(spec) * minutes_per_pgd_epoch * ex.training_fraction(spec)


if not SMOKE:
    own = [s for s in ex.distinct_runs(cells) if s.hash != base.hash]
    hours_own = sum(run_minutes(s) for s in own) / 60
    hours_base = run_minutes(base) / 60
    display(Markdown(
        f"Expected cost of this profile: about **{hours_own + hours_base:.1f} GPU-hours** "
        f"({hours_base:.1f} of them the shared baseline, already paid when another chapter trained it), from a "
        f"stated (not measured) estimate of {minutes_per_pgd_epoch} min per PGD epoch (`{model}`, full training set), "
        "scaled by the share of the training set each run sees and the epochs it trains; per-epoch and final "
        "evaluation add a few percent."))
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
