"""Robustness bookkeeping: per-example worst case over attacks, per-class and class-group
accuracies (paper Table 20), and a gradient-masking sanity check."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hardex.attacks import bn_eval, eval_precision, fgsm

__all__ = ["worst_case", "per_class_accuracy", "class_group_accuracy", "masking_check", "DEFAULT_GROUPS"]

DEFAULT_GROUPS: dict[str, list[int]] = {"easy": [0, 1, 7, 8, 9], "hard": [2, 3, 4, 5, 6]}


def _np_bool(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a).astype(bool)


def worst_case(masks: Mapping[str, Any]) -> np.ndarray:
    """Per-example AND of robust (correct) masks: robust only if robust under every one."""
    if not masks:
        raise ValueError("worst_case needs at least one mask")
    arrs = [_np_bool(m) for m in masks.values()]
    shape = arrs[0].shape
    for name, a in zip(masks, arrs):
        if a.shape != shape:
            raise ValueError(f"mask {name!r} has shape {a.shape}, expected {shape}")
    return np.logical_and.reduce(arrs)


def per_class_accuracy(correct: Any, labels: Any, num_classes: int) -> np.ndarray:
    """Accuracy per class (NaN for a class with no examples)."""
    c = _np_bool(correct)
    lab = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels).astype(int)
    if c.shape != lab.shape:
        raise ValueError(f"correct {c.shape} and labels {lab.shape} differ in shape")
    out = np.full(num_classes, np.nan)
    for k in range(num_classes):
        sel = lab == k
        if sel.any():
            out[k] = c[sel].mean()
    return out


def class_group_accuracy(
    correct: Any, labels: Any, groups: Mapping[str, Sequence[int]] | None = None
) -> dict[str, float]:
    """Accuracy over the examples whose label is in each group (default: CIFAR-10 easy
    classes 0,1,7,8,9 and hard classes 2-6, paper Table 20)."""
    groups = DEFAULT_GROUPS if groups is None else groups
    c = _np_bool(correct)
    lab = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels).astype(int)
    out = {}
    for name, cls in groups.items():
        sel = np.isin(lab, list(cls))
        out[name] = float(c[sel].mean()) if sel.any() else float("nan")
    return out


def _robust_acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def masking_check(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_grid: Sequence[float],
    attack_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor],
    rays_result: Mapping[str, Any] | tuple[float, Any] | None = None,
    *,
    large_eps: float = 0.5,
    large_eps_max_acc: float = 0.05,
    monotone_tol: float = 0.02,
    rays_margin: float = 0.02,
    eps: float | None = None,
    fgsm_margin: float = 0.02,
) -> dict[str, Any]:
    """Flag signs of gradient masking (Athalye et al. 2018; Carlini et al. 2019 checklist).

    ``attack_fn(model, x, y, eps) -> x_adv`` is the white-box attack. Robust accuracy is
    measured on ``eps_grid`` plus ``large_eps`` (appended when missing).
    Flags (each adds a reason):

    - the curve rises with eps by more than ``monotone_tol`` plus one example;
    - at ``large_eps`` robust accuracy exceeds ``large_eps_max_acc`` (an unbounded-ish
      attack should break everything);
    - ``rays_result`` (``{"eps": e, "robust": mask}`` or ``(e, mask)``; a black-box
      RayS run) gives a robust accuracy below the white-box one at the same eps by more
      than ``rays_margin`` plus one example;
    - with ``eps`` given: one-step FGSM (step eps, no random start) gives a robust
      accuracy below the white-box attack's at ``eps`` by more than ``fgsm_margin`` plus
      one example (a single step should never beat the iterative attack).

    Returns ``{"suspicious", "reasons", "curve": [(eps, acc), ...], "clean_acc",
    "rays_acc", "fgsm_acc", "white_box_acc"}`` (the last two at ``eps``; None when not
    run).
    Runs in eval mode and fp32.
    """
    x = x.detach().float()
    y = y.detach().long()
    n = max(len(x), 1)
    one = 1.0 / n
    grid = sorted({float(e) for e in eps_grid} | {float(large_eps)})
    reasons: list[str] = []
    with bn_eval(model), eval_precision():
        with torch.no_grad():
            clean_acc = float((model(x).argmax(1) == y).float().mean())
        curve = [(0.0, clean_acc)] + [(e, _robust_acc(model, x, y, attack_fn(model, x, y, e))) for e in grid if e > 0]
        for (e0, a0), (e1, a1) in zip(curve, curve[1:]):
            if a1 > a0 + monotone_tol + one:
                reasons.append(f"robust accuracy rises with eps: {a0:.3f} at eps {e0:.4f} -> {a1:.3f} at eps {e1:.4f}")
        acc_large = dict(curve)[float(large_eps)]
        if acc_large > large_eps_max_acc:
            reasons.append(f"robust accuracy {acc_large:.3f} at eps {large_eps} (> {large_eps_max_acc}); expected ~0")
        rays_acc = None
        if rays_result is not None:
            if isinstance(rays_result, Mapping):
                r_eps, r_mask = float(rays_result["eps"]), rays_result["robust"]
            else:
                r_eps, r_mask = float(rays_result[0]), rays_result[1]
            rays_acc = float(_np_bool(r_mask).mean())
            wb = dict(curve).get(r_eps)
            if wb is None:
                wb = _robust_acc(model, x, y, attack_fn(model, x, y, r_eps))
            if rays_acc < wb - rays_margin - one:
                reasons.append(
                    f"black-box RayS robust accuracy {rays_acc:.3f} < white-box {wb:.3f} at eps {r_eps:.4f}"
                )
        fgsm_acc = wb_eps = None
        if eps is not None:
            e = float(eps)
            wb_eps = dict(curve).get(e)
            if wb_eps is None:
                wb_eps = _robust_acc(model, x, y, attack_fn(model, x, y, e))
            fgsm_acc = _robust_acc(model, x, y, fgsm(model, x, y, e))
            if fgsm_acc < wb_eps - fgsm_margin - one:
                reasons.append(f"FGSM robust accuracy {fgsm_acc:.3f} < iterative white-box {wb_eps:.3f} at eps {e:.4f}")
    return {"suspicious": bool(reasons), "reasons": reasons, "curve": curve, "clean_acc": clean_acc,
            "rays_acc": rays_acc, "fgsm_acc": fgsm_acc, "white_box_acc": wb_eps}
