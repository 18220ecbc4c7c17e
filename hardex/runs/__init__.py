"""The run store and everything that makes runs done.

    spec       RunSpec: what a run is (validated, hashed; where it trains is not part of it)
    describe   a run in words, the epochs it trains and the share of the data it sees
    files      atomic files, checksummed checkpoints, metrics.jsonl
    records    RunRecord: a run as stored; load_record, is_done, export/import copies
    store      RunStore: one folder per run, found by hash; locks, gc, export/import
    training   train_run: train, resume, regenerate a checkpoint; provenance sessions
    plan       plan / ensure / train_jobs: which runs must train, in which order, on an executor
    errors     RunsFailed (what the CLI reports without importing torch)
    executors  where runs train: this process, N local workers, Slurm (submitit)
    worker     the process a local worker runs
    progress   what is training, stopped, failed, done (`hardex status`, the book's progress lines)
    cli        `hardex train | runs`

Imports go one way: spec <- describe, files <- records <- store <- training <- executors <-
plan <- progress, cli (checked by the import-linter contracts in pyproject.toml). ``from hardex.runs import
ensure, RunSpec, RunStore`` is the short form.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"ensure": "hardex.runs.plan", "RunSpec": "hardex.runs.spec", "RunStore": "hardex.runs.store"}


def __getattr__(name: str) -> Any:  # lazy: importing hardex.runs.spec must not import torch
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hardex.runs' has no attribute {name!r}")
