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
# # Difficulty-proportional label smoothing (Sections 4.2 and 5)
#
# DPLS smooths each example's label in proportion to its difficulty: the easiest example keeps
# its one-hot label, the hardest gets factor `lam` on its true class (Algorithm 2), and
# adversarial training continues from epoch T + 1 toward those soft labels (Algorithm 1). The
# paper's Table 3 compares it with the baseline, with pruning the 10% hardest examples and with
# uniform LS whose factor equals DPLS's *average* factor (the same smoothing budget spread
# evenly), for PGD-AT {cite:p}`madry2018towards` and TRADES {cite:p}`zhang2019theoretically`, on four datasets and three eps; Fig. 9 shows that DPLS lowers
# the training robust accuracy of the hardest examples and raises test robust accuracy. Every
# number here comes from a run record (`hardex.runs.ensure`) or from the paper's text
# (`hardex.paper.report`).

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

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
# Table 3: prefix schedule and evaluation (equal to the baseline's = branch from the shared baseline)
t3_algorithms = ["pgd"]
t3_eps = [0.031]
t3_epochs = 5
t3_milestones = [3, 4]
t3_T = 3
t3_eval_subset = 200
t3_final_pgd_steps = [10]
t3_final_subset = 300
# pruning: top share of the hardest examples, from T + 1
t3_prune_fraction = 0.1
# t3_probe_k / t3_probe_max: the Table 3 prefixes carry the hard_examples chapter's probe sets
# (top-k hard, top-k easy, all; at most t3_probe_max examples each; 0 = no probes), so that where
# the schedules agree one run is this chapter's prefix and that chapter's Table 1 baseline and
# eps-8 Figs. 3/4 run (quick); the continuations inherit them
t3_probe_k = 0
t3_probe_max = 0
# t3_seeds: training seeds of the Table 3 block at the profile's eps (each seed its own prefix and
# continuations; list `seed` first so it shares the other chapters' baseline); the other eps
# blocks train `seed` only. The verdicts pool the seeds
t3_seeds = [0]
# robust evaluation by hardex.evaluation.suite.evaluate_run (eval_n test examples; 0 = all); [] = final.json PGD only
eval_attacks = ["pgd20", "a3"]
eval_n = 50
# eval_n_per_attack: test examples of an attack where it differs from eval_n (0 = the whole test
# split), e.g. {"pgd20": 0}; verdict_attack: the robust column the verdicts use ("" = A3 when
# evaluated, else PGD; "pgd20" or "a3")
eval_n_per_attack = {}
verdict_attack = ""
# Fig. 9: the 200-epoch setup; quintile probes (probe_max examples per quintile; 0 = all);
# fig9_epochs 0 = Fig. 9 not built on this profile
fig9_epochs = 5
fig9_milestones = [3, 4]
fig9_T = 3
fig9_probe_max = 50
# stated cost estimates (minutes per epoch on the full set) and A3's forward+backward passes per example
minutes_per_pgd_epoch = 0.0
minutes_per_trades_epoch = 0.0
a3_passes_per_example = 0

# %%
import inspect
import time
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import Markdown, display

from hardex import difficulty, experiments as ex, targets
from hardex.book.chapter import finish, glue_figure, glue_not_run, note, records_table, setup
from hardex.paper.ledger import banner, data_label, label_eps, Ledger
from hardex.evaluation.suite import evaluate_run, expect_evaluation
from hardex.paper.report import captioned, compare, paper_value
from hardex.runs import ensure
from hardex.runs.plan import expect
from hardex.train import Trainer

sns.set_theme(context="notebook", style="whitegrid")
pd.set_option("display.precision", 3)
P, SMOKE, SMOKE_TAG, DATA_LABEL, led = setup(globals(), "dpls")  # P: the parameters, as experiments' builders read them
HAVE_EVAL = bool(eval_attacks)  # [] = final.json's PGD-k only, no A3
K = max(t3_final_pgd_steps)
if verdict_attack not in ("", *eval_attacks) or verdict_attack not in ("", "pgd20", "a3"):
    raise ValueError(f"verdict_attack {verdict_attack!r}: allowed '', or one of pgd20, a3 that eval_attacks "
                     f"{list(eval_attacks)} evaluates")
unknown = sorted(set(eval_n_per_attack) - set(eval_attacks))
if unknown:
    raise ValueError(f"eval_n_per_attack names attacks not in eval_attacks {list(eval_attacks)}: {unknown}")
FIG9 = fig9_epochs > 0

# %% [markdown]
# ## What this profile can detect
#
# Before anything trains: for each Table 3 comparison, the **minimum detectable effect** (MDE,
# points: the true effect the verdict's 95% interval excludes zero for with 80% power,
# `hardex.paper.stats.mde`) on this profile's test examples and seeds, next to the paper's effect (its
# Table 3, the robust column the verdicts use). Stated assumptions, not measurements: the two
# models disagree on 15% of test examples, one seed's effect spreads by 0.5 points. For the LS
# claim ("no improvement", an equivalence within ±`LS_MARGIN` points) the MDE column is the
# smallest margin the profile can confirm. `can confirm` = the paper's effect is at least the
# MDE.

