"""SlurmExecutor against a live Slurm (tools/single-node-slurm start; CI starts one).

Marked ``slurm``: skipped with a one-line reason where no controller answers (CI sets
HARDEX_REQUIRE_SLURM=1, which makes that a failure). Every job is a tiny CPU run of the
fake trainer (one CPU each), so two run at once on a 2-core node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardex.runs.executors import LocalExecutor, SlurmExecutor
from hardex.runs.plan import RunsFailed, ensure
from test_schedule import ScoredFakeTrainer, dag, submitter
from test_store import FakeTrainer, numbers, spec, store_at

pytestmark = pytest.mark.slurm
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def job_env(monkeypatch):
    """What a job's Python needs: sbatch passes the submitter's environment on (--export=ALL)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def slurm(tmp_path, partition, slots=2, **kw) -> SlurmExecutor:
    return SlurmExecutor(folder=tmp_path / "submitit", slots=slots, poll_s=0.5, timeout_min=10, cpus_per_task=1,
                         slurm_partition=partition, **kw)


class FailingFakeTrainer(ScoredFakeTrainer):
    """Fails in its second epoch for seed 13 (a job that fails on the cluster)."""

    def run_epoch(self) -> dict:
        if self.cfg.seed == 13 and self.epoch == 1:
            raise RuntimeError("deliberate failure in epoch 2")
        return super().run_epoch()


def test_a_dag_of_five_runs_two_at_once(tmp_path, monkeypatch, job_env, slurm_partition, capsys):
    # seconds per fake epoch; every job also pays a Python start with torch's import (~5 s
    # on a loaded 2-core machine), so the speed-up shows with longer epochs (e.g. 10)
    epoch_s = os.environ.get("HARDEX_TEST_DAG_EPOCH_S", "1.5")
    monkeypatch.setenv("FAKE_EPOCH_SLEEP", epoch_s)
    specs = dag()
    times = {}
    t0 = time.perf_counter()
    ref = ensure(specs, store_at(tmp_path / "here"), progress=False, trainer=ScoredFakeTrainer)
    times["in this process, one at a time"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = ensure(specs, store_at(tmp_path / "local"), executor=LocalExecutor(slots=2), progress=False,
                   trainer=ScoredFakeTrainer)
    times["local, 2 worker processes"] = time.perf_counter() - t0
    ex = slurm(tmp_path, slurm_partition)
    store = store_at(tmp_path / "slurm")
    t0 = time.perf_counter()
    got = ensure(specs, store, executor=ex, progress=False, trainer=ScoredFakeTrainer)
    times["slurm, 2 jobs at once"] = time.perf_counter() - t0
    assert len(ex.submitted) == 5
    assert [numbers(r) for r in got] == [numbers(r) for r in ref] == [numbers(r) for r in local]
    for rec in got:
        job = json.loads((rec.path / "job.json").read_text())
        assert job["executor"] == "slurm" and job["job_id"].isdigit()
    base = times["in this process, one at a time"]
    with capsys.disabled():
        print(f"\n[slurm DAG] 5 runs, 16 epochs of {epoch_s} s: " +
              ", ".join(f"{k} {v:.1f} s ({base / v:.2f}x)" for k, v in times.items()))
    ensure(specs, store, executor=ex, progress=False, trainer=ScoredFakeTrainer)
    assert len(ex.submitted) == 5  # all done: nothing submitted again


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not pred():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.25)


def _epochs(store, s) -> int:
    f = store.run_dir(s) / "metrics.jsonl"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_a_requeued_job_resumes_and_ends_with_the_uninterrupted_numbers(tmp_path, monkeypatch, job_env,
                                                                       slurm_partition, capsys):
    monkeypatch.setenv("FAKE_EPOCH_SLEEP", "1.0")
    # long enough that Slurm kills it (SIGTERM, which submitit's jobs ignore, then SIGKILL
    # KillWait seconds later: 10 s on tools/single-node-slurm) before it would have finished
    s = spec(epochs=16)
    [ref] = ensure([s], store_at(tmp_path / "here"), progress=False, trainer=FakeTrainer)
    store = store_at(tmp_path / "slurm")
    ex = slurm(tmp_path, slurm_partition, slots=1)
    jobs = {}

    def submit_and_requeue():
        _wait(lambda: (store.run_dir(s) / "job.json").exists(), 60, "the job to be submitted")
        job_id = json.loads((store.run_dir(s) / "job.json").read_text())["job_id"]
        _wait(lambda: _epochs(store, s) >= 3, 120, "epoch 3 of the job")
        t0 = time.perf_counter()
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, text=True)
        jobs.update(id=job_id, at=_epochs(store, s), t0=t0)

    import threading

    th = threading.Thread(target=submit_and_requeue, daemon=True)
    th.start()
    t0 = time.perf_counter()
    [rec] = ensure([s], store, executor=ex, progress=False, trainer=FakeTrainer)
    th.join(5)
    assert jobs, "the requeue did not happen"
    sessions = rec.provenance["sessions"]
    assert len(sessions) == 2 and sessions[1]["from_epoch"] >= 3, sessions  # resumed, not restarted
    assert json.loads((rec.path / "job.json").read_text())["job_id"] == jobs["id"]  # the same job, requeued
    assert numbers(rec) == numbers(ref)  # every metrics row (timings aside) and the final evaluation
    with capsys.disabled():
        print(f"\n[slurm requeue] job {jobs['id']} requeued at epoch {jobs['at']}, resumed from epoch "
              f"{sessions[1]['from_epoch']}; done {time.perf_counter() - t0:.1f} s after submission; "
              "final numbers equal the uninterrupted run's")


