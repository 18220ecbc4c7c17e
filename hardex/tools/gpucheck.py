"""`hardex gpu-check` (``make gpu-check OUT=<folder>``): the one command to run when a GPU is at hand.

In at most ten minutes on one GPU, from a fresh checkout, under one hard deadline
(``--deadline-minutes``, default 9; after it every step stops cleanly and what finished is
kept), with a progress line for each step:

(a) **environment**: GPU, driver, torch, CUDA, cuDNN, Python, the code's commit;
(b) **cuda tests**: ``pytest -m cuda`` (``tests/test_cuda.py`` and the CUDA tests of
    ``tests/test_fastpath.py``): the fast path against fp32 on the device, a bf16 PGD not
    weaker than fp32 on a trained model, resume on the GPU, no host sync in the attack loop;
(c) **bench**: a short `hardex bench` (PreActResNet-18, PGD-AT-10 and TRADES-10 against the
    reference-style loop, a minute or two), whose per-epoch times then size the next step;
(d) **quick**: the quick profile's runs and evaluations: the chapters of
    :data:`QUICK_CHAPTERS` executed in plain Python (:mod:`hardex.book.execute`, no Jupyter), so
    the runs, hashes and cached evaluations are exactly the book's. First a planning pass
    prints each chapter's runs, epochs and estimated minutes (from this bench, else the
    profile's stated per-epoch times, labelled), then the runs train, with progress lines;
(e) **export**: everything a GPU session brings back, in at most 8 files directly under OUT
    (no subfolders; each file under 16 MB, checked):

    ``gpu-check.log``     every progress line
    ``summary.json``      environment, each step's status and time, the plan's estimate against
                          the actual times, the chapters' verdicts, the records exported
    ``pytest-cuda.log``   the CUDA tests' output
    ``bench.json``        the `hardex bench` report
    ``chapters.log``      the chapters' own output (tables, verdicts)
    ``records.tar.gz``    compact run records (no checkpoints), ``<hash>/...``, for results/

``hardex gpu-check --import OUT`` puts them where the book reads them: the records under
``results/`` (each validated), the bench report under ``results/bench/``, the summary under
``results/gpu-check/``; then commit them. Records that are already in ``results/`` are not
trained again (remove them to measure again).

On a CUDA machine whose Python has torch, torchvision, numpy, pandas, scipy, pyyaml, tqdm and
pytest, the rest comes from local wheels (:mod:`hardex.tools.wheels`: ``make gpu-wheels`` on a
machine with pip, then on the GPU machine ``make gpu-check`` installs the missing ones with
``pip --no-index``). The book's rendering stack (jupyter-book, papermill) is not needed.

``--device cpu`` with ``--stand-in tests/quick_structure.yaml`` is the CPU rehearsal
(``make gpu-check DEVICE=cpu``): the same script on a tiny stand-in of the quick profile
(every key and list kept, sizes shrunk), then, with ``--render``, the render-only book built
from the exported records alone (:mod:`hardex.book.render`), so that the first GPU run does not
meet its own code for the first time. Its numbers mean nothing.

``--plan`` prints the planning pass's runs, epochs and estimated minutes and stops.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardex.paths import repo_root
from hardex.book.context import Context
from hardex.runs.progress import duration
from hardex.provenance import git_commit

QUICK_CHAPTERS = ("dpls", "hard_examples")  # what params/quick runs, in training order: Table 3 first
PROFILE = "quick"
DEFAULT_DEADLINE_MIN = 9.0
EXPORT_RESERVE_S = 25.0  # kept free before the deadline for the export
INTERRUPT_GRACE_S = 30.0  # after SIGTERM a step has this long to stop cleanly, then it is killed
MAX_FILE_BYTES = 16 * 1024 * 1024  # a GPU session brings back files up to 16 MiB
MAX_FILES = 8


# --------------------------------------------------------------------------------------
# environment


def driver_version() -> str | None:
    """The NVIDIA driver's version: nvidia-smi, else NVML (nvidia-ml-py), else None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 - NVML missing or no driver
        return None


