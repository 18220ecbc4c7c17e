"""The fast path changes no result beyond floating-point noise (CPU checks).

bf16 tolerances, and why:
- bf16 keeps 8 significant bits (unit roundoff 2^-8 ~ 0.4%), fp32's exponent range. A
  loss that averages many bf16-rounded logits lands far closer than one roundoff; we
  require a relative difference <= 1e-2 (measured ~2e-5 for tiny_cnn on this batch).
- A PGD step uses only the sign of each pixel's input gradient. bf16 rounding flips a
  sign only where |gradient| is below the rounding error of its own computation, which
  at random init is true for a few percent of the pixels (measured: 96% equal signs
  after 1 step, 94% after 10 steps). We require >= 90% and >= 85%; a broken fast path
  (no gradient, sign(0) from underflow, a wrong dtype for the perturbation state)
  lands near 50% or below.
- The bf16 attack must not be weaker: its loss gain over the clean loss, evaluated in
  fp32, is at least 95% of the fp32 attack's gain (measured ~100%).
- Perturbation state, projection and clamp stay fp32: the bf16 path's x_adv is fp32 and
  inside the eps-ball to fp32 precision (a bf16 perturbation state would miss by ~1e-3).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.nn.functional as F

from hardex import attacks, data, fastpath, models

from hardex.tools import bench

EPS = 8 / 255


def _model(name: str = "tiny_cnn") -> torch.nn.Module:
    torch.manual_seed(0)
    m = models.build_model(name)
    g = torch.Generator().manual_seed(1)
    m.train()
    with torch.no_grad():  # calibrate BN so the logits depend on the input
        for _ in range(3):
            m(torch.rand(64, 3, 32, 32, generator=g))
    return m.eval()


def _batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _pgd(m, x, y, steps, random_start, dtype):
    return attacks.pgd(m, x, y, EPS, 2 / 255, steps, random_start=random_start, autocast_dtype=dtype,
                       generator=torch.Generator().manual_seed(3))


# --------------------------------------------------------------------------- bf16 vs fp32


def test_bf16_first_step_loss_matches_fp32():
    m = _model()
    x, y = _batch()
    with torch.no_grad():
        l32 = F.cross_entropy(m(x), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z16 = m(x)
        l16 = F.cross_entropy(z16.float(), y)
    assert z16.dtype == torch.bfloat16  # autocast really ran the model in bf16
    assert abs(l16 - l32) / l32 <= 1e-2


@pytest.mark.parametrize("steps,random_start,min_equal", [(1, "none", 0.90), (10, "uniform", 0.85)])
def test_bf16_pgd_perturbation_matches_fp32(steps, random_start, min_equal):
    m = _model()
    x, y = _batch()
    a = _pgd(m, x, y, steps, random_start, None)
    b = _pgd(m, x, y, steps, random_start, torch.bfloat16)
    equal = ((a - x).sign() == (b - x).sign()).float().mean().item()
    assert equal >= min_equal, f"only {equal:.3f} of the perturbation signs agree"
    # fp32 state, projection and clamp on the bf16 path
    assert b.dtype == torch.float32
    assert (b - x).abs().max() <= EPS + 1e-6 and b.min() >= 0 and b.max() <= 1
    # not weaker: the loss gain over clean, evaluated in fp32
    with torch.no_grad():
        clean = F.cross_entropy(m(x), y)
        gain32 = F.cross_entropy(m(a), y) - clean
        gain16 = F.cross_entropy(m(b), y) - clean
    assert gain32 > 0
    assert gain16 >= 0.95 * gain32


def _task(n: int, seed: int, split: str) -> data.Dataset:
    """A learnable synthetic task: each class is a fixed 8x8-block colour template (seed
    123, shared by both splits) plus uniform noise."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(123)), size=32)
    labels = torch.randint(0, 10, (n,), generator=g)
    imgs = (0.6 * templates[labels] + 0.4 * torch.rand(n, 3, 32, 32, generator=g)) * 255
    return data.Dataset("synthetic", split, imgs.round().to(torch.uint8), labels, torch.arange(n),
                        [str(i) for i in range(10)])


