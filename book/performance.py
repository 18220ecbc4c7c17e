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
# # Performance
#
# How fast hardex trains adversarially, measured by `hardex bench`: in one process on one
# device it times **(a)** a reference-style loop (fp32, a CPU `DataLoader` with torchvision
# transforms, PGD with a full `backward()` as locuslab/robust_overfitting does {cite:p}`rice2020overfitting`,
# TRADES as yaodongyu/TRADES' `trades.py` {cite:p}`zhang2019theoretically`) and **(b)** hardex's own `Trainer` (data resident on the
# device, device-side augmentation, input-only attack gradients, bf16 autocast, channels_last /
# `torch.compile` where enabled), at batch 128, and reports seconds per 50,000-image epoch
# (extrapolated from steady-state steps), images/s, the speed-up b/a, achieved TFLOP/s from
# counted FLOPs and its fraction of a bf16 matmul peak measured in the same run, peak GPU memory,
# the overhead of difficulty tracking and evaluation throughput. Timing data are random uint8
# images (a fixed seed): the speed of a step does not depend on the pixels.

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% [markdown]
# ## How this chapter is built
#
# This page renders the reports committed under `results/bench/`; it trains nothing. A GPU
# report (estimated at about 5 minutes on one H100; not yet measured) is produced and
# committed with
#
# ```bash
# .venv/bin/hardex bench --device cuda --models preact_resnet18 wrn28_10 --algorithms pgd trades \
#     --steps 30 --warmup 10 --repeats 2 --batch-size 128 --out results/bench/h100-$(date +%F).json
# ```
#
# and again with `--compile` (and `--compile-mode reduce-overhead`, which adds CUDA graphs) to
# see what compilation buys. The book's fast and paper profiles train on this path
# (`precision: bf16`, `channels_last: true`); the evaluation chapter checks, on the trained
# models, that the bf16 training-time attack is not weaker than the fp32 one and that the
# bf16-trained models show no gradient masking under fp32 attacks.

# %% tags=["parameters"]
# profile: the parameter files params/<profile>/ (performance.yaml: the folders it reads); build: how `hardex book` runs the
# chapter (hardex.book.context; {} = train here); overrides: any parameter, nested as in the files,
# e.g. papermill -p profile fast -y "overrides: {reports: {max_bench: 8}}"
profile = "smoke"
build = {}
overrides = {}

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from hardex.tools import bench
from hardex.book.chapter import finish, setup

pd.set_option("display.precision", 2)
P, _, _, _, led, book = setup(globals(), "performance", data="synthetic uint8 images (timing only)")
# the committed reports, relative to the project root (the build's working directory)
reports_dir, max_reports, checks_dir = P.reports.bench_dir, P.reports.max_bench, P.reports.checks_dir

reports = bench.latest_reports(Path(reports_dir).resolve())  # hardex book runs chapters in the project root
gpu = [r for r in reports if r["environment"]["device"].startswith("cuda")]
cpu = [r for r in reports if not r["environment"]["device"].startswith("cuda")]
shown = (gpu + cpu)[:max_reports]
if not gpu:
    display(Markdown(
        "**No GPU report committed yet.** "
        + (f"The only report{'s' if len(cpu) > 1 else ''} below {'are' if len(cpu) > 1 else 'is'} "
           "a CPU `--quick` run: a plumbing check of the benchmark on a tiny CNN at batch 16, "
           "**not** a speed result; none of the targets can be judged from it."
           if cpu else "There is no report at all under `" + reports_dir + "`.")))

# %% [markdown]
# ## The reports

