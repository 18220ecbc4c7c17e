"""Attacks: feasibility (eps-ball and [0, 1]), strength, losses, no parameter gradients,
mode handling, evaluation bookkeeping and the AutoAttack wrapper."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hardex.attacks import (
    autoattack,
    bn_eval,
    cross_entropy,
    eval_precision,
    evaluate,
    fgsm,
    margin_loss,
    pgd,
    trades_attack,
)
from hardex.data import Dataset
from hardex.models import build_model

EPS = 8 / 255


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cnn() -> nn.Module:
    """A small undefended CNN with BatchNorm, in eval mode, fast enough for CPU tests.

    BN running statistics are calibrated on random images (cumulative average): with
    the initial statistics (mean 0, var 1) a random network's logits barely depend on
    the input and nothing can be attacked; after calibration it behaves like an
    undefended classifier whose predictions flip under small perturbations.
    """
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, momentum=None),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Conv2d(16, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32, momentum=None),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(64, 3, 32, 32, generator=gen))
    return model.eval()


def _batch(n: int = 16) -> torch.Tensor:
    x = torch.rand(n, 3, 32, 32)
    x[0] = 0.0  # pixels at the box edges exercise the [0, 1] clamp
    x[1] = 1.0
    return x


def _own_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def _check_feasible(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    assert x_adv.dtype == torch.float32 and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


# --------------------------------------------------------------------------- feasibility


@pytest.mark.parametrize("random_start", ["uniform", "normal", "none"])
@pytest.mark.parametrize("loss", ["ce", "margin"])
def test_pgd_feasible(cnn: nn.Module, random_start: str, loss: str) -> None:
    x = _batch()
    y = _own_labels(cnn, x)
    x_adv = pgd(cnn, x, y, EPS, 2 / 255, 5, loss=loss, random_start=random_start)
    _check_feasible(x_adv, x, EPS)
    assert x_adv.shape == x.shape


def test_fgsm_and_trades_feasible(cnn: nn.Module) -> None:
    x = _batch()
    y = _own_labels(cnn, x)
    _check_feasible(fgsm(cnn, x, y, EPS), x, EPS)
    _check_feasible(fgsm(cnn, x, y, EPS, step_size=1.25 * EPS, random_start="uniform"), x, EPS)
    _check_feasible(trades_attack(cnn, x, EPS, 0.007, 5), x, EPS)


def test_zero_steps_and_zero_eps(cnn: nn.Module) -> None:
    x = _batch(4)
    y = _own_labels(cnn, x)
    _check_feasible(pgd(cnn, x, y, EPS, 1 / 255, 0), x, EPS)
    assert torch.equal(pgd(cnn, x, y, EPS, 1 / 255, 0, random_start="none"), x)
    assert torch.equal(pgd(cnn, x, y, 0.0, 1 / 255, 3), x)
    assert torch.equal(fgsm(cnn, x, y, 0.0), x)


def test_bf16_autocast_keeps_fp32_state(cnn: nn.Module) -> None:
    x = _batch(4)
    y = _own_labels(cnn, x)
    x_adv = pgd(cnn, x, y, EPS, 2 / 255, 3, autocast_dtype=torch.bfloat16)
    _check_feasible(x_adv, x, EPS)
    assert (x_adv - x).abs().amax() > EPS / 2  # the attack did move


def test_seeded_start_is_reproducible(cnn: nn.Module) -> None:
    x = _batch(4)
    y = _own_labels(cnn, x)
    a = pgd(cnn, x, y, EPS, 2 / 255, 2, generator=torch.Generator().manual_seed(5))
    b = pgd(cnn, x, y, EPS, 2 / 255, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- strength


def test_pgd_beats_random_noise(cnn: nn.Module) -> None:
    x = _batch(32)
    y = _own_labels(cnn, x)
    with torch.no_grad():
        noise = EPS * torch.sign(torch.rand_like(x) - 0.5)  # random corners of the ball
        loss_noise = cross_entropy(cnn((x + noise).clamp(0, 1)), y).mean()
        loss_pgd = cross_entropy(cnn(pgd(cnn, x, y, EPS, 2 / 255, 10)), y).mean()
        loss_clean = cross_entropy(cnn(x), y).mean()
    assert loss_pgd > loss_noise + 0.5 * (loss_noise - loss_clean).abs() and loss_pgd > loss_clean + 0.1


def test_pgd_breaks_linear_model() -> None:
    """An undefended linear classifier: labels are its own predictions (clean acc 100%);
    PGD at 8/255 must bring robust accuracy to (near) 0."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()
    x = torch.rand(200, 3, 32, 32)
    y = _own_labels(model, x)
    for loss in ("ce", "margin"):
        x_adv = pgd(model, x, y, EPS, 2 / 255, 10, loss=loss)
        acc = (_own_labels(model, x_adv) == y).float().mean()
        assert acc <= 0.02, (loss, float(acc))