def _train(precision: str, train: data.Dataset, test: data.Dataset, epochs: int = 3) -> tuple[float, float]:
    from hardex.config import TrainConfig
    from hardex.train import Trainer

    cfg = TrainConfig.model_validate({
        "model": {"name": "tiny_cnn"}, "algorithm": "pgd", "attack": {"eps": 2 / 255, "steps": 2},
        "epochs": epochs, "batch_size": 64, "schedule": {"milestones": []}, "tracking": {"until_epoch": 0},
        "eval": {"every": 0, "final_pgd_steps": []}, "precision": precision, "device": "cpu",
        "optimizer": {"lr": 0.05}})
    with bench._synthetic_load(train, test):
        tr = Trainer(cfg, device="cpu")
    for _ in range(epochs):
        row = tr.run_epoch()
    # BN in train mode (batch statistics): after 18 steps the running estimates lag the
    # fast-moving weights, so eval-mode accuracy would measure BN's lag, not the training.
    tr.model.train()
    with torch.no_grad():
        acc = (tr.model(data.to_float(test.images)).argmax(1) == test.labels).float().mean().item()
    return row["train_adv_acc"], acc


def test_bf16_and_fp32_training_reach_the_same_accuracy():
    train, test = _task(384, 0, "train"), _task(256, 1, "test")
    adv32, acc32 = _train("fp32", train, test)
    adv16, acc16 = _train("bf16", train, test)
    assert acc32 > 0.5 and acc16 > 0.5  # both learned (chance is 0.1)
    assert abs(acc32 - acc16) <= 0.1  # within noise: 256 test images, sd of a proportion ~0.03
    assert abs(adv32 - adv16) <= 0.1


# --------------------------------------------------------------------------- channels_last and compile


def test_channels_last_changes_nothing_beyond_fp_noise():
    m = _model("preact_resnet18")
    fast = fastpath.prepare_model(copy.deepcopy(m), channels_last=True)
    assert fastpath.is_channels_last(fast) and not fastpath.is_channels_last(m)
    x, y = _batch(4)
    with torch.no_grad():
        z, zf = m(x), fast(x)
    assert torch.allclose(z, zf, rtol=1e-4, atol=1e-5)
    a, b = _pgd(m, x, y, 2, "uniform", None), _pgd(fast, x, y, 2, "uniform", None)
    assert ((a - x).sign() == (b - x).sign()).float().mean() >= 0.999


def test_channels_last_keeps_the_optimiser_parameters():
    m = models.build_model("tiny_cnn")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    fastpath.prepare_model(m, channels_last=True)
    assert [id(p) for p in m.parameters()] == [id(p) for g in opt.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in m.parameters()]
    F.cross_entropy(m(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, m.parameters()))


def _compile_check(backend: str):
    m = _model()
    fast = fastpath.prepare_model(copy.deepcopy(m), compile=True, compile_backend=backend)
    assert isinstance(fast, torch.nn.Module) and list(fast.state_dict()) == list(m.state_dict())
    x, y = _batch(8)
    with torch.no_grad():
        assert torch.allclose(m(x), fast(x), rtol=1e-4, atol=1e-5)
    a, b = _pgd(m, x, y, 2, "uniform", None), _pgd(fast, x, y, 2, "uniform", None)
    assert ((a - x).sign() == (b - x).sign()).float().mean() >= 0.999
    fast.train()  # the train-mode graph too (recompiled on the mode change)
    m.train()
    with torch.no_grad():
        assert torch.allclose(m(x), fast(x), rtol=1e-4, atol=1e-5)


def test_compile_aot_eager_changes_nothing():
    """Dynamo + AOTAutograd tracing (no code generation): the compiled forward and its
    input gradient equal the eager ones."""
    torch._dynamo.reset()
    _compile_check("aot_eager")


@pytest.mark.cuda
@pytest.mark.skipif(not (torch.cuda.is_available() or os.environ.get("HARDEX_TEST_INDUCTOR")),
                    reason="inductor codegen on CPU takes minutes on the 2-core CI machine; "
                           "runs with CUDA or HARDEX_TEST_INDUCTOR=1")
def test_compile_inductor_changes_nothing():
    torch._dynamo.reset()
    _compile_check("inductor")


def test_prepare_model_rejects_bad_options():
    with pytest.raises(ValueError, match="compile_mode"):
        fastpath.prepare_model(models.build_model("tiny_cnn"), compile=True, compile_mode="fastest")
    with pytest.raises(TypeError):
        fastpath.prepare_model("tiny_cnn")


# --------------------------------------------------------------------------- host synchronisation