def environment(device: str) -> dict[str, Any]:
    """What the records of this check were made with."""
    import torch

    env: dict[str, Any] = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                           "python": platform.python_version(), "host": platform.node(),
                           "commit": git_commit(repo_root()), "date": _dt.datetime.now(_dt.timezone.utc)
                           .isoformat(timespec="seconds")}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   capability=f"{p.major}.{p.minor}", driver=driver_version())
    else:
        env.update(gpu=None, cpu=platform.processor() or platform.machine(), cores=os.cpu_count())
    return env


def environment_line(env: dict[str, Any]) -> str:
    if env.get("gpu"):
        return (f"GPU {env['gpu']} ({env['gpu_memory_gib']} GiB, sm {env['capability']}), driver {env['driver']}, "
                f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python {env['python']}, "
                f"commit {(env['commit'] or 'unknown')[:12]}")
    return (f"no GPU: CPU {env.get('cpu')} ({env.get('cores')} cores), torch {env['torch']}, CUDA build "
            f"{env['cuda']}, cuDNN {env['cudnn']}, Python {env['python']}, commit {(env['commit'] or 'unknown')[:12]}")


# --------------------------------------------------------------------------------------
# the check's state: deadline, log, summary


@dataclass
class Check:
    out: Path
    work: Path  # run store, ledgers, the stand-in project (kept between checks: a second one resumes)
    root: Path  # the project whose book/ and params/ run (the checkout, or the stand-in's copy)
    device: str
    deadline: float  # time.time() after which every step stops
    stand_in: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.time)

    @property
    def runs(self) -> Path:
        return self.work / "runs"

    @property
    def ledgers(self) -> Path:
        return self.work / "ledger"

    def left(self) -> float:
        return self.deadline - time.time()

    def log(self, text: str) -> None:
        line = f"[gpu-check {time.time() - self.t0:5.0f} s] {text}"
        print(line, flush=True)
        with open(self.out / "gpu-check.log", "a") as f:
            f.write(line + "\n")

    def context(self) -> Context:
        """How the chapters run: this check's run store and ledgers, the CPU for the rehearsal
        (whose ledgers draw no verdict), the project copy's parameters."""
        return Context(rehearsal=self.stand_in, ledger_dir=str(self.ledgers), runs=str(self.runs),
                       device="cpu" if self.device == "cpu" else None,
                       project=None if self.root == repo_root() else str(self.root))

    def env(self) -> dict[str, str]:
        """The environment of the steps' subprocesses (their own; this process's is untouched)."""
        env = dict(os.environ)
        here = str(repo_root())
        env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("HARDEX_GIT_COMMIT", self.summary.get("environment", {}).get("commit") or "")
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
            env["HARDEX_CUDA_TESTS_ON_CPU"] = "1"  # tests/test_cuda.py then runs its checks on the CPU
        return env

    def save(self) -> None:
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        tmp = self.out / ".summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        os.replace(tmp, self.out / "summary.json")

    def step(self, name: str, status: str, seconds: float, **extra: Any) -> None:
        self.summary.setdefault("steps", {})[name] = {"status": status, "seconds": round(seconds, 1), **extra}
        self.save()


def run_cmd(check: Check, cmd: list[str], log_path: Path, timeout: float, cwd: Path | None = None) -> tuple[int, bool]:
    """Run ``cmd`` with its output appended to ``log_path``; past ``timeout`` seconds it gets
    SIGTERM (:mod:`hardex.book.execute` turns it into KeyboardInterrupt: training stops at once,
    the last checkpoint stays; SIGINT would be ignored by a child of a background job), then
    SIGKILL after :data:`INTERRUPT_GRACE_S`. Returns (exit status, stopped at the deadline)."""
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=cwd or check.root, env=check.env(),
                                start_new_session=True)
        def stop() -> None:  # as Ctrl-C stops training: the current epoch is abandoned, checkpoints intact
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

        try:
            return proc.wait(timeout=max(timeout, 1.0)), False
        except subprocess.TimeoutExpired:
            stop()
            return proc.returncode, True
        except KeyboardInterrupt:  # the step runs in its own session: pass the interruption on
            stop()
            raise


def _tail(path: Path, n: int = 5) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(lines[-n:])


