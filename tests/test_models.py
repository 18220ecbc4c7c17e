"""Model factory: shapes at 32x32 and 64x64, parameter counts and FLOPs against the
anchors (ANCHORS.md), the normalisation layer, and the unknown-name error."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from hardex.models import MODEL_NAMES, Normalize, build_model, count_parameters, forward_flops


@functools.lru_cache(maxsize=None)
def _built(name: str) -> nn.Module:
    """Each big model is built once per test session (construction dominates the time)."""
    torch.manual_seed(0)
    return build_model(name)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", ["preact_resnet18", "resnet18", "wrn16_2", "tiny_cnn"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape_32(name: str, num_classes: int) -> None:
    model = build_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["preact_resnet18", "tiny_cnn"])
def test_output_shape_64(name: str) -> None:
    """STL-10 runs at 64x64; adaptive pooling makes the same networks work."""
    model = build_model(name, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_train_mode_backward() -> None:
    model = build_model("tiny_cnn")
    loss = model(torch.rand(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "params_m", "tol"),
    [
        ("preact_resnet18", 11.17, 0.01),
        ("resnet18", 11.17, 0.01),
        ("wrn28_10", 36.48, 0.05),
        ("wrn34_10", 46.16, 0.05),
    ],
)
def test_parameter_counts(name: str, params_m: float, tol: float) -> None:
    assert abs(count_parameters(_built(name)) / 1e6 - params_m) < tol


def test_tiny_cnn_is_tiny() -> None:
    # by hand: three bias-free 3x3 convs (3->16->32->64), BN scale+shift, linear 64->10
    convs = 9 * (3 * 16 + 16 * 32 + 32 * 64)
    bns = 2 * (16 + 32 + 64)
    assert count_parameters(build_model("tiny_cnn")) == convs + bns + 64 * 10 + 10 == 24_346


@pytest.mark.parametrize(("name", "gflop"), [("preact_resnet18", 1.11), ("wrn28_10", 10.5), ("wrn34_10", 13.3)])
def test_forward_flops_match_anchors(name: str, gflop: float) -> None:
    model = _built(name).train()
    assert abs(forward_flops(model, 32, 10) / 1e9 - gflop) < 0.02 * gflop
    assert model.training, "forward_flops must leave the model's mode alone"
    with torch.no_grad():  # the big WRNs' output shape, checked here to build them once
        assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_forward_flops_scale_with_area() -> None:
    model = build_model("tiny_cnn")
    ratio = forward_flops(model, 64, 10) / forward_flops(model, 32, 10)
    assert 3.9 < ratio < 4.01  # conv work scales with pixels; the tiny linear head does not


def test_normalize_is_first_module() -> None:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)
    model = build_model("tiny_cnn", normalize=(mean, std)).eval()
    first = next(iter(model.children()))
    assert isinstance(first, Normalize)
    x = torch.rand(2, 3, 32, 32)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(first(x), expected)
    # The same weights without normalisation, fed pre-normalised inputs, agree.
    assert isinstance(model, nn.Sequential)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model[1](expected))
    # mean/std are buffers: saved with the model but neither trained nor counted.
    assert count_parameters(model) == count_parameters(model[1])
    assert "0.mean" in model.state_dict()


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet9000'") as info:
        build_model("resnet9000")
    for allowed in ("preact_resnet18", "wrn28_10", "tiny_cnn"):
        assert allowed in str(info.value)
    assert "tiny_cnn" in MODEL_NAMES


def test_bad_wrn_depth() -> None:
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_model("wrn27_10")
