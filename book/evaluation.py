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
# # Trustworthy robustness evaluation (Tables 19-22)
#
# The paper's headline robust numbers are A3 (adaptive auto attack, {cite:t}`liu2022practical`),
# not PGD, and a defense paper stands or falls with its evaluation: a weak attack or gradient
# masking inflates every table. This chapter evaluates the shared PGD-AT baseline and its
# DPLS continuation with every attack `hardex.evaluation.suite` offers and checks the attacks against
# each other:
#
# - **Table 21**: MD (margin decomposition) and RayS (hard-label, black-box) next to A3;
# - **Table 20**: robust accuracy on the easy classes {0, 1, 7, 8, 9} and the hard classes
#   {2, 3, 4, 5, 6};
# - **Table 19's CW column**: PGD with the CW margin loss, next to PGD (cross-entropy) and A3;
# - **A3 vs AutoAttack**: the gap in points and the cost (forward / backward passes, seconds);
# - **training precision**: the fast and paper profiles train with bf16 autocast; the
#   bf16 version of PGD and CW (the training-time attack) is checked against the fp32 one;
# - **gradient-masking report**: robust accuracy must fall as eps grows and reach ~0 at
#   eps 0.5, one-step FGSM must not beat the iterative attack, black-box RayS must not beat
#   the white-box attacks by a wide margin;
# - **Table 22** (DiffPure) is not run here (see its section).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# Every evaluation goes through `hardex.evaluation.suite.evaluate_run`: fp32, eval mode, TF32 off,
# a seeded test subset (or all 10,000 images), an example counted robust only if it is
# correct on the clean input and at every point the attack returns; the results are cached
# in each run's directory (`runs/<hash>/eval/`), so a rebuild reads them. Attack costs are
# counted exactly by a wrapper around the model (one forward / backward per example-pass).

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (profile.yaml: the shared baseline, the 200-epoch
# setup, the stated costs; evaluation.yaml: this chapter's blocks); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {attacks: {n: 500}}"
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
from hardex.evaluation.suite import precision_agreement
from hardex.experiments import count_runs, distinct_runs, evaluation
from hardex.experiments.cost import Estimator
from hardex.paper.ledger import label_eps
from hardex.paper.report import captioned, compare, paper_value

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 2)
P, SMOKE, _, DATA_LABEL, led, book = setup(globals(), "evaluation", show=False)  # hardex.experiments.evaluation
B = P.baseline
PGD, CW = f"pgd{P.attacks.pgd_steps}", f"cw{P.attacks.pgd_steps}"
ATTACKS = evaluation.attack_names(P)  # PGD-K, CW-K, A3, MD, RayS, AutoAttack, PGD/CW-K in bf16
AA_LABEL = ("AutoAttack (standard)" if P.attacks.autoattack.version == "standard"
            else f"AutoAttack reduced to {'+'.join(P.attacks.autoattack.attacks)}" + (f", {P.attacks.autoattack.n_iter} iterations" if P.attacks.autoattack.n_iter else ""))

show_profile(P, led, f"evaluated on {P.attacks.n or 'all'} test images at {label_eps(B.eps)}.",
             smoke_caveat=", with shortened attacks,")

# %% [markdown]
# ## What this profile can detect
#
# Before anything is evaluated: the minimum detectable effect (MDE, points; 95% interval
# excluding zero with 80% power, `hardex.paper.stats.mde`) of the chapter's paired comparisons on
# `attacks.n` test images (every attack scores the same images, so every comparison is paired;
# one training seed), next to the paper's effect. Stated assumptions: two models disagree on 15%
# of the images; two attacks on one model on 5%. For "agree within" claims the MDE column is
# the smallest margin TOST can confirm.

