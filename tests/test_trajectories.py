"""Bit-exact training trajectories of every algorithm and method, and resume from a
checkpoint, on tiny synthetic data (CPU).

``trajectories.json`` holds, per configuration in ``CONFIGS``, every metrics row (without
its timing), the final evaluation and sha256 digests of the final model, the exported
model and the difficulty arrays, recorded by this file's ``__main__`` with the Trainer as
it was before the method-hook refactor. A refactor of the Trainer must reproduce them bit
for bit: no tolerance. Floating-point results depend on the torch / numpy build and the
CPU's vector instructions, so the comparison runs only where ``env()`` matches the
recording's (else it is skipped, saying why); to move the reference to another machine,
record on the commit before your change (``python tests/test_trajectories.py``) and
compare after it. The runs use one intra-op thread (reductions split over threads add
in another order).

The resume test needs no recording: each run is checkpointed after epoch 2 (the frozen
DPLS / DPR arrays, edit sets and the methods' states exist by then), the checkpoint goes
through ``torch.save`` / ``torch.load(..., weights_only=True)`` into a fresh Trainer, and
its epoch 3 must equal the uninterrupted run's, the whole final state included.
``legacy_trainer_state.pt``, saved by the Trainer before its state was weights-only
loadable (numpy arrays, RST's state at the top level), must still load and resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardex import data, models
from hardex.config import TrainConfig
from hardex.train import Trainer

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "trajectories.json"

N_TRAIN, N_TEST, N_UNLABELLED = 56, 24, 30

BASE = dict(model={"name": "tiny_cnn"}, epochs=3, schedule={"milestones": [2]}, tracking={"until_epoch": 1},
            attack={"steps": 2}, batch_size=16, optimizer={"lr": 0.05},
            eval={"pgd_steps": 2, "final_pgd_steps": [2]}, device="cpu")
DPLS = {"kind": "dpls", "lam": 0.5}
DPR = {"kind": "dpr", "lam": 0.3}
RST = dict(batch_size=20, targets=DPLS)  # 12 labelled + 8 pseudo-labelled images per batch
# Epoch 1 tracks difficulty; DPLS / DPR, SAT, SWA, AWP (PGD-AT) and the prune edit start at
# epoch 2, so the checkpoint after epoch 2 holds every kind of state.
CONFIGS: dict[str, dict] = {
    "std": dict(algorithm="std"),
    "pgd": dict(),
    "trades": dict(algorithm="trades"),
    "mart": dict(algorithm="mart"),
    "pgd_kd": dict(kd={"teachers": {"std": 0.1, "robust": 0.6}}),
    "pgd_reweight_prob": dict(reweight={"mode": "prob", "from_epoch": 2}),
    "pgd_reweight_nat_prob": dict(reweight={"mode": "nat_prob"}),
    "trades_reweight_prob": dict(algorithm="trades", reweight={"mode": "prob"}),
    "pgd_adaptive_target_reweight": dict(adaptive_target={"from_epoch": 2}, reweight={"mode": "nat_prob"}),
    "trades_rst_labelled": dict(algorithm="trades", rst={"fraction": 0.4, "dpls": "labelled"}, **RST),
    "trades_rst_unlabelled": dict(algorithm="trades", rst={"fraction": 0.4, "dpls": "unlabelled"}, **RST),
    "trades_rst_both": dict(algorithm="trades", rst={"fraction": 0.4, "dpls": "both"}, **RST),
    "pgd_rst_weight_dpr": dict(rst={"fraction": 0.4, "weight": 0.5}, batch_size=20, targets=DPR),
    "pgd_awp": dict(awp={"from_epoch": 2}),
    "trades_awp": dict(algorithm="trades", awp={"gamma": 0.005}),
    "pgd_sat": dict(sat={"from_epoch": 2}),
    "trades_sat": dict(algorithm="trades", sat={"from_epoch": 2}),
    "pgd_te": dict(te={"from_epoch": 1, "ramp_until": 3}),
    "trades_te": dict(algorithm="trades", te={"from_epoch": 1, "ramp_until": 3}),
    "pgd_swa": dict(swa={"from_epoch": 2}),
    "pgd_te_awp_swa": dict(te={"from_epoch": 1, "ramp_until": 3}, awp={"from_epoch": 1}, swa={"from_epoch": 2}),
    "pgd_dpls": dict(targets=DPLS, edits=[{"kind": "prune", "from_epoch": 2, "rule": {"k": 8}}],
                     probes=[{"name": "hard", "rule": {"k": 10}, "metrics": ["clean_acc", "el2n_clean"]}]),
    "pgd_dpls_smoothed_attack": dict(targets=DPLS, attack={"steps": 2, "attack_sees_smoothed_labels": True}),
    "trades_dpls": dict(algorithm="trades", targets=DPLS),
    "mart_dpls": dict(algorithm="mart", targets=DPLS),
    "pgd_dpr": dict(targets=DPR),
    "trades_dpr": dict(algorithm="trades", targets=DPR),
    "mart_dpr": dict(algorithm="mart", targets=DPR),
    # legacy_trainer_state.pt is its checkpoint after epoch 2 as the Trainer of this file's
    # first commit saved it (numpy arrays in it); no momentum and no per-epoch evaluation
    # keep the file small; it holds RST with DPLS on both parts, an edit set, DPLS factors
    "legacy": dict(algorithm="trades", rst={"fraction": 0.4, "dpls": "both"},
                   edits=[{"kind": "random_labels", "from_epoch": 2, "rule": {"k": 8}}],
                   optimizer={"lr": 0.05, "momentum": 0.0}, eval={"every": 0, "final_pgd_steps": [2]}, **RST),
}


def env() -> dict:
    """What bit-exact floating-point results depend on here (see the module docstring)."""
    return {"torch": torch.__version__, "numpy": np.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cfg_of(name: str) -> TrainConfig:
    return TrainConfig(**{**BASE, **CONFIGS[name]})


def _images(g: torch.Generator, labels: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    x = 0.6 * templates[labels] + 0.4 * torch.rand(len(labels), 3, 32, 32, generator=g)
    return (x * 255).round().to(torch.uint8)


def _splits() -> tuple[data.Dataset, data.Dataset, dict]:
    """A learnable task (each class a fixed 8x8-block colour template plus noise), its test
    split, and pseudo-labelled images (a tenth of them with a wrong pseudo label)."""
    g = torch.Generator().manual_seed(0)
    templates = F.interpolate(torch.rand(10, 3, 8, 8, generator=g), size=32)
    out = []
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        y = torch.randint(0, 10, (n,), generator=g)
        out.append(data.Dataset("synthetic", split, _images(g, y, templates), y, torch.arange(n),
                                [str(c) for c in range(10)]))
    y = torch.randint(0, 10, (N_UNLABELLED,), generator=g)
    x = _images(g, y, templates)
    wrong = torch.arange(N_UNLABELLED) % 10 == 0
    y[wrong] = (y[wrong] + 1) % 10
    return out[0], out[1], {"images": x.numpy(), "labels": y.numpy()}


def _teachers() -> dict[str, torch.nn.Module]:
    out = {}
    for i, name in enumerate(("std", "robust")):
        torch.manual_seed(100 + i)
        out[name] = models.build_model("tiny_cnn")
    return out


@contextlib.contextmanager
def _synthetic_data(train: data.Dataset, test: data.Dataset):
    """``data.load_dataset`` hands out these splits while a Trainer is built."""
    original = data.load_dataset
    data.load_dataset = lambda name, split="train", **kw: train if split == "train" else test
    try:
        yield
    finally:
        data.load_dataset = original


@contextlib.contextmanager
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def new_trainer(name: str) -> Trainer:
    cfg = cfg_of(name)
    train, test, unlabeled = _splits()
    kw = {}
    if cfg.kd is not None:
        kw["teachers"] = _teachers()
    if cfg.rst is not None:
        kw["unlabeled"] = unlabeled
    with _synthetic_data(train, test):
        return Trainer(cfg, **kw)


def strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds"}


def digest(obj) -> str:
    """sha256 of tensors, arrays and plain Python values, recursively (dict keys sorted)."""
    h = hashlib.sha256()

    def feed(o):
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, np.ndarray):
            h.update(f"array {o.dtype} {o.shape};".encode())
            h.update(np.ascontiguousarray(o).tobytes())
        elif isinstance(o, dict):
            h.update(f"dict {len(o)};".encode())
            for k in sorted(o, key=repr):
                feed(k)
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            h.update(f"{type(o).__name__} {len(o)};".encode())
            for v in o:
                feed(v)
        else:
            h.update(f"{type(o).__name__} {o!r};".encode())

    feed(obj)
    return h.hexdigest()


def saved(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def trajectory(name: str) -> dict:
    """The uninterrupted run: its rows, digests and final evaluation, the final trainer,
    and the checkpoint (``torch.save`` bytes) after epoch 2."""
    with _one_thread():
        tr = new_trainer(name)
        rows = []
        for e in range(1, tr.cfg.epochs + 1):
            rows.append(strip(tr.run_epoch()))
            if e == 2:
                ckpt = saved(tr.state_dict())
        final = tr.final_evaluation()
    record = {"rows": rows, "final": final, "model": digest(tr.model.state_dict()),
              "exported": digest(tr.exported_model_state()), "difficulty": digest(tr.difficulty_arrays())}
    return {"record": json.loads(json.dumps(record)), "trainer": tr, "checkpoint": ckpt}


_RUNS: dict[str, dict] = {}


def run(name: str) -> dict:
    if name not in _RUNS:
        _RUNS[name] = trajectory(name)
    return _RUNS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_trajectory_is_the_recorded_one(name):
    recorded = json.loads(RECORDED.read_text())
    if recorded["env"] != env():
        pytest.skip(f"recorded with {recorded['env']}, this is {env()} (see the module docstring)")
    want = recorded["runs"][name]
    got = run(name)["record"]
    assert got["rows"] == want["rows"]
    assert got == want


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_from_a_checkpoint_is_bit_exact(name):
    a = run(name)
    with _one_thread():
        b = new_trainer(name)
        b.load_state_dict(torch.load(io.BytesIO(a["checkpoint"]), weights_only=True))
        row = strip(b.run_epoch())
    assert row == a["record"]["rows"][-1]
    assert digest(b.state_dict()) == digest(a["trainer"].state_dict())


def leaves(o, path=()):
    """(path, value) of every leaf of nested dicts, lists and tuples."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield from leaves(v, path + (k,))
    elif isinstance(o, (list, tuple)):
        for i, v in enumerate(o):
            yield from leaves(v, path + (i,))
    else:
        yield path, o