# %%
LS_MARGIN = 1.0  # points: LS "shows no improvement" = within +-1 point of the baseline (TOST)
VERDICT_ATTACK = verdict_attack or ("a3" if "a3" in eval_attacks else "pgd20" if eval_attacks else "")
PK = "a3" if VERDICT_ATTACK == "a3" else "pgd"  # the paper's column the verdicts use


def attack_n(a: str) -> int:
    """Test examples ``evaluate_run`` attacks with ``a`` (0 = the whole split)."""
    return int(eval_n_per_attack.get(a, eval_n))


N_TEST = (attack_n(VERDICT_ATTACK) or 10000) if eval_attacks else (t3_final_subset or 10000)
EVAL_GROUPS: dict = {}  # test examples -> the attacks evaluated on them (one evaluate_run each, cached)
for a in eval_attacks:
    EVAL_GROUPS.setdefault(attack_n(a), []).append(a)
for e in t3_eps:
    key = f"{dataset}_eps{round(e * 255)}"
    for alg in t3_algorithms:
        pv = {m: paper_value(f"table3.{key}.{alg}{sfx}.{PK}") for m, sfx in
              {"": "", "pruning": "_pruning", "ls": "_ls", "dpls": "_dpls"}.items()}
        A, k = alg.upper(), len(set(t3_seeds)) if e == eps else 1
        for a, b in (("dpls", ""), ("dpls", "ls"), ("dpls", "pruning"), ("pruning", "")):
            led.power(f"Table 3 ({key})", f"{A}+{a.upper()} - {A}{'+' + b.upper() if b else ''} ({PK})",
                      N_TEST, k, pv[a] - pv[b])
        led.power(f"Table 3 ({key})", f"{A}+LS = {A} within ±{LS_MARGIN:g} ({PK}; paper effect: the margin)",
                  N_TEST, k, LS_MARGIN, equivalence=True,
                  note=f"paper's difference {pv['ls'] - pv['']:+.2f}")
print(f"Table 3 comparisons on {N_TEST} test examples; seeds: {len(set(t3_seeds))} at {label_eps(eps)}, 1 at other eps "
      f"(profile {profile}):")
with pd.option_context("display.precision", 2):
    display(led.power_table())

# %% [markdown]
# ## Algorithms 1 and 2 as the library runs them
#
# **Algorithm 2** (calculation of DPLS): min-max normalise the difficulty `S`, then give example
# i the label `LS(y_i, 1 - (1 - lam) S[i], C)`, where `LS(y, l, C)` puts `l` on the true class and
# `(1 - l) / (C - 1)` on every other class. In `hardex` these are three functions:

# %% tags=["remove-input", "hide-output"]
def show(*objs) -> None:
    display(Markdown("\n\n".join(f"```python\n{inspect.getsource(o)}```" for o in objs)))


show(difficulty.minmax, targets.dpls_factors, targets.ls_targets)

# %% [markdown]
# **Algorithm 1** (DPLS adversarial training): for t <= T each batch's clean difficulty is
# accumulated by stable example index (`accumulator.update`, a separate eval-mode, no-grad
# forward, before the step; TRADES reuses its attack's identical clean forward); from T + 1 on the batch's soft targets come from the factors of
# Algorithm 2, computed once from the scores at that moment and frozen (`_target_arrays`),
# gathered by index (`batch_targets`); the adversarial step itself is unchanged (the inner PGD
# uses hard labels: the paper applies DPLS "only to the labels of outer maximization loss").
# The code of one epoch and of the target lookup, as `hardex.train.Trainer` runs them:

# %% tags=["remove-input", "hide-output"]
show(Trainer.run_epoch, Trainer._train_batches, Trainer._target_arrays, Trainer.batch_targets)

# %% [markdown]
# ### A worked example of Algorithm 2 (float64)
#
# Six examples, C = 4 classes, difficulty = their clean 0-1 loss summed over T = 10 epochs, and
# the paper's CIFAR-10 factor `lam = 0.5` (Table 9). The "by hand" columns follow the algorithm's
# lines with plain numpy; the library's must agree exactly.

# %%
# NBVAL_CHECK_OUTPUT
S = np.array([0.0, 2.0, 5.0, 5.0, 10.0, 3.0])  # wrong clean predictions in 10 epochs
y = np.array([0, 1, 2, 3, 0, 1])
lam, C = 0.5, 4
s_norm = (S - S.min()) / (S.max() - S.min())  # line 3
by_hand = 1 - (1 - lam) * s_norm  # line 7: LS factor of example i
rows_hand = np.array([[f if c == yi else (1 - f) / (C - 1) for c in range(C)] for f, yi in zip(by_hand, y)])
lib = targets.dpls_factors(S, lam, C)
import torch  # noqa: E402

