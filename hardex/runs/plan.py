"""`ensure`: what must train for some specs (the plan), and training it on an executor.

`plan` turns specs into jobs level by level: a run needs its parent (``start_from``), its
score-source runs (``scores_from``) and its teachers; each is a job once however many runs
share it, and keeps the checkpoints its children branch from. Done runs are left out.

`train_jobs` is the scheduler: it hands every job whose needs are done to the executor,
as many at once as the executor has ``slots``, and keeps going while others finish, so a
whole book's runs can be in flight together (`hardex.book` passes it every chapter's
jobs). A job that fails stops only the jobs that need it; the others go on and the failures
are raised together at the end (`RunsFailed`). Where it trains is the executor's business
(`hardex.runs.executors`: this process, worker processes, Slurm); nothing here knows it.

`recorded` is ensure's counterpart for a build that renders from records only: it trains
nothing and names the runs without a record (`NoRecord`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from hardex.runs.describe import describe, training_fraction
from hardex.runs.errors import NoRecord, RunsFailed
from hardex.runs.executors import configured_executor
from hardex.runs.spec import RunScores, RunSpec
from hardex.runs.files import _sidecar
from hardex.runs.records import RunRecord, is_done
from hardex.runs.store import RunStore
from hardex.runs.training import TrainerFactory, _Run

@dataclass
class Job:
    """One run to make done, with the branch checkpoints its children need."""

    spec: RunSpec
    keep: tuple[int, ...] = ()


def needs(spec: RunSpec) -> list[RunSpec]:
    """The runs ``spec`` needs before it trains: score sources, teachers, its parent."""
    out = [s.run for s in spec.scores_from.values() if isinstance(s, RunScores)]
    out += [t.run for t in spec.teachers.values()]
    if spec.start_from is not None:
        out.append(spec.start_from.parent)
    return out


def plan(store: RunStore, specs: Iterable[RunSpec]) -> list[list[Job]]:
    """Jobs level by level (parents before children), deduplicated by hash, leaving out
    runs that are done and have every checkpoint asked of them."""
    nodes: dict[str, RunSpec] = {}
    depth: dict[str, int] = {}
    keep: dict[str, set[int]] = {}

    def level(spec: RunSpec) -> int:
        """0 for a run that needs no other run, else one more than the deepest it needs."""
        h = spec.hash
        if h not in depth:
            depth[h] = 1 + max((level(d) for d in needs(spec)), default=-1)
        return depth[h]

    def need(spec: RunSpec) -> None:
        h = spec.hash
        nodes[h] = spec
        level(spec)
        keep.setdefault(h, set())
        if store.open(spec) is not None:
            return
        for src in spec.scores_from.values():  # needed whenever this run trains (resume too)
            if isinstance(src, RunScores):
                if src.epoch is not None:
                    keep.setdefault(src.run.hash, set()).add(src.epoch)
                need(src.run)
        for t in spec.teachers.values():
            need(t.run)
        sf = spec.start_from
        if sf is None:
            return
        own = _Run(store, spec, None, False).ckpts()
        if any(e >= sf.epoch for e, f in own if _sidecar(f).exists()):
            return  # it resumes from its own checkpoint; the parent is not needed
        keep.setdefault(sf.parent.hash, set()).add(sf.epoch)
        need(sf.parent)

    for s in specs:
        need(s)
    levels: dict[int, list[Job]] = {}
    for h, spec in nodes.items():
        run = _Run(store, spec, None, False)
        if store.open(spec) is not None and all(run.has_ckpt(e) for e in keep[h]):
            continue
        levels.setdefault(depth[h], []).append(Job(spec, tuple(sorted(keep[h]))))
    return [levels[k] for k in sorted(levels)]


# --------------------------------------------------------------------------------------
# a planned job in words and numbers (`hardex status --profile` reads them)


def epochs_left(store: RunStore, spec: RunSpec, keep: tuple[int, ...] = ()) -> int:
    """Epochs a job still trains: from its newest checkpoint, else its branch epoch, else 0.
    A done run asked for a missing branch checkpoint regenerates up to that epoch."""
    run = _Run(store, spec, None, False)
    have = [e for e, f in run.ckpts() if _sidecar(f).exists()]
    n = spec.train.epochs
    if is_done(run.dir):
        want = max(keep, default=0)
        return max(0, want - max((e for e in have if e <= want), default=0))
    start = max(have, default=spec.start_from.epoch if spec.start_from else 0)
    return max(0, n - start)


def job_row(store: RunStore, job: Job, level: int) -> dict:
    """One planned job as JSON: what it is, its level and epochs, and its spec (to train it
    from another process: ``RunSpec.from_yaml(row["spec"])``)."""
    s = job.spec
    t = s.train
    return {"hash": s.short_hash, "what": describe(s), "level": level, "epochs": t.epochs,
            "epochs_left": epochs_left(store, s, job.keep), "algorithm": t.algorithm, "model": t.model.name,
            "attack_steps": t.attack.steps, "fraction": training_fraction(s),
            "needs": sorted({d.short_hash for d in needs(s)}), "keep": list(job.keep), "spec": s.to_yaml()}


# --------------------------------------------------------------------------------------
# training a plan


def train_jobs(store: RunStore, jobs: Iterable[Job], executor: Any, *, trainer: TrainerFactory | None = None,
               progress: bool = True, on_done: Callable[[Job, str | None], None] | None = None,
               poll_s: float = 0.5) -> None:
    """Train ``jobs`` on ``executor``: every job whose needs (among ``jobs``) are done is
    started, at most ``executor.slots`` at a time; a job already in flight from an earlier
    submitter (``executor.attach``) is waited for, not started again. Raises `RunsFailed`
    naming every failed job (and the jobs not started because they need one) at the end.
    ``on_done(job, error_or_None)`` is called as each job ends."""
    pending = {j.spec.hash: j for j in jobs}
    if not pending:
        return
    running: dict[str, Any] = {}
    finished: set[str] = set()
    failed: dict[str, str] = {}
    slots = max(1, int(getattr(executor, "slots", 1)))

    def end(h: str, error: str | None) -> None:
        job = pending.pop(h, None) or running_jobs.pop(h)
        if error is None:
            finished.add(h)
        else:
            failed[h] = error
        if on_done is not None:
            on_done(job, error)

    running_jobs: dict[str, Job] = {}
    while pending or running:
        for h, job in list(pending.items()):
            deps = [d.hash for d in needs(job.spec) if d.hash in pending or d.hash in running or d.hash in failed]
            bad = [d for d in deps if d in failed]
            if bad:
                end(h, f"run {job.spec.short_hash} not started: it needs run {bad[0][:12]}, which failed")
                continue
            if deps or len(running) >= slots:
                continue
            handle = executor.attach(store, job) if hasattr(executor, "attach") else None
            if handle is None:
                handle = executor.submit(store, job, trainer=trainer, progress=progress)
            running[h] = handle
            running_jobs[h] = pending.pop(h)
        ended = [h for h, handle in running.items() if handle.done()]
        for h in ended:
            handle = running.pop(h)
            end(h, handle.error())
        if running and not ended:
            time.sleep(poll_s)
    if failed:
        raise RunsFailed({h[:12]: m for h, m in failed.items()})


def ensure(specs: RunSpec | Iterable[RunSpec], store: RunStore | None = None, executor: Any = None,
           progress: bool = True, *, trainer: TrainerFactory | None = None) -> list[RunRecord]:
    """Records of ``specs`` (same order): finished ones are read, the rest trained.

    Parents (``start_from``) and score-source runs (``scores_from``) are trained first,
    once each however many runs share them, keeping the checkpoints the children branch
    from and the source epochs asked for; the Trainer of a run with ``scores_from`` gets
    ``scores={name: arrays}`` (see ``hardex.runs.training.load_scores``). ``executor``:
    where runs train (default: `hardex.runs.executors.configured_executor`, which is this
    process unless ``HARDEX_EXECUTOR`` or the executor file says otherwise); ``trainer``
    builds a Trainer from a TrainConfig (default ``hardex.train.Trainer``).
    """
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    store = store if store is not None else RunStore()
    levels = plan(store, specs)
    total = sum(len(level) for level in levels)
    if total and executor is None:
        executor = configured_executor()
    with tqdm(total=total, desc="runs", unit="run", disable=not progress or total == 0) as bar:
        train_jobs(store, [j for level in levels for j in level], executor, trainer=trainer, progress=progress,
                   on_done=lambda job, err: bar.update(1))
    records = []
    for s in specs:
        rec = store.open(s)
        if rec is None:
            raise RuntimeError(f"run {s.short_hash} is not done after ensure (see {store.run_dir(s)})")
        records.append(rec)
    return records


def recorded(specs: RunSpec | Iterable[RunSpec], store: RunStore | None = None) -> list[RunRecord]:
    """Records of ``specs`` without training anything (a build that renders from records only):
    :class:`~hardex.runs.errors.NoRecord` names the runs that have none in the store or its
    read-only roots (``results/``)."""
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    store = store if store is not None else RunStore()
    records = [store.open(s) for s in specs]
    missing = [s for s, r in zip(specs, records) if r is None]
    if missing:
        raise NoRecord(f"not run yet (no record): {len(missing)} of the {len(specs)} runs asked for have no record "
                       "in the run store or results/: "
                       + ", ".join(f"{s.short_hash[:12]} ({describe(s)})" for s in missing[:8])
                       + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    return records
