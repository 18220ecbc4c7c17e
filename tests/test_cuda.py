"""The GPU fast path on the device itself (``pytest -m cuda``; step (b) of `hardex gpu-check`).

Skipped without CUDA. ``HARDEX_CUDA_TESTS_ON_CPU=1`` (the CPU rehearsal of gpu-check) runs
the same checks on the CPU with a tiny CNN, so their code is exercised before a GPU is at
hand; on the CPU they prove only that the checks run, not the GPU's numerics.

What "within bf16 tolerance" means here, and why:
- bf16 keeps 8 significant bits (unit roundoff 2^-8 ~ 0.4%) and fp32's exponent range. One
  training epoch of a few steps from the same initial weights and the same batches in bf16
  + channels_last vs fp32 + NCHW: the mean training loss agrees to 5% and the weights to 5%
  (relative L2 distance); a broken path (no gradient, a wrong dtype in the optimiser, lost
  augmentation) moves them by far more than that.
- A PGD attack in bf16 must not be weaker: on a trained model (clean accuracy >= 50% on
  held-out data) its robust accuracy is at most the fp32 attack's + 1 point, and its loss gain
  over the clean loss (measured in fp32) is at least 95% of the fp32 attack's (the CPU check
  in tests/test_fastpath.py measured ~100%).
- Resume on the device: a trainer restored from a state dict after epoch 1 continues epoch 2
  to the uninterrupted trainer's loss within 1e-3 (relative) and weights within 1e-3; cuDNN's
  non-deterministic kernels allow a little, a wrong restored state (optimiser, generators,
  augmentation draws) moves them by percents.
"""

from __future__ import annotations

import io
import os

import pytest
import torch

from hardex import attacks, data, fastpath

from hardex.tools import bench
from hardex.config import TrainConfig
from hardex.runs.files import load_store_file
from hardex.train import Trainer

pytestmark = pytest.mark.cuda

ON_CPU = bool(os.environ.get("HARDEX_CUDA_TESTS_ON_CPU"))


@pytest.fixture(scope="module")
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if ON_CPU:
        return torch.device("cpu")
    pytest.skip("needs CUDA (HARDEX_CUDA_TESTS_ON_CPU=1 runs these checks on the CPU)")


def _model_name(device: torch.device) -> str:
    return "preact_resnet18" if device.type == "cuda" else "tiny_cnn"