rows_lib = targets.dpls_targets(torch.as_tensor(y), lib, C, dtype=torch.float64).numpy()
assert np.array_equal(lib, by_hand) and np.allclose(rows_lib, rows_hand, rtol=0, atol=1e-15)
worked = pd.DataFrame({"S (0-1 loss)": S, "S normalised": s_norm, "factor (hand)": by_hand, "factor (library)": lib,
                       "label y": y, **{f"target[{c}]": rows_lib[:, c] for c in range(C)}})
display(worked)
print(f"average factor: {targets.average_factor(lib):.4f} (hand: {by_hand.mean():.4f}); "
      f"every row sums to 1: {bool(np.allclose(rows_lib.sum(1), 1))}")

# %% [markdown]
# ## The runs
#
# For each algorithm (PGD-AT, TRADES) and eps of Table 3, one prefix trained to the end of the
# schedule (the "baseline" row; for PGD at the profile's eps it is the shared baseline of the
# other chapters when `t3_*` equal the baseline keys), and three continuations from its
# checkpoint after epoch T, all with the prefix's seed: **pruning** the top
# {t3_prune_fraction:.0%} hardest examples (by the prefix's 0-1 loss accumulated to T), **DPLS**
# with Table 9's `lam`, and **LS** with the factor set to the DPLS run's recorded average factor
# (rounded to Table 9's three decimals), as the paper does. LS therefore waits for the DPLS run.
# The block at the profile's eps repeats all of this for each training seed of `t3_seeds`
# (a prefix per seed, the seed part of every run's spec hash); the other eps blocks train the
# profile's `seed` only.
#
# **Fig. 9** adds two runs from a prefix of the 200-epoch setup (`fig9_*`): the PGD arm and the
# PGD + DPLS arm continued from T with quintile probes (each after-branch epoch measures robust
# training accuracy of the five difficulty quintiles of the prefix's ranking at T). When the
# Fig. 9 prefix is the Table 3 PGD prefix (smoke), the Table 3 DPLS run carries the probes and
# serves as the DPLS arm (probes never change the training trajectory).

# %%
ALGS = {"pgd": "PGD", "trades": "TRADES"}


def prefix(alg: str, e: float, s: int = seed):
    ev = {"subset": t3_eval_subset or None, "final_subset": t3_final_subset or None,
          "final_pgd_steps": list(t3_final_pgd_steps)}
    probes = {"probes": ex.difficulty_probes(e, t3_probe_k, t3_probe_max)} if t3_probe_k else {}
    return ex.baseline({**P, "seed": s}, eps=e, algorithm=alg, epochs=t3_epochs, milestones=t3_milestones, T=t3_T,
                       eval=ev, **probes)


def table9_lam(alg: str) -> float:
    return float(paper_value(f"table9.{dataset}.{alg}.dpls"))


quintiles = [{"name": "quintiles", "quantiles": {"n_bins": 5}, "metrics": ["adv_acc"],
              "max_examples": fig9_probe_max or None}]
same_schedule = (fig9_epochs, list(fig9_milestones), fig9_T) == (t3_epochs, list(t3_milestones), t3_T)
fig9_prefix = None if not FIG9 else prefix("pgd", eps) if same_schedule else \
    ex.baseline(P, epochs=fig9_epochs, milestones=fig9_milestones, T=fig9_T)
FIG9_SHARED = FIG9 and fig9_prefix.hash == prefix("pgd", eps).hash

SEEDS = list(dict.fromkeys(int(x) for x in t3_seeds)) or [seed]


def seeds_for(e: float) -> list:
    """t3_seeds for the block at the profile's eps, the profile's seed for the others."""
    return SEEDS if e == eps else [seed]


t3 = {}  # (algorithm, eps, method, training seed) -> spec
for alg in t3_algorithms:
    for e in t3_eps:
        for s_ in seeds_for(e):
            b = prefix(alg, e, s_)
            probes = quintiles if (FIG9_SHARED and alg == "pgd" and e == eps and s_ == seed) else []
            t3[(alg, e, "", s_)] = b
            t3[(alg, e, "pruning", s_)] = ex.prune_fraction_from(b, t3_T, "hard", t3_prune_fraction)
            t3[(alg, e, "dpls", s_)] = ex.continuation(b, t3_T, targets={"kind": "dpls", "lam": table9_lam(alg)},
                                                       **({"probes": probes} if probes else {}))
fig9 = {}
if FIG9:
    fig9["PGD"] = ex.continuation(fig9_prefix, fig9_T, probes=quintiles)
    fig9["PGD+DPLS"] = (t3[("pgd", eps, "dpls", seed)] if FIG9_SHARED else
                        ex.continuation(fig9_prefix, fig9_T, probes=quintiles,
                                        targets={"kind": "dpls", "lam": table9_lam("pgd")}))
BASE_PROBES = {"probes": ex.difficulty_probes(eps, t3_probe_k, t3_probe_max)} if t3_probe_k else {}
print("Table 3 PGD prefix at the profile's eps is the shared baseline" + (" (with the probe sets)" if t3_probe_k else "")
      + ":", prefix("pgd", eps).hash == ex.baseline(P, **BASE_PROBES).hash)