# --------------------------------------------------------------------------------------
# (b) and (c)


def step_tests(check: Check) -> None:
    t0 = time.time()
    log = check.out / "pytest-cuda.log"
    if check.left() < EXPORT_RESERVE_S + 30:
        check.log("cuda tests: skipped (deadline)")
        check.step("cuda_tests", "skipped (deadline)", 0.0)
        return
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rA", "-p", "no:cacheprovider",
           "tests/test_cuda.py", "tests/test_fastpath.py"]
    check.log(f"cuda tests: {' '.join(cmd[2:])}" + (" (no GPU: they run on the CPU here, "
                                                   "HARDEX_CUDA_TESTS_ON_CPU=1)" if check.device == "cpu" else ""))
    rc, late = run_cmd(check, cmd, log, min(check.left() - EXPORT_RESERVE_S, 240.0), cwd=repo_root())
    status = "stopped at the deadline" if late else "passed" if rc == 0 else f"FAILED (exit {rc})"
    summary = _tail(log, 1)
    check.log(f"cuda tests: {status} in {time.time() - t0:.0f} s ({summary})")
    check.step("cuda_tests", status, time.time() - t0, result=summary)


def bench_command(check: Check) -> list[str]:
    out = str(check.out / "bench.json")
    if check.device == "cpu":
        return [sys.executable, "-m", "hardex.cli", "bench", "--device", "cpu", "--quick", "--out", out,
                "--label", "CPU rehearsal of gpu-check: plumbing, not a speed result"]
    return [sys.executable, "-m", "hardex.cli", "bench", "--device", "cuda", "--models", "preact_resnet18",
            "--algorithms", "pgd", "trades", "--steps", "20", "--warmup", "5", "--repeats", "1",
            "--eval-n", "256", "--aa-n", "32", "--out", out, "--label", "hardex gpu-check (short bench)"]


def step_bench(check: Check) -> None:
    t0 = time.time()
    if check.left() < EXPORT_RESERVE_S + 60:
        check.log("bench: skipped (deadline)")
        check.step("bench", "skipped (deadline)", 0.0)
        return
    cmd = bench_command(check)
    check.log(f"bench: {' '.join(cmd[3:])}")
    log = check.out / "chapters.log"
    rc, late = run_cmd(check, cmd, log, min(check.left() - EXPORT_RESERVE_S, 240.0), cwd=repo_root())
    ok = rc == 0 and (check.out / "bench.json").exists()
    status = "stopped at the deadline" if late else "done" if ok else f"FAILED (exit {rc}: {_tail(log, 2)})"
    extra: dict[str, Any] = {}
    if ok:
        rep = json.loads((check.out / "bench.json").read_text())
        extra["results"] = [{"model": r["model"], "algorithm": r["algorithm"],
                             "hardex_s_per_epoch": r["hardex"]["tracking"]["s_per_epoch"],
                             "reference_s_per_epoch": (r.get("reference") or {}).get("s_per_epoch"),
                             "speedup": r.get("speedup")} for r in rep.get("results", [])]
        for r in extra["results"]:
            check.log(f"bench: {r['model']} {r['algorithm']}: hardex {r['hardex_s_per_epoch']:.1f} s per 50k-image "
                      f"epoch" + (f", reference {r['reference_s_per_epoch']:.1f} s, speedup {r['speedup']:.2f}x"
                                  if r["reference_s_per_epoch"] else ""))
    check.log(f"bench: {status} in {time.time() - t0:.0f} s")
    check.step("bench", status, time.time() - t0, **extra)


# --------------------------------------------------------------------------------------
# (d): the plan, its estimate, the runs


