"""Where `ensure` trains: in this process, or as Slurm jobs through submitit.

An executor runs one level of `ensure`'s plan at a time (runs whose parents are done),
so children are submitted only after their parents finished. Each job calls
`EnsureJob`, which trains (or resumes) exactly one spec with `hardex.store.train_run`;
because a run resumes from its newest checkpoint, a preempted and requeued job simply
continues where it was killed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from hardex.spec import RunSpec
from hardex.store import Job, RunStore, TrainerFactory, train_run


class EnsureJob(submitit.helpers.Checkpointable):
    """Train one spec into a store; picklable, so it can run in a submitit job.

    On preemption or timeout submitit calls ``checkpoint``, which resubmits this same
    callable: the resubmitted job resumes from the run's newest checkpoint.
    """

    def __init__(self, runs_root: str | os.PathLike, extra_roots: tuple[str, ...], spec: RunSpec,
                 keep: tuple[int, ...] = (), trainer: TrainerFactory | None = None, progress: bool = False):
        self.runs_root = str(runs_root)
        self.extra_roots = tuple(str(r) for r in extra_roots)
        self.spec = spec
        self.keep = tuple(keep)
        self.trainer = trainer
        self.progress = progress

    def __call__(self) -> str:
        store = RunStore(self.runs_root, extra_roots=self.extra_roots)
        rec = train_run(store, self.spec, self.keep, trainer=self.trainer, progress=self.progress)
        return str(rec.path)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _job(store: RunStore, job: Job, trainer: TrainerFactory | None, progress: bool) -> EnsureJob:
    root = Path(store.root).resolve()
    extras = tuple(str(Path(r).resolve()) for r in store.extra_roots)
    return EnsureJob(root, extras, job.spec, job.keep, trainer, progress)


class LocalExecutor:
    """Train in this process, one run after another (the default)."""

    def run_jobs(self, store: RunStore, jobs: list[Job], *, trainer: TrainerFactory | None = None,
                 progress: bool = True, on_done: Callable[[], None] | None = None) -> None:
        for job in jobs:
            _job(store, job, trainer, progress)()
            if on_done is not None:
                on_done()


class SlurmExecutor:
    """Submit each run as a job through ``submitit.AutoExecutor`` and wait for them.

    ``cluster``: None lets submitit pick (Slurm when available); "local" runs jobs as
    local subprocesses and "debug" in this process (tests). ``parameters`` go to
    ``update_parameters`` (e.g. ``timeout_min=600, slurm_partition="gpu", gpus_per_node=1``).
    Job logs go to ``folder`` (default: ``<store root>/_submitit``).
    """

    def __init__(self, folder: str | os.PathLike | None = None, cluster: str | None = None,
                 max_requeue: int = 3, **parameters: Any):
        self.folder = folder
        self.cluster = cluster
        self.max_requeue = max_requeue
        self.parameters = parameters
        self.submitted: list[Any] = []  # every submitit job, for inspection

    def _executor(self, store: RunStore) -> submitit.AutoExecutor:
        folder = Path(self.folder) if self.folder is not None else Path(store.root) / "_submitit"
        kwargs = {"cluster": self.cluster} if self.cluster is not None else {}
        # a constructor argument of submitit's Slurm executor, not a job parameter
        # (update_parameters rejects it); the other executors ignore it
        ex = submitit.AutoExecutor(folder=folder / "%j", slurm_max_num_timeout=self.max_requeue, **kwargs)
        if self.parameters:
            ex.update_parameters(**self.parameters)
        return ex

    def run_jobs(self, store: RunStore, jobs: list[Job], *, trainer: TrainerFactory | None = None,
                 progress: bool = True, on_done: Callable[[], None] | None = None) -> None:
        if not jobs:
            return
        ex = self._executor(store)
        submitted = [ex.submit(_job(store, job, trainer, progress=False)) for job in jobs]
        self.submitted += submitted
        errors = []
        for job, sub in zip(jobs, submitted):
            try:
                sub.result()
            except Exception as err:  # noqa: BLE001 - report every failed run together
                errors.append(f"run {job.spec.short_hash} (job {sub.job_id}): {err}")
            if on_done is not None:
                on_done()
        if errors:
            raise RuntimeError("some runs failed:\n" + "\n".join(errors))
