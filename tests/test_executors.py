"""Executors: in-process and submitit (its "local" cluster runs jobs as subprocesses)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest
import submitit

from hardex.runs.executors import EnsureJob, LocalExecutor, SlurmExecutor
from hardex.runs.plan import ensure
from test_store import FakeTrainer, child_of, numbers, spec, store_at

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_local_executor_is_the_default(tmp_path):
    store = store_at(tmp_path / "runs")
    s = spec(epochs=2)
    [a] = ensure([s], store, executor=LocalExecutor(), progress=False, trainer=FakeTrainer)
    [b] = ensure([s], store_at(tmp_path / "other"), progress=False, trainer=FakeTrainer)
    assert numbers(a) == numbers(b)


def test_ensure_job_checkpoint_resubmits_itself(tmp_path):
    job = EnsureJob(tmp_path / "runs", (), spec(epochs=2), keep=(1,), trainer=FakeTrainer)
    again = job.checkpoint()
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is job
    clone = pickle.loads(pickle.dumps(job))  # submitit pickles the callable
    assert clone.spec == job.spec and clone.keep == (1,)


def test_submitit_local_executor_parent_then_child(tmp_path, monkeypatch, capsys):
    # the job subprocesses import the fake trainer from tests/ by name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / "constructed.log"
    monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
    store = store_at(tmp_path / "runs")
    parent = spec(epochs=3)
    children = [child_of(parent, 2, 0.9), child_of(parent, 2, 0.8)]
    ex = SlurmExecutor(folder=tmp_path / "submitit", cluster="local", timeout_min=5)
    t0 = time.perf_counter()
    try:
        records = ensure(children, store, executor=ex, progress=False, trainer=FakeTrainer)
    except (OSError, submitit.core.utils.FailedJobError) as err:  # pragma: no cover
        if not ex.submitted:
            pytest.skip(f"submitit cannot start local jobs here: {err}")
        raise
    with capsys.disabled():
        print(f"\n[submitit] 3 runs in 2 levels of local jobs: {time.perf_counter() - t0:.1f}s")
    assert len(ex.submitted) == 3  # the parent, then both children
    assert len(log.read_text().splitlines()) == 3
    # the same numbers as training in this process
    ref = ensure(children, store_at(tmp_path / "ref"), progress=False, trainer=FakeTrainer)
    assert [numbers(r) for r in records] == [numbers(r) for r in ref]
    # everything is done now: nothing is submitted
    ensure(children, store, executor=ex, progress=False, trainer=FakeTrainer)
    assert len(ex.submitted) == 3


def test_slurm_executor_sets_the_requeue_limit_on_submitits_slurm_executor(tmp_path, monkeypatch):
    # submitit 1.5 takes max_num_timeout as a constructor argument of its Slurm executor and
    # rejects it as a job parameter (NameError: Unknown argument 'max_num_timeout' ...).
    # Building the executor submits nothing; submitit only checks that srun exists.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", "exit 1"), ("sbatch", "exit 1"),
                       ("scontrol", "echo 'Slurmctld(primary) at localhost is UP'")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ex = SlurmExecutor(cluster="slurm", max_requeue=5, timeout_min=7)._executor(store_at(tmp_path / "runs"))
    assert ex.cluster == "slurm" and ex._executor.max_num_timeout == 5
    assert ex._executor.parameters["time"] == 7