def plan_quick(check: Check, bench_path: Path | None, gpu: bool) -> dict[str, Any]:
    """The quick chapters' plan (:mod:`hardex.book.planning`: their experiments, no chapter
    executed) with the estimate of each chapter's training and evaluation time, stand-ins of
    the runs written once others finish included: from the bench report at ``bench_path``
    (this device's), else the newest one of this device under results/bench, else the
    profile's stated per-epoch times for one GPU (``gpu``) or, on a CPU, x the stated slowdown
    (:class:`hardex.experiments.cost.Estimator`)."""
    from hardex.book import planning
    from hardex.book.sources import load_params
    from hardex.experiments.cost import Estimator, gpu_visible, latest_bench, this_device
    from hardex.runs.store import RunStore

    store = RunStore(check.runs)  # records already under results/ are not trained again
    params = {n: load_params(PROFILE, n, check.root) for n in QUICK_CHAPTERS}
    plans = planning.plan_chapters(check.root, PROFILE, list(QUICK_CHAPTERS), store, params)
    if bench_path is not None and bench_path.exists():
        bench = (bench_path, json.loads(bench_path.read_text()))
        where = bench_path.parent  # the estimate says "from bench.json" (the file under OUT)
    else:
        bench = latest_bench(repo_root(), this_device()) if gpu_visible() == gpu else None
        where = repo_root()

    def estimator(cp):
        b = cp.params.baseline
        return Estimator(cp.params.cost, b.model, b.attack_steps, bench, cpu=not gpu, root=where)

    sources = planning.with_estimates(plans, store, estimator)
    chapters: dict[str, dict] = {}
    total_train = total_eval = 0.0
    lines = []
    for cp in plans:
        later_train = sum(cp.estimator.train_seconds(s, s.train.epochs - (s.start_from.epoch if s.start_from else 0))
                          or 0.0 for s in cp.later.values())
        later_eval = sum(cp.estimator.eval_seconds(s, s.train.epochs - (s.start_from.epoch if s.start_from else 0))
                         or 0.0 for s in cp.later.values())
        train_s, eval_s = (cp.train_s or 0.0) + later_train, (cp.eval_s or 0.0) + later_eval
        epochs = planning.epochs_to_train(cp, store) + sum(
            s.train.epochs - (s.start_from.epoch if s.start_from else 0) for s in cp.later.values())
        rows = planning.job_rows(cp, store)
        chapters[cp.name] = {"jobs": [{k: v for k, v in r.items() if k != "spec"} for r in rows],
                             "later": len(cp.later), "train_s": train_s, "eval_s": eval_s, "epochs": epochs}
        total_train += train_s
        total_eval += eval_s
        lines.append(f"{cp.name}: {len(cp.jobs) + len(cp.later)} runs to train ({len(cp.later)} of them known once "
                     f"others finish), {epochs} epochs, est. {duration(train_s)} training + {duration(eval_s)} evaluation")
    train_sources = [s for s in sources if not s.startswith("evaluation:")]
    eval_sources = [s.removeprefix("evaluation: ") for s in sources if s.startswith("evaluation:")]
    return {"chapters": chapters, "train_s": total_train, "eval_s": total_eval, "train_source": train_sources,
            "eval_source": "; ".join(eval_sources) or "no estimate",
            "epochs": sum(c["epochs"] for c in chapters.values()),
            "runs": sum(len(c["jobs"]) + c["later"] for c in chapters.values()), "lines": lines}


def print_plan(check: Check, plan: dict[str, Any]) -> None:
    check.log(f"plan (profile {PROFILE}{', stand-in' if check.stand_in else ''}):")
    for line in plan["lines"]:
        check.log("  " + line)
    check.log(f"  total: {plan['runs']} runs, {plan['epochs']} epochs, est. {duration(plan['train_s'] + plan['eval_s'])} "
              f"({duration(plan['train_s'])} training, {duration(plan['eval_s'])} evaluation)")
    check.log(f"  training estimate {'; '.join(plan['train_source'])}; evaluation estimate from {plan['eval_source']}")


class _Progress(threading.Thread):
    """Progress lines from the run store while a chapter trains (hardex.runs.progress.Watcher)."""

    def __init__(self, check: Check, chapter: str, jobs: list[dict]):
        super().__init__(daemon=True)
        from hardex.runs.progress import Watcher

        class _Out:
            def write(self_, s: str) -> None:
                for line in s.splitlines():
                    if line.strip():
                        check.log("  " + line.strip())

            def flush(self_) -> None:
                pass

            def isatty(self_) -> bool:
                return False

        self.watcher = Watcher(check.runs, out=_Out(), every=30.0, tty=False)
        self.watcher.set_chapter(chapter, jobs, True)

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()


