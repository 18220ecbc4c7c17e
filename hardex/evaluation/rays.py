"""RayS (Chen & Gu, KDD 2020), hard-label l-inf attack, batched over examples.

Implemented from the description in ``shared/paper/ANCHORS.md`` ("RayS"), not from the
reference code (uclaml/RayS). Only the predicted label is used (no logits, no gradients).

- The search direction is a sign vector ``s`` in {-1, +1}^D over the flattened input;
  a ray point at l-inf distance ``d`` is ``clamp(x + d * s, 0, 1)`` (the clamp can only
  shorten the perturbation).
- Start: ``s = +1``; its distance is found by checking ``d = 1`` (the far box corner;
  not adversarial -> distance inf) and bisecting ``[0, 1]``.
- Refinement: hierarchical blocks: at level ``L`` the vector is cut into ``2^L`` blocks
  of ``ceil(D / 2^L)`` coordinates; each attempt flips one block (levels and blocks in
  order; after the last block of a level the next level starts). An attempt costs one
  query at the current best distance (not adversarial -> rejected); if adversarial, a
  bisection on ``[0, d_best]`` (to ``tol``) gives the new, smaller distance and the
  flipped vector is kept.
- Early stop per example once its distance is <= eps (the bisection also stops as soon
  as its upper end is <= eps), or when its query budget is spent. Robust = final
  distance > eps.

All examples share the block schedule (one attempt per iteration), while each has its
own query counter; queries (forward passes on one example) are counted exactly.
The returned ``x_adv`` is the point at distance ``min(d, eps)`` on the best ray, so it
lies in the eps-ball: adversarial for broken examples, not for robust ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hardex.attacks import _check_eps, eval_precision

__all__ = ["rays"]


def rays(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    query_limit: int = 10000,
    seed: int = 0,
    tol: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (x_adv, robust_mask, queries per example). ``seed`` is accepted for API
    symmetry; the algorithm is deterministic (the block order is fixed)."""
    del seed
    eps = _check_eps(eps)
    if query_limit < 1:
        raise ValueError(f"query_limit must be >= 1, got {query_limit}")
    x = x.detach().float()
    y = y.detach().long()
    n = len(x)
    dev = x.device
    flat = x.reshape(n, -1)
    dim = flat.shape[1]
    sgn = torch.ones_like(flat)
    dist = torch.full((n,), float("inf"), device=dev)
    queries = torch.zeros(n, dtype=torch.long, device=dev)

    def is_adv(idx: torch.Tensor, s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        pts = (flat[idx] + d.view(-1, 1) * s).clamp(0.0, 1.0).view(-1, *x.shape[1:])
        queries[idx] += 1
        with torch.no_grad():
            return model(pts).argmax(1) != y[idx]

    def search(idx: torch.Tensor, s: torch.Tensor) -> None:
        """Try direction s (rows for idx); update sgn / dist where it is better."""
        d0 = torch.where(torch.isfinite(dist[idx]), dist[idx], torch.ones_like(dist[idx]))
        ok = is_adv(idx, s, d0)
        if not ok.any():
            return
        idx, s, hi = idx[ok], s[ok], d0[ok]
        lo = torch.zeros_like(hi)
        while True:
            go = (hi - lo > tol) & (hi > eps) & (queries[idx] < query_limit)
            if not go.any():
                break
            g = torch.nonzero(go).squeeze(1)
            mid = (lo[g] + hi[g]) / 2
            adv = is_adv(idx[g], s[g], mid)
            hi[g] = torch.where(adv, mid, hi[g])
            lo[g] = torch.where(adv, lo[g], mid)
        sgn[idx] = s
        dist[idx] = hi

    with eval_precision():
        with torch.no_grad():
            clean_wrong = model(x).argmax(1) != y if n else torch.zeros(0, dtype=torch.bool, device=dev)
        dist[clean_wrong] = 0.0
        queries += 1

        def active() -> torch.Tensor:
            return torch.nonzero((queries < query_limit) & (dist > eps)).squeeze(1)

        idx = active()
        if len(idx):
            search(idx, sgn[idx].clone())
        level, block = 0, 0
        while True:
            idx = active()
            if len(idx) == 0:
                break
            size = math.ceil(dim / 2**level)
            start, end = block * size, min(dim, (block + 1) * size)
            s = sgn[idx].clone()
            s[:, start:end] *= -1
            search(idx, s)
            block += 1
            if block == 2**level or end >= dim:
                level, block = level + 1, 0
        # a budget-truncated bisection (or a non-monotone ray) can leave the point at
        # distance eps adversarial although dist > eps: check it once (counted query)
        left = torch.nonzero(dist > eps).squeeze(1)
        if len(left):
            hit = is_adv(left, sgn[left], torch.full((len(left),), eps, device=dev))
            dist[left[hit]] = eps
    robust = dist > eps
    d = torch.clamp(dist, max=eps)
    x_adv = (flat + d.view(-1, 1) * sgn).clamp(0.0, 1.0).view_as(x)
    x_adv = torch.where(clean_wrong.view(-1, *[1] * (x.dim() - 1)), x, x_adv)
    return x_adv.detach(), robust, queries

# Note: robust also requires the ray point at eps to be non-adversarial (one extra counted query; queries <= query_limit + 1).
