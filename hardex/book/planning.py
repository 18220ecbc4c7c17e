"""What a book build will train, in which round, and what it costs, without running a chapter.

Each training chapter's runs are its experiment's (``hardex.experiments.<chapter>.runs(params,
records)``, the same function its notebook calls). :func:`plan_chapters` calls it with the
records already in the run store, round after round as far as they reach, and keeps: the runs
to train now (with the runs they need, level by level: :func:`hardex.runs.plan.plan`; a run two
chapters ask for counts once, in the first), the stand-ins of runs that can be written only
once those finish (``later``: the LS runs at the DPLS run's recorded factor, Fig. 1's subsets),
and the evaluations not yet cached. Estimates come from one estimator
(:class:`hardex.experiments.cost.Estimator`).

Users: `hardex book` (cost lines and the hardware check before anything trains; ``--plan``
lists every run by level with GPU-hours and trains nothing; with a multi-slot executor it
trains every chapter's runs ahead, round by round: :func:`train_ahead`), `hardex gpu-check`
(the quick profile's plan and estimate), `hardex status --profile` (the plan file).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardex.book.sources import load_params
from hardex.experiments import TRAINING, module
from hardex.experiments.cost import Estimator
from hardex.experiments.rounds import EvalRequest, Runs, recorded_rounds, unique
from hardex.runs.describe import describe
from hardex.runs.plan import Job, epochs_left, job_row, plan
from hardex.runs.progress import duration, write_plan

# What each profile is meant for (DESIGN.md, "Profiles"): the book refuses the wrong hardware.
PROFILE_HARDWARE = {"smoke": "cpu", "quick": "gpu", "fast": "gpu", "paper": "cluster"}
HARDWARE_TEXT = {"cpu": "a CPU", "gpu": "one GPU", "cluster": "a cluster or a long GPU job"}


@dataclass
class ChapterPlan:
    name: str
    params: Any = None  # the chapter's parameters (None: a chapter that trains nothing)
    runs: Runs | None = None  # its experiment's runs as far as the store's records reach
    jobs: list[Job] = field(default_factory=list)  # to train now, first asked for here (needs included)
    shared: list[Job] = field(default_factory=list)  # to train now, first asked for by an earlier chapter
    done: int = 0  # runs asked for that are done
    evaluations: list[EvalRequest] = field(default_factory=list)  # not cached yet
    levels: dict[str, int] = field(default_factory=dict)  # spec hash -> level across the plan
    estimator: Estimator | None = None  # set by with_estimates
    train_s: float | None = 0.0  # estimates (None: some job has none)
    eval_s: float | None = 0.0
    later_seconds: dict = field(default_factory=dict)  # the stand-ins' estimates, by key

    @property
    def later(self) -> dict:
        return self.runs.later if self.runs is not None else {}

    @property
    def complete(self) -> bool:
        return not self.later

    @property
    def seconds(self) -> float | None:
        return None if self.train_s is None or self.eval_s is None else self.train_s + self.eval_s


def experiment_runs(name: str, p: Any, store: Any) -> tuple[Runs, dict[str, Any]]:
    """The chapter's runs with the records in ``store``, as many rounds as they reach, and
    those records (by spec hash)."""
    mod = module(name)
    return recorded_rounds(lambda records: mod.runs(p, records, workdir=store.root), store.open)


def _cached(req: EvalRequest, records: dict[str, Any]) -> bool:
    rec = records.get(req.spec.hash)
    if rec is None:
        return False
    from hardex.evaluation.suite import cache_file

    return cache_file(rec, **req.kwargs()).exists()


def plan_chapters(root: Path, profile: str, names: list[str], store: Any,
                  params: dict[str, Any] | None = None) -> list[ChapterPlan]:
    """The plan of every chapter of ``names`` (see the module docstring); ``params``: the
    chapters' parameters when already loaded."""
    plans: list[ChapterPlan] = []
    asked: list = []
    evaluated: set = set()  # an evaluation two chapters make counts once, in the first
    for name in names:
        p = (params or {}).get(name) or load_params(profile, name, root)
        cp = ChapterPlan(name, p)
        if name in TRAINING:
            runs, records = experiment_runs(name, p, store)
            cp.runs = runs
            specs = unique(runs.specs.values())
            cp.done = sum(1 for s in specs if s.hash in records)
            for r in runs.evaluations:
                key = (r.spec.hash, r.attacks, r.n, r.seed, r.which, repr(r.options))
                if key not in evaluated and not _cached(r, records):
                    cp.evaluations.append(r)
                evaluated.add(key)
            asked.append((cp, [s for s in specs if s.hash not in records]))
        plans.append(cp)
    levels = plan(store, [s for _, specs in asked for s in specs])  # one level order across chapters
    level_of = {j.spec.hash: i for i, lv in enumerate(levels) for j in lv}
    job_of = {j.spec.hash: j for lv in levels for j in lv}
    seen: set[str] = set()
    for cp, specs in asked:
        mine = [job_of[j.spec.hash] for lv in plan(store, specs) for j in lv]  # its runs and their needs
        for job in mine:
            (cp.shared if job.spec.hash in seen else cp.jobs).append(job)
            seen.add(job.spec.hash)
        cp.levels = {j.spec.hash: level_of[j.spec.hash] for j in mine}
    return plans