def step_quick(check: Check, plan: dict[str, Any]) -> None:
    t_all = time.time()
    results = {}
    for name in QUICK_CHAPTERS:
        t0 = time.time()
        left = check.left() - EXPORT_RESERVE_S
        if left < 10:
            check.log(f"quick: {name}: not started (deadline)")
            results[name] = {"status": "not started (deadline)", "seconds": 0.0}
            continue
        jobs = plan["chapters"].get(name, {}).get("jobs", [])
        check.log(f"quick: {name}: {len(jobs)} runs to train, {left:.0f} s left before the deadline")
        watch = _Progress(check, name, jobs)
        watch.start()
        try:
            rc, late = run_cmd(check, [sys.executable, "-m", "hardex.book.execute", name, "--profile", PROFILE,
                                       "--root", str(check.root), "--build", json.dumps(check.context().to_dict())],
                               check.out / "chapters.log", left)
        finally:
            watch.stop()
        status = ("stopped at the deadline (finished runs kept)" if late else "done" if rc == 0
                  else f"FAILED (exit {rc}: {_tail(check.out / 'chapters.log', 3)})")
        results[name] = {"status": status, "seconds": round(time.time() - t0, 1)}
        check.log(f"quick: {name}: {status} in {time.time() - t0:.0f} s")
        check.summary.setdefault("quick", {})["chapters"] = results
        check.save()
    ok = all(r["status"] == "done" for r in results.values())
    check.step("quick", "done" if ok else "incomplete", time.time() - t_all, chapters=results)


# --------------------------------------------------------------------------------------
# (e): export and the actual times


def done_runs(runs: Path) -> list[Path]:
    from hardex.runs.records import is_done

    return [d for d in sorted(runs.iterdir()) if d.is_dir() and (d / "spec.yaml").exists() and is_done(d)] \
        if runs.is_dir() else []


def actual_seconds(run_dirs: list[Path]) -> dict[str, float]:
    """Measured times of these runs: their trained epochs (each metrics row's ``seconds``,
    per-epoch evaluation and probes included; a continuation's rows of its parent's epochs
    left out) and their cached ``evaluate_run`` attacks (``cost``)."""
    from hardex.runs.records import load_record

    train = ev = 0.0
    for d in run_dirs:
        rec = load_record(d)
        start = rec.spec.start_from.epoch if rec.spec.start_from else 0
        train += sum(float(m.get("seconds") or 0.0) for m in rec.metrics if m["epoch"] > start)
        for f in sorted((d / "eval").glob("*.json")) if (d / "eval").is_dir() else []:
            cost = json.loads(f.read_text()).get("cost") or {}
            ev += sum(float(c.get("seconds") or 0.0) for c in cost.values())
    return {"train_s": train, "eval_s": ev}


def verdicts(ledgers: Path) -> list[dict[str, Any]]:
    from hardex.paper.ledger import load_ledgers

    out = []
    for ch, led in load_ledgers(ledgers).items():
        for c in led.get("claims", []):
            out.append({"chapter": ch, "item": c["item"], "claim": c["claim"], "verdict": c["verdict"],
                        "effect": c.get("effect"), "lo": c.get("lo"), "hi": c.get("hi"), "method": c.get("method")})
    return out