print("Fig. 9 prefix is the Table 3 PGD prefix:", FIG9_SHARED if FIG9 else "Fig. 9 not built on this profile")
print("Table 3 training seeds:", SEEDS, "" if seed in SEEDS else f"(the profile's seed {seed} is not among them)")

t0 = time.perf_counter()
# for planners that count them (hardex gpu-check --plan): the LS runs, whose factor is known once
# DPLS finishes (stand-ins of the same cost), and the evaluate_run calls below
ls_like = [ex.continuation(t3[(alg, e, "", s_)], t3_T, targets={"kind": "ls", "lam": 0.9, "from_epoch": t3_T + 1})
           for alg in t3_algorithms for e in t3_eps for s_ in seeds_for(e)]
expect(ls_like, "LS at the DPLS run's average factor", after=[t3[(alg, e, "dpls", s_)] for alg in t3_algorithms
                                                             for e in t3_eps for s_ in seeds_for(e)])
for n_, atts in EVAL_GROUPS.items():
    expect_evaluation([*t3.values(), *ls_like], atts, n_, {"pgd20": 21, "a3": a3_passes_per_example})
stage1 = {**{("t3", *k): s for k, s in t3.items()}, **{("fig9", k): s for k, s in fig9.items()}}
R = dict(zip(stage1, ensure(list(stage1.values()), progress=False)))
avg_s = {(alg, e, s_): R[("t3", alg, e, "dpls", s_)].metrics[-1]["targets"]["avg_factor"]
         for alg in t3_algorithms for e in t3_eps for s_ in seeds_for(e)}
for (alg, e, s_), a in avg_s.items():
    t3[(alg, e, "ls", s_)] = ex.continuation(t3[(alg, e, "", s_)], t3_T,
                                             targets={"kind": "ls", "lam": round(a, 3), "from_epoch": t3_T + 1})
avg = {(alg, e): avg_s[(alg, e, seeds_for(e)[0])] for alg in t3_algorithms for e in t3_eps}  # Table 9: first seed
ls_keys = [("t3", alg, e, "ls", s_) for alg in t3_algorithms for e in t3_eps for s_ in seeds_for(e)]
R.update(zip(ls_keys, ensure([t3[k[1:]] for k in ls_keys], progress=False)))
note(f"runs ready in {time.perf_counter() - t0:.1f} s")
if profile != "smoke":  # where and when each record was made (records committed under results/ come from elsewhere)
    display(records_table(R.values()))

# %% [markdown]
# ## Robust evaluation
#
# The paper's columns are standard accuracy, PGD-20 and A3 {cite:p}`liu2022practical`. Ours are `evaluate_run`'s (cached
# per run) clean, `pgd20` and `a3` accuracy of the final model on `eval_n` test examples; with
# `eval_attacks = []` they are `final.json`'s clean and PGD-k accuracy of the final model (A3
# then stays empty, never filled with another attack's number).

# %%
def robust(rec) -> dict:
    """Accuracies (fractions) and, from evaluate_run, the per-example outcomes ("bits"); std
    (clean) from the largest evaluated sample; "n" the verdicts' sample."""
    if HAVE_EVAL:
        res = {n_: evaluate_run(rec, attacks=tuple(atts), n=n_ or None, seed=0, which="final")
               for n_, atts in EVAL_GROUPS.items()}
        by_attack = {a: res[n_] for n_, atts in EVAL_GROUPS.items() for a in atts}
        big = max(res.values(), key=lambda r: r["n"])
        col = {"pgd": "pgd20", "a3": "a3"}
        acc = {c: by_attack[a]["robust_acc"][a] if a in by_attack else None for c, a in col.items()}
        bits = {c: by_attack[a]["per_example"][a] if a in by_attack else None for c, a in col.items()}
        return {"std": big["clean_acc"], **acc, "n": by_attack[VERDICT_ATTACK]["n"],
                "bits": {"std": big["per_example"]["clean"], **bits}}
    f = rec.final["final"]
    return {"std": f["clean_acc"], "pgd": f[f"pgd{K}_acc"], "a3": None, "n": t3_final_subset or 10000, "bits": None}


PGD_LABEL = "PGD-20 (evaluate_run)" if HAVE_EVAL else f"PGD-{K} (final.json)"
ROB_KEY = "a3" if HAVE_EVAL and VERDICT_ATTACK == "a3" else "pgd"
ROB_LABEL = "A3" if ROB_KEY == "a3" else PGD_LABEL
per_seed = {k[1:]: robust(rec) for k, rec in R.items() if k[0] == "t3"}  # (alg, eps, method, seed)
# the tables show the mean over the seeds; the verdicts use every seed's outcomes
ours = {(alg, e, m): {c: (None if any(per_seed[(alg, e, m, s_)][c] is None for s_ in seeds_for(e)) else
                          float(np.mean([per_seed[(alg, e, m, s_)][c] for s_ in seeds_for(e)])))
                      for c in ("std", "pgd", "a3")}
        for (alg, e, m, _s) in per_seed}
