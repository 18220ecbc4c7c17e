"""hardex.runs.plan.train_jobs (the scheduler) and LocalExecutor's worker processes.

The scheduler is tested against an executor of its own here (handles it finishes by hand),
so every claim about order, slots and failures is checked without timing anything; the
worker-process tests train a DAG of fake runs and compare the numbers with this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hardex.config import TrainConfig
from hardex.runs.executors import ExecutorError, LocalExecutor, executor_settings, make_executor, parse_key_values
from hardex.runs.plan import RunsFailed, ensure, plan, train_jobs
from hardex.runs.spec import RunSpec
from test_store import FakeTrainer, child_of, numbers, spec, store_at

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


class ScoredFakeTrainer(FakeTrainer):
    """FakeTrainer that also takes ``scores=`` (a run with scores_from) and checks them."""

    def __init__(self, cfg: TrainConfig, *, scores=None, **kw):
        super().__init__(cfg, **kw)
        if cfg.edits:
            assert scores and "zero_one" in scores["base"], "the score source's difficulty did not arrive"


def dag() -> list[RunSpec]:
    """Five runs in two levels: a parent and two branches from its epoch 2, a score source
    and a run whose kept subset comes from that source's difficulty."""
    parent = spec(epochs=4)
    source = spec(epochs=4, seed=5)
    train = TrainConfig.model_validate({**parent.train.model_dump(), "seed": 1,
                                        "edits": [{"kind": "keep", "rule": {"k": 10, "source": "base"}}]})
    scored = RunSpec.model_validate({"train": train, "scores_from": {"base": {"run": source}}})
    return [parent, child_of(parent, 2, 0.9), child_of(parent, 2, 0.8), source, scored]


class Manual:
    """An executor whose jobs end when the test says so (``finish``), recording the order."""

    def __init__(self, slots: int, fail: set[str] = frozenset()):
        self.slots, self.fail = slots, fail
        self.started: list[str] = []
        self.live: dict[str, Handle] = {}
        self.most = 0

    def submit(self, store, job, *, trainer=None, progress=True):
        h = Handle(self, job.spec.short_hash)
        self.started.append(h.name)
        self.live[h.name] = h
        self.most = max(self.most, len(self.live))
        return h

    def attach(self, store, job):
        return None


class Handle:
    def __init__(self, ex: Manual, name: str):
        self.ex, self.name, self.polls = ex, name, 0

    def done(self) -> bool:
        self.polls += 1  # each job runs for two polls of the scheduler
        if self.polls >= 2:
            self.ex.live.pop(self.name, None)
            return True
        return False

    def error(self):
        return f"run {self.name} failed (job x; log y): boom" if self.name in self.ex.fail else None


def test_scheduler_starts_children_after_parents_and_keeps_to_the_slots(tmp_path):
    specs = dag()
    store = store_at(tmp_path / "runs")
    jobs = [j for level in plan(store, specs) for j in level]
    assert len(jobs) == 5
    ex = Manual(slots=2)
    ended = []
    train_jobs(store, jobs, ex, on_done=lambda job, err: ended.append(job.spec.short_hash), poll_s=0)
    parent, b1, b2, source, scored = (s.short_hash for s in specs)
    order = ex.started
    assert sorted(order) == sorted(ended) and len(order) == 5
    assert order[:2] == [parent, source]  # both level-0 runs at once
    assert ex.most == 2  # never more than the slots, and the slots were used
    for child, needed in ((b1, parent), (b2, parent), (scored, source)):
        assert ended.index(needed) < order.index(child)
    ex3 = Manual(slots=3)
    train_jobs(store, jobs, ex3, poll_s=0)
    assert ex3.most == 3


def test_a_failed_job_stops_only_the_jobs_that_need_it(tmp_path):
    specs = dag()
    store = store_at(tmp_path / "runs")
    jobs = [j for level in plan(store, specs) for j in level]
    parent = specs[0].short_hash
    ex = Manual(slots=2, fail={parent})
    with pytest.raises(RunsFailed) as err:
        train_jobs(store, jobs, ex, poll_s=0)
    assert set(ex.started) == {parent, specs[3].short_hash, specs[4].short_hash}  # the other branch went on
    msg = str(err.value)
    assert f"run {parent} failed (job x; log y): boom" in msg
    for child in specs[1:3]:
        assert f"run {child.short_hash} not started: it needs run {parent[:12]}, which failed" in msg
    assert len(err.value.failures) == 3


def test_local_workers_train_the_dag_with_the_numbers_of_this_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_EPOCH_SLEEP", "0.3")
    specs = dag()
    t0 = time.perf_counter()
    ref = ensure(specs, store_at(tmp_path / "one"), progress=False, trainer=ScoredFakeTrainer)
    t1 = time.perf_counter()
    store = store_at(tmp_path / "two")
    ex = LocalExecutor(slots=2)
    got = ensure(specs, store, executor=ex, progress=False, trainer=ScoredFakeTrainer)
    t2 = time.perf_counter()
    assert [numbers(r) for r in got] == [numbers(r) for r in ref]
    for rec in got:
        job = json.loads((rec.path / "job.json").read_text())
        assert job["executor"] == "local" and Path(job["log"]).exists()
        assert len(rec.provenance["sessions"]) == 1
    with capsys.disabled():
        print(f"\n[local slots] 5-run DAG: 1 slot in-process {t1 - t0:.1f} s, 2 worker processes {t2 - t1:.1f} s")


