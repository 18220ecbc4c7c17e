"""A3, adaptive auto attack (Liu et al., CVPR 2022), l-inf, white-box.

Implemented from the description in ``shared/paper/ANCHORS.md`` (section "A3"), not from
the reference script (liuye6666/adaptive_auto_attack). Pieces:

- Loss: the margin (max over non-true logits minus the true logit, :func:`margin_loss`);
  sign-gradient ascent with a cosine step-size decay from ``eps`` to a floor
  (``0.1 * eps`` for <= 10 steps, else ``0.001 * eps``); a uniform random start in the
  ball per restart; projection to the eps-ball and [0, 1] in fp32; input gradients only
  (``torch.autograd.grad``), summed loss.
- Early removal: an example is dropped from the batch as soon as it is misclassified;
  it is recorded as broken (``robust`` False) and is never attacked or marked robust
  again.
- ADI (adaptive direction initialisation): before the attack steps of an ADI round,
  ``adi_steps`` ascent steps of size ``eps`` on ``sum(logits * w)``. Random mode:
  ``w ~ U[-1, 1]^C`` per example. Biased mode: the random ``w`` with ``w[target] = +1`` and
  ``w[y] = -1``, where the target is a class ranked by the clean logits (descending, true
  class excluded) and the rank rotates with the biased-round counter over the round's
  ``targets`` top-ranked classes: the 2nd-highest class, then the 3rd, ... (the reference
  rotates over the top 9 of CIFAR-10's classes in the middle rounds and the top 4 in the
  last ones). Without the rotation every late round climbs the same untargeted margin to
  the same local optimum; with it the late rounds try other target classes, as
  AutoAttack's targeted APGD does.
- OSD (online statistics-based discarding): each example's lowest robust margin
  (true logit minus max other; > 0 means correct) seen so far is tracked; each round
  attacks only the still-robust examples with the lowest margins: ``ceil(keep * n)`` of
  the ``n`` still-robust ones, at least ``min(min_keep, n)``.

Schedule (:func:`default_schedule`, the reference's plain schedule): 13 rounds; round 0
plain, 8 steps; round 1 random ADI (7 steps) + 8 attack steps; round 2 biased ADI + 8
steps; rounds 3-12 biased ADI (7 steps) with keep-fraction 0.7, 0.6, 0.5, 0.4, 0.3, 0.2,
0.1, 0.1, 0.065, 0.03 and 25, 30, 30, 35, 40, 45, 50, 50, 55, 60 attack steps; the target
rotates over the top 9 other classes (14 with more than 10 classes), over the top 4 in
rounds 10-12. Departures from the reference, both stated: one restart per round (the
reference adds 4, 4 and 50 restarts in rounds 10-12, and 10 more per round once fewer than
10% of examples are robust), and no switch to its second late schedule (keep 1, 5-45
steps, 10-15 ADI steps) when random ADI broke at least 5% of the examples it attacked.

Counting: ``n_forward`` / ``n_backward`` count example-passes (a forward on a batch of b
examples adds b), including the initial clean forward and one check forward after the
last step of each restart. The caller sets eval mode; the evaluation runs under
:func:`hardex.attacks.eval_precision`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hardex.attacks import _check_eps, _project, eval_precision

__all__ = ["A3Round", "A3Result", "a3", "default_schedule", "cosine_step_sizes"]

ADI_MODES = ("none", "random", "biased")


@dataclass(frozen=True)
class A3Round:
    """One outer round (one restart over the kept examples)."""

    steps: int
    keep: float = 1.0
    adi_steps: int = 0
    adi: str = "none"  # none | random | biased
    targets: int = 9  # biased ADI: the target rotates over this many top-ranked other classes

    def __post_init__(self) -> None:
        if self.steps < 0 or self.adi_steps < 0:
            raise ValueError(f"steps and adi_steps must be >= 0, got {self.steps}, {self.adi_steps}")
        if self.targets < 1:
            raise ValueError(f"targets must be >= 1, got {self.targets}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must lie in (0, 1], got {self.keep}")
        if self.adi not in ADI_MODES:
            raise ValueError(f"unknown adi mode {self.adi!r}; allowed: {', '.join(ADI_MODES)}")


@dataclass
class A3Result:
    x_adv: torch.Tensor  # worst point found per example
    robust: torch.Tensor  # bool per example: correct under every point tried
    n_forward: int = 0
    n_backward: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per round: attacked, broken, adi, target_rank, steps, keep,
    # robust_after, attacked_idx, broken_idx (indices into x)

    @property
    def robust_acc(self) -> float:
        return float(self.robust.float().mean()) if self.robust.numel() else float("nan")


PLAIN_KEEP = (0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.065, 0.03)
PLAIN_STEPS = (25, 30, 30, 35, 40, 45, 50, 50, 55, 60)


def default_schedule(num_classes: int = 10) -> list[A3Round]:
    """The reference's 13-round plain schedule (see module docstring)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    middle = min(num_classes - 1, 9 if num_classes <= 10 else 14)
    last = min(num_classes - 1, 4 if num_classes <= 10 else 14)
    rounds = [A3Round(steps=8), A3Round(steps=8, adi_steps=7, adi="random"),
              A3Round(steps=8, adi_steps=7, adi="biased", targets=middle)]
    for i, (keep, steps) in enumerate(zip(PLAIN_KEEP, PLAIN_STEPS)):
        rounds.append(A3Round(steps=steps, keep=keep, adi_steps=7, adi="biased", targets=last if i >= 7 else middle))
    return rounds