HAVE_A3 = HAVE_EVAL and "a3" in eval_attacks
print(f"robust columns: pgd = {PGD_LABEL}; a3 = {'A3 (evaluate_run)' if HAVE_A3 else 'not evaluated'}; "
      f"verdicts use {ROB_LABEL}")

# %% [markdown]
# ## Table 3 (with Table 9's factors)
#
# One block per (dataset, eps); rows are the paper's: the algorithm, + pruning, + LS, + DPLS.
# `diff` = ours - paper in points. Our runs are the profile's model and schedule, not the paper's
# WRN-28-10 unless the profile is `paper`: compare the *differences between rows*.

# %%
# NBVAL_CHECK_OUTPUT
METHODS = {"": "", "pruning": "_pruning", "ls": "_ls", "dpls": "_dpls"}
RENAME = {"pgd": f"pgd (paper: PGD-20, ours: {PGD_LABEL})", "a3": "a3 (paper: A3, ours: " +
          ("A3)" if HAVE_A3 else "not evaluated)")}
blocks = {}
for e in t3_eps:
    key = f"{dataset}_eps{round(e * 255)}"
    rows_o, rows_p = {}, {}
    for alg in t3_algorithms:
        for m, suffix in METHODS.items():
            rows_o[alg + suffix] = ours[(alg, e, m)]
            rows_p[alg + suffix] = paper_value(f"table3.{key}.{alg}{suffix}")
    tab = compare(rows_o, rows_p, metrics=["std", "pgd", "a3"])
    blocks[key] = tab
    seeds_note = f"; ours: mean of {len(seeds_for(e))} training seeds" if len(seeds_for(e)) > 1 else ""
    led.table(f"Table 3 ({key})", tab, note=f"ours: {profile} profile, {DATA_LABEL}; pgd: {PGD_LABEL}"
              + (f"; mean of {len(seeds_for(e))} seeds" if len(seeds_for(e)) > 1 else ""))
    display(captioned(tab.rename(columns=RENAME, level=0),
                      f"Table 3, {DATA_LABEL}, {label_eps(e)}: the paper and ours (profile {profile}{SMOKE_TAG}"
                      f"{seeds_note}); accuracy in %, diff = ours - paper in points", f"table-3-{key}"))

# %% [markdown]
# Ours per cell with its 95% interval (points): the mean over the training seeds, the
# interval from a bootstrap over the test examples with one seed, and with several the
# seed-level t-interval (the seeds' spread with k - 1 degrees of freedom, the test set they share
# in quadrature), from `evaluate_run`'s per-example outcomes.

# %%
def cell_ci(alg: str, e: float, m: str, col: str) -> str:
    bits = [per_seed[(alg, e, m, s_)]["bits"] for s_ in seeds_for(e)]
    if any(b is None or b[col] is None for b in bits):
        return "-"
    c = led.stats.accuracy([b[col] for b in bits] if len(bits) > 1 else bits[0][col])
    return f"{c.effect:.2f} [{c.lo:.2f}, {c.hi:.2f}]"


if HAVE_EVAL:
    for e in t3_eps:
        ci = pd.DataFrame({alg + sfx: {c: cell_ci(alg, e, m, c) for c in ("std", "pgd", "a3")}
                           for alg in t3_algorithms for m, sfx in METHODS.items()}).T
        n_ex = ", ".join(f"{'/'.join(atts)} on {n_ or 10000}" for n_, atts in EVAL_GROUPS.items())
        print(f"Table 3, {label_eps(e)}: ours, mean [95% CI] over test examples ({n_ex}) x {len(seeds_for(e))} "
              f"seed(s){SMOKE_TAG}")
        display(ci)
else:
    print("per-cell intervals need evaluate_run's per-example outcomes (eval_attacks is empty on this profile)")

# %%
# NBVAL_CHECK_OUTPUT
t9_o = {alg: {"dpls lam": table9_lam(alg), "dpls avg": avg[(alg, eps)], "ls": round(avg[(alg, eps)], 3)}
        for alg in t3_algorithms if (alg, eps) in avg}
t9_p = {alg: {"dpls lam": paper_value(f"table9.{dataset}.{alg}.dpls"),
              "dpls avg": paper_value(f"table9.{dataset}.{alg}.dpls_avg"),
              "ls": paper_value(f"table9.{dataset}.{alg}.ls")} for alg in t3_algorithms}
t9 = compare(t9_o, t9_p, metrics=["dpls lam", "dpls avg", "ls"], scale=1.0)
led.table("Table 9", t9, note=f"{label_eps(eps)}; ours: factor of the hardest example, average over the training set")
display(captioned(t9, f"Table 9, {DATA_LABEL}, {label_eps(eps)}: the DPLS factor, the average DPLS factor and the LS "
                     f"factor, the paper and ours{SMOKE_TAG}; diff = ours - paper", "table-9", precision=3, scale=0.1))