def test_a_killed_submitter_is_replaced_without_training_anything_twice(tmp_path, job_env, slurm_partition):
    specs = dag()
    code = submitter(specs, tmp_path, "from hardex.runs.executors import SlurmExecutor",
                     f"SlurmExecutor(folder={str(tmp_path / 'submitit')!r}, slots=2, poll_s=0.5, timeout_min=10, "
                     f"cpus_per_task=1, slurm_partition={slurm_partition!r})")
    env = {**os.environ, "FAKE_EPOCH_SLEEP": "1.5"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    store = store_at(tmp_path / "runs")
    first = [store.run_dir(s) / "job.json" for s in (specs[0], specs[3])]
    _wait(lambda: all(f.exists() for f in first), 90, "the first two jobs to be submitted")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {f: json.loads(f.read_text())["job_id"] for f in first}
    ex = slurm(tmp_path, slurm_partition)
    os.environ["FAKE_EPOCH_SLEEP"] = "1.5"
    try:
        got = ensure(specs, store, executor=ex, progress=False, trainer=ScoredFakeTrainer)
    finally:
        os.environ.pop("FAKE_EPOCH_SLEEP", None)
    for f, job_id in before.items():
        assert json.loads(f.read_text())["job_id"] == job_id  # re-attached (or found done), not resubmitted
    assert len(ex.submitted) == 3  # only the three runs the dead submitter had not started
    for rec in got:
        assert len(rec.provenance["sessions"]) == 1, rec.path  # each run trained once


def test_a_failed_job_is_named_and_the_others_go_on(tmp_path, job_env, slurm_partition):
    ok = spec(epochs=2)
    bad = spec(epochs=3, seed=13)
    ex = slurm(tmp_path, slurm_partition)
    store = store_at(tmp_path / "runs")
    with pytest.raises(RunsFailed) as err:
        ensure([bad, ok], store, executor=ex, progress=False, trainer=FailingFakeTrainer)
    msg = str(err.value)
    job_id = json.loads((store.run_dir(bad) / "job.json").read_text())["job_id"]
    assert f"run {bad.short_hash} failed (job {job_id}; log " in msg
    assert "deliberate failure in epoch 2" in msg
    log = msg.split("; log ")[1].split(")")[0]
    assert Path(log).exists()
    assert store.open(ok) is not None and store.open(bad) is None
    assert "deliberate failure" in json.loads((store.run_dir(bad) / "failed.json").read_text())["error"]


def test_a_smoke_chapter_built_on_slurm_equals_the_local_build(tmp_path, job_env, slurm_partition):
    """The evaluation chapter (smoke) with --executor slurm: every run a Slurm job, the
    chapter only reading records; its ledger (every number it checks) equals the local build's."""
    chapter = "evaluation"
    ledgers = {}
    builds = [("local", []), ("slurm", ["--executor", "slurm", "--slots", "2",
                                       "--slurm", f"partition={slurm_partition}",
                                       "--slurm", "cpus_per_task=1", "--slurm", "timeout_min=20"])]
    made = os.environ.get("HARDEX_LOCAL_LEDGER")  # `make slurm`: the nbval build's ledger, made just before
    if made:
        ledgers["local"] = json.loads((Path(made) / f"{chapter}.json").read_text())
        builds = builds[1:]
    for name, extra in builds:
        env = {**os.environ, "HARDEX_RUNS": str(tmp_path / f"runs-{name}"), "HARDEX_EXECUTOR": "local"}
        out = tmp_path / f"book-{name}"
        r = subprocess.run([sys.executable, "-m", "hardex.cli", "book", "--profile", "smoke", "--chapters", chapter,
                            "--no-html", "--quiet", "--out", str(out), *extra], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        ledgers[name] = json.loads((out / "ledger" / f"{chapter}.json").read_text())
        if name == "slurm":
            assert "round 1: training" in r.stdout, r.stdout[-2000:]
            jobs = list((tmp_path / "runs-slurm").glob("*/job.json"))
            assert jobs and all(json.loads(j.read_text())["executor"] == "slurm" for j in jobs)
    assert _numbers_only(ledgers["slurm"]) == _numbers_only(ledgers["local"])


def _numbers_only(ledger):
    """A ledger without its build timings."""
    if isinstance(ledger, dict):
        return {k: _numbers_only(v) for k, v in ledger.items() if k not in ("built", "seconds", "wall_s", "created")}
    if isinstance(ledger, list):
        return [_numbers_only(v) for v in ledger]
    return ledger