def test_pgd_breaks_undefended_cnn(cnn: nn.Module) -> None:
    x = _batch(64)
    y = _own_labels(cnn, x)
    x_adv = pgd(cnn, x, y, EPS, 2 / 255, 10, loss="margin")
    assert (_own_labels(cnn, x_adv) == y).float().mean() <= 0.05


def test_trades_attack_raises_kl(cnn: nn.Module) -> None:
    x = _batch(32)
    with torch.no_grad():
        p = F.softmax(cnn(x), 1)

        def kl(z: torch.Tensor) -> torch.Tensor:
            return F.kl_div(F.log_softmax(cnn(z), 1), p, reduction="batchmean")

        start = kl((x + 0.001 * torch.randn_like(x)).clamp(0, 1))
        after = kl(trades_attack(cnn, x, EPS, 0.007, 10))
    assert after > 10 * start + 1e-3


# --------------------------------------------------------------------------- losses


def test_margin_loss_by_hand() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([1, 0, 2])
    expected = torch.tensor([2.0 - 3.0, 0.0 - 5.0, 0.0])
    torch.testing.assert_close(margin_loss(logits, y), expected)
    soft = F.one_hot(y, 3).float() * 0.8 + 0.2 / 3
    torch.testing.assert_close(margin_loss(logits, soft), expected)  # argmax of soft targets
    torch.testing.assert_close(margin_loss(logits, y, reduction="sum"), expected.sum())


def test_soft_ce_equals_hard_ce_for_one_hot() -> None:
    logits = torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    one_hot = F.one_hot(y, 10).float()
    torch.testing.assert_close(cross_entropy(logits, one_hot), cross_entropy(logits, y))
    torch.testing.assert_close(cross_entropy(logits, y), F.cross_entropy(logits, y, reduction="none"))
    smooth = 0.9 * one_hot + 0.1 / 10
    torch.testing.assert_close(
        cross_entropy(logits, smooth), F.cross_entropy(logits, smooth, reduction="none"), rtol=1e-5, atol=1e-6
    )


def test_pgd_with_one_hot_targets_equals_int_labels(cnn: nn.Module) -> None:
    x = _batch(8)
    y = _own_labels(cnn, x)
    a = pgd(cnn, x, y, EPS, 2 / 255, 3, generator=torch.Generator().manual_seed(1))
    b = pgd(cnn, x, F.one_hot(y, 10).float(), EPS, 2 / 255, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- side effects


def test_attacks_leave_parameter_grads_and_mode_alone() -> None:
    torch.manual_seed(0)
    model = build_model("tiny_cnn").train()  # the library's own BN model, in train mode
    x = _batch(4)
    y = torch.randint(0, 10, (4,))
    _check_feasible(pgd(model, x, y, EPS, 2 / 255, 2), x, EPS)
    fgsm(model, x, y, EPS)
    trades_attack(model, x, EPS, 0.007, 2)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.training for m in model.modules())


def test_bn_eval_restores_mixed_modes() -> None:
    model = build_model("tiny_cnn").train()
    bn = model.features[1]
    assert isinstance(bn, nn.BatchNorm2d)
    bn.eval()  # a mixed state, e.g. frozen BN
    with bn_eval(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not bn.training


def test_eval_precision_restores_flags() -> None:
    before = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cudnn.allow_tf32 = True
    try:
        with eval_precision():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before[1]


def test_validation_errors(cnn: nn.Module) -> None:
    x = _batch(2)
    y = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\].*got 8"):
        pgd(cnn, x, y, 8, 2 / 255, 10)
    with pytest.raises(ValueError, match="eps must lie"):
        trades_attack(cnn, x, -0.1, 0.007, 10)
    with pytest.raises(ValueError, match="eps must lie"):
        fgsm(cnn, x, y, 1.5)
    with pytest.raises(ValueError, match="steps must be"):
        pgd(cnn, x, y, EPS, 2 / 255, -1)
    with pytest.raises(ValueError, match="step_size must be"):
        pgd(cnn, x, y, EPS, 0.0, 10)
    with pytest.raises(ValueError, match="unknown loss 'dlr'"):
        pgd(cnn, x, y, EPS, 2 / 255, 1, loss="dlr")
    with pytest.raises(ValueError, match="unknown random_start 'gauss'"):
        pgd(cnn, x, y, EPS, 2 / 255, 1, random_start="gauss")


# --------------------------------------------------------------------------- evaluation


def _dataset(model: nn.Module, n: int = 20) -> Dataset:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = _own_labels(model, images.float() / 255)
    labels[:5] = (labels[:5] + 1) % 10  # five clean mistakes
    return Dataset("cifar10", "test", images, labels, torch.arange(100, 100 + n), [str(i) for i in range(10)])


