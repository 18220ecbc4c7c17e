"""Training a whole book's runs at once, before its chapters execute.

With an executor that trains several runs at once (``--slots N``, or Slurm), `hardex book`
does not let each chapter train its own runs one ``ensure`` after another. It runs the
planning pass (`hardex.book.planning`) over every chosen chapter, merges their jobs (a run
several chapters share is one job), and hands them all to `hardex.runs.plan.train_jobs`,
which keeps the executor's slots full across chapter boundaries, children after parents.
Runs that can only be planned once others finish (the LS runs at the DPLS run's average
factor) appear in the next planning pass: rounds repeat until the pass finds nothing new
to train. The chapters then execute against a store where their runs are done, and only
read records. A failed job stops only the runs that need it; the book stops on the first
chapter that planned a failed run, with the error naming hash, job id and log.

Chapter kernels get the same executor (`hardex.runs.executors.export_settings`), so a run
the planning pass could not foresee still trains where the others did.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hardex.runs.executors import LocalExecutor

MAX_ROUNDS = 8


def merged_jobs(plans: list) -> tuple[list, dict[str, str]]:
    """Jobs of every chapter's plan, one per run (checkpoints to keep merged), and the
    chapter that first planned each (short hash -> chapter)."""
    from hardex.runs.plan import Job
    from hardex.runs.spec import RunSpec

    jobs: dict[str, Job] = {}
    owner: dict[str, str] = {}
    for cp in plans:
        for row in cp.jobs + getattr(cp, "shared_jobs", []):
            h = row["hash"]
            if h in jobs:
                keep = tuple(sorted(set(jobs[h].keep) | set(row.get("keep", []))))
                jobs[h] = Job(jobs[h].spec, keep)
                continue
            jobs[h] = Job(RunSpec.from_yaml(row["spec"]), tuple(row.get("keep", [])))
            owner[h] = cp.name
    return list(jobs.values()), owner


def wants_train_ahead(executor: Any) -> bool:
    """Whether the book trains ahead: any executor but one in-process slot."""
    return not (isinstance(executor, LocalExecutor) and executor.slots == 1)


def train_ahead(root: Path, profile: str, chapters: list[str], executor: Any, store: Any,
                first_plans: list | None = None, env: dict | None = None, say=print) -> dict[str, list[str]]:
    """Train every run the chapters plan, in rounds; returns {chapter: [error, ...]} for
    chapters whose runs failed (empty when every round trained)."""
    from hardex.book import planning as buildplan
    from hardex.runs import progress
    from hardex.runs.plan import RunsFailed, train_jobs

    where = f"{executor.name} executor, {executor.slots} at once"
    failures: dict[str, list[str]] = {}
    seen_rounds: list[set[str]] = []
    plans = first_plans
    for rnd in range(1, MAX_ROUNDS + 1):
        if plans is None:
            plans = buildplan.planning_pass(root, profile, chapters, Path(store.root) / progress.PLANS_DIR, env)
        broken = [cp for cp in plans if cp.stopped and cp.stopped.startswith("planning pass")]
        for cp in broken:
            say(f"  {cp.name}: {cp.stopped}; its remaining runs train when the chapter executes")
        jobs, owner = merged_jobs(plans)
        plans = None
        hashes = {j.spec.short_hash for j in jobs}
        if not jobs:
            return failures
        if hashes in seen_rounds:  # the last round did not make them done: let the chapters try
            say(f"  round {rnd}: the same {len(jobs)} runs as before are still not done; leaving them to the chapters")
            return failures
        seen_rounds.append(hashes)
        say(f"round {rnd}: training {len(jobs)} runs of {len({owner[h] for h in hashes})} chapters ({where})",
            flush=True)
        t0 = time.perf_counter()
        count = [0]

        def ended(job, error, t0=t0, count=count, n=len(jobs)):
            count[0] += 1
            what = "done" if error is None else "FAILED"
            say(f"  [{count[0]}/{n}] run {job.spec.short_hash} ({owner[job.spec.short_hash]}) {what} "
                f"at {time.perf_counter() - t0:.0f} s", flush=True)

        try:
            train_jobs(store, jobs, executor, progress=False, on_done=ended)
        except RunsFailed as err:
            for h, msg in err.failures.items():
                chapter = next((c for k, c in owner.items() if k.startswith(h[:12])), "?")
                failures.setdefault(chapter, []).append(msg)
            return failures
    say(f"  stopped after {MAX_ROUNDS} rounds; the chapters train what is left")
    return failures