def step_export(check: Check, plan: dict[str, Any] | None) -> None:
    from hardex.runs.store import RunStore

    t0 = time.time()
    dirs = done_runs(check.runs)
    staging = check.work / "export"
    shutil.rmtree(staging, ignore_errors=True)
    store = RunStore(check.runs, extra_roots=())
    copied = store.export([d.name for d in dirs], staging) if dirs else []
    tar_path = check.out / "records.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for d in copied:
            tar.add(d, arcname=d.name)
    actual = actual_seconds(dirs)
    from hardex.runs.records import load_record

    records = []
    for d in dirs:
        rec = load_record(d)
        from hardex.runs.describe import describe

        records.append({"hash": d.name, "what": describe(rec.spec), "epochs": rec.spec.train.epochs,
                        "device": (rec.provenance or {}).get("device"), "wall_s": (rec.provenance or {}).get("wall_s")})
    check.summary["records"] = records
    check.summary["verdicts"] = verdicts(check.ledgers)
    if plan is not None:
        est = plan["train_s"] + plan["eval_s"]
        wall = check.summary.get("steps", {}).get("quick", {}).get("seconds")
        check.summary["estimate_vs_actual"] = {
            "estimate_s": round(est, 1), "estimate_train_s": round(plan["train_s"], 1),
            "estimate_eval_s": round(plan["eval_s"], 1), "estimate_source": plan["train_source"],
            "eval_source": plan["eval_source"], "actual_train_s": round(actual["train_s"], 1),
            "actual_eval_run_s": round(actual["eval_s"], 1), "quick_step_wall_s": wall}
        check.log(f"estimate vs actual: estimated {duration(est)} (training {duration(plan['train_s'])}, evaluation "
                  f"{duration(plan['eval_s'])}); actual: trained epochs {duration(actual['train_s'])} (per-epoch "
                  f"evaluation and probes included), evaluate_run {duration(actual['eval_s'])}, the quick step's "
                  f"wall time {duration(wall)}")
    check.step("export", "done", time.time() - t0, records=len(dirs), bytes=tar_path.stat().st_size)
    files = [f for f in check.out.iterdir() if f.is_file() and not f.name.startswith(".")]
    too_big = [f"{f.name} ({f.stat().st_size / 2**20:.1f} MiB)" for f in files if f.stat().st_size >= MAX_FILE_BYTES]
    check.summary["files"] = {f.name: f.stat().st_size for f in sorted(files)}
    if too_big or len(files) > MAX_FILES:
        check.summary["files_problem"] = (f"{len(files)} files (at most {MAX_FILES})" if len(files) > MAX_FILES
                                          else "over 16 MiB: " + ", ".join(too_big))
        check.log(f"export: WARNING: {check.summary['files_problem']}")
    check.log(f"export: {len(dirs)} records in {tar_path.name} ({tar_path.stat().st_size / 2**20:.2f} MiB); "
              f"files under {check.out}: {', '.join(sorted(f.name for f in files))}")
    for v in check.summary["verdicts"]:
        if v["verdict"] != "not run":
            eff = "" if v["effect"] is None else f" {v['effect']:+.2f}" + (
                f" [{v['lo']:+.2f}, {v['hi']:+.2f}]" if v["lo"] is not None and v["hi"] is not None else "")
            check.log(f"verdict: {v['item']}: {v['claim']}: {v['verdict']}{eff}")
    check.save()


# --------------------------------------------------------------------------------------
# the stand-in (CPU rehearsal) and the data


def stand_in_project(stand_in: Path, dest: Path) -> Path:
    """A copy of the project whose ``params/quick/`` is the quick profile with ``stand_in``'s
    overrides (``{parameter file stem: nested values}``, :func:`hardex.book.render.project_copy`),
    for the rehearsal and its render-only book."""
    import yaml

    from hardex.book.render import project_copy

    return project_copy(dest, profile=PROFILE, overrides=yaml.safe_load(stand_in.read_text()))


