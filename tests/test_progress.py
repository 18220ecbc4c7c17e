"""Cost lines, the hardware refusal, live progress, `hardex status`, and interrupting a
book build (SIGINT / SIGTERM) then resuming it to the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hardex.book import planning

from hardex.runs import progress
from hardex.book.build import check_hardware
from hardex.runs.describe import describe
from hardex.runs.plan import ensure
from hardex.runs.store import RunStore
from hardex.runs.training import train_run
from test_store import FakeTrainer, child_of, numbers, spec

REPO = Path(__file__).resolve().parent.parent


def test_describe_and_cost_line(tmp_path):
    s = spec(epochs=4)
    c = child_of(s, 2, 0.9)
    assert describe(s) == "pgd tiny_cnn"
    assert describe(c) == f"pgd+ls(0.9) tiny_cnn <-{s.short_hash[:8]}@2"
    from hardex.experiments.rounds import Runs
    from hardex.runs.plan import Job

    store = RunStore(tmp_path / "runs", extra_roots=())
    cp = planning.ChapterPlan("dpls", runs=Runs({}, later={("ls",): c}), jobs=[Job(s), Job(c)], shared=[Job(s)],
                               done=2, train_s=5400.0, eval_s=60.0)
    line = planning.cost_line(cp, store)
    assert line == ("dpls: 2 runs to train (2 already done, 1 shared with an earlier chapter), 6 epochs, "
                    "est. 1.5 h training + 60 s evaluation; 1 more once these finish")


def _cost(**kw):
    from hardex.experiments.params import Cost

    return Cost(**{"minutes_per_epoch": {"pgd": 0.5}, "model_scale": {"resnet18": 2.0}, "eval_passes_per_s": 25000.0,
                   "passes_per_example": {"a3": 200.0}, **kw})


def test_estimates_from_bench_else_stated(tmp_path):
    """One estimator (hardex.experiments.cost): a bench report of the device, else the profile's
    stated minutes (scaled by attack steps, model and training share), x a stated slowdown on a CPU."""
    from hardex.experiments.cost import CPU_SLOWDOWN, Estimator
    from hardex.experiments.rounds import EvalRequest

    s = spec(epochs=5, dataset={"subset": {"n": 1000}}, attack={"steps": 2})  # PGD-2 on 2% of the training split
    est = Estimator(_cost(), "tiny_cnn", 2)
    assert est.train_seconds(s, 5) == pytest.approx(30 * 0.02 * 5)
    assert "stated minutes" in est.sources[0] and "x300" not in est.sources[0]
    cpu = Estimator(_cost(), "tiny_cnn", 2, cpu=True)
    assert cpu.train_seconds(s, 5) == pytest.approx(30 * 0.02 * 5 * CPU_SLOWDOWN) and "x300 for a CPU" in cpu.sources[0]
    assert Estimator(_cost(), "tiny_cnn", 10).train_seconds(s, 5) == pytest.approx(30 * 3 / 11 * 0.02 * 5)  # 2 of 10 steps
    assert Estimator(_cost(), "resnet18", 2).train_seconds(s, 5) is None  # no stated scale for tiny_cnn
    report = {"settings": {"epoch_images": 50000, "quick": True},
              "results": [{"model": "tiny_cnn", "algorithm": "pgd", "attack_steps": 10,
                           "hardex": {"tracking": {"s_per_epoch": 1100.0}}}],
              "environment": {"device": "cpu"}}
    (tmp_path / "results").mkdir()
    bench = Estimator(_cost(), "tiny_cnn", 2, bench=(tmp_path / "results" / "b.json", report), root=tmp_path)
    assert bench.train_seconds(s, 5) == pytest.approx(1100.0 * 3 / 11 * 0.02 * 5)
    assert bench.sources == ["from results/b.json, a --quick plumbing report"]
    req = EvalRequest(s, ("pgd20", "a3"), 1000)
    assert est.request_seconds(req) == pytest.approx(1000 * (21 + 200) / 25000)


def test_refusal_on_the_wrong_hardware(monkeypatch):
    line = check_hardware("fast", gpu=False, device=None, yes=False, total=3600.0 * 30, chapters=["dpls"])
    assert "profile fast is meant for one GPU and no GPU is visible (est. 30.0 h" in line
    assert "`hardex book --profile fast --chapters dpls --device cpu --yes`" in line and "\n" not in line
    assert check_hardware("fast", gpu=False, device="cpu", yes=True, total=1.0, chapters=["dpls"]) is None
    assert check_hardware("fast", gpu=True, device=None, yes=False, total=1.0, chapters=["dpls"]) is None
    assert check_hardware("smoke", gpu=False, device=None, yes=False, total=1.0, chapters=["dpls"]) is None
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # not a terminal: refuse without --yes
    line = check_hardware("paper", gpu=True, device=None, yes=False, total=86400.0 * 3, chapters=["dpls"])
    assert "a cluster or a long GPU job" in line and "est. 3.0 days" in line and "--yes" in line
    assert check_hardware("paper", gpu=True, device=None, yes=True, total=1.0, chapters=["dpls"]) is None


class FailingTrainer(FakeTrainer):
    def run_epoch(self):
        if self.epoch == 1:
            raise RuntimeError("loss is nan")
        return super().run_epoch()


def test_status_and_watcher_read_the_store(tmp_path):
    store = RunStore(tmp_path / "runs", extra_roots=())
    done, failing, training, queued = spec(epochs=2), spec(epochs=3, seed=1), spec(epochs=5, seed=2), spec(seed=3)
    ensure([done], store, progress=False, trainer=FakeTrainer)
    with pytest.raises(RuntimeError, match="nan"):
        train_run(store, failing, trainer=FailingTrainer, progress=False)
    assert json.loads((store.run_dir(failing) / "failed.json").read_text())["error"] == "RuntimeError: loss is nan"
    d = store.run_dir(training)
    d.mkdir(parents=True)
    (d / "spec.yaml").write_text(training.to_yaml())
    (d / "metrics.jsonl").write_text('{"epoch": 1, "seconds": 2.0}\n{"epoch": 2, "seconds": 4.0}\n{"epo')
    progress.write_plan(store.root, "smoke", [{"name": "tiny", "complete": True, "jobs": [
        {"hash": training.short_hash, "what": "pgd tiny_cnn", "epochs_left": 5, "seconds": 15.0},
        {"hash": queued.short_hash, "what": "pgd tiny_cnn", "epochs_left": 4, "seconds": 12.0}]}])
    with store.lock(training, progress=False):
        text = progress.status_text(store.root, "smoke")
        w = progress.Watcher(store.root, out=open(os.devnull, "w"), tty=False, every=0)
        lines = []
        w.out = type("Out", (), {"write": lambda self, t: lines.append(t), "flush": lambda self: None,
                                 "isatty": lambda self: False})()
        w.set_chapter("tiny", [{"hash": queued.short_hash, "seconds": 12.0}])
        w.poll()
    assert "1 done, 1 training, 0 stopped, 1 failed" in text
    assert f"training {training.short_hash[:10]}  pgd tiny_cnn: epoch 2/5, 3.0 s/epoch, ETA 9 s" in text
    assert f"failed   {failing.short_hash[:10]}" in text and "loss is nan" in text
    assert "tiny: 1 training, 1 queued; ETA 21 s" in text
    assert f"queued   {queued.short_hash[:10]}  pgd tiny_cnn: 4 epochs, est. 12 s" in text
    out = "".join(lines)
    assert "\r" not in out and out.count("\n") == 1
    assert out == (f"  tiny {training.short_hash[:10]} pgd tiny_cnn: epoch 2/5, 3.0 s/epoch, run ETA 9 s, "
                   "chapter ETA 21 s\n")
    w.poll()  # the lock is gone: one line says how the run ended
    assert lines[-1] == f"  tiny {training.short_hash[:10]} pgd tiny_cnn: stopped at epoch 2/5\n"


CHAPTER = '''\
# %% [markdown]
# # Tiny

# %% tags=["parameters"]
profile = "smoke"
build = {}
overrides = {}

# %%
from test_store import FakeTrainer, spec
from hardex.runs.plan import ensure

[rec] = ensure([spec(epochs=4)], trainer=FakeTrainer, progress=False)
'''


def _tiny_book(root: Path) -> None:
    (root / "book").mkdir(parents=True)
    (root / "params" / "smoke").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: _executed/tiny\n")
    (root / "book" / "tiny.py").write_text(CHAPTER)


def _env(runs: Path) -> dict:
    return {**os.environ, "HARDEX_RUNS": str(runs), "FAKE_EPOCH_SLEEP": "1.0",
            "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.slow
def test_book_plan_interrupt_and_resume_gives_the_uninterrupted_numbers(tmp_path):
    root = tmp_path / "book"
    _tiny_book(root)
    s = spec(epochs=4)
    [ref] = ensure([s], RunStore(tmp_path / "ref", extra_roots=()), progress=False, trainer=FakeTrainer)
    cmd = [sys.executable, "-m", "hardex.cli", "book", "--root", str(root), "--profile", "smoke",
           "--no-html", "--out", str(tmp_path / "exec")]

    # the cost lines of a real chapter, before anything trains (its experiment's runs, no chapter run)
    plan = subprocess.run([sys.executable, "-m", "hardex.cli", "book", "--profile", "smoke", "--chapters", "dpls",
                           "--plan-only"], env=_env(tmp_path / "runs-plan"), capture_output=True, text=True, cwd=REPO)
    assert plan.returncode == 0, plan.stderr
    assert "dpls: 4 runs to train (0 already done), 11 epochs, est." in plan.stdout  # 5 + 3 continuations x 2
    assert "; 1 more once these finish" in plan.stdout  # LS at the DPLS run's factor: round 2
    assert not (tmp_path / "runs-plan").exists() or not any(
        (d / "spec.yaml").exists() for d in (tmp_path / "runs-plan").iterdir())  # nothing trained
    jobs = progress.read_plan(tmp_path / "runs-plan", "smoke")["chapters"][0]["jobs"]
    assert len(jobs) == 4 and all(j["what"].startswith("pgd") for j in jobs)

    for sig in (signal.SIGINT, signal.SIGTERM):
        runs = tmp_path / f"runs-{sig.name}"
        env = _env(runs)
        p = subprocess.Popen([*cmd, "--no-plan"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = runs / s.short_hash / "ckpt" / "epoch-001.pt.sha256"
        t0 = time.time()
        while not first.exists():
            assert p.poll() is None and time.time() - t0 < 90, p.communicate()
            time.sleep(0.1)
        status = progress.status_text(runs)
        assert "1 training" in status and f"training {s.short_hash[:10]}" in status
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 128 + sig, (out, err)
        assert "resume with: hardex book --profile smoke --chapters tiny --no-html" in err
        assert f"{s.short_hash[:10]} pgd tiny_cnn" in out  # the watcher's plain lines
        assert "\r" not in out
        assert not (runs / s.short_hash / "final.json").exists()
        assert progress.run_state(runs / s.short_hash).status == "stopped"
        again = subprocess.run([*cmd, "--no-plan"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        rec = RunStore(runs, extra_roots=()).open(s)
        assert numbers(rec) == numbers(ref)  # metrics (without timings) and final.json
        assert rec.provenance["sessions"][-1]["from_epoch"] >= 1  # resumed, not retrained