# %% [markdown]
# The paper tuned `lam` so that the average DPLS factor lands between 0.8 and 0.9 on 10-class
# data; its LS rows then use that average rounded (0.9 for 0.897). Ours uses Table 9's `lam`
# and the average our DPLS run actually recorded; the average depends on the spread of the
# difficulty distribution, so it can differ from the paper's on a different model or schedule.

# %%
def pts(x: float) -> str:
    return f"{100 * x:.2f}"


def t3_claim(where: str, text: str, alg: str, e: float, a: str, b: str, ev: str, margin: float | None = None) -> str:
    """acc(method a) - acc(method b) on ROB_KEY over every seed: paired per-example outcomes
    (the seed-level t-interval over seeds, with the shared test set) from evaluate_run, else
    final.json's aggregate accuracies (unpaired binomial / t over seeds); ``margin``: an equivalence claim."""
    ks = seeds_for(e)
    ra, rb = ([per_seed[(alg, e, m, s_)] for s_ in ks] for m in (a, b))
    if all(r["bits"] is not None and r["bits"][ROB_KEY] is not None for r in ra + rb):
        xa, xb = [r["bits"][ROB_KEY] for r in ra], [r["bits"][ROB_KEY] for r in rb]
        xa, xb = (xa, xb) if len(ks) > 1 else (xa[0], xb[0])
        if margin is not None:
            return led.equivalent(where, text, xa, xb, margin, evidence=ev)
        return led.compare(where, text, xa, xb, evidence=ev)
    acc_a, acc_b = [r[ROB_KEY] for r in ra], [r[ROB_KEY] for r in rb]
    return led.unpaired(where, text, acc_a, ra[0]["n"], acc_b, rb[0]["n"], margin=margin, evidence=ev)


for e in t3_eps:
    for alg in t3_algorithms:
        r = {m: ours[(alg, e, m)][ROB_KEY] for m in METHODS}
        A, where = ALGS[alg], f"Table 3 ({dataset}, {label_eps(e)})"
        ev = (f"{ROB_LABEL}" + (f", mean of {len(seeds_for(e))} seeds" if len(seeds_for(e)) > 1 else "")
              + f": {A} {pts(r[''])}, +pruning {pts(r['pruning'])}, +LS {pts(r['ls'])}, +DPLS {pts(r['dpls'])}")
        t3_claim(where, f"{A}+DPLS has higher robust accuracy than {A}", alg, e, "dpls", "", ev)
        t3_claim(where, f"{A}+DPLS has higher robust accuracy than {A}+LS with the same average factor",
                 alg, e, "dpls", "ls", ev)
        t3_claim(where, f"{A}+DPLS has higher robust accuracy than {A}+pruning the top 10% hard", alg, e, "dpls",
                 "pruning", ev)
        t3_claim(where, f"{A}+LS (uniform, DPLS's average factor) shows no robustness improvement over {A} "
                 f"(here: equivalent within ±{LS_MARGIN:g} point(s), TOST)", alg, e, "ls", "", ev, margin=LS_MARGIN)
        _ = t3_claim(where, f"{A}+pruning the top 10% hard raises robust accuracy over {A}", alg, e, "pruning", "", ev)

# %% [markdown]
# ### Blocks not run here
#
# CIFAR-100 {cite:p}`krizhevsky2009learning`, SVHN {cite:p}`netzer2011reading` and STL-10 {cite:p}`coates2011analysis` (64x64) are not available on this offline machine (only a JPEG
# copy of CIFAR-10 is; see the data README), so their blocks are **not run**: the paper's
# numbers are shown alone and no other data stands in for them. The code path is the same with
# `dataset` set to `cifar100`, `svhn` (lr 0.01 in the paper) or `stl10`. Blocks of CIFAR-10 eps
# not in `t3_eps` on this profile are listed the same way.

# %%
# NBVAL_CHECK_OUTPUT
run_keys = set(blocks)
missing = [k for k in paper_value("table3") if k not in run_keys]
for key in missing:
    rows_p = paper_value(f"table3.{key}")
    tab = compare({}, rows_p, metrics=["std", "pgd", "a3"])
    why = ("dataset not available offline" if not key.startswith("cifar10_") else f"eps not in this profile's t3_eps")
    led.table(f"Table 3 ({key})", tab, note=f"not run: {why}")
    for alg in ("pgd", "trades"):
        led.claim(f"Table 3 ({key})", f"{ALGS[alg]}+DPLS has higher robust accuracy than {ALGS[alg]}, "
                  f"{ALGS[alg]}+LS and {ALGS[alg]}+pruning", None, f"not run: {why}")
    print(f"Table 3 ({key}): not run ({why}); the paper's numbers:")
    display(tab.xs("paper", axis=1, level=1))

# %% [markdown]
# ## Fig. 9: train and test robust accuracy, and the difficulty quintiles
#
# Left: robust training accuracy (on the training attack's adversarial examples, augmented
# batches, as training sees them) and per-epoch test robust accuracy (PGD-{eval_pgd_steps} on the
# per-epoch test sample) of PGD and PGD + DPLS; epochs up to T are the shared prefix. Right:
# after the branch, robust training accuracy of each difficulty quintile of the prefix's ranking
# at T ("0~20%" = the hardest fifth, as in the paper). The paper: DPLS lowers training accuracy
# (above all of the hardest quintile) while raising test accuracy.