@pytest.mark.slow
def test_a_checkpoint_of_the_old_trainer_still_resumes():
    """The old checkpoint loads; the state the Trainer then gives holds every value of it
    (RST's under "methods") and loads weights-only; both continue alike, and as the
    uninterrupted old run did where the recording's environment matches."""
    old = torch.load(HERE / "legacy_trainer_state.pt", weights_only=False)
    with pytest.raises(Exception, match="numpy"):
        torch.load(HERE / "legacy_trainer_state.pt", weights_only=True)
    with _one_thread():
        a = new_trainer("legacy")
        a.load_state_dict(old)
        state = a.state_dict()
        b = new_trainer("legacy")
        b.load_state_dict(torch.load(io.BytesIO(saved(state)), weights_only=True))
        rows = [strip(a.run_epoch()), strip(b.run_epoch())]
    state["rst"] = state.pop("methods")["rst"]
    want, got = dict(leaves(old)), dict(leaves(state))
    assert sorted(want, key=repr) == sorted(got, key=repr)
    for path, v in want.items():
        if isinstance(v, (np.ndarray, torch.Tensor)):
            assert np.array_equal(np.asarray(v), np.asarray(got[path])), path
        else:
            assert v == got[path], path
    assert rows[0] == rows[1] and digest(a.state_dict()) == digest(b.state_dict())
    recorded = json.loads(RECORDED.read_text())
    if recorded["env"] == env():
        assert rows[0] == recorded["runs"]["legacy"]["rows"][-1]
        assert digest(a.model.state_dict()) == recorded["runs"]["legacy"]["model"]


def record() -> None:
    """Write ``trajectories.json`` from this checkout's Trainer."""
    runs = {}
    for name in sorted(CONFIGS):
        print(name, flush=True)
        runs[name] = run(name)["record"]
    RECORDED.write_text(json.dumps({"env": env(), "runs": runs}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    record()