def learnable(n: int, seed: int, split: str) -> data.Dataset:
    """A CIFAR-shaped dataset a model can learn in a few epochs: each class one mean colour
    plus pixel noise (uint8), labels balanced."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(10, 3, 1, 1, generator=torch.Generator().manual_seed(99)) * 160 + 40
    labels = torch.arange(n) % 10
    x = means[labels] + 40 * torch.randn(n, 3, 32, 32, generator=g)
    images = x.clamp(0, 255).to(torch.uint8)
    return data.Dataset("synthetic", split, images, labels, torch.arange(n), [str(c) for c in range(10)])


def trainer(device: torch.device, n_train: int, epochs: int, **over) -> Trainer:
    cfg = dict(model={"name": _model_name(device)}, algorithm="pgd", attack={"steps": 3}, epochs=epochs,
               batch_size=128 if device.type == "cuda" else 32, schedule={"milestones": []},
               tracking={"until_epoch": epochs}, eval={"every": 0, "final_pgd_steps": []}, device=str(device), seed=0)
    cfg.update(over)
    with bench._synthetic_load(learnable(n_train, 0, "train"), learnable(256, 1, "test")):
        return Trainer(TrainConfig.model_validate(cfg), device=device)


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_fast_path_matches_fp32_on_the_device(device):
    """bf16 autocast + channels_last + device-resident data and device-side augmentation
    against fp32 NCHW: one epoch from the same weights and batches."""
    n = 4 * (128 if device.type == "cuda" else 32)
    ref = trainer(device, n, 1)
    fast = trainer(device, n, 1, precision="bf16", channels_last=True)
    assert fastpath.is_channels_last(fast.model) and not fastpath.is_channels_last(ref.model)
    assert fast.base_train.images.device.type == device.type  # the dataset lives on the device
    assert torch.equal(_flat(ref.model), _flat(fast.model))  # the same initial weights
    r_ref, r_fast = ref.run_epoch(), fast.run_epoch()
    assert r_fast["train_loss"] == pytest.approx(r_ref["train_loss"], rel=0.05)
    assert _rel(_flat(fast.model), _flat(ref.model)) < 0.05
    x = data.to_float(ref.base_train.images[:64])
    with torch.no_grad(), attacks.eval_precision():
        ref.model.eval()
        fast.model.eval()
        z32 = ref.model(x)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            z16 = ref.model(x.contiguous(memory_format=torch.channels_last)).float()
    assert _rel(z16, z32) < 0.02  # the same weights: bf16 forward within a few roundoffs of fp32


@pytest.fixture(scope="module")
def trained(device):
    """A model trained on the learnable data (PGD-AT-3 for a few epochs), eval mode."""
    tr = trainer(device, 2048 if device.type == "cuda" else 320, 4 if device.type == "cuda" else 6,
                 precision="bf16" if device.type == "cuda" else "fp32", optimizer={"lr": 0.05})
    for _ in range(tr.cfg.epochs):
        tr.run_epoch()
    return tr.model.eval()


def test_bf16_pgd_is_not_weaker_than_fp32_on_a_trained_model(device, trained):
    test = learnable(256, 7, "test").to(device)
    x, y = data.to_float(test.images), test.labels
    with torch.no_grad(), attacks.eval_precision():
        clean = float((trained(x).argmax(1) == y).float().mean())
    assert clean >= 0.5, f"the model did not train (clean accuracy {clean:.2f})"
    eps, step = 8 / 255, 2 / 255
    out = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        g = torch.Generator(device=device).manual_seed(3)
        with attacks.eval_precision():
            x_adv = attacks.pgd(trained, x, y, eps, step, 10, autocast_dtype=dtype, generator=g)
            assert x_adv.dtype == torch.float32 and float((x_adv - x).abs().max()) <= eps + 1e-6
            with torch.no_grad():
                z = trained(x_adv)
                loss = float(torch.nn.functional.cross_entropy(z, y))
                base = float(torch.nn.functional.cross_entropy(trained(x), y))
        out[name] = {"acc": float((z.argmax(1) == y).float().mean()), "gain": loss - base}
    assert out["bf16"]["acc"] <= out["fp32"]["acc"] + 0.01, out
    assert out["bf16"]["gain"] >= 0.95 * out["fp32"]["gain"], out


def test_resume_on_the_device_continues_the_same_trajectory(device):
    n = 4 * (128 if device.type == "cuda" else 32)
    fast = {"precision": "bf16", "channels_last": True} if device.type == "cuda" else {}
    a = trainer(device, n, 2, **fast)
    a.run_epoch()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # as the run store's checkpoint
    r2 = a.run_epoch()
    buf.seek(0)
    b = trainer(device, n, 2, **fast)
    b.load_state_dict(load_store_file(buf))
    assert b.epoch == 1
    s2 = b.run_epoch()
    assert s2["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-3)
    assert _rel(_flat(b.model), _flat(a.model)) < 1e-3


def test_no_host_synchronisation_inside_the_attack_loop(device):
    checks = bench.sync_checks(device)
    assert checks["pgd_host_syncs"] == 0
    if device.type == "cuda":
        assert checks["cuda_sync_guard"] == "passed"
    model = trainer(device, 64, 1).model.eval()
    x = torch.rand(16, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (16,), device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with fastpath.HostSyncCounter() as c, fastpath.cuda_sync_guard("error"):
        attacks.pgd(model, x, y, 8 / 255, 2 / 255, 5, autocast_dtype=torch.bfloat16, generator=g)
        attacks.trades_attack(model, x, 8 / 255, 2 / 255, 5, autocast_dtype=torch.bfloat16, generator=g)
    assert c.total == 0, dict(c.counts)
