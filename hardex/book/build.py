"""`hardex book`: execute the book's chapters and render them with Jupyter Book.

Pipeline (DESIGN.md): ``book/<chapter>.py`` (jupytext percent format) + its parameters
(``params/<profile>/``, validated before anything runs: :mod:`hardex.experiments.params`) ->
papermill -> ``<out>/<chapter>.ipynb`` -> Jupyter Book (``_config.yml``, ``_toc.yml``; it renders
``_executed/``).

Before anything trains, the planner (:mod:`hardex.book.planning`, no chapter executed) says
what each chapter will train and what it costs, and the hardware check refuses a profile
meant for other hardware. ``--plan`` lists every run and trains nothing. With an executor that
trains several runs at once, every chapter's runs train ahead, round by round; the chapters
then only read records.

How the chapters run is one :class:`~hardex.book.context.Context` passed to each of them as
the parameter ``build``: ``--render-only`` (train and evaluate nothing: a chapter whose
records are missing gets a page saying "not run yet (no record)" and naming them), the
ledger folder, the run store, the executor, ``--device cpu``. The calling process's
environment is the same after a build as before. A chapter the profile does not run
(``not_run: <reason>``) gets a page saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hardex.book.context import Context
from hardex.book.execute import execute_papermill, no_record, notice_page, parameters, placeholder
from hardex.book.sources import EXECUTED_DIR, PROFILES, Chapter, ParamsError, load_params, not_run_reason, toc_chapters
from hardex.paths import repo_root, runs_root


def plan_build(profile: str, selected: list[Chapter], params: dict, root: Path, store, gpu: bool) -> tuple[list, float | None]:
    """The plan (:mod:`hardex.book.planning`) with estimates on this device: one cost line per
    chapter, and the plan file `hardex status --profile` reads. Returns (plans, total seconds)."""
    from hardex.book import planning
    from hardex.experiments.cost import Estimator

    t0 = time.perf_counter()
    names = [c.name for c in selected]
    plans = planning.plan_chapters(root, profile, names, store, params)
    planning.with_estimates(plans, store, lambda cp: Estimator.for_params(cp.params, root, "here" if gpu else "cpu"))
    if not any(cp.jobs or cp.shared or cp.done or cp.later for cp in plans):
        print("cost before the first epoch: these chapters train nothing", flush=True)
        return plans, 0.0
    print(f"cost before the first epoch (planned in {time.perf_counter() - t0:.1f} s, no chapter executed):",
          flush=True)
    total: float | None = 0.0
    for cp in plans:
        if cp.runs is None:
            continue
        print("  " + planning.cost_line(cp, store), flush=True)
        total = None if total is None or cp.seconds is None else total + cp.seconds
    n_runs = sum(len(cp.jobs) for cp in plans)
    n_epochs = sum(planning.epochs_to_train(cp, store) for cp in plans)
    later = sum(len(cp.later) for cp in plans)
    print(f"  total: {n_runs} runs, {n_epochs} epochs, est. {planning.duration(total)} on this device"
          + (f" (+ {later} runs written once these finish)" if later else ""), flush=True)
    planning.write_status(store, profile, plans)
    return plans, total


def check_hardware(profile: str, gpu: bool, device: str | None, yes: bool, total: float | None,
                   chapters: list[str]) -> str | None:
    """None when the build may go on, else the one line that refuses it."""
    from hardex.book.planning import HARDWARE_TEXT, PROFILE_HARDWARE, duration

    want = PROFILE_HARDWARE.get(profile, "cpu")
    est = f"est. {duration(total)} of training on this machine"
    again = f"hardex book --profile {profile} --chapters {' '.join(chapters)}"
    if want in ("gpu", "cluster") and not gpu and not (device == "cpu" and yes):
        return (f"profile {profile} is meant for {HARDWARE_TEXT[want]} and no GPU is visible ({est}); "
                f"to build it here anyway: `{again} --device cpu --yes`, or build where runs train on GPUs")
    if want == "cluster" and not yes:
        question = f"profile {profile} is meant for {HARDWARE_TEXT[want]}; building it on one local device: {est}"
        if sys.stdin.isatty():
            answer = input(question + ". Continue? [y/N] ").strip().lower()
            return None if answer in ("y", "yes") else "not confirmed; nothing trained"
        return question + f"; not a terminal, so refusing: add --yes to build it (`{again} --yes`)"
    return None


class _Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _kernel_pids() -> list[int]:
    """Our papermill kernels: child processes running ipykernel (Linux /proc)."""
    me, out = os.getpid(), []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and b"ipykernel" in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_kernels(timeout: float = 30.0) -> None:
    """Interrupt the kernels (the training loop raises KeyboardInterrupt there: the current
    epoch is abandoned, the last checkpoint stays intact, the run's lock is released), wait
    for them to end, kill what is left."""
    pids = _kernel_pids()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGINT)
    deadline = time.time() + timeout
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


LANDING = "landing.md"  # written into _executed/ for book/intro.md's {include}


def write_landing(root: Path, profile: str, ledger_dir: Path) -> Path:
    """The landing page's "does the paper hold?" section from every saved ledger (one block
    per profile; :func:`hardex.book.chapter.landing`), as ``_executed/landing.md``."""
    from hardex.book.chapter import landing
    from hardex.paper.ledger import load_ledgers

    target = root / EXECUTED_DIR / LANDING
    target.parent.mkdir(parents=True, exist_ok=True)
    text = landing(load_ledgers(ledger_dir), profile, [c.name for c in toc_chapters(root)], root=root)
    target.write_text(text + "\n")
    return target


def build(
    profile: str = "smoke",
    chapters: list[str] | None = None,
    html: bool = True,
    out: Path | None = None,
    root: Path | None = None,
    progress: bool = True,
    device: str | None = None,
    yes: bool = False,
    plan_only: bool = False,
    plan: bool = False,
    strict: bool = False,
    executor: dict | None = None,
    dry_run: bool = False,
    render_only: bool = False,
    rehearsal: bool = False,
    runs: Path | None = None,
) -> int:
    """Execute chapters (then render the book when ``html``). ``plan`` (as `hardex book` does
    unless --no-plan): first the plan, its cost lines and the hardware check. ``executor``:
    executor settings (`hardex.runs.executors.executor_settings`); one that trains several runs
    at once trains every chapter's runs first (:func:`hardex.book.planning.train_ahead`).
    ``dry_run`` (--plan): list every run that would train, by level, and train nothing.
    ``render_only``: train and evaluate nothing, render from records; ``rehearsal``: the
    records are a CPU rehearsal's (no verdict). ``runs``: the run store (default
    ``$HARDEX_RUNS``, else ``<root>/runs``)."""
    from hardex.book import planning
    from hardex.runs.executors import executor_settings, make_executor
    from hardex.runs.store import RunStore

    root = Path(root or repo_root()).resolve()
    out = (out or root / EXECUTED_DIR).resolve()
    store_root = runs_root(runs)
    store = RunStore(store_root if store_root.is_absolute() else root / store_root)
    known = toc_chapters(root)
    by_name = {c.name: c for c in known}
    selected = known if not chapters else []
    for name in chapters or []:
        if name not in by_name:
            raise ParamsError(f"unknown chapter {name!r}; allowed: {', '.join(by_name)}")
        selected.append(by_name[name])
    # Chapters this profile does not run get a page saying why (below); the others' parameters
    # are validated before anything executes.
    not_run = {c.name: (c, r) for c in selected if (r := not_run_reason(profile, c.name, root)) is not None}
    selected = [c for c in selected if c.name not in not_run]
    params = {c.name: load_params(profile, c.name, root) for c in selected}
    names = [c.name for c in selected]
    settings = executor if executor is not None else executor_settings()
    if dry_run:
        t0 = time.perf_counter()
        from hardex.experiments.cost import Estimator

        plans = planning.plan_chapters(root, profile, names, store, params)
        sources = planning.with_estimates(plans, store, lambda cp: Estimator.for_params(cp.params, root, "gpu"))
        for line in planning.plan_listing(plans, profile, store, sources):
            print(line)
        print(f"(planned in {time.perf_counter() - t0:.1f} s, no chapter executed; nothing trained)")
        return 0
    if render_only:  # chapters read records only: nothing to plan or train
        plan = plan_only = False
    ex, ahead = None, False
    if not render_only:  # a render-only build trains nowhere: no executor is needed
        ex = make_executor(settings)  # bad settings (or no Slurm) stop the build before anything runs
        ahead = ex.name == "slurm" or ex.slots > 1
    plans: list = []
    if plan or plan_only or ahead:
        from hardex.experiments.cost import gpu_visible

        gpu = device != "cpu" and gpu_visible()
        plans, total = plan_build(profile, selected, params, root, store, gpu)
        on_slurm = ex is not None and ex.name == "slurm"  # runs train where Slurm puts them
        refusal = None if on_slurm else check_hardware(profile, gpu, device, yes, total, names)
        if refusal is not None:
            print(f"error: {refusal}", file=sys.stderr)
            return 2
    if plan_only:
        return 0
    ctx = Context(render_only=render_only, rehearsal=rehearsal, ledger_dir=str(out / "ledger"), runs=str(store.root),
                  executor=None if render_only else settings, device=device,
                  project=None if root == repo_root().resolve() else str(root))
    for c, reason in not_run.values():
        notice_page(c, out, f"**Not run on the `{profile}` profile:** {reason}", root)
        led_f = out / "ledger" / f"{c.name}.json"  # for the appendix: every item of it "not run on <profile>"
        led_f.parent.mkdir(parents=True, exist_ok=True)
        led_f.write_text(json.dumps({"chapter": c.name, "profile": profile, "data": "-", "not_run": reason,
                                     "cells": [], "claims": [], "power": []}))
        print(f"{c.name} ({profile}): not run on this profile ({reason})", flush=True)
    rows = {cp.name: (planning.job_rows(cp, store), cp.complete) for cp in plans}
    failed: dict[str, list[str]] = {}

    from hardex.runs.progress import Watcher

    watcher = Watcher(store.root) if progress else None
    if watcher is not None:
        watcher.start()

    # A signal interrupts the chapter's kernel (its running cell raises KeyboardInterrupt, so
    # the training loop stops; papermill then returns normally with a cell error). Should the
    # kernel not stop (a second signal, or 20 s later), the build stops here at once.
    got: list[int] = []

    def on_signal(signum, frame):
        kernels = _kernel_pids()
        if got or not kernels:
            raise _Interrupted(got[0] if got else signum)
        got.append(signum)
        for pid in kernels:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)
        timer = threading.Timer(20.0, lambda: os.kill(os.getpid(), signum))
        timer.daemon = True
        timer.start()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    i = 0
    try:
        if ahead:
            if watcher is not None:
                watcher.set_chapter("all chapters", [r for rs, _ in rows.values() for r in rs],
                                    all(c for _, c in rows.values()))
            failed = planning.train_ahead(root, profile, names, ex, store, params)
            rows = {}  # the chapters only read records now
            if watcher is not None:
                watcher.clear()
        for i, chapter in enumerate(selected, 1):
            if chapter.name in failed:
                if watcher is not None:
                    watcher.stop()
                print(f"[{i}/{len(selected)}] {chapter.name}: not executed, its runs failed:", file=sys.stderr)
                for msg in failed[chapter.name]:
                    print(f"  {msg}", file=sys.stderr)
                return 1
            if watcher is not None:
                watcher.clear()
                watcher.set_chapter(chapter.name, *rows.get(chapter.name, ([], True)))
            print(f"[{i}/{len(selected)}] {chapter.name} ({profile}) ...", flush=True)
            t0 = time.perf_counter()
            try:
                # the watcher's lines replace papermill's per-cell bar
                execute_papermill(chapter, parameters(profile, ctx.to_dict()), out, root, progress and watcher is None)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # papermill's error names the failing cell and has its traceback
                if got:
                    raise _Interrupted(got[0]) from None
                missing = no_record(err) if render_only else None
                if missing is not None:  # a render-only build: the page says what has no record
                    notice_page(chapter, out, f"**Not run yet (no record).** This page was rendered from records only "
                                f"(`hardex book --profile {profile} --render-only`), and this chapter asks for runs "
                                f"or evaluations that have none in the run store or in `results/`: {missing}.\n\n"
                                "To make them: `make gpu-check OUT=<folder>` on a GPU (the quick profile), or "
                                f"`hardex book --profile {profile}` where it can train; then `hardex gpu-check "
                                "--import <folder>` and commit `results/`.", root)
                    (out / f"{chapter.name}.failed.ipynb").unlink(missing_ok=True)
                    print(f"[{i}/{len(selected)}] {chapter.name}: not run yet (no record)", flush=True)
                    continue
                if watcher is not None:
                    watcher.stop()
                print(f"[{i}/{len(selected)}] {chapter.name} FAILED after {time.perf_counter() - t0:.1f} s; "
                      f"executed notebook with the error: {out / (chapter.name + '.failed.ipynb')}", file=sys.stderr)
                print(str(err), file=sys.stderr)
                return 1
            if got:
                raise _Interrupted(got[0])
            if watcher is not None:
                watcher.clear()
            print(f"[{i}/{len(selected)}] {chapter.name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    except KeyboardInterrupt as err:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _stop_kernels()
        if watcher is not None:
            watcher.stop()
        signum = getattr(err, "signum", signal.SIGINT)
        rest = " ".join(names[max(i - 1, 0):])
        flags = (" --no-html" if not html else "") + (" --device cpu" if device == "cpu" else "") + \
            (" --yes" if yes else "") + _executor_flags(executor)
        print(f"\ninterrupted ({signal.Signals(signum).name}); the runs keep their last checkpoints; "
              f"resume with: hardex book --profile {profile} --chapters {rest}{flags}", file=sys.stderr, flush=True)
        return 128 + int(signum)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if watcher is not None:
        watcher.stop()
    if plans:  # estimate vs actual
        line = planning.actual_line(plans, store)
        if line:
            print(line, flush=True)

    if not html:
        return 0
    for chapter in known:
        if not (out / f"{chapter.name}.ipynb").exists():
            placeholder(chapter, out, root)
    write_landing(root, profile, out / "ledger")
    t0 = time.perf_counter()
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(root), "--builder", "html"]
    if strict:  # Sphinx's -W (warnings are errors), -n (nitpicky references); report them all
        cmd += ["-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, cwd=root)
    if result.returncode != 0:
        print("jupyter-book build failed", file=sys.stderr)
        return result.returncode
    index = root / "_build" / "html" / "index.html"
    print(f"book built in {time.perf_counter() - t0:.1f} s: {index}")
    return 0


def _executor_flags(settings: dict | None) -> str:
    """The command-line flags that give these executor settings again (for the resume line)."""
    if not settings:
        return ""
    out = f" --executor {settings.get('executor', 'local')}"
    if settings.get("slots"):
        out += f" --slots {settings['slots']}"
    if settings.get("gpus"):
        out += " --gpus " + ",".join(str(g) for g in settings["gpus"])
    for k, v in (settings.get("slurm") or {}).items():
        out += f" --slurm {k}={v}"
    return out


def _run(args: argparse.Namespace) -> int:
    from hardex.runs.executors import ExecutorError, settings_from_args

    try:
        return build(args.profile, args.chapters, html=not args.no_html,
                     out=Path(args.out) if args.out else None, progress=not args.quiet,
                     root=Path(args.root) if args.root else None, device=args.device, yes=args.yes,
                     plan_only=args.plan_only, plan=not args.no_plan, strict=args.strict,
                     executor=settings_from_args(args), dry_run=args.plan, render_only=args.render_only)
    except (ParamsError, ExecutorError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def add_cli(sub) -> None:
    from hardex.runs.executors import add_executor_options

    p = sub.add_parser("book", help="execute the book's chapters with papermill and build the HTML book")
    p.add_argument("--profile", default="smoke", choices=PROFILES, help="parameter profile (params/<profile>/)")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters (default: all in _toc.yml)")
    p.add_argument("--no-html", action="store_true", help="execute only; do not run jupyter-book")
    p.add_argument("--out", help=f"folder for executed notebooks (default: {EXECUTED_DIR}/)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--device", choices=["cpu"], default=None,
                   help="train on the CPU (hides GPUs from the chapters; with --yes, builds a GPU profile here)")
    p.add_argument("--yes", action="store_true", help="build a profile meant for other hardware without asking")
    p.add_argument("--plan-only", action="store_true",
                   help="print the cost lines and write the plan (`hardex status --profile`), train nothing")
    p.add_argument("--no-plan", action="store_true", help="skip the planning pass (and the hardware check)")
    p.add_argument("--plan", action="store_true",
                   help="dry run: list every run that would train, by level, with epochs and GPU-hours; train nothing")
    add_executor_options(p)
    p.add_argument("--strict", action="store_true",
                   help="Sphinx warnings are errors (jupyter-book build -W -n --keep-going), as CI builds the book")
    p.add_argument("--root", help="project root holding _toc.yml, book/ and params/ (default: this checkout)")
    p.add_argument("--render-only", action="store_true",
                   help="train and evaluate nothing: build every chapter from the records in the run store and "
                        "results/; a chapter without its records says 'not run yet (no record)'")
    p.set_defaults(func=_run)