def _weight_casts(model, fn) -> int:
    """How many dtype casts of ``model``'s parameters ``fn`` dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    params = {p.data_ptr() for p in model.parameters()}

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func._overloadpacket == torch.ops.aten._to_copy and args[0].data_ptr() in params:
                self.n += 1
            return func(*args, **(kwargs or {}))

    with Count() as c:
        fn()
    return c.n


def _pgd_region_per_step(model, x, y, eps, step, steps, generator):
    """Reference: bf16 PGD with one autocast region per step (weights re-cast every step)."""
    x_adv = attacks._start(x, eps, "uniform", 0.001, generator)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x_adv)
            value = attacks.cross_entropy(logits, y, reduction="sum")
        (grad,) = torch.autograd.grad(value, [x_adv])
        x_adv = attacks._project(x_adv.detach() + step * grad.sign(), x, eps)
    return x_adv.detach()


def test_bf16_attacks_cast_weights_once_and_change_nothing():
    """One autocast region per attack: the same points as a region per step, and each
    weight is cast once per attack, not once per step."""
    torch.manual_seed(0)
    model = models.build_model("tiny_cnn").eval()
    x, y = torch.rand(6, 3, 32, 32), torch.randint(0, 10, (6,))
    ref = _pgd_region_per_step(model, x, y, 8 / 255, 2 / 255, 4, torch.Generator().manual_seed(3))
    got = attacks.pgd(model, x, y, 8 / 255, 2 / 255, 4, autocast_dtype=torch.bfloat16,
                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, ref)
    # tiny_cnn's matmul-like layers: 3 conv weights, the linear weight and bias (BN stays fp32)
    per_forward = _weight_casts(model, lambda: _pgd_region_per_step(model, x, y, 8 / 255, 2 / 255, 1, None))
    assert per_forward == 5
    assert _weight_casts(model, lambda: _pgd_region_per_step(model, x, y, 8 / 255, 2 / 255, 5, None)) == 5 * per_forward
    for steps in (1, 5):
        assert _weight_casts(model, lambda: attacks.pgd(model, x, y, 8 / 255, 2 / 255, steps,
                                                        autocast_dtype=torch.bfloat16)) == per_forward
        assert _weight_casts(model, lambda: attacks.trades_attack(model, x, 8 / 255, 2 / 255, steps,
                                                                  autocast_dtype=torch.bfloat16)) == per_forward
    assert _weight_casts(model, lambda: attacks.pgd(model, x, y, 8 / 255, 2 / 255, 3)) == 0  # fp32: none


def test_sync_counter_detects_host_syncs_and_restores():
    t = torch.ones(3)
    original = torch.Tensor.item
    with fastpath.HostSyncCounter() as c:
        t.sum().item()
        bool(t[0] > 0)
        float(t[1])
        t.cpu()
    assert c.counts["item"] == 1 and c.counts["__bool__"] == 1 and c.counts["__float__"] == 1
    assert c.counts["cpu"] == 1 and c.total == 4
    assert torch.Tensor.item is original


def _syncing_pgd(model, x, y, steps):
    """A PGD that logs its loss with .item() every step: the detector must see it."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        loss.item()
        (g,) = torch.autograd.grad(loss, [x_adv])
        x_adv = (x_adv.detach() + 0.01 * g.sign()).clamp(0, 1)
    return x_adv


def test_pgd_and_trades_attack_make_no_host_sync():
    m = _model()
    x, y = _batch(8)
    gen = torch.Generator().manual_seed(0)
    with fastpath.HostSyncCounter() as c:
        _syncing_pgd(m, x, y, 3)
    assert c.counts["item"] == 3  # the control: a syncing loop is caught
    with fastpath.HostSyncCounter() as c:
        attacks.pgd(m, x, y, EPS, 2 / 255, 5, generator=gen)
        attacks.pgd(m, x, y, EPS, 2 / 255, 5, loss="margin", autocast_dtype=torch.bfloat16, generator=gen)
        attacks.trades_attack(m, x, EPS, 2 / 255, 5, generator=gen)
    assert c.total == 0, dict(c.counts)


def test_bench_sync_check_reports_zero():
    assert bench.sync_checks(torch.device("cpu")) == {"pgd_host_syncs": 0, "cuda_sync_guard": "n/a (no CUDA device)"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pgd_passes_cuda_sync_guard():
    assert bench.sync_checks(torch.device("cuda"))["cuda_sync_guard"] == "passed"


def test_fast_backends_restores():
    old = torch.backends.cudnn.benchmark
    with fastpath.fast_backends(cudnn_benchmark=not old):
        assert torch.backends.cudnn.benchmark is (not old)
    assert torch.backends.cudnn.benchmark is old