def ensure_data(check: Check, archive: Path | None) -> None:
    """CIFAR-10 under the data root, extracted from the offline archive when needed."""
    from hardex.paths import data_root

    target = data_root() / "cifar10"
    if (target / "train").is_dir():
        check.log(f"data: CIFAR-10 at {target}")
        return
    root = repo_root()
    for cand in [archive, root / ".gpu" / "cifar10-jpeg.tar.gz", root / ".data" / "cifar10-jpeg.tar.gz",
                 data_root() / "cifar10-jpeg.tar.gz",
                 root.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"]:
        if cand is not None and Path(cand).is_file():
            t0 = time.time()
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(cand) as tar:
                tar.extractall(target, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(target)
            check.log(f"data: extracted {cand} to {target} in {time.time() - t0:.0f} s (CIFAR-10, JPEG copy)")
            return
    raise FileNotFoundError(f"no CIFAR-10 at {target} and no archive cifar10-jpeg.tar.gz (looked in .gpu/, .data/, "
                            "the data root and ../shared/data; or pass --data-archive)")


# --------------------------------------------------------------------------------------
# import into results/


def import_out(out: Path, root: Path | None = None) -> list[str]:
    """Records, bench report and summary of a gpu-check's OUT into results/ (records
    validated by loading them; already present ones are left as they are)."""
    import tempfile

    from hardex.runs.records import is_done, load_record

    root = root or repo_root()
    results = root / "results"
    done: list[str] = []
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    env = summary.get("environment", {})
    slug = "-".join(str(env.get("gpu") or "cpu").lower().replace("nvidia", "").split()) or "gpu"
    day = str(env.get("date") or _dt.date.today().isoformat())[:10]
    if (out / "records.tar.gz").exists():
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(out / "records.tar.gz") as tar:
                tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
            for d in sorted(Path(tmp).iterdir()):
                rec = load_record(d)  # validates spec, hash, final.json, metrics
                if not rec.done:
                    raise ValueError(f"{out / 'records.tar.gz'}: {d.name} is not a finished record")
                dest = results / d.name
                if is_done(dest):
                    continue
                shutil.copytree(d, dest, dirs_exist_ok=True)
                done.append(str(dest.relative_to(root)))
    if (out / "bench.json").exists():
        dest = results / "bench" / f"{slug}-{day}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "bench.json", dest)
        done.append(str(dest.relative_to(root)))
    if summary:
        dest = results / "gpu-check" / f"{slug}-{day}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "summary.json", dest)
        done.append(str(dest.relative_to(root)))
    return done


# --------------------------------------------------------------------------------------
# the command


def run(args: argparse.Namespace) -> int:
    import torch

    if args.import_out:
        for p in import_out(Path(args.import_out)):
            print(f"imported {p}")
        return 0
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible here (use --device cpu for the CPU rehearsal)",
              file=sys.stderr)
        return 2
    if device not in ("cuda", "cpu"):
        print(f"error: --device {device!r}: allowed cuda, cpu", file=sys.stderr)
        return 2
    if device == "cpu" and not args.stand_in and not args.plan:
        why = "--device cpu without --stand-in" if args.device else "no CUDA device is visible, and without --stand-in it"
        print(f"error: {why} would train the quick profile on this CPU (hours); the CPU rehearsal is `make gpu-check "
              "DEVICE=cpu` (--device cpu --stand-in tests/quick_structure.yaml)", file=sys.stderr)
        return 2
    if args.deadline_minutes <= 0:
        print(f"error: --deadline-minutes must be > 0, got {args.deadline_minutes}", file=sys.stderr)
        return 2
    out = Path(args.out or "build/gpu-check-out").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for f in out.iterdir():  # a fresh OUT: the files of an earlier check would be mistaken for this one's
        if f.is_file() and f.name in ("gpu-check.log", "summary.json", "pytest-cuda.log", "bench.json",
                                      "chapters.log", "records.tar.gz"):
            f.unlink()
    work = Path(args.work or f"build/gpu-check-{device}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = repo_root()
    stand_in = Path(args.stand_in).resolve() if args.stand_in else None
    if stand_in is not None:
        root = stand_in_project(stand_in, work / "project")
    check = Check(out, work, root, device, time.time() + 60 * args.deadline_minutes, stand_in=stand_in is not None)
    if args.plan:
        check.out = work  # the plan writes nothing under OUT
        from hardex.experiments.cost import gpu_visible

        gpu = gpu_visible()
        plan = plan_quick(check, None, gpu=True)
        print_plan(check, plan)
        if not gpu:
            print("(no GPU here: the estimate is for one GPU, from params/quick's stated per-epoch times and a "
                  "stated evaluation rate; `hardex gpu-check` on the GPU measures them first with `hardex bench`)")
        return 0
    check.summary = {"schema": 1, "profile": PROFILE, "stand_in": str(stand_in) if stand_in else None,
                     "label": ("CPU rehearsal on a tiny stand-in of the quick profile: plumbing, not results"
                               if stand_in or device == "cpu" else "quick profile on one GPU"),
                     "deadline_minutes": args.deadline_minutes, "data": "CIFAR-10 (JPEG copy)"}
    env = environment(device)
    check.summary["environment"] = env
    check.log("environment: " + environment_line(env))
    check.log(f"deadline: {args.deadline_minutes:g} min; OUT {out}; run store {check.runs}")
    check.save()
    plan = None
    try:
        ensure_data(check, Path(args.data_archive) if args.data_archive else None)
        if not args.skip_tests:
            step_tests(check)
        if not args.skip_bench:
            step_bench(check)
        bench_path = out / "bench.json" if (out / "bench.json").exists() else None
        plan = plan_quick(check, bench_path, gpu=device == "cuda")
        check.summary["plan"] = plan
        print_plan(check, plan)
        if plan["train_s"] + plan["eval_s"] > check.left() - EXPORT_RESERVE_S:
            check.log(f"WARNING: the estimate exceeds the {check.left() - EXPORT_RESERVE_S:.0f} s left: the deadline "
                      "will stop the runs; to fit, shrink params/quick (train_subset, epochs, probe_max, eval_n)")
        step_quick(check, plan)
    except KeyboardInterrupt:
        check.log("interrupted: exporting what finished")
    finally:
        step_export(check, plan)
    if args.render and stand_in is not None:
        from hardex.book import render as renderbook

        t0 = time.time()
        check.log("render: the render-only quick book from the exported records alone")
        status = renderbook.render(PROFILE, work / "book", project=root, records=out / "records.tar.gz",
                                   html=not args.no_html, bench=out / "bench.json", summary=out / "summary.json",
                                   rehearsal=True,
                                   strict=True)  # a Sphinx warning here is one the GPU book would hit
        problems = renderbook.check_rendered(work / "book" / "_executed", QUICK_CHAPTERS)
        state = "done" if status == 0 and not problems else f"FAILED ({status}; {'; '.join(problems)})"
        check.log(f"render: {state} in {time.time() - t0:.0f} s" +
                  (f": {work / 'book' / '_build' / 'html' / 'index.html'}" if not args.no_html else ""))
        check.step("render", state, time.time() - t0)
        if state != "done":
            return 1
    steps = check.summary.get("steps", {})
    failed = [k for k, v in steps.items() if "FAILED" in str(v.get("status"))]
    short = [f"{k} {v.get('status')}" for k, v in steps.items() if v.get("status") not in ("done", "passed")]
    check.log(f"done in {time.time() - check.t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else
                                                              "every step passed" if not short else
                                                              "stopped cleanly: " + "; ".join(short))
              + f"; next: hardex gpu-check --import {out} && git add results/")
    return 1 if failed else 0


def add_cli(sub) -> None:
    p = sub.add_parser("gpu-check", help="the one command to run when a GPU is at hand: CUDA tests, a short bench, "
                                         "the quick profile's runs, compact records under --out",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for the files to bring back (default build/gpu-check-out)")
    p.add_argument("--deadline-minutes", type=float, default=DEFAULT_DEADLINE_MIN,
                   help=f"stop every step cleanly after this long, keeping what finished (default {DEFAULT_DEADLINE_MIN:g})")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda if available, else cpu")
    p.add_argument("--stand-in", help="a stand-in of the quick profile (tests/quick_structure.yaml): the CPU rehearsal")
    p.add_argument("--work", help="run store and scratch folder (default build/gpu-check-<device>; kept: a second "
                                  "check resumes)")
    p.add_argument("--data-archive", help="cifar10-jpeg.tar.gz to extract when the data root has no CIFAR-10")
    p.add_argument("--skip-tests", action="store_true", help="skip the CUDA tests")
    p.add_argument("--skip-bench", action="store_true", help="skip the bench (estimates then use stated times)")
    p.add_argument("--render", action="store_true",
                   help="with --stand-in: then build the render-only book from the exported records")
    p.add_argument("--no-html", action="store_true", help="with --render: execute the chapters, no jupyter-book")
    p.add_argument("--plan", action="store_true", help="print the quick profile's runs, epochs and estimated minutes")
    p.add_argument("--import", dest="import_out", metavar="OUT",
                   help="put a gpu-check's OUT into results/ (records, bench report, summary)")
    p.set_defaults(func=run)