def with_estimates(plans: list[ChapterPlan], store: Any, estimator: Callable[[ChapterPlan], Estimator]) -> list[str]:
    """Fill each training chapter's ``estimator``, ``train_s`` / ``eval_s`` (seconds on the
    estimator's device: the jobs' remaining epochs with their own evaluation, and the uncached
    evaluations) and ``later_seconds``; returns the estimates' sources, in order."""
    sources: list[str] = []
    for cp in plans:
        if cp.runs is None:
            continue
        est = cp.estimator = estimator(cp)
        cp.later_seconds = {k: est.run_seconds(s) for k, s in cp.later.items()}
        train = ev = 0.0
        for job in cp.jobs:
            n = epochs_left(store, job.spec, job.keep)
            t, e = est.train_seconds(job.spec, n), est.eval_seconds(job.spec, n)
            train = None if t is None or train is None else train + t
            ev = None if e is None or ev is None else ev + e
        for req in cp.evaluations:
            e = est.request_seconds(req)
            ev = None if e is None or ev is None else ev + e
        cp.train_s, cp.eval_s = train, ev
        sources += [s for s in est.sources if s not in sources]
    return sources


def epochs_to_train(cp: ChapterPlan, store: Any) -> int:
    return sum(epochs_left(store, j.spec, j.keep) for j in cp.jobs)


def cost_line(cp: ChapterPlan, store: Any) -> str:
    """One line per chapter before anything trains."""
    shared = f", {len(cp.shared)} shared with an earlier chapter" if cp.shared else ""
    later = f"; {len(cp.later)} more once these finish" if cp.later else ""
    if not cp.jobs and not cp.later:
        return f"{cp.name}: nothing to train" + (f" ({cp.done} runs already done)" if cp.done else "")
    return (f"{cp.name}: {len(cp.jobs)} runs to train ({cp.done} already done{shared}), {epochs_to_train(cp, store)} "
            f"epochs, est. {duration(cp.train_s)} training + {duration(cp.eval_s)} evaluation{later}")


def job_rows(cp: ChapterPlan, store: Any) -> list[dict]:
    """The chapter's jobs as rows (:func:`hardex.runs.plan.job_row` with the estimate's
    ``seconds``): the plan file's and the progress lines' (ETA) view of them."""
    return [{**job_row(store, j, cp.levels.get(j.spec.hash, 0)), "seconds": _job_seconds(cp, j, store)}
            for j in cp.jobs]


def write_status(store: Any, profile: str, plans: list[ChapterPlan]) -> None:
    """The plan file `hardex status --profile` reads (jobs by chapter, with their levels)."""
    write_plan(store.root, profile, [{"name": cp.name, "complete": cp.complete, "jobs": job_rows(cp, store)}
                                     for cp in plans])


