"""Run store mechanics (hardex.runs.store) with a small fake trainer that follows the
Trainer contract (hardex/train.py) and consumes torch and numpy RNG like a real one.

The end-to-end tests with the real Trainer are at the bottom (skipped until it exists).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardex import provenance as lockfile
from hardex.config import TrainConfig
from hardex.runs.plan import ensure
from hardex.runs.spec import RunSpec
from hardex.runs.files import CorruptRunError, _without_timing, load_checked, read_metrics
from hardex.runs.store import RunStore

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# --------------------------------------------------------------------------------------
# the fake trainer


class FakeTrainer:
    """hardex.train.Trainer's contract on a linear model and random data.

    Environment hooks for the subprocess tests: FAKE_KILL_AT_EPOCH=k kills the process
    with SIGKILL in the middle of epoch k; FAKE_RAISE_AT_EPOCH=k raises there;
    FAKE_EPOCH_SLEEP=s sleeps s seconds per epoch; FAKE_TRAINER_LOG=file gets one line
    per construction (counts trainings across processes).
    """

    constructed = 0

    def __init__(self, cfg: TrainConfig, *, device=None, data_root=None):
        FakeTrainer.constructed += 1
        log = os.environ.get("FAKE_TRAINER_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
        self.cfg = cfg
        self.epoch = 0
        self.device = torch.device("cpu")
        torch.manual_seed(cfg.seed)
        self.model = torch.nn.Linear(8, 3)
        # plain SGD with momentum by hand: torch.optim's first step imports torch._dynamo
        # (seconds), which the subprocess tests would pay in every process
        self.momentum = [torch.zeros_like(p) for p in self.model.parameters()]
        self.np_rng = np.random.default_rng(cfg.seed)
        self.acc = np.zeros(20, dtype=np.float32)
        self.best: dict | None = None

    def run_epoch(self) -> dict:
        e = self.epoch + 1
        t0 = time.time()
        time.sleep(float(os.environ.get("FAKE_EPOCH_SLEEP", "0")))
        total = 0.0
        lam = self.cfg.targets.lam
        for b in range(4):
            if b == 2 and os.environ.get("FAKE_KILL_AT_EPOCH") == str(e):
                os.kill(os.getpid(), signal.SIGKILL)
            if b == 2 and os.environ.get("FAKE_RAISE_AT_EPOCH") == str(e):
                raise KeyboardInterrupt(f"fake interruption in epoch {e}")
            x = torch.randn(16, 8) + float(self.np_rng.normal())
            y = torch.randint(0, 3, (16,))
            loss = lam * F.cross_entropy(self.model(x), y)
            self.model.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p, m in zip(self.model.parameters(), self.momentum):
                    m.mul_(0.9).add_(p.grad)
                    p.sub_(self.lr(e) * m)
            total += loss.item()
        self.acc += self.np_rng.random(20).astype(np.float32)
        self.epoch = e
        with torch.no_grad():
            robust = float(torch.sigmoid(self.model.weight.sum()).item())
        if self.best is None or robust > self.best["robust"]:
            self.best = {"epoch": e, "robust": robust,
                         "model": {k: v.clone() for k, v in self.model.state_dict().items()}}
        return {"epoch": e, "loss": total / 4, "test_robust_acc": robust,
                "lr": self.lr(e), "time": time.time() - t0}

    def lr(self, epoch: int) -> float:
        passed = sum(1 for m in self.cfg.schedule.milestones if m < epoch)
        return self.cfg.optimizer.lr * self.cfg.schedule.gamma ** passed

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "momentum": [m.clone() for m in self.momentum],
            "torch_rng": torch.get_rng_state(),
            "np_rng": self.np_rng.bit_generator.state,
            "acc": self.acc.copy(),
            "epoch": self.epoch,
            "best": self.best,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd["model"])
        self.momentum = [m.clone() for m in sd["momentum"]]
        torch.set_rng_state(sd["torch_rng"])
        self.np_rng.bit_generator.state = sd["np_rng"]
        self.acc = sd["acc"].copy()
        self.epoch = sd["epoch"]
        self.best = sd["best"]

    def difficulty_arrays(self) -> dict:
        return {"zero_one": self.acc.copy()}

    def final_evaluation(self) -> dict:
        with torch.no_grad():
            w = self.model.weight
            noise = torch.rand(1).item()  # consumes RNG like PGD's random start
            return {"clean_acc": float(torch.sigmoid(w[0].sum()).item()),
                    "pgd20_acc": float(torch.sigmoid(w[0].sum() - noise).item())}

    def best_state(self) -> dict | None:
        if self.best is None:
            return None
        return {"epoch": self.best["epoch"], "model": self.best["model"]}


# --------------------------------------------------------------------------------------
# helpers


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 4, "model": {"name": "tiny_cnn"}, "schedule": {"milestones": [2]},
            "tracking": {"until_epoch": 2}}
    return TrainConfig.model_validate({**base, **kw})


def spec(**kw) -> RunSpec:
    checkpoints = kw.pop("checkpoints", {})
    return RunSpec(train=cfg(**kw), checkpoints=checkpoints)


def child_of(parent: RunSpec, epoch: int, lam: float, **kw) -> RunSpec:
    train = TrainConfig.model_validate({**parent.train.model_dump(), "targets": {"kind": "ls", "lam": lam}, **kw})
    return RunSpec(train=train, start_from={"parent": parent, "epoch": epoch})


def store_at(path: Path) -> RunStore:
    return RunStore(path, extra_roots=())


def numbers(rec) -> tuple[list[dict], dict]:
    """Metrics rows without wall-clock timings, and the final evaluation."""
    rows = [_without_timing(r) for r in rec.metrics]
    return rows, rec.final


def run_python(code: str, env: dict | None = None, wait: bool = True):
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err
    return proc


ENSURE_IN_SUBPROCESS = """
    from hardex.runs.spec import RunSpec
    from hardex.runs.plan import ensure
    from hardex.runs.store import RunStore
    from test_store import FakeTrainer
    spec = RunSpec.from_yaml({spec_file!r})
    [rec] = ensure([spec], RunStore({root!r}, extra_roots=()), progress=False, trainer=FakeTrainer)
    print("RECORD", rec.path, rec.final)