# %%
def describe(r: dict) -> str:
    e, s = r["environment"], r["settings"]
    opts = (f"precision {s['precision']}, channels_last {s['channels_last']}, compile {s['compile']}"
            + (f" ({s['compile_mode']})" if s.get("compile_mode") else ""))
    return (f"**{r['label']}** — {e['device_name']} ({e['device']}), torch {e['torch']}, CUDA {e['cuda']}, "
            f"cuDNN {e['cudnn']}; hardex {str(r['hardex_commit'])[:10]}{' (dirty tree)' if r['git_dirty'] else ''}, "
            f"{r['created']}; `{r['_path']}`. hardex path: {opts}; {s['steps']} timed steps x {s['repeats']} "
            f"repeats after {s['warmup']} warm-up steps, batch {s['batch_size']}. Matmul peak measured in the run: "
            f"{r['peak']['tflops']:.3g} TFLOP/s ({r['peak']['dtype']}, n={r['peak']['n']}). Host syncs inside "
            f"one PGD call: {r['checks']['pgd_host_syncs']}; CUDA sync guard: {r['checks']['cuda_sync_guard']}.")


for r in shown:
    display(Markdown(describe(r)))
    display(bench.table(r).style.format(precision=2, na_rep="-").hide(axis="index"))
    ev = pd.DataFrame([{
        "model": e["model"],
        "PGD-20 images/s": e["pgd20"]["images_per_s"],
        "AutoAttack images/s": e["autoattack"]["images_per_s"],
        "AutoAttack run": (f"{e['autoattack']['version']}: {e['autoattack']['attacks']}"
                           + (f", {e['autoattack']['n_iter']} APGD iterations" if e["autoattack"]["n_iter"] else "")),
        "AA n": e["autoattack"]["n"],
    } for e in r["eval"]])
    if len(ev):
        display(Markdown("Evaluation throughput (fp32, TF32 off). AutoAttack: labels = the model's own "
                         "predictions and eps 1e-4, so no point is broken early: the cost per robust image."))
        display(ev.style.format(precision=2).hide(axis="index"))

# %% [markdown]
# ## GPU checks: the quick profile's estimate against its actual time
#
# Each `hardex gpu-check` (``make gpu-check``, ten minutes on one GPU) sizes the quick profile
# before it trains: its planning pass counts the runs and epochs, and its own short bench (or,
# without one, the profile's stated per-epoch times) turns them into minutes. After the runs it
# records what they took: the trained epochs' wall time (per-epoch evaluation and probes
# included), `evaluate_run`'s attacks, and the whole step. The committed summaries
# (`results/gpu-check/`) are shown here, newest first.

# %%
summaries = []
for f in sorted(Path(checks_dir).glob("*.json")) if Path(checks_dir).is_dir() else []:
    try:
        summaries.append({**json.loads(f.read_text()), "_path": f"{checks_dir}/{f.name}"})
    except ValueError:
        continue
summaries.sort(key=lambda s: str(s.get("environment", {}).get("date", "")), reverse=True)
if not summaries:
    display(Markdown("**No `hardex gpu-check` summary committed yet**: no GPU has run the quick profile. "
                     "`make gpu-check OUT=<folder>` on a GPU, then `hardex gpu-check --import <folder>`."))
for s in summaries[:max_reports]:
    e = s.get("environment", {})
    where = (f"{e.get('gpu')} (driver {e.get('driver')})" if e.get("gpu") else f"CPU {e.get('cpu')}")
    display(Markdown(f"**{s.get('label', 'gpu-check')}** — {where}, torch {e.get('torch')}, CUDA {e.get('cuda')}, "
                     f"cuDNN {e.get('cudnn')}, Python {e.get('python')}; commit {str(e.get('commit'))[:12]}"
                     f"{' (dirty tree)' if str(e.get('commit')).endswith('-dirty') else ''}, "
                     f"{e.get('date')}; deadline {s.get('deadline_minutes')} min, wall {s.get('wall_s')} s; "
                     f"`{s['_path']}`."))
    steps = pd.DataFrame([{"step": k, "status": v.get("status"), "seconds": v.get("seconds")}
                          for k, v in s.get("steps", {}).items()])
    if len(steps):
        display(steps.style.format(precision=0).hide(axis="index"))
    ea = s.get("estimate_vs_actual")
    if ea:
        display(pd.DataFrame([{
            "estimated (min)": ea["estimate_s"] / 60, "of it training": ea["estimate_train_s"] / 60,
            "of it evaluation": ea["estimate_eval_s"] / 60,
            "actual: trained epochs (min)": ea["actual_train_s"] / 60,
            "actual: evaluate_run (min)": ea["actual_eval_run_s"] / 60,
            "actual: quick step wall (min)": (ea.get("quick_step_wall_s") or float("nan")) / 60,
        }]).style.format(precision=2).hide(axis="index"))
        display(Markdown(f"Training estimate {'; '.join(ea['estimate_source'])}; evaluation estimate from "
                         f"{ea['eval_source']}."))

