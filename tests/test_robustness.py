"""Worst case over attacks, per-class / group accuracy, gradient-masking check."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hardex.evaluation.a3 import a3
from hardex.attacks import pgd
from hardex.evaluation.md_attack import md_attack
from hardex.evaluation.rays import rays
from hardex.evaluation.robustness import class_group_accuracy, masking_check, per_class_accuracy, worst_case

from test_a3 import EPS, _cnn, _data


def test_worst_case_never_above_any_member() -> None:
    model = _cnn()
    x, y = _data(model, 32)
    eps = 1 / 255
    with torch.no_grad():
        pgd_ok = (model(pgd(model, x, y, eps, eps / 4, 10, loss="ce")).argmax(1) == y).numpy()
    masks = {
        "pgd": pgd_ok,
        "a3": a3(model, x, y, eps, schedule=None, min_keep=8).robust,
        "md": md_attack(model, x, y, eps, steps=20, change_point=8)[1],
    }
    w = worst_case(masks)
    assert w.dtype == bool and w.shape == (32,)
    for m in masks.values():
        m = m.numpy() if isinstance(m, torch.Tensor) else m
        assert w.mean() <= m.mean() and not (w & ~m).any()
    assert np.array_equal(worst_case({"a": np.array([1, 1, 0]), "b": np.array([1, 0, 1])}), [True, False, False])


def test_per_class_and_group_accuracy() -> None:
    labels = np.array([0, 0, 2, 3, 9, 5])
    correct = np.array([1, 0, 1, 1, 1, 0], dtype=bool)
    pc = per_class_accuracy(correct, labels, 10)
    assert pc[0] == 0.5 and pc[2] == 1.0 and pc[5] == 0.0 and np.isnan(pc[1])
    g = class_group_accuracy(correct, labels)
    assert g == {"easy": 2 / 3, "hard": 2 / 3}
    assert class_group_accuracy(correct, labels, {"zero": [0]}) == {"zero": 0.5}


class _Quantised(nn.Module):
    """Input quantisation by rounding: the forward is fine, input gradients are zero
    (classic gradient masking)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 16) / 16)


def _pgd_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    return pgd(model, x, y, eps, eps / 4, 20, loss="margin", generator=torch.Generator().manual_seed(0))


def test_masking_check_flags_masked_model_only() -> None:
    base = _cnn()
    x, _ = _data(base, 32)
    for model, expect in ((base, False), (_Quantised(base), True)):
        with torch.no_grad():
            y = model(x).argmax(1)
        _, robust, _ = rays(model, x, y, EPS, query_limit=400)
        out = masking_check(model, x, y, [1 / 255, 4 / 255, EPS], _pgd_fn, rays_result={"eps": EPS, "robust": robust})
        assert out["suspicious"] is expect, out
        assert [e for e, _ in out["curve"]] == [0.0, 1 / 255, 4 / 255, EPS, 0.5]
        if expect:
            assert any("RayS" in r for r in out["reasons"]) and any("eps 0.5" in r for r in out["reasons"])