"""


def ensure_code(spec_file: Path, root: Path) -> str:
    return ENSURE_IN_SUBPROCESS.format(spec_file=str(spec_file), root=str(root))


# --------------------------------------------------------------------------------------
# tests


def test_same_spec_twice_is_a_cache_hit(tmp_path, capsys):
    store = store_at(tmp_path / "runs")
    s = spec()
    FakeTrainer.constructed = 0
    t0 = time.perf_counter()
    [a] = ensure([s], store, progress=False, trainer=FakeTrainer)
    t1 = time.perf_counter()
    [b] = ensure([s], store, progress=False, trainer=FakeTrainer)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n[cache] first ensure {t1 - t0:.3f}s (trained), second {t2 - t1:.3f}s (cache hit)")
    assert FakeTrainer.constructed == 1
    assert a.done and b.done and numbers(a) == numbers(b)
    d = store.run_dir(s)
    assert d.name == s.short_hash
    for name in ("spec.yaml", "metrics.jsonl", "difficulty.npz", "final.json", "provenance.json", "best.pt"):
        assert (d / name).exists(), name
    assert RunSpec.from_yaml(d / "spec.yaml") == s
    assert [r["epoch"] for r in a.metrics] == [1, 2, 3, 4]
    assert set(a.final) == {"epochs", "final", "best"} and a.final["best"]["epoch"] >= 1
    assert a.difficulty["zero_one"].shape == (20,)
    prov = a.provenance
    for key in ("hardex_version", "git_commit", "torch", "device", "hostname", "start", "end", "wall_s"):
        assert key in prov
    # the record names the locked environment that made it
    assert prov["lock"]["sha256"] == lockfile.lock_sha256() and isinstance(prov["lock"]["matches"], bool)
    # only the last checkpoint is kept (every=1, last=True)
    assert sorted(p.name for p in (d / "ckpt").glob("*.pt")) == ["epoch-004.pt"]
    # a single spec (not a list) is accepted too
    assert ensure(s, store, progress=False, trainer=FakeTrainer)[0].path == a.path


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path, capsys):
    s = spec(epochs=5, checkpoints={"every": 2})
    f = tmp_path / "spec.yaml"
    s.to_yaml(f)
    root = tmp_path / "runs"
    rc, out, err = run_python(ensure_code(f, root), env={"FAKE_KILL_AT_EPOCH": "4"})
    assert rc == -signal.SIGKILL, err
    d = root / s.short_hash
    assert not (d / "final.json").exists()
    assert len(read_metrics(d / "metrics.jsonl")) == 3  # epochs 1-3 logged, killed in 4
    assert sorted(p.name for p in (d / "ckpt").glob("*.pt")) == ["epoch-002.pt"]
    assert RunStore(root, extra_roots=()).status(d) == "partial"

    t0 = time.perf_counter()
    [resumed] = ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    t1 = time.perf_counter()
    [plain] = ensure([s], store_at(tmp_path / "plain"), progress=False, trainer=FakeTrainer)
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n[resume] resumed run {t1 - t0:.3f}s, uninterrupted {t2 - t1:.3f}s; "
              f"final {resumed.final['final']} == {plain.final['final']}")
    assert numbers(resumed) == numbers(plain)
    assert np.array_equal(resumed.difficulty["zero_one"], plain.difficulty["zero_one"])
    assert [x["from_epoch"] for x in resumed.provenance["sessions"]] == [0, 2]
    a = load_checked(resumed.path / "best.pt")
    b = load_checked(plain.path / "best.pt")
    assert a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_two_processes_same_spec_train_once(tmp_path):
    s = spec(epochs=2)
    f = tmp_path / "spec.yaml"
    s.to_yaml(f)
    root, log = tmp_path / "runs", tmp_path / "constructed.log"
    env = {"FAKE_EPOCH_SLEEP": "0.6", "FAKE_TRAINER_LOG": str(log)}
    procs = [run_python(ensure_code(f, root), env=env, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    assert len(log.read_text().splitlines()) == 1  # one trainer built: the other waited
    records = [line for o in outs for line in o[0].splitlines() if line.startswith("RECORD")]
    assert len(records) == 2 and records[0] == records[1]


def test_four_children_share_one_parent(tmp_path):
    store = store_at(tmp_path / "runs")
    parent = spec(epochs=4)
    children = [child_of(parent, 2, lam) for lam in (0.9, 0.8, 0.7)] + [child_of(parent, 3, 0.6)]
    FakeTrainer.constructed = 0
    records = ensure(children, store, progress=False, trainer=FakeTrainer)
    assert FakeTrainer.constructed == 5  # the parent once, each child once
    prec = store.open(parent)
    assert prec is not None and len(prec.provenance["sessions"]) == 1
    # the parent keeps its branch points (2, 3) and its last checkpoint
    assert sorted(p.name for p in (store.run_dir(parent) / "ckpt").glob("*.pt")) == [
        "epoch-002.pt", "epoch-003.pt", "epoch-004.pt"]
    for rec, child in zip(records, children):
        t = child.start_from.epoch
        assert rec.spec == child and len(rec.metrics) == 4
        assert rec.metrics[:t] == prec.metrics[:t]  # a child's log starts with its parent's rows
        assert rec.metrics[t]["loss"] != prec.metrics[t]["loss"]
    assert len({r.final["final"]["clean_acc"] for r in records}) == 4
    ensure(children + [parent], store, progress=False, trainer=FakeTrainer)
    assert FakeTrainer.constructed == 5  # all cache hits


def test_missing_branch_checkpoint_is_regenerated_exactly(tmp_path, recwarn):
    parent = spec(epochs=4)
    child = child_of(parent, 2, 0.8)
    # reference: parent and child trained together
    [ref] = ensure([child], store_at(tmp_path / "ref"), progress=False, trainer=FakeTrainer)
    # parent trained alone first: it keeps only its last checkpoint
    store = store_at(tmp_path / "runs")
    ensure([parent], store, progress=False, trainer=FakeTrainer)
    assert not (store.run_dir(parent) / "ckpt" / "epoch-002.pt").exists()
    [rec] = ensure([child], store, progress=False, trainer=FakeTrainer)
    assert (store.run_dir(parent) / "ckpt" / "epoch-002.pt").exists()
    assert numbers(rec) == numbers(ref)
    assert not [w for w in recwarn if "differ" in str(w.message)]
    # branching at an epoch beyond the parent fails at validation
    with pytest.raises(ValueError, match="beyond the parent"):
        child_of(parent, 5, 0.8)


def test_truncated_checkpoint_falls_back_to_previous_good_one(tmp_path):
    s = spec(epochs=4, checkpoints={"at": [1]})
    root = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FAKE_RAISE_AT_EPOCH", "3")
            ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    ck = root / s.short_hash / "ckpt"
    assert sorted(p.name for p in ck.glob("*.pt")) == ["epoch-001.pt", "epoch-002.pt"]
    data = (ck / "epoch-002.pt").read_bytes()
    (ck / "epoch-002.pt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(Exception, match="does not match"):
        load_checked(ck / "epoch-002.pt")
    with pytest.warns(UserWarning, match="bad checkpoint"):
        [rec] = ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    assert [x["from_epoch"] for x in rec.provenance["sessions"]] == [0, 1]
    assert (ck / "epoch-002.pt.corrupt").exists()
    [plain] = ensure([s], store_at(tmp_path / "plain"), progress=False, trainer=FakeTrainer)
    assert numbers(rec) == numbers(plain)


def test_checkpoint_without_sidecar_is_not_trusted(tmp_path):
    s = spec(epochs=3)
    root = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_RAISE_AT_EPOCH", "3")
        ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    (root / s.short_hash / "ckpt" / "epoch-002.pt.sha256").unlink()  # killed between the renames
    with pytest.warns(UserWarning, match="no checksum"):
        [rec] = ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    assert [x["from_epoch"] for x in rec.provenance["sessions"]] == [0, 0]  # started over
    [plain] = ensure([s], store_at(tmp_path / "plain"), progress=False, trainer=FakeTrainer)
    assert numbers(rec) == numbers(plain)


def test_half_written_metrics_line_is_detected_and_redone(tmp_path):
    s = spec(epochs=4)
    root = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_RAISE_AT_EPOCH", "3")
        ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    m = root / s.short_hash / "metrics.jsonl"
    with open(m, "a") as f:
        f.write('{"epoch": 3, "loss": 0.12')  # a half-written append
    with pytest.raises(CorruptRunError, match="half-written"):
        read_metrics(m)
    with pytest.warns(UserWarning, match="half-written"):
        assert len(read_metrics(m, drop_partial_last=True)) == 2
    [rec] = ensure([s], store_at(root), progress=False, trainer=FakeTrainer)
    [plain] = ensure([s], store_at(tmp_path / "plain"), progress=False, trainer=FakeTrainer)
    assert numbers(rec) == numbers(plain)
    assert len(m.read_text().splitlines()) == 4


def test_finished_run_with_corrupt_files_is_never_silently_read(tmp_path):
    store = store_at(tmp_path / "runs")
    s = spec(epochs=2)
    ensure([s], store, progress=False, trainer=FakeTrainer)
    m = store.run_dir(s) / "metrics.jsonl"
    m.write_text(m.read_text()[:-10])
    with pytest.raises(CorruptRunError):
        store.open(s)
    (store.run_dir(s) / "final.json").write_text("{not json")
    with pytest.raises(CorruptRunError, match="final.json"):
        store.open(s)


def test_export_then_import_gives_the_same_record(tmp_path):
    store = store_at(tmp_path / "runs")
    parent = spec(epochs=3)
    child = child_of(parent, 2, 0.9)
    recs = ensure([parent, child], store, progress=False, trainer=FakeTrainer)
    (recs[0].path / "eval").mkdir()
    (recs[0].path / "eval" / "final-a3-n10-s0.json").write_text('{"clean_acc": 0.5}')
    results = tmp_path / "results"
    store.export([r.spec.short_hash for r in recs], results)
    # cached evaluations travel with the record
    assert (results / recs[0].spec.short_hash / "eval" / "final-a3-n10-s0.json").read_text() == '{"clean_acc": 0.5}'
    assert sorted(p.name for p in results.iterdir()) == sorted(r.spec.short_hash for r in recs)
    assert not list(results.rglob("*.pt"))
    # read-only extra root: ensure treats the records as done
    FakeTrainer.constructed = 0
    ro = RunStore(tmp_path / "fresh", extra_roots=[results])
    got = ensure([child], ro, progress=False, trainer=FakeTrainer)
    assert FakeTrainer.constructed == 0 and numbers(got[0]) == numbers(recs[1])
    assert got[0].path.parent == results
    # import into a fresh store
    fresh = store_at(tmp_path / "fresh2")
    assert len(fresh.import_(results)) == 2
    got = ensure([parent, child], fresh, progress=False, trainer=FakeTrainer)
    assert FakeTrainer.constructed == 0
    assert [numbers(g) for g in got] == [numbers(r) for r in recs]
    assert np.array_equal(got[0].difficulty["zero_one"], recs[0].difficulty["zero_one"])
    assert got[0].provenance == recs[0].provenance
    # a new child of the imported parent regenerates the branch checkpoint it lacks
    other = child_of(parent, 1, 0.7)
    [rec] = ensure([other], fresh, progress=False, trainer=FakeTrainer)
    [ref] = ensure([other], store, progress=False, trainer=FakeTrainer)
    assert numbers(rec) == numbers(ref)


def test_gc_and_remove(tmp_path):
    store = store_at(tmp_path / "runs")
    parent = spec(epochs=4, checkpoints={"last": False})
    child = child_of(parent, 2, 0.9)
    ensure([child], store, progress=False, trainer=FakeTrainer)
    partial = spec(epochs=3, seed=7)
    with pytest.raises(KeyboardInterrupt), pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_RAISE_AT_EPOCH", "2")
        ensure([partial], store, progress=False, trainer=FakeTrainer)
    pdir = store.run_dir(parent)
    assert sorted(p.name for p in (pdir / "ckpt").glob("*.pt")) == ["epoch-002.pt"]  # last=False
    (pdir / "ckpt" / "epoch-001.pt").write_bytes(b"stale")
    removed = store.gc()
    assert store.run_dir(partial) in removed and not store.run_dir(partial).exists()
    assert (pdir / "ckpt" / "epoch-002.pt").exists()  # a branch point of a stored child
    assert not (pdir / "ckpt" / "epoch-001.pt").exists()
    store.remove(child.short_hash)
    assert not store.run_dir(child).exists()
    with pytest.raises(KeyError):
        store.resolve(child.short_hash)


# --------------------------------------------------------------------------------------
# end to end with the real Trainer on a tiny synthetic image folder

try:
    from hardex.train import Trainer
except ImportError:  # pragma: no cover - until hardex/train.py lands
    Trainer = None

needs_trainer = pytest.mark.skipif(Trainer is None, reason="hardex.train.Trainer is not available")


class KillingTrainer(Trainer if Trainer is not None else object):
    """The real Trainer, killed (SIGKILL) after computing epoch $KILL_AT_EPOCH but before
    the store has recorded it."""

    def run_epoch(self):
        row = super().run_epoch()
        if os.environ.get("KILL_AT_EPOCH") == str(row["epoch"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return row


@pytest.fixture
def tiny_cifar(tmp_path_factory, monkeypatch):
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for c in range(10):
            d = root / "cifar10" / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = (rng.random((32, 32, 3)) * 80 + c * 17).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:03d}.png")
    monkeypatch.setenv("HARDEX_DATA", str(root))
    return root


def real_spec(checkpoints=None, **kw) -> RunSpec:
    base = {"epochs": 3, "model": {"name": "tiny_cnn"}, "algorithm": "pgd", "batch_size": 32,
            "attack": {"steps": 1}, "schedule": {"milestones": [2]}, "tracking": {"until_epoch": 2},
            "eval": {"subset": 16, "pgd_steps": 1, "final_pgd_steps": [2], "batch_size": 64},
            "device": "cpu"}
    return RunSpec(train=TrainConfig.model_validate({**base, **kw}), checkpoints=checkpoints or {})


@needs_trainer
def test_real_trainer_cache_hit_branch_and_sigkill_resume(tmp_path, tiny_cifar, capsys):
    s = real_spec(checkpoints={"at": [2]})  # keep the branch point (not part of the hash)
    root = tmp_path / "runs"
    t0 = time.perf_counter()
    [a] = ensure([s], store_at(root), progress=False)
    t1 = time.perf_counter()
    [b] = ensure([s], store_at(root), progress=False)
    t2 = time.perf_counter()
    assert numbers(a) == numbers(b) and a.final["final"]["n"] == 20

    # killed in epoch 3 (after the epoch-2 checkpoint), then resumed in this process
    f = tmp_path / "spec.yaml"
    s.to_yaml(f)
    code = f"""
        from hardex.runs.spec import RunSpec
        from hardex.runs.plan import ensure
        from hardex.runs.store import RunStore
        from test_store import KillingTrainer
        ensure([RunSpec.from_yaml({str(f)!r})], RunStore({str(tmp_path / 'killed')!r}, extra_roots=()),
               progress=False, trainer=KillingTrainer)
    """
    rc, out, err = run_python(code, env={"KILL_AT_EPOCH": "3"})
    assert rc == -signal.SIGKILL, err
    [resumed] = ensure([s], store_at(tmp_path / "killed"), progress=False)
    t3 = time.perf_counter()
    assert [x["from_epoch"] for x in resumed.provenance["sessions"]] == [0, 2]
    assert numbers(resumed) == numbers(a)
    assert np.array_equal(resumed.difficulty["zero_one"], a.difficulty["zero_one"])

    # a DPLS continuation from epoch 2
    train = TrainConfig.model_validate({**s.train.model_dump(), "targets": {"kind": "dpls", "lam": 0.8}})
    child = RunSpec(train=train, start_from={"parent": s, "epoch": 2})
    [c] = ensure([child], store_at(root), progress=False)
    assert numbers(c)[0][:2] == numbers(a)[0][:2] and len(c.metrics) == 3
    assert "dpls_factors" in c.difficulty
    with capsys.disabled():
        print(f"\n[real] first ensure {t1 - t0:.2f}s, cache hit {t2 - t1:.3f}s, killed+resumed {t3 - t2:.2f}s; "
              f"final {resumed.final['final']} == {a.final['final']}")
