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
# # Memorization of hard examples (Section 3.3, Appendix B.6)
#
# Section 3.3 of the paper {cite:p}`lee2025regularizing` argues that the hardest training examples are learned by
# *memorization*: a model reaches ~100% (robust) accuracy on them only when they are in its
# training set and ~0% otherwise, while easy examples are predicted well either way (Fig. 5,
# Fig. 13); adversarial training on hard examples alone fails while standard training on them
# works (Table 2, Table 7); giving them random labels barely changes robustness (Fig. 6,
# Table 8); and pruning a growing share of hard examples late in training raises robust
# accuracy while pruning easy ones lowers it (Fig. 7). Appendix B.6 describes the hard and easy
# sets (Figs. 14-16). Every number here comes from a run record (`hardex.runs.ensure`) or from
# the paper's own tables (`hardex.paper.report`).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# **Difficulty.** An example's difficulty is its clean 0-1 loss accumulated over epochs 1..T
# of a *difficulty source* run (the profile's baseline). Runs that change the training set
# from epoch 1 (prune, keep, random labels) rank by that source run's finished record
# (`scores_from`), so their sets are fixed before they start.

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (profile.yaml: the shared baseline, the 200-epoch
# setup, the stated costs; memorization.yaml: this chapter's blocks); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {fig7: {ratios: [0.1, 0.2]}}"
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

from hardex import difficulty
from hardex.book.chapter import finish, note, setup
from hardex.data import load_dataset
from hardex.experiments import count_runs, distinct_runs, memorization
from hardex.experiments.cost import Estimator
from hardex.paper.ledger import label_eps
from hardex.paper.report import captioned, compare, paper_value

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 2)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book = setup(globals(), "memorization")  # hardex.experiments.memorization
B = P.baseline
K = max(B.final_pgd_steps)
ROB = f"PGD-{K}"

def final(rec) -> dict:
    f = rec.final["final"]
    return {"std": f["clean_acc"], "rob": f[f"pgd{K}_acc"]}


# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: the minimum detectable effect (MDE, points; 95% interval excluding
# zero with 80% power, `hardex.paper.stats.mde`) of this chapter's comparisons of `final.json`'s
# aggregate accuracies (unpaired, as if the two models disagreed on 50% of the test images; one
# training seed), next to the paper's effect; Table 8's "change by less than 1.5 points" is an
# equivalence within ±1.5 points (its MDE column: the smallest margin TOST can confirm). The
# figures' claims compare probe-set and per-epoch test-sample aggregates. Stated assumptions.

# %%
N_FINAL = B.final_subset or 10000
led.power("Table 8", f"PGD pruned - normal ({ROB})", N_FINAL, 1,
          paper_value("table8.pgd.pruned.pgd") - paper_value("table8.pgd.normal.pgd"), discordance=0.5, note="unpaired")
led.power("Table 8", "PGD corrupted = normal within ±1.5 points (margin)", N_FINAL, 1, 1.5, discordance=0.5,
          equivalence=True, note=f"paper's difference {paper_value('table8.pgd.corrupted.pgd') - paper_value('table8.pgd.normal.pgd'):+.2f}")
led.power("Table 2", "STD: hard = easy within ±5 points (margin)", N_FINAL, 1, 5.0, discordance=0.5, equivalence=True,
          note=f"paper's difference {paper_value('table2_table7.hard.std_training.std') - paper_value('table2_table7.easy.std_training.std'):+.2f}")