def test_evaluate_bookkeeping(cnn: nn.Module) -> None:
    ds = _dataset(cnn)
    cnn.train()
    out = evaluate(
        cnn,
        ds,
        {
            "identity": lambda m, x, y: x,
            "pgd": functools.partial(pgd, eps=EPS, step_size=2 / 255, steps=5, loss="margin"),
        },
        batch_size=7,
    )
    assert cnn.training, "evaluate restores the caller's mode"
    assert out["n"] == 20
    assert out["correct"]["clean"].dtype == np.bool_ and out["correct"]["clean"].shape == (20,)
    assert out["correct"]["clean"].tolist() == [False] * 5 + [True] * 15
    assert out["clean_acc"] == pytest.approx(0.75)
    assert out["robust_acc"]["identity"] == pytest.approx(0.75)
    assert out["robust_acc"]["pgd"] <= 0.1
    assert np.array_equal(out["worst"], out["correct"]["clean"] & out["correct"]["identity"] & out["correct"]["pgd"])
    assert out["worst_acc"] == pytest.approx(out["worst"].mean())
    assert out["index"].tolist() == list(range(100, 120))
    assert np.array_equal(out["labels"], ds.labels.numpy())


def test_autoattack_wrapper(cnn: nn.Module) -> None:
    x = _batch(8)
    y = _own_labels(cnn, x)
    rng_before = torch.random.get_rng_state()
    x_adv = autoattack(cnn, x, y, EPS, version="custom", attacks_to_run=["apgd-ce"], batch_size=8, n_iter=20, n_restarts=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before), "AutoAttack's reseeding must not leak"
    _check_feasible(x_adv, x, EPS)
    assert (_own_labels(cnn, x_adv) == y).float().mean() <= 0.25
    robust = autoattack(cnn, x[:2], y[:2], EPS, version="custom", attacks_to_run=["apgd-ce"], return_mask=True,
                        n_iter=5, n_restarts=1)
    assert robust.dtype == torch.bool and robust.shape == (2,)
    with pytest.raises(ValueError, match="attacks_to_run"):
        autoattack(cnn, x, y, EPS, version="custom")


def test_trades_attack_returns_the_tracking_logits(cnn):
    """Fast path: under bn_eval, TRADES' one clean forward is exactly what difficulty
    tracking measures, so the trainer can reuse it instead of a second forward."""
    from hardex.difficulty import clean_logits

    cnn.train()
    x = _batch(8)
    gen = torch.Generator().manual_seed(0)
    with bn_eval(cnn):
        x_adv, z = trades_attack(cnn, x, EPS, EPS / 4, 3, generator=gen, return_clean_logits=True)
    assert cnn.training  # mode restored by bn_eval
    assert z.dtype == torch.float32 and torch.equal(z, clean_logits(cnn, x))
    again = trades_attack(cnn.eval(), x, EPS, EPS / 4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, again)  # the flag changes only what is returned


def test_callable_loss_is_the_named_loss_when_it_computes_the_same(cnn: nn.Module) -> None:
    """A callable objective takes exactly the path of the named loss: same start, same steps."""
    x = _batch(6)
    y = _own_labels(cnn, x)
    for name, fn in (("ce", cross_entropy), ("margin", margin_loss)):
        a = pgd(cnn, x, y, EPS, 2 / 255, 3, loss=name, generator=torch.Generator().manual_seed(1))
        b = pgd(cnn, x, None, EPS, 2 / 255, 3, loss=lambda z, fn=fn: fn(z, y, reduction="sum"),
                generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)


def test_callable_loss_is_ascended(cnn: nn.Module) -> None:
    """One step from the clean point is x + step * sign(d objective / dx), clipped to [0, 1]:
    the gradient computed here independently, for an objective no named loss gives."""
    x = _batch(8)
    w = torch.linspace(-1.0, 1.0, 10)

    def objective(z: torch.Tensor) -> torch.Tensor:
        return (z * w).sum() - z[:, 3].pow(2).sum()

    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(cnn(xr)), [xr])
    expect = (x + EPS * g.sign()).clamp(0.0, 1.0)
    got = pgd(cnn, x, None, EPS, EPS, 1, loss=objective, random_start="none")
    assert torch.allclose(got, expect, atol=1e-7)
    assert (g != 0).float().mean() > 0.5  # the check is not vacuous


def test_callable_loss_errors(cnn: nn.Module) -> None:
    x = _batch(4)
    with pytest.raises(ValueError, match="must return a scalar"):
        pgd(cnn, x, None, EPS, 2 / 255, 1, loss=lambda z: z.sum(dim=1))
    with pytest.raises(ValueError, match="needs labels y"):
        pgd(cnn, x, None, EPS, 2 / 255, 1, loss="ce")
    with pytest.raises(ValueError, match="unknown loss 'kl'.*or a callable"):
        pgd(cnn, x, _own_labels(cnn, x), EPS, 2 / 255, 1, loss="kl")
