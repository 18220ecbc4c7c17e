"""MD attack, margin decomposition (Ma, Jiang et al., 2020; HanxunH/MDAttack), l-inf.

Implemented from the description in ``shared/paper/ANCHORS.md`` ("MD attack"), not from
the reference code. Per restart, two passes, each from a fresh uniform start in the ball:

1. pass "true": for the first ``change_point`` steps ascend ``-z_y`` (push the true
   logit down), then the margin ``max_{j != y} z_j - z_y``;
2. pass "other": for the first ``change_point`` steps ascend ``max_{j != y} z_j`` (push
   the largest other logit up), then the margin.

Sign-gradient steps; the step size follows a cosine from ``2 * eps`` to 0 over the first
stage and restarts at ``2 * eps`` at the change point, decaying to 0 over the second
stage. Projection and clamp in fp32; input gradients only. An example counts as broken
as soon as any visited point is misclassified; that point is returned for it (else the
point with the lowest true-minus-best-other margin). The model's mode is not changed;
evaluation runs under :func:`hardex.attacks.eval_precision`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hardex.attacks import _check_eps, _project, eval_precision

__all__ = ["md_attack", "md_step_sizes"]


def md_step_sizes(eps: float, steps: int, change_point: int) -> list[float]:
    """Cosine from 2 eps per stage, restarted at the change point."""
    out = []
    for t in range(steps):
        if t < change_point:
            length, i = change_point, t
        else:
            length, i = steps - change_point, t - change_point
        out.append(2.0 * eps * 0.5 * (1.0 + math.cos(math.pi * i / max(length, 1))))
    return out


def _parts(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = logits.float()
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    other = z.scatter(1, y.view(-1, 1), float("-inf")).max(dim=1).values
    return true, other


def md_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 50,
    change_point: int = 20,
    restarts: int = 1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (x_adv, robust_mask); robust_mask is True where no visited point (and not
    the clean input) was misclassified."""
    eps = _check_eps(eps)
    if steps < 0 or not 0 <= change_point <= steps or restarts < 1:
        raise ValueError(f"need steps >= 0, 0 <= change_point <= steps, restarts >= 1; got {steps}, {change_point}, {restarts}")
    x = x.detach().float()
    y = y.detach().long()
    gen = torch.Generator().manual_seed(int(seed))
    sizes = md_step_sizes(eps, steps, change_point)
    with eval_precision():
        with torch.no_grad():
            t0, o0 = _parts(model(x), y)
        best_m = t0 - o0
        best_x = x.clone()
        robust = best_m > 0
        for _ in range(restarts):
            for stage1 in ("true", "other"):
                if not robust.any():
                    break
                idx = torch.nonzero(robust).squeeze(1)
                xs, ys = x[idx], y[idx]
                u = torch.rand(xs.shape, generator=gen, dtype=torch.float32).to(x.device)
                x_adv = _project(xs + (2.0 * u - 1.0) * eps, xs, eps)
                for t in range(steps + 1):
                    x_adv.requires_grad_(t < steps)
                    with torch.enable_grad() if t < steps else torch.no_grad():
                        true, other = _parts(model(x_adv), ys)
                        m = (true - other).detach()
                        better = m < best_m[idx]
                        best_m[idx[better]] = m[better]
                        best_x[idx[better]] = x_adv.detach()[better]
                        if t == steps:
                            break
                        if t < change_point:
                            objective = (-true).sum() if stage1 == "true" else other.sum()
                        else:
                            objective = (other - true).sum()
                    (g,) = torch.autograd.grad(objective, [x_adv])
                    x_adv = _project(x_adv.detach() + sizes[t] * g.sign(), xs, eps)
                robust = best_m > 0
    return best_x.detach(), robust