print(f"comparisons on {N_FINAL} test images, 1 training seed (profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## The runs
#
# * **Difficulty sources.** For the 200-epoch setup, one run per eps of Fig. 5 (and the PGD eps
#   of the profile, for Fig. 6 / Table 8), each probing its own top-k hard and easy sets every
#   epoch (`source="self"`: the running ranking up to `setup200.T`, then fixed: from `setup200.T` on these
#   are exactly the sets the other runs get from it). For the 110-epoch setup, the PGD baseline.
#   When the profile gives both setups the same schedule (smoke) the eps-8 run of the first is
#   the baseline of the second: one run feeds every item.
# * **Fig. 5 / 13**: per eps, the source run ("with" the sets) and two runs pruned of the
#   source's top-k hard or top-k easy from epoch 1 ("without"), probing the same two sets.
# * **Table 2 / 7**: runs that keep only the baseline's top-k easy or hard examples from epoch 1
#   (one difficulty ranking, the PGD baseline's, for every row).
# * **Fig. 6 / Table 8**: random labels on the source's top-k hard or easy examples from epoch
#   1; Table 8's "normal" is the source run and "pruned" the Fig. 5 prune-hard run (TRADES:
#   its own source run, when the profile asks for it).
# * **Fig. 7**: continuations of the baseline (and of an STD baseline) from epoch T + 1 without
#   the top n% easy or hard examples by its own difficulty; ratio 0 is the baseline itself.

# %%
t0 = time.perf_counter()
runs, by_key = book.experiment(memorization, P)  # hardex.experiments.memorization.runs: one round
groups = {g: runs.group(g) for g in memorization.GROUPS}
R = {g: {k: by_key[(g, *(k if isinstance(k, tuple) else (k,)))] for k in d} for g, d in groups.items()}
fig5, table2, fig6, table8, fig7, fig7c = (groups[g] for g in ("fig5", "table2", "fig6", "table8", "fig7", "fig7c"))
base = groups["b6"]["base"]
note(f"runs ready in {time.perf_counter() - t0:.1f} s")

# %% [markdown]
# ## Fig. 5 (and Fig. 13): accuracy on the hard / easy sets with and without them
#
# After every epoch each run measures the source's top-k hard and top-k easy training examples
# (un-augmented, eval mode): robust accuracy under the training attack for PGD, clean accuracy
# for STD. "with hard" / "with easy" is the source run (trained on all examples), "without
# hard" / "without easy" the run pruned of that set from epoch 1. The paper (eps 8): hard
# examples reach ~100% when included and stay near 0% when not; easy examples are predicted
# well either way.

# %%
def fig5_frame() -> pd.DataFrame:
    rows = []
    for (e, arm), rec in R["fig5"].items():
        metric = "adv_acc" if e > 0 else "clean_acc"
        for m in rec.metrics:
            for name, res in (m.get("probes") or {}).items():
                if arm == "with" or arm.endswith(name):
                    rows.append({"eps": label_eps(e), "eps_value": e, "epoch": m["epoch"],
                                 "curve": f"{name} acc. ({'with' if arm == 'with' else 'without'} {name})",
                                 "accuracy": res[metric]})
    return pd.DataFrame(rows)


f5 = fig5_frame()
fig, axes = plt.subplots(1, len(P.fig5.eps), figsize=(6 * len(P.fig5.eps), 4), squeeze=False)
for ax, e in zip(axes[0], P.fig5.eps):
    sns.lineplot(data=f5[f5.eps_value == e], x="epoch", y="accuracy", hue="curve", ax=ax)
    ax.axvline(P.setup200.milestones[0] + 0.5, color="grey", lw=0.8)
    ax.set(title=label_eps(e), ylabel="robust train accuracy" if e > 0 else "train accuracy")
fig.suptitle(f"Fig. 5 / 13: top-{P.sets.k} hard and easy sets ({DATA_LABEL}, {profile}{', smoke results' if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
f5_last = (f5[f5.epoch == f5.epoch.max()].pivot_table(index="eps_value", columns="curve", values="accuracy")
           .sort_index(ascending=False))
f5_last.index = [label_eps(e) for e in f5_last.index]
print(f"Fig. 5 at the last epoch ({f5.epoch.max()}), accuracy on the top-{P.sets.k} sets" + SMOKE_TAG)
display(f5_last)
for e in P.fig5.eps:
    r = f5_last.loc[label_eps(e)]
    w_h, wo_h = r["hard acc. (with hard)"], r["hard acc. (without hard)"]
    w_e, wo_e = r["easy acc. (with easy)"], r["easy acc. (without easy)"]
    n_p = min(P.sets.k, P.sets.probe_max or P.sets.k)  # probe-set aggregates: unpaired binomial intervals
    st = led.stats
    _ = led.record("Fig. 5" if e == B.eps else "Fig. 13",
                   f"at {label_eps(e)} the hard set is fitted only when trained on (with >> without: by over 50 "
                   "points), while the easy set keeps most of its accuracy without being trained on (over half)",
                   st.combine([st.contrast([w_h, wo_h], [n_p, n_p], [1, -1], offset=-50.0, what="with - without - 50"),
                               st.contrast([wo_e, w_e], [n_p, n_p], [1, -0.5], what="without - half of with")]),
                  f"hard: with {100 * w_h:.1f}, without {100 * wo_h:.1f}; easy: with {100 * w_e:.1f}, without {100 * wo_e:.1f}")

# %% [markdown]
# ## Table 2 (and Table 7): training only on the top-k easy or top-k hard examples
#
# Each run keeps only the baseline's top-k easy ("easy", the paper's "Normal") or top-k hard
# examples from epoch 1, with the baseline's schedule; STD and PGD at each eps. The paper's
# robust column is A3; A3 is not part of the run store's final evaluation, so ours is PGD on
# the final model (step eps/4), labelled as such.

# %%
# NBVAL_CHECK_OUTPUT
def t2_key(e: float) -> str:
    return "std_training" if e == 0 else f"pgd_eps{round(e * 255)}"


ours = {f"{w} / {t2_key(e)}": {"std": final(rec)["std"], "rob": None if e == 0 else final(rec)["rob"]}
        for (w, e), rec in R["table2"].items()}
paper = {f"{w} / {t2_key(e)}": paper_value(f"table2_table7.{w}.{t2_key(e)}") for (w, e) in table2}
t2 = compare(ours, paper, metrics=["std", "rob"])
t2 = t2.rename(columns={"rob": f"rob (paper: A3, ours: {ROB})"}, level=0)
caption = (f"Tables 2 and 7, {DATA_LABEL}: the paper and ours, profile {profile}{SMOKE_TAG}; k = {P.table2.k}, "
           f"{B.epochs} epochs; accuracy in %, diff = ours - paper in points")
display(captioned(led.table("Table 2 / Table 7", t2, note=f"robust column: paper A3, ours {ROB} (final model)"), caption,
                  "table-2-7"))
t2_claim = ("standard training on the hard set is about as accurate as on the easy set, adversarial training on "
            "the hard set is far worse and its robust accuracy is near or below random (10%)")
if B.eps in P.table2.eps and 0.0 in P.table2.eps:
    o = {key: v for key, v in ours.items()}
    pe = f"pgd_eps{round(B.eps * 255)}"
    st, N_FINAL = led.stats, B.final_subset or 10000
    _ = led.record("Table 2", t2_claim + " (here: STD within ±5 points, TOST; PGD over 20 points worse; robust below 15%)",
                   st.combine([st.unpaired(o["hard / std_training"]["std"], N_FINAL, o["easy / std_training"]["std"],
                                           N_FINAL, margin=5.0),
                               st.contrast([o[f"hard / {pe}"]["std"], o[f"easy / {pe}"]["std"]], [N_FINAL] * 2, [1, -1],
                                           "<", offset=20.0, what="hard - easy + 20"),
                               st.contrast([o[f"hard / {pe}"]["rob"]], [N_FINAL], [1], "<", offset=-15.0,
                                           what="hard robust - 15")]),
                  f"STD: easy {100 * o['easy / std_training']['std']:.1f}, hard {100 * o['hard / std_training']['std']:.1f}; "
                  f"PGD std: easy {100 * o[f'easy / {pe}']['std']:.1f}, hard {100 * o[f'hard / {pe}']['std']:.1f}; "
                  f"PGD {ROB} hard {100 * o[f'hard / {pe}']['rob']:.1f}")
else:
    _ = led.claim("Table 2", t2_claim, None, f"table2.eps {P.table2.eps} lacks STD or {label_eps(B.eps)}")

# %% [markdown]
# ## Fig. 6 (and Table 8): random labels on the hard or easy examples
#
# The top-k hard (or easy) examples of the source run get uniformly random labels from epoch 1
# (PGD, the 200-epoch setup). Curves: per-epoch test accuracy (clean; PGD-{eval_pgd_steps} on
# the per-epoch test sample). The paper: corrupting hard examples costs little robustness,
# corrupting easy ones costs more.

# %%
f6 = pd.DataFrame([{"corruption": f"{P.sets.k} {w} corruption", "epoch": m["epoch"],
                    "standard accuracy": m["test_clean_acc"], "robust accuracy": m["test_pgd_acc"]}
                   for w, rec in R["fig6"].items() for m in rec.metrics if m.get("test_clean_acc") is not None])
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, col in zip(axes, ("standard accuracy", "robust accuracy")):
    sns.lineplot(data=f6, x="epoch", y=col, hue="corruption", ax=ax)
    ax.axvline(P.setup200.milestones[0] + 0.5, color="grey", lw=0.8)
fig.suptitle(f"Fig. 6 ({DATA_LABEL}, {profile}{', smoke results' if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"Table 8: final accuracy, top-{P.sets.k} hard examples with random labels / pruned from epoch 1{SMOKE_TAG}")
t8_ours = {f"{alg} / {row}": {"std": final(rec)["std"], "pgd": final(rec)["rob"]} for (alg, row), rec in R["table8"].items()}
t8_paper = {f"{alg} / {row}": paper_value(f"table8.{alg}.{row}") for (alg, row) in table8}
t8 = compare(t8_ours, t8_paper, metrics=["std", "pgd"])
t8 = t8.rename(columns={"pgd": f"rob (paper: PGD, ours: {ROB})"}, level=0)
display(led.table("Table 8", t8, note=f"robust column: paper PGD-20, ours {ROB} (final model)"))
f6_last = f6[f6.epoch == f6.epoch.max()].set_index("corruption")[["standard accuracy", "robust accuracy"]]
print(f"Fig. 6 at the last epoch ({f6.epoch.max()}){SMOKE_TAG}")
display(f6_last)
o = {k: v for k, v in t8_ours.items()}
for alg in P.table8.algorithms:
    st, N_FINAL = led.stats, B.final_subset or 10000
    _ = led.record("Table 8", f"({alg.upper()}) random labels on the hard examples change robust accuracy by less "
                   "than 1.5 points (equivalence, TOST), pruning them raises it",
                   st.combine([st.unpaired(o[f"{alg} / corrupted"]["pgd"], N_FINAL, o[f"{alg} / normal"]["pgd"], N_FINAL,
                                           margin=1.5),
                               st.unpaired(o[f"{alg} / pruned"]["pgd"], N_FINAL, o[f"{alg} / normal"]["pgd"], N_FINAL)]),
                  f"{ROB}: normal {100 * o[f'{alg} / normal']['pgd']:.2f}, "
                  f"corrupted {100 * o[f'{alg} / corrupted']['pgd']:.2f}, pruned {100 * o[f'{alg} / pruned']['pgd']:.2f}")
h, e_ = f6_last.loc[f"{P.sets.k} hard corruption"], f6_last.loc[f"{P.sets.k} easy corruption"]
_ = led.unpaired("Fig. 6", "corrupting the hard examples leaves higher robust accuracy than corrupting the easy ones",
                 h["robust accuracy"], B.eval_subset or 10000, e_["robust accuracy"], B.eval_subset or 10000, evidence=
                 f"robust (per-epoch test sample): hard corruption {100 * h['robust accuracy']:.1f}, "
                 f"easy corruption {100 * e_['robust accuracy']:.1f}")

# %% [markdown]
# ## Fig. 7: pruning the top n% easy or hard examples at epoch T
#
# Continuations of the baseline (PGD) and of an STD baseline from epoch T + 1 without the top
# n% easy ("Normal") or hard examples by the run's own difficulty; n = 0 is the baseline.
# (a) standard, (b) robust accuracy against the ratio; (c) robust gain from pruning hard
# examples per eps (eps 8 and `fig7.c_eps`), each from that eps's difficulty run of the 200-epoch
# setup pruned at `setup200.T` (the runs the hard_examples chapter trains for Figs. 3/4 when the
# parameters agree). The paper uses the best checkpoint and A3; ours is the final model and
# {ROB}.

# %%
f7 = pd.DataFrame([{"algorithm": alg.upper(), "pruned": "none" if r == 0 else ("Normal" if w == "easy" else "Hard"),
                    "which": w, "ratio": r, **final(rec)} for (alg, w, r), rec in R["fig7"].items()])
ncols = 3 if P.fig7.c_eps else 2
fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4))
for ax, col, title in zip(axes, ("std", "rob"), ("(a) standard accuracy", f"(b) robust accuracy ({ROB})")):
    sns.lineplot(data=f7, x="ratio", y=col, hue="which", style="algorithm", marker="o", ax=ax)
    ax.set(title=title, xlabel="data pruning ratio", ylabel="accuracy")
if P.fig7.c_eps:
    gains = []
    for e in [B.eps, *P.fig7.c_eps]:
        for r in P.fig7.ratios:
            gains.append({"eps": label_eps(e), "eps_value": e, "ratio": r,
                          "robust gain": final(R["fig7c"][(e, r)])["rob"] - final(R["fig7c"][(e, 0.0)])["rob"]})
    gains = pd.DataFrame(gains)
    sns.lineplot(data=gains, x="ratio", y="robust gain", hue="eps", marker="o", ax=axes[2])
    axes[2].set(title="(c) robust gain from pruning hard examples")
fig.suptitle(f"Fig. 7 ({DATA_LABEL}, {profile}{', smoke results' if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
f7_table = f7.pivot_table(index=["algorithm", "ratio"], columns="which", values=["std", "rob"])
print(f"Fig. 7, final-model accuracy (rob: {ROB}) by pruning ratio at epoch T = {B.T}{SMOKE_TAG}")
display(f7_table)
f7_claim = "(b) pruning hard examples at T raises robust accuracy for some ratio, pruning easy ones lowers it"
if "pgd" in P.fig7.algorithms:
    p = f7[f7.algorithm == "PGD"]
    none = float(p[p.ratio == 0]["rob"].iloc[0])
    hard_best = float(p[(p.which == "hard") & (p.ratio > 0)]["rob"].max())
    easy_worst = float(p[(p.which == "easy") & (p.ratio > 0)]["rob"].min())
    st, N_FINAL = led.stats, B.final_subset or 10000
    hard_r = p[(p.which == "hard") & (p.ratio > 0)]["rob"]
    easy_r = p[(p.which == "easy") & (p.ratio > 0)]["rob"]
    _ = led.record("Fig. 7", f7_claim,
                   st.combine([st.combine([st.unpaired(v, N_FINAL, none, N_FINAL) for v in hard_r], "any"),
                               st.combine([st.unpaired(v, N_FINAL, none, N_FINAL, "<") for v in easy_r], "any")]),
                  f"{ROB}: none {100 * none:.2f}, best hard-pruned {100 * hard_best:.2f}, worst easy-pruned {100 * easy_worst:.2f}")
else:
    _ = led.claim("Fig. 7", f7_claim, None, "fig7.algorithms has no PGD")
f7c_claim = "(c) the robust gain from pruning hard examples shrinks as eps decreases"
if P.fig7.c_eps:
    best = gains.groupby("eps_value")["robust gain"].max().sort_index()
    arg = gains.loc[gains.groupby("eps_value")["robust gain"].idxmax()].set_index("eps_value")["ratio"].sort_index()
    st, N_FINAL = led.stats, B.final_subset or 10000

    def f7c(e: float, r: float) -> float:
        return final(R["fig7c"][(e, r)])["rob"]

    es = list(best.index)
    _ = led.record("Fig. 7", f7c_claim + " (each eps's best ratio; the selection is not in the interval)",
                   st.combine([st.contrast([f7c(hi, arg[hi]), f7c(hi, 0.0), f7c(lo, arg[lo]), f7c(lo, 0.0)], [N_FINAL] * 4,
                                           [1, -1, -1, 1], what="gain at the larger eps - gain at the smaller")
                               for lo, hi in zip(es, es[1:])]),
                  "best gain by increasing eps: " + ", ".join(f"{label_eps(e)} {100 * g:+.2f}" for e, g in best.items()))
else:
    _ = led.claim("Fig. 7", f7c_claim, None, "fig7.c_eps is empty on this profile")

# %% [markdown]
# ## Appendix B.6: the easy and hard examples (Figs. 14, 15, 16)
#
# From the baseline's difficulty (clean 0-1 loss accumulated to T). The paper ranks by a
# TRADES trajectory; ours is the PGD baseline's, which feeds the other items of this chapter.
# **Fig. 15** in the paper also covers CIFAR-100 and SVHN: those need data this machine does not
# have; the code path is the same with `dataset` set to them. **Fig. 16** shows each image with
# its true class and its most frequent clean prediction over epochs 1..T.

# %%
d = R["b6"]["base"].difficulty
scores = np.where(d["in_train"], d["zero_one"], np.nan)
labels = d["labels"]
train_ds = load_dataset(B.dataset, "train")
classes = list(train_ds.classes)
sets = {w: difficulty.select(scores, k=P.b6.k, which=w) for w in ("easy", "hard")}
fig, axes = plt.subplots(1, 3, figsize=(17, 4))
for ax, w in zip(axes[:2], ("easy", "hard")):
    counts = np.bincount(labels[sets[w]], minlength=len(classes))
    ax.bar(range(len(classes)), counts)
    ax.set(title=f"Fig. 14 ({'a' if w == 'easy' else 'b'}) {P.b6.k} {w} examples", xlabel="class", ylabel="number of data",
           xticks=range(len(classes)))
norm = difficulty.minmax(scores)
axes[2].hist(norm[np.isfinite(norm)], bins=np.linspace(0, 1, 11))
axes[2].set(title=f"Fig. 15 (a) {DATA_LABEL}: min-max normalised 0-1 loss", xlabel="0-1 loss", ylabel="number of data")
fig.suptitle(f"Appendix 6 ({profile}{', smoke results' if SMOKE else ''})")
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
b6 = pd.DataFrame({f"{P.b6.k} {w}": np.bincount(labels[sets[w]], minlength=len(classes)) for w in ("easy", "hard")},
                  index=[f"{i} {c}" for i, c in enumerate(classes)])
print(f"Fig. 14: class counts of the {P.b6.k} easiest / hardest examples{SMOKE_TAG}")
display(b6)
hist = np.histogram(norm[np.isfinite(norm)], bins=np.linspace(0, 1, 11))[0]
print("Fig. 15: examples per 0.1-wide bin of normalised 0-1 loss:", hist.tolist())

# %%
mfp = d["most_frequent_prediction"]
fig, axes = plt.subplots(2, P.b6.n_images, figsize=(1.8 * P.b6.n_images, 4.6), squeeze=False)
for row, w in enumerate(("easy", "hard")):
    order = sets[w][np.argsort(scores[sets[w]], kind="stable")]
    pick = order[:P.b6.n_images] if w == "easy" else order[::-1][:P.b6.n_images]
    for ax, i in zip(axes[row], pick):
        ax.imshow(train_ds.images[int(i)].permute(1, 2, 0).numpy())
        ax.set_title(f"{classes[labels[i]]}\npred: {classes[mfp[i]] if mfp[i] >= 0 else '-'}", fontsize=8)
        ax.axis("off")
    axes[row][0].text(-0.3, 0.5, w, transform=axes[row][0].transAxes, ha="right", va="center")
fig.suptitle(f"Fig. 16: easy (top) and hard (bottom) examples, true class / most frequent prediction ({profile})")
plt.tight_layout()
plt.show()

# %%
hard_share = b6[f"{P.b6.k} hard"].to_numpy() / P.b6.k
_ = led.fact("Fig. 14", "hard examples are unevenly spread over the classes (some classes far over 10%; here: over 15%)",
             bool(hard_share.max() > 0.15), "exact (deterministic: class counts of the selected hard set)",
             f"largest class share among the hard: {100 * hard_share.max():.1f}%")

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
    hours = est.hours(distinct_runs(cells))
    parts = ", ".join(f"{k} {est.hours(distinct_runs(v.values())):.2f}" for k, v in groups.items() if v)
    display(Markdown(
        f"Budget of this chapter on profile `{profile}`: about **{hours:.2f} GPU-hours** ({parts}; a run shared by "
        "two items is counted in each part but once in the total), training with each run's own evaluation and "
        "probes, scaled by training-set size and epochs trained per run; " + "; ".join(est.sources) + ". Its "
        "difficulty runs are the hard_examples chapter's Figs. 3/4 runs where the parameters agree (the same specs): "
        "`hardex book --plan` counts a run two chapters ask for once."))
else:
    display(Markdown("Smoke profile: CPU, no GPU-hour estimate."))

# %% [markdown]
# ## Verdicts

# %%
# NBVAL_CHECK_OUTPUT
print(f"profile {profile}, data {DATA_LABEL}" + (": plumbing only, no verdict" if SMOKE else ""))
display(led.verdicts())
_ = led.save()


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
