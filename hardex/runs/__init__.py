"""The run store and everything that makes runs done.

    spec       RunSpec: what a run is (validated, hashed; where it trains is not part of it)
    store      RunStore: one folder per run, atomic files, locks, checkpoints, train_run
    plan       plan / ensure / train_jobs: which runs must train, in which order, on an executor
    errors     RunsFailed (what the CLI reports without importing torch)
    executors  where runs train: this process, N local workers, Slurm (submitit)
    worker     the process a local worker runs
    cli        `hardex train | eval | runs`

Imports go one way: spec <- store <- executors <- plan <- cli. ``from hardex.runs import
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