# %%
BINS = ["80~100%", "60~80%", "40~60%", "20~40%", "0~20%"]  # easiest quintile first, as the probes report


def fig9_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, qrows = [], []
    for arm, key in (("PGD", ("fig9", "PGD")), ("PGD+DPLS", ("fig9", "PGD+DPLS"))):
        for m in R[key].metrics:  # a continuation's record starts with its prefix's epochs 1..T
            rows.append({"model": arm, "epoch": m["epoch"], "split": "train", "robust accuracy": m["train_adv_acc"]})
            if m.get("test_pgd_acc") is not None:
                rows.append({"model": arm, "epoch": m["epoch"], "split": "test", "robust accuracy": m["test_pgd_acc"]})
        for m in R[key].metrics[fig9_T:]:
            for b, res in zip(BINS, m["probes"]["quintiles"]):
                qrows.append({"model": arm, "epoch": m["epoch"], "quintile": b, "robust train accuracy": res["adv_acc"]})
    f9 = pd.DataFrame(rows)
    f9["curve"] = f9.model + " (" + f9.split + ")"
    return f9, pd.DataFrame(qrows)


if FIG9:
    f9, q9 = fig9_frames()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    sns.lineplot(data=f9, x="epoch", y="robust accuracy", hue="curve",
                 hue_order=["PGD (train)", "PGD (test)", "PGD+DPLS (train)", "PGD+DPLS (test)"], ax=axes[0])
    axes[0].set(xlabel="Epoch", ylabel="Robust Accuracy")
    sns.lineplot(data=q9, x="epoch", y="robust train accuracy", hue="quintile", hue_order=BINS[::-1], style="model",
                 style_order=["PGD", "PGD+DPLS"], ax=axes[1])
    axes[1].set(xlabel="Epoch", ylabel="Robust Accuracy")
    for ax in axes:
        ax.axvline(fig9_T + 0.5, color="grey", lw=0.8)
    fig.suptitle(f"Fig. 9 ({DATA_LABEL}, {profile}{SMOKE_TAG}; {fig9_epochs} epochs, DPLS from epoch {fig9_T + 1})")
    plt.tight_layout()
    glue_figure("fig9", fig)
else:
    glue_not_run("fig9", f"Fig. 9: not run on profile {profile} (fig9_epochs = 0)")

# %% [markdown]
# ```{glue:figure} fig9
# :name: dpls-fig-9
#
# Fig. 9 of the paper, ours: robust accuracy (left: training, on the training attack's
# adversarial examples; test, PGD on the per-epoch test sample) of PGD-AT and PGD-AT + DPLS,
# and (right) robust training accuracy per difficulty quintile after the branch at epoch T.
# The profile, data and schedule are in the figure's title.
# ```

# %%
# NBVAL_CHECK_OUTPUT
FIG9_CLAIMS = ("DPLS lowers robust training accuracy and raises test robust accuracy (a smaller gap)",
               "DPLS prevents the memorization of the hardest examples: lower robust training accuracy "
               "on the hardest quintile (0~20%)")


def fig9_tables_and_claims() -> None:
    last = f9.epoch.max()
    fig9_tab = f9[f9.epoch == last].pivot_table(index="model", columns="split", values="robust accuracy")
    fig9_tab["train - test"] = fig9_tab["train"] - fig9_tab["test"]
    qt = q9[q9.epoch == last].pivot_table(index="model", columns="quintile", values="robust train accuracy")[BINS[::-1]]
    print(f"Fig. 9 at the last epoch ({last}): robust accuracy (test: PGD-{eval_pgd_steps} on the per-epoch sample){SMOKE_TAG}")
    display(fig9_tab)
    print(f"Fig. 9 (right) at the last epoch: robust training accuracy per difficulty quintile{SMOKE_TAG}")
    display(qt)
    tr, te = fig9_tab["train"], fig9_tab["test"]
    # aggregate accuracies only (the records keep no per-example outcomes of these curves): unpaired
    # binomial intervals; train accuracy counts every training example of the epoch's batches
    n_train, n_test = train_subset or 50000, eval_subset or 10000
    n_quint = fig9_probe_max or n_train // 5
    st = led.stats
    led.record("Fig. 9", FIG9_CLAIMS[0],
               st.combine([st.unpaired(tr["PGD+DPLS"], n_train, tr["PGD"], n_train, "<"),
                           st.unpaired(te["PGD+DPLS"], n_test, te["PGD"], n_test, ">")]),
               f"last epoch train: PGD {pts(tr['PGD'])}, DPLS {pts(tr['PGD+DPLS'])}; test (n {n_test}): PGD {pts(te['PGD'])}, "
               f"DPLS {pts(te['PGD+DPLS'])}")
    led.unpaired("Fig. 9", FIG9_CLAIMS[1], qt.loc["PGD+DPLS", "0~20%"], n_quint, qt.loc["PGD", "0~20%"],
                 n_quint, "<", evidence=f"0~20% (n {n_quint}): PGD {pts(qt.loc['PGD', '0~20%'])}, "
                 f"DPLS {pts(qt.loc['PGD+DPLS', '0~20%'])}")