# %%
N_EVAL = P.attacks.n or 10000
for item, what, eff, disc, eq in (
        ("Table 21", "DPLS - baseline under MD", paper_value("table21.pgd_dpls.md") - paper_value("table21.pgd.md"), 0.15, False),
        ("Table 21", "DPLS - baseline under RayS", paper_value("table21.pgd_dpls.rays") - paper_value("table21.pgd.rays"),
         0.15, False),
        ("Table 21", "RayS - A3 (baseline)", paper_value("table21.pgd.rays") - paper_value("table21.pgd.a3"), 0.05, False),
        ("Table 21", "MD = A3 within 1 point (margin)", 1.0, 0.05, True),
        ("Table 20", "DPLS - baseline, A3, hard classes (half the images)",
         paper_value("table20.pgd_dpls.a3_hard") - paper_value("table20.pgd.a3_hard"), 0.3, False),
        ("A3 vs AutoAttack", f"A3 = AutoAttack within {P.checks.a3_gap_tol_points} points (margin)", P.checks.a3_gap_tol_points, 0.05, True)):
    led.power(item, what, N_EVAL // 2 if "half" in what else N_EVAL, 1, eff, discordance=disc, equivalence=eq)
print(f"comparisons on {N_EVAL} test images, 1 training seed (profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## The runs
#
# The baseline is the profile's shared PGD-AT run (the same spec, so the same stored run, as
# the other chapters). The DPLS model continues it from epoch T + 1 with difficulty-
# proportional label smoothing (hardest example's factor `models.dpls_lam`), as the paper branches
# every method from its epoch-90 baseline checkpoint.

# %%
t0 = time.perf_counter()
runs, by_key = book.experiment(evaluation, P)  # hardex.experiments.evaluation.runs
recs = {k[1]: r for k, r in by_key.items()}  # "pgd" / "pgd_dpls" -> record
note(f"runs ready in {time.perf_counter() - t0:.1f} s: "
     + ", ".join(f"{k} = `{r.spec.short_hash}`" for k, r in recs.items()))

# %% [markdown]
# ## Evaluation
#
# Attacks (eps = the training eps, PGD step eps/4 as the paper evaluates): PGD-K with
# cross-entropy, PGD-K with the CW margin loss, A3, MD, RayS and AutoAttack, and PGD / CW
# again with their passes in bf16 (`@bf16`, for the training-precision check); each with the
# settings listed under `params` in the result. The per-example worst case is the AND over
# all of them. The gradient-masking check runs on the first `attacks.masking.n` images of the subset.

# %%
t0 = time.perf_counter()
# the experiment's evaluations: every attack on the same seeded test examples (evaluation.evaluate_options)
results = {k[1]: book.evaluate(by_key[k], **req.kwargs())
           for req in runs.evaluations for k, s in runs.specs.items() if s.hash == req.spec.hash}
note(f"evaluations ready in {time.perf_counter() - t0:.1f} s ("
     + ", ".join(f"{k}: {'cached' if v['cached'] else 'computed'}" for k, v in results.items()) + ")")

# %%
# NBVAL_CHECK_OUTPUT
overview = pd.DataFrame({k: {"clean": v["clean_acc"], **v["robust_acc"], "worst case": v["worst_case_acc"]}
                         for k, v in results.items()}).T * 100
print(f"robust accuracy (%), {DATA_LABEL}, n = {results['pgd']['n']}, {label_eps(B.eps)}"
      + (" (smoke results)" if SMOKE else ""))
display(overview)

# %% [markdown]
# ## Table 21: MD and RayS next to A3
#
# MD is the margin decomposition attack of {cite:t}`jiang2020imbalanced`, RayS the hard-label
# black-box attack of {cite:t}`chen2020rays`.
# The paper: MD gives almost the same numbers as A3 (it is a variant of the same family of
# margin attacks), RayS (hard-label) gives clearly higher ones, and DPLS stays above the
# baseline under both.

# %%
# NBVAL_CHECK_OUTPUT
ours21 = {k: {"std": v["clean_acc"], "md": v["robust_acc"]["md"], "rays": v["robust_acc"]["rays"],
              "a3": v["robust_acc"]["a3"]} for k, v in results.items()}
paper21 = {k: paper_value(f"table21.{k}") for k in results}
t21 = compare(ours21, paper21, metrics=["std", "md", "rays", "a3"])
caption = (f"Table 21, {DATA_LABEL}: the paper and ours, profile {profile}" + (" (smoke results)" if SMOKE else "")
           + f"; RayS query budget {P.attacks.rays_queries}; robust accuracy in %, diff = ours - paper in points")
display(captioned(led.table("Table 21", t21, note=f"n = {results['pgd']['n']}, RayS {P.attacks.rays_queries} queries"), caption,
                  "table-21"))

# %%
one = 1 / results["pgd"]["n"]
r21 = {k: v["robust_acc"] for k, v in results.items()}
bits = {k: v["per_example"] for k, v in results.items()}  # per-example outcomes, the same images for every attack
st = led.stats
_ = led.record("Table 21", "DPLS has higher robust accuracy than the baseline under MD and under RayS",
               st.combine([st.paired(bits["pgd_dpls"][a], bits["pgd"][a]) for a in ("md", "rays")]),
              "; ".join(f"{k}: MD {100 * v['md']:.2f}, RayS {100 * v['rays']:.2f}" for k, v in r21.items()))
_ = led.record("Table 21", "MD and A3 agree within 1 point on each model (equivalence, TOST)",
               st.combine([st.equivalence(b["md"], b["a3"], 1.0 + 100 * one) for b in bits.values()]),
              "; ".join(f"{k}: MD - A3 = {100 * (v['md'] - v['a3']):+.2f}" for k, v in r21.items()))
_ = led.record("Table 21", "black-box RayS gives higher robust accuracy than white-box A3",
               st.combine([st.paired(b["rays"], b["a3"]) for b in bits.values()]),
              "; ".join(f"{k}: RayS - A3 = {100 * (v['rays'] - v['a3']):+.2f}" for k, v in r21.items()))

# %% [markdown]
# ## Table 20: easy and hard classes
#
# Robust accuracy over the test images of the easy classes {0, 1, 7, 8, 9} (airplane,
# automobile, horse, ship, truck) and of the hard classes {2, 3, 4, 5, 6} (bird, cat, deer,
# dog, frog). The paper: DPLS improves both groups, so its gain is not bought from the easy
# classes alone.

# %%
# NBVAL_CHECK_OUTPUT
def groups(v: dict, attack: str, key: str) -> dict:
    g = v["class_groups"][attack]
    return {key: v["robust_acc"][attack], f"{key}_easy": g["easy"], f"{key}_hard": g["hard"]}


ours20 = {k: {**groups(v, PGD, "pgd"), **groups(v, "a3", "a3")} for k, v in results.items()}
paper20 = {k: paper_value(f"table20.{k}") for k in results}
t20 = compare(ours20, paper20, metrics=["pgd", "pgd_easy", "pgd_hard", "a3", "a3_easy", "a3_hard"])
caption = (f"Table 20, {DATA_LABEL}: the paper and ours, profile {profile}" + (" (smoke results)" if SMOKE else "")
           + f"; pgd = PGD-{P.attacks.pgd_steps}; robust accuracy in %, diff = ours - paper in points")
display(captioned(led.table("Table 20", t20, note=f"pgd = PGD-{P.attacks.pgd_steps} (CE, step eps/4)"), caption, "table-20"))

# %%
g = {k: v for k, v in ours20.items()}
st = led.stats


def a3_group(k: str, classes) -> np.ndarray:
    """Model k's per-example A3 outcomes on the test images of ``classes``."""
    pe = results[k]["per_example"]
    return st.as_outcomes(pe["a3"])[np.isin(np.asarray(pe["labels"]), list(classes))]


EASY, HARD = (0, 1, 7, 8, 9), (2, 3, 4, 5, 6)  # hardex.evaluation.robustness.DEFAULT_GROUPS
_ = led.record("Table 20", "DPLS raises A3 robust accuracy on both the easy and the hard classes",
               st.combine([st.paired(a3_group("pgd_dpls", c), a3_group("pgd", c)) for c in (EASY, HARD)]),
              "; ".join(f"{k}: easy {100 * v['a3_easy']:.2f}, hard {100 * v['a3_hard']:.2f}" for k, v in g.items()))
_ = led.record("Table 20", "robust accuracy of the easy classes exceeds that of the hard classes",
               st.combine([st.two_sample(a3_group(k, EASY), a3_group(k, HARD), what="easy vs hard test images")
                           for k in results]),
              "; ".join(f"{k}: {100 * (v['a3_easy'] - v['a3_hard']):+.2f} points" for k, v in g.items()))

# %%
rows = []
for k, v in results.items():
    for name in ("clean", "a3"):
        acc = v["per_class"]["clean"] if name == "clean" else v["per_class"]["attacks"]["a3"]
        rows += [{"model": k, "metric": name, "class": c, "accuracy": a} for c, a in enumerate(acc) if a is not None]
pc = pd.DataFrame(rows)
grid = sns.catplot(data=pc, x="class", y="accuracy", hue="model", col="metric", kind="bar", height=3.5, aspect=1.6)
grid.figure.suptitle(f"per-class accuracy ({DATA_LABEL}, {profile}{', smoke results' if SMOKE else ''}); "
                     "hard classes 2-6", y=1.05)
plt.show()

# %% [markdown]
# ## Table 19's CW column
#
# Table 19 (TRADES pruning variants) reports PGD with the CW margin loss {cite:p}`carlini2017towards` next to PGD and A3;
# on every row the order is PGD > CW > A3 (the margin loss is stronger than cross-entropy,
# A3 stronger still). Our models are the PGD-AT baseline and its DPLS continuation, so the
# paper's TRADES row is shown for the ordering only, not for a cell-by-cell comparison.

# %%
# NBVAL_CHECK_OUTPUT
t19 = pd.DataFrame({k: {f"PGD-{P.attacks.pgd_steps}": v["robust_acc"][PGD], f"CW-{P.attacks.pgd_steps}": v["robust_acc"][CW],
                        "A3": v["robust_acc"]["a3"]} for k, v in results.items()}).T * 100
ref = paper_value("table19.none")
t19.loc["paper: TRADES (Table 19, first row)"] = [ref["pgd"], ref["cw"], ref["a3"]]
print("robust accuracy (%)" + (" (smoke results)" if SMOKE else ""))
display(t19)

# %%
st = led.stats
_ = led.record("Table 19", "robust accuracy orders PGD >= CW >= A3 (within one example) on every model "
               "(non-inferiority: each interval at or above minus one example)",
               st.combine([st.paired(v["per_example"][hi], v["per_example"][lo], ">=", tol=100 * one)
                           for v in results.values() for hi, lo in ((PGD, CW), (CW, "a3"))]),
              "; ".join(f"{k}: {100 * v['robust_acc'][PGD]:.2f} / {100 * v['robust_acc'][CW]:.2f} / "
                        f"{100 * v['robust_acc']['a3']:.2f}" for k, v in results.items()))

# %% [markdown]
# ## A3 vs AutoAttack
#
# {cite:t}`liu2022practical` report A3 within 0.04-0.4 points of AutoAttack {cite:p}`croce2020reliable` on RobustBench
# {cite:p}`croce2021robustbench` models at about
# 1/10 of AutoAttack's forward passes. Costs below are example-passes counted by the
# evaluation's wrapper (a forward on a batch of b images counts b), and wall time on this
# profile's device.

# %%
# NBVAL_CHECK_OUTPUT
rows = {}
for k, v in results.items():
    ca, cb = v["cost"]["a3"], v["cost"]["autoattack"]
    rows[k] = {"A3 %": 100 * v["robust_acc"]["a3"], "AA %": 100 * v["robust_acc"]["autoattack"],
               "gap (A3 - AA, points)": 100 * (v["robust_acc"]["a3"] - v["robust_acc"]["autoattack"]),
               "A3 forwards": ca["forward"], "AA forwards": cb["forward"],
               "forward ratio A3/AA": ca["forward"] / max(cb["forward"], 1),
               "backward ratio A3/AA": ca["backward"] / max(cb["backward"], 1)}
a3aa = pd.DataFrame(rows).T
print(f"A3 vs {AA_LABEL}" + (" (smoke results)" if SMOKE else ""))
display(a3aa)

# %%
seconds = pd.DataFrame({k: {a: c["seconds"] for a, c in v["cost"].items()} for k, v in results.items()}).T
print(f"wall time per attack (s, {results['pgd']['device']}); varies between machines")
display(seconds)

# %%
aa_std = P.attacks.autoattack.version == "standard" and not P.attacks.autoattack.n_iter
st = led.stats
_ = led.claim("A3 vs AutoAttack", f"A3 is within {P.checks.a3_gap_tol_points} points of AutoAttack on each model (equivalence, TOST)",
              st.combine([st.equivalence(v["per_example"]["a3"], v["per_example"]["autoattack"],
                                         P.checks.a3_gap_tol_points + 100 * one) for v in results.values()])
              if aa_std else None,
              "; ".join(f"{k}: {r['gap (A3 - AA, points)']:+.2f}" for k, r in rows.items())
              + ("" if aa_std else f" (not standard AutoAttack: {AA_LABEL})"))
_ = led.claim("A3 vs AutoAttack", f"A3 uses at most {P.checks.a3_cost_ratio_max:g} of AutoAttack's forward passes",
              st.deterministic(all(r["forward ratio A3/AA"] <= P.checks.a3_cost_ratio_max for r in rows.values()),
                               "exact (counted forward passes)") if aa_std else None,
              "; ".join(f"{k}: {r['forward ratio A3/AA']:.3f}" for k, r in rows.items()))

# %% [markdown]
# ## Training precision: bf16 training, fp32 evaluation
#
# The fast and paper profiles train with bf16 autocast and channels_last (`precision`,
# `channels_last`; `hardex.fastpath`; `hardex bench` measures what it saves). Every number in
# this book is still an fp32 evaluation (TF32 off). Two things must hold for that to be
# safe: a bf16-trained model must be as robust as its fp32 evaluation says (no masking: the
# stronger fp32 attacks above and the masking check below), and the bf16 attack that trains
# it must not be weaker than the fp32 one. For the second, each model is attacked by PGD and
# CW in fp32 and again with their forward and backward passes in bf16 (`pgdK@bf16`: fp32
# perturbation, projection and scoring, the same images and random starts). On the examples
# on which the two disagree, an exact one-sided McNemar (sign) test asks whether the fp32
# attack breaks significantly more of them.

# %%
# NBVAL_CHECK_OUTPUT
prec = {}
for k, v in results.items():
    for a in (PGD, CW):
        r = precision_agreement(v, a)
        prec[(k, a)] = {"fp32 attack %": 100 * r["fp32_acc"], "bf16 attack %": 100 * r["bf16_acc"],
                        "robust only to fp32": r["fp32_only_robust"], "robust only to bf16": r["bf16_only_robust"],
                        "p (bf16 weaker)": r["p_bf16_weaker"], "bf16 weaker": r["weaker"]}
prec_table = pd.DataFrame(prec).T
print(f"models trained with precision {B.precision} (channels_last {B.channels_last}); robust accuracy (%), "
      f"n = {results['pgd']['n']}" + (" (smoke results)" if SMOKE else ""))
display(prec_table)

# %%
_ = led.fact("bf16 training", "the bf16 attack is not weaker than the fp32 attack (PGD and CW, each model; "
             "exact one-sided McNemar test, alpha 0.05)",
             bool(not prec_table["bf16 weaker"].any()),
             "exact one-sided McNemar (sign) test per model and attack, alpha 0.05: holds when none rejects "
             "(no evidence of a weaker bf16 attack; not an equivalence test)",
              "; ".join(f"{k} {a}: fp32 {r['fp32 attack %']:.2f}, bf16 {r['bf16 attack %']:.2f}, "
                        f"p = {r['p (bf16 weaker)']:.3g}" for (k, a), r in prec.items()))

# %% [markdown]
# ## Gradient-masking report
#
# Gradient masking {cite:p}`athalye2018obfuscated` makes a model look robust to gradient attacks only.
# For each model, on the first `attacks.masking.n` images: PGD-`attacks.masking.steps` with the margin loss (step eps/4) at
# eps/2, eps, 2 eps, 4 eps and 0.5 must give falling robust accuracy that reaches ~0 at 0.5;
# one-step FGSM {cite:p}`goodfellow2015explaining` must not beat it at eps; RayS (black-box) must not beat it at eps by more
# than 2 points. Any violation marks the model *suspicious*.

# %%
# NBVAL_CHECK_OUTPUT
mrows = {}
for k, v in results.items():
    m = v["masking"]
    curve = {f"eps {e:.4g}": 100 * a for e, a in m["curve"]}
    mrows[k] = {"suspicious": m["suspicious"], **curve, "FGSM at eps": 100 * m["fgsm_acc"],
                "RayS at eps": None if m["rays_acc"] is None else 100 * m["rays_acc"]}
masking = pd.DataFrame(mrows).T
print(f"masking check, n = {results['pgd']['masking']['n']}, {results['pgd']['masking']['attack']}"
      + (" (smoke results)" if SMOKE else ""))
display(masking)
for k, v in results.items():
    for reason in v["masking"]["reasons"]:
        print(f"{k}: {reason}")

# %%
_ = led.fact("masking", "neither model shows signs of gradient masking (falling curve reaching ~0 at eps 0.5, "
             "FGSM not below PGD, RayS not below white-box)",
             bool(not any(v["masking"]["suspicious"] for v in results.values())),
             "the masking check's own decision rule (hardex.evaluation.robustness.masking_check), per model",
              "; ".join(f"{k}: {'suspicious' if v['masking']['suspicious'] else 'passed'}" for k, v in results.items()))
_ = led.claim("bf16 training", "bf16-trained models are as robust as their fp32 evaluation says: "
              "no sign of gradient masking under fp32 attacks",
              led.stats.deterministic(not any(v["masking"]["suspicious"] for v in results.values()),
                                      "the masking check's own decision rule (hardex.evaluation.robustness.masking_check)")
              if B.precision == "bf16" else None,
              "the masking check above, on models trained with bf16 autocast" if B.precision == "bf16"
              else f"not run: this profile trains in {B.precision}")

# %% [markdown]
# ## Table 22: DiffPure (not run)
#
# Table 22 puts DiffPure {cite:p}`nie2022diffusion` in front of the classifiers: a pretrained
# score-based diffusion model (the score-SDE CIFAR-10 checkpoint {cite:p}`song2021score`) noises and denoises each
# input before classification, and RobustBench's protocol with A3 evaluates the composition.
# Neither the score model's weights nor the purification solver ship with hardex, and this
# machine cannot download them, so the table is not run. The evaluation accepts any purifier:
# `evaluate_run(record, attacks, purifier=f, purifier_id="diffpure-<checkpoint>")` evaluates
# `model(f(x))` (gradients through `f`; DiffPure's own evaluation uses the adjoint method and
# EOT, which `f` would have to provide), and `tests/test_evaluate.py` checks that code path
# with a trivial purifier.

# %%
_ = led.claim("Table 22", "DPLS + DiffPure is more robust than baseline + DiffPure", None,
              "not run: needs a user-provided score-based diffusion checkpoint and purifier")

# %% [markdown]
# ## A model nobody here trained: the AutoAttack repository's example ResNet-18
#
# Every model above was trained by hardex. `hardex eval` also takes a model trained elsewhere (a
# RobustBench entry, a state dict with its architecture, a TorchScript file), and this section
# shows one such evaluation: the standard-trained CIFAR-10 ResNet-18 that pyautoattack's wheel
# ships as the AutoAttack repository's example. At small eps the attacks differ in strength on
# it, so it checks them on a model no one here wrote: robust accuracy per attack with exact 95%
# intervals and cost, A3 against AutoAttack per example, and hardex's AutoAttack wrapper against
# a direct pyautoattack call on the same examples. It is one committed record
# (`results/eval/`), measured once on a CPU; this section reads it and attacks nothing, so it is
# the same on every profile.

# %%
from hardex.evaluation import anymodel

third = anymodel.third_party_view()
display(Markdown(third.get("missing") or third["caption"]))
if "accuracy" in third:
    display(third["accuracy"])

# %% [markdown]
# A3 against AutoAttack on the same examples (effect = A3's robust accuracy minus AutoAttack's,
# in points, with its paired bootstrap interval and the exact McNemar p; A3 is at least as
# strong when the interval reaches zero or below), and A3's cost as a fraction of AutoAttack's:

# %%
if "agreement" in third:
    display(third["agreement"])
    display(Markdown(third["finding"]))

# %% [markdown]
# hardex's AutoAttack (`hardex.attacks.autoattack`, as every chapter calls it) against
# pyautoattack called directly as its README does, with the same version, attacks, seed and
# batch size on the same examples:

# %%
if "direct" in third:
    display(third["direct"])

# %% [markdown]
# ## Cost

# %%
cells = list(runs.specs.values())
distinct, naive = count_runs(cells)
print(f"distinct training runs: {distinct} (a naive one-run-per-cell approach: {naive})")
if not SMOKE:  # hardex.experiments.cost: the estimator of `hardex book --plan` and `hardex gpu-check`
    est = Estimator.for_params(P, Path.cwd(), "gpu")
    train_h, eval_h = est.hours(distinct_runs(cells)), est.hours([], runs.evaluations)
    display(Markdown(f"Expected cost of this profile: about **{train_h + eval_h:.1f} GPU-hours**: "
                     f"{train_h:.1f} h of training (the baseline is shared with the other chapters) and "
                     f"{eval_h:.1f} h of evaluation (every attack on {P.attacks.n or 10000} images, per model); "
                     + "; ".join(est.sources) + ". Measured evaluation wall time is in the table above."))
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