# %% [markdown]
# ## Against the targets, the paper and the reference code
#
# Targets are those of the speed issue (H100, batch 128). The paper's timing is its appendix's
# 47 hours for 200 epochs of PGD-AT with WRN-28-10 on one RTX 8000; the other anchors are
# reference code's logs (`hardex.tools.bench.ANCHORS`, with their sources). Different GPUs: these
# columns place our numbers, they are not like-for-like comparisons.

# %%
latest = gpu[0] if gpu else None


def measured(model: str, algorithm: str, key: str):
    if latest is None:
        return np.nan
    for r in latest["results"]:
        if r["model"] == model and r["algorithm"] == algorithm:
            return r["hardex"]["tracking"][key] if key != "speedup" else r["speedup"]
    return np.nan


rows = []
for key, t in bench.TARGETS.items():
    if "/" not in key:
        continue
    model, algorithm = key.split("/")
    ours = measured(model, algorithm, "s_per_epoch")
    speed = measured(model, algorithm, "speedup")
    rows.append({"model": model, "algorithm": algorithm, "target s/epoch": t["s_per_epoch"],
                 "stretch s/epoch": t["stretch_s_per_epoch"], "target speed-up": t.get("min_speedup", np.nan),
                 "ours s/epoch (GPU)": ours, "ours speed-up": speed,
                 "target met": None if np.isnan(ours) else bool(ours <= t["s_per_epoch"]
                                                                and speed >= t.get("min_speedup", 0))})
targets = pd.DataFrame(rows)
over = [r["tracking_overhead"] for r in latest["results"]] if latest else []
display(targets.style.format(precision=1, na_rep="no GPU report").hide(axis="index"))
display(Markdown(
    f"Difficulty tracking overhead target: <= {100 * bench.TARGETS['tracking']['max_overhead']:.0f}% of the epoch; "
    + (f"measured on the GPU: {', '.join(f'{100 * o:.1f}%' for o in over)}." if over else "no GPU report yet.")))

anchors = pd.DataFrame(
    [{"setup": v["source"], "model": v["model"], "algorithm": v["algorithm"], "s/epoch": v["s_per_epoch"]}
     for v in bench.ANCHORS.values()])
display(anchors.style.format(precision=0).hide(axis="index"))

# %%
paper = (shown[0] if shown else {"paper_timings": bench._paper_timings()})["paper_timings"]["wrn28_10/pgd"]
ours_wrn = measured("wrn28_10", "pgd", "s_per_epoch")
timing = pd.DataFrame(
    {("s/epoch", "paper"): [paper["s_per_epoch"]], ("s/epoch", "ours"): [ours_wrn],
     ("s/epoch", "diff"): [ours_wrn - paper["s_per_epoch"]]},
    index=["WRN-28-10, PGD-AT-10, CIFAR-10 (paper: RTX 8000; ours: " + (
        latest["environment"]["device_name"] if latest else "no GPU report") + ")"])
timing.columns = pd.MultiIndex.from_tuples(timing.columns)
display(led.table("App. (training time)", timing, note=paper["source"]))

# %%
display(led.verdicts())
_ = led.save()


# %% tags=["remove-input"]
finish(led)  # the verdicts at a glance (pasted under the title) and the build details