if FIG9:
    fig9_tables_and_claims()
else:
    print(f"Fig. 9: not run on profile {profile} (fig9_epochs = 0)")
    for c in FIG9_CLAIMS:
        led.claim("Fig. 9", c, None, f"not run on profile {profile} (fig9_epochs = 0)")

# %% [markdown]
# ## Runs and cost

# %%
# NBVAL_CHECK_OUTPUT
cells = [*t3.values(), *fig9.values()]
distinct, naive = ex.count_runs(cells)
print(f"distinct training runs: {distinct} (a naive one-run-per-cell approach: {naive})")

# %% [markdown]
# The GPU-hour estimate counts, per distinct run, the epochs it trains itself times a stated
# per-epoch time (scaled by the share of the training set it sees), plus evaluation converted
# at the same rate per forward+backward pass (a PGD-k training epoch is 50,000 x (k + 1) passes):
# the per-epoch test evaluation, the probes, `final.json`'s PGD on the final and best models, and
# `evaluate_run`'s attacks (A3 at a stated number of passes per example).

# %%
def run_minutes(spec, with_eval_run: bool) -> float:
    c = spec.train
    per_epoch = minutes_per_trades_epoch if c.algorithm == "trades" else minutes_per_pgd_epoch
    per_pass = minutes_per_pgd_epoch / (50000 * (c.attack.steps + 1))
    n_ep = ex.epochs_trained(spec)
    passes = n_ep * (c.eval.subset or 10000) * (c.eval.pgd_steps + 1) if c.eval.every else 0
    for p in c.probes:
        n = p.max_examples or 50000 // (p.quantiles.n_bins if p.quantiles else 1)
        passes += n_ep * (p.quantiles.n_bins if p.quantiles else 1) * n * (c.attack.steps + 1)
    passes += len(spec.evaluation.which) * (c.eval.final_subset or 10000) * sum(k + 1 for k in c.eval.final_pgd_steps)
    if with_eval_run and HAVE_EVAL:
        per_attack = {"pgd20": 21, "a3": a3_passes_per_example}
        passes += sum((attack_n(a) or 10000) * per_attack.get(a, 0) for a in eval_attacks)
    return n_ep * per_epoch * ex.training_fraction(spec) + passes * per_pass


def hours(specs, evaluated) -> float:
    return sum(run_minutes(s, s.hash in evaluated) for s in ex.distinct_runs(specs)) / 60


if not SMOKE:
    evaluated = {s.hash for s in t3.values()}
    block = [t3[(alg, eps, m, s_)] for alg in t3_algorithms for m in METHODS for s_ in seeds_for(eps)]
    h_block, h_all = hours(block, evaluated), hours(cells, evaluated)
    display(Markdown(
        f"**Table 3, {DATA_LABEL} {label_eps(eps)} block** ({', '.join(ALGS[a] for a in t3_algorithms)}; four methods "
        f"each, {len(seeds_for(eps))} training seed(s), {len(ex.distinct_runs(block))} runs): about **{h_block:.2f} GPU-hours** "
        f"({60 * h_block:.0f} min). **Whole chapter**: about **{h_all:.1f} GPU-hours**. From stated (not measured) "
        f"estimates: {minutes_per_pgd_epoch} min per PGD-{attack_steps} epoch and {minutes_per_trades_epoch} min per "
        f"TRADES epoch (`{model}`, 50k images), A3 {a3_passes_per_example} passes per example"
        + ("" if HAVE_EVAL else " (not counted: `eval_attacks` is empty, so no A3 runs)") + "."))
else:
    display(Markdown(("Smoke profile" if profile == "smoke" else "CPU rehearsal") + ": CPU, no GPU-hour estimate."))

# %% [markdown]
# ## Verdicts
#
# Robust accuracy in the verdicts: A3 when `evaluate_run` provides it, else PGD (labelled in each
# row's evidence). Each verdict comes from a 95% interval of the effect (points, `hardex.paper.stats`):
# **holds** when it lies entirely on the claimed side of zero, **does not hold** when entirely on
# the other side, **inconclusive** when it contains zero; the LS claim is an equivalence test
# (TOST, 90% interval within ±`LS_MARGIN`). With several training seeds the interval is the
# seed-level t-interval (`hardex.paper.stats.seed_interval`; its calibration with 2-5 seeds is in
# the appendix). The smoke profile computes the intervals and draws no verdict.

# %%
if SMOKE:
    print(("smoke profile" if profile == "smoke" else "CPU rehearsal") + ": plumbing only, no verdict (claims are "
          "recorded as 'no verdict (smoke)')")
with pd.option_context("display.max_colwidth", 200):
    display(led.verdicts())
print("ledger:", Path(led.save()).name)


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