def cosine_step_sizes(eps: float, steps: int) -> list[float]:
    """Cosine decay from eps to the floor (0.1 eps for <= 10 steps, else 0.001 eps)."""
    floor = (0.1 if steps <= 10 else 0.001) * eps
    if steps <= 1:
        return [eps] * steps
    return [floor + (eps - floor) * 0.5 * (1.0 + math.cos(math.pi * t / (steps - 1))) for t in range(steps)]


def _robust_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True logit minus the max other logit (> 0: correct). Ties count as wrong."""
    z = logits.float()
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return true - others.max(dim=1).values


class _Counter:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.fwd = 0
        self.bwd = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.fwd += len(x)
        return self.model(x)

    def grad(self, objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.bwd += len(x)
        (g,) = torch.autograd.grad(objective, [x])
        return g


def _attack_chunk(
    c: _Counter,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    rnd: A3Round,
    adi_mode: str,
    w_target: torch.Tensor | None,
    gen: torch.Generator,
    num_classes: int,
    best_m: torch.Tensor,
    best_x: torch.Tensor,
) -> torch.Tensor:
    """One restart on a chunk; updates best_m / best_x in place; returns broken (bool)."""
    n = len(x)
    dev = x.device
    broken = torch.zeros(n, dtype=torch.bool, device=dev)
    u = torch.rand(x.shape, generator=gen, dtype=torch.float32).to(dev)
    x_adv = _project(x + (2.0 * u - 1.0) * eps, x, eps)
    active = torch.arange(n, device=dev)
    w = None
    if adi_mode in ("random", "biased") and rnd.adi_steps > 0:
        w = (2.0 * torch.rand(n, num_classes, generator=gen) - 1.0).to(dev)
        if adi_mode == "biased" and w_target is not None:
            w[torch.arange(n, device=dev), w_target] = 1.0
            w[torch.arange(n, device=dev), y] = -1.0
    phases: list[tuple[str, float]] = []
    if w is not None:
        phases += [("adi", eps)] * rnd.adi_steps
    phases += [("attack", s) for s in cosine_step_sizes(eps, rnd.steps)]
    phases.append(("check", 0.0))
    for kind, step in phases:
        if len(active) == 0:
            break
        xa = x_adv[active].requires_grad_(kind != "check")
        ya = y[active]
        with torch.enable_grad() if kind != "check" else torch.no_grad():
            logits = c.forward(xa)
            m = _robust_margin(logits.detach(), ya)
            better = m < best_m[active]
            idx_b = active[better]
            best_m[idx_b] = m[better]
            best_x[idx_b] = xa.detach()[better]
            hit = m <= 0
            broken[active[hit]] = True
            if kind == "check":
                break
            keep = ~hit
            if not keep.any():
                active = active[keep]
                break
            if kind == "adi":
                objective = (logits.float() * w[active]).sum()
            else:
                objective = (-_robust_margin(logits, ya)).sum()
        g = c.grad(objective, xa)
        xa_new = _project(xa.detach() + step * g.sign(), x[active], eps)
        active = active[keep]
        x_adv[active] = xa_new[keep]
    return broken


def a3(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    schedule: list[A3Round] | None = None,
    seed: int = 0,
    batch_size: int = 500,
    min_keep: int = 100,
) -> A3Result:
    """Run A3 on (x, y); see the module docstring. The model's mode is not changed."""
    eps = _check_eps(eps)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    schedule = list(schedule) if schedule is not None else None
    x = x.detach().float()
    y = y.detach().long()
    dev = x.device
    n = len(x)
    gen = torch.Generator().manual_seed(int(seed))
    c = _Counter(model)
    best_x = x.clone()
    best_m = torch.full((n,), float("inf"), device=dev)
    broken = torch.zeros(n, dtype=torch.bool, device=dev)
    log: list[dict[str, Any]] = []
    with eval_precision():
        clean_logits = []
        with torch.no_grad():
            for s in range(0, n, batch_size):
                clean_logits.append(c.forward(x[s : s + batch_size]).float())
        clean = torch.cat(clean_logits) if n else torch.zeros(0, 1, device=dev)
        num_classes = clean.shape[1]
        if n:
            m0 = _robust_margin(clean, y)
            best_m = m0.clone()
            broken |= m0 <= 0
        if schedule is None:
            schedule = default_schedule(max(num_classes, 2))
        # the other classes by clean logit, descending (true class excluded): biased ADI's targets
        order = clean.scatter(1, y.view(-1, 1), float("-inf")).argsort(dim=1, descending=True) if n else None
        n_biased = 0  # biased rounds so far: the target's rank rotates with it
        for r, rnd in enumerate(schedule):
            cand = torch.nonzero(~broken).squeeze(1)
            mode = rnd.adi if rnd.adi_steps > 0 else "none"
            entry = {"round": r, "adi": mode, "steps": rnd.steps, "keep": rnd.keep, "target_rank": None}
            if len(cand) == 0:
                log.append({**entry, "attacked": 0, "broken": 0, "robust_after": 0, "attacked_idx": [],
                            "broken_idx": []})
                continue
            k = min(len(cand), max(math.ceil(rnd.keep * len(cand)), min(min_keep, len(cand))))
            chosen = cand[best_m[cand].argsort()[:k]]
            w_target = None
            if mode == "biased":
                rank = n_biased % min(rnd.targets, num_classes - 1)
                n_biased += 1
                entry["target_rank"] = rank + 2  # 2: the 2nd-highest class overall
                w_target = order[:, rank]
            n_broken = 0
            broken_idx: list[int] = []
            for s in range(0, len(chosen), batch_size):
                idx = chosen[s : s + batch_size]
                bm = best_m[idx].clone()
                bx = best_x[idx].clone()
                hit = _attack_chunk(
                    c, x[idx], y[idx], eps, rnd, mode,
                    None if w_target is None else w_target[idx],
                    gen, num_classes, bm, bx,
                )
                best_m[idx] = bm
                best_x[idx] = bx
                broken[idx[hit]] = True
                n_broken += int(hit.sum())
                broken_idx += idx[hit].tolist()
            log.append({**entry, "attacked": int(len(chosen)), "broken": n_broken, "robust_after": int((~broken).sum()),
                        "attacked_idx": chosen.tolist(), "broken_idx": broken_idx})
    robust = ~broken
    return A3Result(x_adv=best_x.detach(), robust=robust, n_forward=c.fwd, n_backward=c.bwd, rounds=log)