def plan_listing(plans: list[ChapterPlan], profile: str, store: Any, sources: list[str]) -> list[str]:
    """`hardex book --plan`: every run that would train, by level across the chapters, with its
    epochs and GPU-hours, then the stand-ins of the runs written once these finish. Trains nothing."""
    rows = [(cp, j) for cp in plans for j in cp.jobs]
    lines = [f"plan for profile {profile} ({len(plans)} chapters): {len(rows)} runs to train"]
    total, unknown = 0.0, 0
    est_of = {cp.name: cp for cp in plans}
    for lv in sorted({cp.levels[j.spec.hash] for cp, j in rows}):
        group = [(cp, j) for cp, j in rows if cp.levels[j.spec.hash] == lv]
        lines.append(f"level {lv} ({len(group)} runs{', each after the runs it needs' if lv else ''}):")
        for cp, j in group:
            s = _job_seconds(est_of[cp.name], j, store)
            if s is None:
                unknown += 1
                cost = "GPU-hours unknown"
            else:
                total += s
                cost = f"{s / 3600:.2f} GPU-h"
            lines.append(f"  {j.spec.short_hash[:10]}  {describe(j.spec):<48} {epochs_left(store, j.spec, j.keep):>4} of "
                         f"{j.spec.train.epochs:>3} epochs  {cost:>16}  [{cp.name}]")
    later = [(cp, k, s) for cp in plans for k, s in cp.later.items()]
    later_h = 0.0
    if later:
        lines.append("written once the runs above finish (stand-ins of the same cost; their specs need those records):")
        for cp, k, s in later:
            sec = cp.later_seconds.get(k)
            lines.append(f"  ~{describe(s):<58} {s.train.epochs - (s.start_from.epoch if s.start_from else 0):>4} "
                         f"epochs  {'' if sec is None else f'{sec / 3600:.2f} GPU-h':>16}  [{cp.name}]")
            later_h += (sec or 0.0) / 3600
    evals = sum(cp.eval_s or 0.0 for cp in plans if cp.runs is not None)
    shared = sum(len(cp.shared) for cp in plans)
    n_levels = len({cp.levels[j.spec.hash] for cp, j in rows})
    epochs = sum(epochs_to_train(cp, store) for cp in plans)
    lines.append(f"total: {len(rows)} runs ({shared} more asked for by a second chapter, trained once), {n_levels} levels, "
                 f"{epochs} epochs, {total / 3600:.1f} GPU-hours of training with its own evaluation"
                 + (f" + {unknown} runs without an estimate" if unknown else "")
                 + (f", {evals / 3600:.1f} of evaluate_run" if evals else "")
                 + (f", + {len(later)} runs written later ({later_h:.1f} GPU-hours)" if later else "")
                 + (f" ({'; '.join(sources)})" if sources else ""))
    return lines


def _job_seconds(cp: ChapterPlan, job: Job, store: Any) -> float | None:
    est = cp.estimator
    if est is None:
        return None
    n = epochs_left(store, job.spec, job.keep)
    t = est.train_seconds(job.spec, n)
    return None if t is None else t + (est.eval_seconds(job.spec, n) or 0.0)


def actual_line(plans: list[ChapterPlan], store: Any) -> str | None:
    """After a build: the planned runs' estimated training time against the time their trained
    epochs took (the records' per-epoch ``seconds``, per-epoch evaluation and probes included;
    a continuation's epochs before its branch left out), or None when nothing was estimated."""
    est = actual = 0.0
    n = 0
    for cp in plans:
        for j in cp.jobs:
            s = _job_seconds(cp, j, store)
            rec = store.open(j.spec)
            if s is None or rec is None:
                continue
            start = rec.spec.start_from.epoch if rec.spec.start_from else 0
            est += s
            actual += sum(float(m.get("seconds") or 0.0) for m in rec.metrics if m["epoch"] > start)
            n += 1
    if not n:
        return None
    return (f"training: estimated {duration(est)}, actual {duration(actual)} for the {n} planned runs that finished "
            "(the trained epochs' wall time, per-epoch evaluation and probes included)")


# --------------------------------------------------------------------------------------
# training a whole book ahead

MAX_ROUNDS = 8


def train_ahead(root: Path, profile: str, names: list[str], executor: Any, store: Any,
                params: dict[str, Any] | None = None, say=print) -> dict[str, list[str]]:
    """Train every run the chapters ask for, round by round (the next round's specs need this
    round's records), keeping the executor's slots full across chapters; returns {chapter:
    [error, ...]} for chapters whose runs failed (empty when every round trained). The chapters
    then execute against a store where their runs are done and only read records."""
    from hardex.runs.errors import RunsFailed
    from hardex.runs.plan import train_jobs

    where = f"{executor.name} executor, {executor.slots} at once"
    for rnd in range(1, MAX_ROUNDS + 1):
        plans = plan_chapters(root, profile, names, store, params)
        owner = {j.spec.hash: cp.name for cp in plans for j in cp.jobs}
        jobs = plan(store, [j.spec for cp in plans for j in cp.jobs])  # merged: kept checkpoints of every child
        flat = [j for lv in jobs for j in lv]
        if not flat:
            return {}
        say(f"round {rnd}: training {len(flat)} runs of {len(set(owner.values()))} chapters ({where})", flush=True)
        t0, count = time.perf_counter(), [0]

        def ended(job, error, t0=t0, count=count, n=len(flat)):
            count[0] += 1
            say(f"  [{count[0]}/{n}] run {job.spec.short_hash} ({owner.get(job.spec.hash, '?')}) "
                f"{'done' if error is None else 'FAILED'} at {time.perf_counter() - t0:.0f} s", flush=True)

        try:
            train_jobs(store, flat, executor, progress=False, on_done=ended)
        except RunsFailed as err:
            failures: dict[str, list[str]] = {}
            for h, msg in err.failures.items():
                chapter = next((c for k, c in owner.items() if k.startswith(h)), "?")
                failures.setdefault(chapter, []).append(msg)
            return failures
    say(f"  stopped after {MAX_ROUNDS} rounds; the chapters train what is left")
    return {}