def submitter(specs: list[RunSpec], tmp_path: Path, imports: str, executor: str) -> str:
    """Python code that ensures ``specs`` into ``tmp_path/runs`` on ``executor`` (an
    expression, after ``imports``), for a submitting process the test can kill."""
    files = []
    for i, s in enumerate(specs):
        files.append(tmp_path / f"s{i}.yaml")
        s.to_yaml(files[-1])
    return textwrap.dedent(f"""
        {imports}
        from hardex.runs.plan import ensure
        from hardex.runs.spec import RunSpec
        from hardex.runs.store import RunStore
        from test_schedule import ScoredFakeTrainer
        specs = [RunSpec.from_yaml(f) for f in {[str(f) for f in files]!r}]
        ensure(specs, RunStore({str(tmp_path / 'runs')!r}, extra_roots=()), executor={executor}, progress=False,
               trainer=ScoredFakeTrainer)
    """)


def test_a_killed_submitter_leaves_workers_that_the_next_one_waits_for(tmp_path):
    """The submitting process dies (SIGKILL) while its workers train; the same command
    again re-attaches to the workers in flight and starts the rest: every run trains once."""
    specs = dag()
    code = submitter(specs, tmp_path, "from hardex.runs.executors import LocalExecutor", "LocalExecutor(slots=2)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "FAKE_EPOCH_SLEEP": "1.0"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    store = store_at(tmp_path / "runs")
    first = store.run_dir(specs[0]) / "job.json"
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert first.exists(), "the submitter started no worker"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pid = int(json.loads(first.read_text())["job_id"])
    assert store.open(specs[0]) is None  # its worker is still training
    os.kill(pid, 0)  # ... and alive
    ex = LocalExecutor(slots=2)
    got = ensure(specs, store, executor=ex, progress=False, trainer=ScoredFakeTrainer)
    assert int(json.loads(first.read_text())["job_id"]) == pid  # waited for, not started again
    for rec in got:
        assert len(rec.provenance["sessions"]) == 1, rec.path  # trained once, in one go


def test_executor_settings_and_their_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("HARDEX_EXECUTOR", raising=False)
    monkeypatch.setenv("HARDEX_EXECUTOR_FILE", str(tmp_path / "none.yaml"))
    assert executor_settings() == {}
    assert isinstance(make_executor({}), LocalExecutor) and make_executor({}).slots == 1
    f = tmp_path / "executor.yaml"
    f.write_text("executor: local\nslots: 2\ngpus: [0, 1]\n")
    monkeypatch.setenv("HARDEX_EXECUTOR_FILE", str(f))
    ex = make_executor(executor_settings())
    assert ex.slots == 2 and ex.gpus == [0, 1]
    assert executor_settings(slots=1)["slots"] == 1
    monkeypatch.setenv("HARDEX_EXECUTOR", json.dumps({"executor": "local", "slots": 3}))
    assert make_executor(executor_settings()).slots == 3  # the environment wins over the file
    assert parse_key_values(["partition=gpu", "timeout_min=600"]) == {"partition": "gpu", "timeout_min": 600}
    for bad, msg in (({"executor": "pbs"}, "unknown executor 'pbs'; allowed: local, slurm"),
                     ({"slots": 0}, "slots must be a whole number >= 1, got 0"),
                     ({"slots": 3, "gpus": [0, 1]}, "slots=3 but only 2 GPUs given"),
                     ({"executor": "local", "slurm": {"partition": "gpu"}}, "slurm options given for executor 'local'"),
                     ({"sockets": 2}, "unknown executor setting(s) ['sockets']")):
        with pytest.raises(ExecutorError, match=None) as err:
            make_executor(bad)
        assert msg in str(err.value)
    with pytest.raises(ExecutorError, match="expected KEY=VALUE"):
        parse_key_values(["partition"])
    monkeypatch.setenv("HARDEX_EXECUTOR", "{not json")
    with pytest.raises(ExecutorError, match="HARDEX_EXECUTOR"):
        executor_settings()


def test_slurm_that_is_not_there_is_one_clear_error(tmp_path, monkeypatch):
    from hardex.runs.executors import SlurmExecutor

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))  # no sbatch at all
    with pytest.raises(ExecutorError, match="sbatch is not on PATH"):
        SlurmExecutor()
    # a client whose controller is down: scontrol ping says so (quickly), nothing hangs
    (bin_dir / "sbatch").write_text("#!/bin/sh\nsleep 600\n")
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 'Slurmctld(primary) at localhost is DOWN'\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match=r"controller is not reachable \(scontrol ping: .*DOWN"):
        make_executor({"executor": "slurm"})
    assert time.perf_counter() - t0 < 60
