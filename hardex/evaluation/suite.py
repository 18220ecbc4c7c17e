"""Robust evaluation of a model or a stored run: clean accuracy, robust accuracy per
attack, the per-example worst case over the attacks, per-class accuracy, the cost of each
attack and a gradient-masking check (issue 7; paper Tables 19-21).

Attack names (``attacks=``):

- ``pgdK``: PGD-K with cross-entropy, step eps/4 (the paper's evaluation), uniform start;
- ``cwK``: PGD-K with the CW margin loss (Table 19's "CW" column), step eps/4;
- ``fgsm``: one signed-gradient step of size eps (used by the masking check);
- ``a3``: adaptive auto attack (:mod:`hardex.evaluation.a3`), its reference schedule;
- ``autoattack``: AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square) via pyautoattack;
- ``md``: margin-decomposition attack (:mod:`hardex.evaluation.md_attack`);
- ``rays`` / ``raysQ``: RayS, hard-label, query budget ``rays_queries`` (default 10,000,
  the reference default) or Q;
- ``pgdK@bf16`` / ``cwK@bf16``: the same attack with its forward and backward passes under
  bf16 autocast, as the training-time attacks of a ``precision: bf16`` run compute them
  (perturbation, projection and clamping stay fp32; the returned points are scored by the
  fp32 model like every attack's). Next to ``pgdK`` it shows whether the bf16 attack is
  weaker than the fp32 one (:func:`precision_agreement`).

Conventions: fp32, eval mode, TF32 off (:func:`hardex.attacks.eval_precision`), parameter
gradients off while attacking. An example is *robust* under an attack when it is
classified correctly on the clean input and at every point the attack returns; the
per-example worst case is the AND over the requested attacks. Costs are counted by a
wrapper around the model: every forward pass adds the number of examples in the batch,
and every backward pass that reaches the logits adds the same number (so PGD-K on n
examples costs exactly K*n forward and K*n backward example-passes; the final check of
the returned points by this module is not charged to the attack).

:func:`evaluate_run` loads a stored run's final or best model, evaluates a seeded subset
of the test split (or all of it) and caches the result atomically in
``<run dir>/eval/<key>.json``; a second call with the same arguments reads the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hardex import attacks as atk
from hardex.evaluation.robustness import DEFAULT_GROUPS, class_group_accuracy, masking_check, per_class_accuracy, worst_case

__all__ = [
    "ATTACK_FORMS",
    "AttackSpec",
    "PassCounter",
    "parse_attack",
    "evaluate_model",
    "evaluate_run",
    "precision_agreement",
    "load_model",
    "cache_key",
]

EVAL_FORMAT = 1
# An attack whose algorithm changed carries a version into the cache key, so only the cached
# results that hold it are recomputed: a3 2 = biased ADI rotating its target class in every
# late round (before: no ADI once random ADI had broken nothing).
ATTACK_VERSIONS = {"a3": 2}
ATTACK_FORMS = ("pgdK", "cwK", "pgdK@bf16", "cwK@bf16", "fgsm", "a3", "autoattack", "md", "rays", "raysQ")
_RE = re.compile(r"^(?:(pgd|cw)(\d+)(@bf16)?|(rays)(\d+)?|(fgsm|a3|autoattack|md))$")


@dataclass(frozen=True)
class AttackSpec:
    name: str
    kind: str  # pgd | cw | fgsm | a3 | autoattack | md | rays
    steps: int | None = None  # pgd / cw steps, rays query budget
    precision: str = "fp32"  # the attack's own passes: fp32 (TF32 off) or bf16 autocast (pgd / cw)


def parse_attack(name: str) -> AttackSpec:
    """``"pgd20"`` -> AttackSpec("pgd20", "pgd", 20), etc.; a clear error otherwise."""
    m = _RE.match(str(name).strip().lower())
    if m is None:
        raise ValueError(f"unknown attack {name!r}; allowed: {', '.join(ATTACK_FORMS)} "
                         "(K = number of steps, Q = RayS query budget), e.g. pgd20, cw20, a3, autoattack")
    if m.group(1):
        k = int(m.group(2))
        if k < 1:
            raise ValueError(f"attack {name!r}: the number of steps must be >= 1")
        if m.group(3):
            return AttackSpec(f"{m.group(1)}{k}@bf16", m.group(1), k, precision="bf16")
        return AttackSpec(f"{m.group(1)}{k}", m.group(1), k)
    if m.group(4):
        q = None if m.group(5) is None else int(m.group(5))
        if q is not None and q < 1:
            raise ValueError(f"attack {name!r}: the query budget must be >= 1")
        return AttackSpec("rays" if q is None else f"rays{q}", "rays", q)
    return AttackSpec(m.group(6), m.group(6))


def _parse_all(attacks: Sequence[str] | str) -> list[AttackSpec]:
    if isinstance(attacks, str):
        attacks = [a for a in attacks.split(",") if a.strip()]
    specs = [parse_attack(a) for a in attacks]
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"attack(s) listed twice: {', '.join(dup)}")
    return specs


def _check_eps(eps: float) -> float:
    e = float(eps)
    if math.isnan(e) or not 0.0 <= e <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] (images are in [0, 1]; 8/255 = {8 / 255:.4f}), got {eps}")
    return e


# --------------------------------------------------------------------------- counting


class PassCounter(nn.Module):
    """Wraps a model; counts forward and backward example-passes.

    A forward on a batch of b examples adds b to ``forward``; when a backward pass
    later reaches that call's logits (``autograd.grad`` or ``.backward()``), a hook on
    the logits adds b to ``backward``. Forwards whose logits need no gradient add no
    backward.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_passes = 0
        self.backward_passes = 0

    def reset(self) -> None:
        self.forward_passes = self.backward_passes = 0

    def _count_backward(self, b: int) -> Callable[[torch.Tensor], None]:
        def hook(_grad: torch.Tensor) -> None:
            self.backward_passes += b

        return hook

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        b = int(x.shape[0])
        self.forward_passes += b
        if out.requires_grad:
            out.register_hook(self._count_backward(b))
        return out


class Purified(nn.Module):
    """``model(purifier(x))``: an input purification defence (e.g. DiffPure, Table 22)
    in front of the classifier. Attacks see the composition (plain gradients through
    the purifier; no BPDA / EOT)."""

    def __init__(self, model: nn.Module, purifier: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.purifier = purifier  # registered as a submodule when it is an nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.purifier(x))


# --------------------------------------------------------------------------- evaluation


def _as_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(x float in [0, 1], y, stable index) from a hardex Dataset or an (x, y) pair."""
    from hardex.data import to_float

    if isinstance(dataset, (tuple, list)):
        x, y = dataset
        x = x.float() if x.is_floating_point() else to_float(x)
        if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"inputs must lie in [0, 1] (images scaled to [0, 1]; eps is measured there), got values in "
                             f"[{float(x.min()):.4g}, {float(x.max()):.4g}]; a model that expects normalised inputs takes "
                             "its normalisation as a layer (hardex.models.Normalize, `hardex eval --mean/--std`)")
        return x, y.long(), np.arange(len(x))
    return to_float(dataset.images), dataset.labels.long(), dataset.index.detach().cpu().numpy()


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) \
            if len(x) else torch.zeros(0, dtype=torch.long, device=x.device)


def _run_attack(spec: AttackSpec, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                batch_size: int, seed: int, step_size: float, opts: Mapping[str, Any]) -> torch.Tensor:
    """Robust mask (bool, on x's device) of one attack; ``model`` is the counting wrapper."""
    dev = x.device
    n = len(x)
    if spec.kind in ("pgd", "cw", "fgsm"):
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        out = []
        for i in range(0, n, batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            if spec.kind == "fgsm":
                xa = atk.fgsm(model, xb, yb, eps)
            else:
                xa = atk.pgd(model, xb, yb, eps, step_size=step_size, steps=spec.steps,
                             loss="ce" if spec.kind == "pgd" else "margin", random_start="uniform",
                             autocast_dtype=torch.bfloat16 if spec.precision == "bf16" else None, generator=gen)
            out.append(xa)
        x_adv = torch.cat(out) if out else x.clone()
        _check_feasible(spec.name, x_adv, x, eps)
        counter = model.forward_passes
        ok = _predict(model.model, x_adv, batch_size) == y  # the check is not charged to the attack
        assert model.forward_passes == counter
        return ok
    if spec.kind == "a3":
        from hardex.evaluation.a3 import a3

        res = a3(model, x, y, eps, seed=seed, batch_size=batch_size, **dict(opts.get("a3", {})))
        _check_feasible(spec.name, res.x_adv, x, eps)
        return res.robust.to(dev)
    if spec.kind == "autoattack":
        aa = dict(opts.get("autoattack", {}))
        return atk.autoattack(model, x, y, eps, batch_size=batch_size, seed=seed, return_mask=True, **aa).to(dev)
    if spec.kind == "md":
        from hardex.evaluation.md_attack import md_attack

        masks = []
        for i in range(0, n, batch_size):
            xa, rob = md_attack(model, x[i : i + batch_size], y[i : i + batch_size], eps, seed=seed + i,
                                **dict(opts.get("md", {})))
            _check_feasible(spec.name, xa, x[i : i + batch_size], eps)
            masks.append(rob)
        return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool, device=dev)
    if spec.kind == "rays":
        from hardex.evaluation.rays import rays

        q = spec.steps if spec.steps is not None else int(opts.get("rays_queries", 10000))
        masks = []
        for i in range(0, n, batch_size):
            xa, rob, _ = rays(model, x[i : i + batch_size], y[i : i + batch_size], eps, query_limit=q)
            _check_feasible(spec.name, xa, x[i : i + batch_size], eps)
            masks.append(rob)
        return torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool, device=dev)
    raise AssertionError(spec)  # parse_attack only returns the kinds above


def _check_feasible(name: str, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """Every returned point lies in the eps-ball around x and in [0, 1] (fp32 slack)."""
    if len(x) == 0:
        return
    dist = float((x_adv.float() - x).abs().max())
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if dist > eps + 1e-6 or lo < 0.0 or hi > 1.0:
        raise RuntimeError(f"attack {name} returned points outside the eps-ball or [0, 1]: "
                           f"l-inf distance {dist:.6g} (eps {eps:.6g}), range [{lo:.4g}, {hi:.4g}]")


def _bits(mask: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in mask.tolist())


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if (isinstance(v, float) and math.isnan(v)) else float(v) for v in np.asarray(a, dtype=float)]


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    attacks: Sequence[str] | str = ("pgd20", "cw20", "a3"),
    eps: float = 8 / 255,
    batch_size: int = 256,
    *,
    seed: int = 0,
    step_size: float | None = None,
    rays_queries: int = 10000,
    a3_options: Mapping[str, Any] | None = None,
    md_options: Mapping[str, Any] | None = None,
    autoattack_options: Mapping[str, Any] | None = None,
    masking: bool = True,
    masking_n: int = 200,
    masking_steps: int = 20,
    purifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    groups: Mapping[str, Sequence[int]] | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    on_attack: Callable[[str, dict[str, Any], float], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` (a hardex Dataset or an ``(x, y)`` pair of
    tensors, x in [0, 1]) under ``attacks`` (names, see the module docstring).

    ``step_size``: PGD / CW step (default eps / 4). ``a3_options`` / ``md_options`` /
    ``autoattack_options``: keyword arguments of :func:`hardex.evaluation.a3.a3`,
    :func:`hardex.evaluation.md_attack.md_attack`, :func:`hardex.attacks.autoattack` (e.g. a shorter
    schedule for smoke runs). ``masking``: run the gradient-masking check on the first
    ``masking_n`` examples (PGD-``masking_steps`` with the margin loss on an eps grid,
    FGSM, and the RayS result when RayS is among the attacks). ``purifier``: a callable
    applied to the input before the model (DiffPure-style defence). ``on_attack(name,
    cost, robust_acc)`` is called after each attack (progress lines of long evaluations).

    Returns a JSON-serialisable dict: ``n``, ``eps``, ``clean_acc``, ``robust_acc``
    {attack: fraction}, ``worst_case_acc``, ``per_class`` {"clean": [C], "attacks":
    {attack: [C]}, "worst_case": [C]} (None for a class without examples),
    ``class_groups`` {"clean"/attack/"worst_case": {group: fraction}} (default groups:
    CIFAR-10 easy {0,1,7,8,9} and hard {2,...,6}, Table 20), ``cost`` {attack:
    {"forward", "backward", "seconds"}}, ``params`` (attack settings), ``masking`` (the
    check's result or None) and ``per_example`` {"index": [...], "labels": [...],
    "clean": "0101...", attack: "...", "worst_case": "..."} (1 = robust).
    """
    eps = _check_eps(eps)
    specs = _parse_all(attacks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rays_queries < 1:
        raise ValueError(f"rays_queries must be >= 1, got {rays_queries}")
    step = eps / 4 if step_size is None else float(step_size)
    if specs and any(s.kind in ("pgd", "cw") for s in specs) and not step > 0:
        raise ValueError(f"step_size must be > 0, got {step_size} (eps={eps}: use eps > 0 or give step_size)")
    x, y, index = _as_tensors(dataset)
    dev = torch.device(device) if device is not None else atk._model_device(model)
    x, y = x.to(dev), y.to(dev)
    net: nn.Module = model if purifier is None else Purified(model, purifier)
    counter = PassCounter(net)
    opts: dict[str, Any] = {"a3": dict(a3_options or {}), "md": dict(md_options or {}),
                            "autoattack": dict(autoattack_options or {}), "rays_queries": int(rays_queries)}
    params = list(counter.parameters())
    grad_flags = [p.requires_grad for p in params]
    n = len(x)
    masks: dict[str, np.ndarray] = {}
    cost: dict[str, dict[str, Any]] = {}
    masking_result = None
    try:
        for p in params:
            p.requires_grad_(False)
        with atk.bn_eval(counter), atk.eval_precision():
            clean_ok = _predict(counter, x, batch_size) == y
            for s in specs:
                counter.reset()
                _sync(dev)
                t0 = time.perf_counter()
                rob = _run_attack(s, counter, x, y, eps, batch_size=batch_size, seed=seed, step_size=step, opts=opts)
                _sync(dev)
                cost[s.name] = {"forward": counter.forward_passes, "backward": counter.backward_passes,
                                "seconds": round(time.perf_counter() - t0, 4)}
                masks[s.name] = (rob.bool() & clean_ok).cpu().numpy()
                if on_attack is not None:
                    on_attack(s.name, cost[s.name], float(masks[s.name].mean()) if n else float("nan"))
            if masking and n:
                masking_result = _masking(counter.model, x[:masking_n], y[:masking_n], eps, masking_steps, seed,
                                          masks, specs)
    finally:
        for p, flag in zip(params, grad_flags):
            p.requires_grad_(flag)
    clean = clean_ok.cpu().numpy()
    worst = worst_case({"clean": clean, **masks})
    labels = y.cpu().numpy()
    C = int(num_classes) if num_classes is not None else int(getattr(dataset, "num_classes", 0) or
                                                           (labels.max() + 1 if n else 0))
    groups = DEFAULT_GROUPS if groups is None else groups

    def acc(m: np.ndarray) -> float | None:
        return float(m.mean()) if m.size else None

    return {
        "format": EVAL_FORMAT,
        "n": n,
        "eps": eps,
        "attacks": [s.name for s in specs],
        "clean_acc": acc(clean),
        "robust_acc": {k: acc(m) for k, m in masks.items()},
        "worst_case_acc": acc(worst),
        "per_class": {
            "clean": _nan_to_none(per_class_accuracy(clean, labels, C)),
            "attacks": {k: _nan_to_none(per_class_accuracy(m, labels, C)) for k, m in masks.items()},
            "worst_case": _nan_to_none(per_class_accuracy(worst, labels, C)),
        },
        "class_groups": {k: {g: (None if math.isnan(v) else v) for g, v in class_group_accuracy(m, labels, groups).items()}
                         for k, m in {"clean": clean, **masks, "worst_case": worst}.items()},
        "cost": cost,
        "params": _params(specs, eps, step, seed, batch_size, opts, purifier is not None),
        "masking": masking_result,
        "per_example": {"index": index.tolist(), "labels": labels.tolist(), "clean": _bits(clean),
                        **{k: _bits(m) for k, m in masks.items()}, "worst_case": _bits(worst)},
    }


def precision_agreement(result: Mapping[str, Any], attack: str, alpha: float = 0.05) -> dict[str, Any]:
    """Is the bf16 version of ``attack`` (``pgdK`` or ``cwK``) weaker than the fp32 one?

    Reads the per-example robust bits of ``attack`` and ``attack@bf16`` from an
    :func:`evaluate_model` / :func:`evaluate_run` result. Discordant examples: ``b`` =
    robust to the fp32 attack but broken by the bf16 one, ``c`` = broken by the fp32 attack
    but robust to the bf16 one. The bf16 attack is called *weaker* when the exact one-sided
    McNemar (sign) test rejects "c and b are equally likely" in favour of more c:
    P(X >= c) < ``alpha`` for X ~ Binomial(b + c, 1/2). Returns both accuracies, b, c,
    that p-value, ``weaker`` and ``agreement`` (fraction of examples on which they agree).
    """
    from scipy.stats import binomtest

    fp32 = parse_attack(attack)
    if fp32.kind not in ("pgd", "cw") or fp32.precision != "fp32":
        raise ValueError(f"precision_agreement compares pgdK / cwK with their @bf16 form, got {attack!r}")
    low = f"{fp32.name}@bf16"
    bits = result["per_example"]
    missing = [a for a in (fp32.name, low) if a not in bits]
    if missing:
        raise ValueError(f"the result has no {', '.join(missing)}; evaluate with attacks including "
                         f"{fp32.name} and {low} (it has {', '.join(result.get('attacks', []))})")
    a = np.frombuffer(bits[fp32.name].encode(), dtype=np.uint8) == ord("1")
    h = np.frombuffer(bits[low].encode(), dtype=np.uint8) == ord("1")
    b, c = int((a & ~h).sum()), int((~a & h).sum())
    p = float(binomtest(c, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    n = len(a)
    return {"attack": fp32.name, "n": n, "fp32_acc": float(a.mean()) if n else None,
            "bf16_acc": float(h.mean()) if n else None, "fp32_only_robust": b, "bf16_only_robust": c,
            "agreement": float((a == h).mean()) if n else None, "p_bf16_weaker": p, "alpha": alpha,
            "weaker": bool(p < alpha)}


def _params(specs: list[AttackSpec], eps: float, step: float, seed: int, batch_size: int,
            opts: Mapping[str, Any], purified: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in specs:
        if s.kind in ("pgd", "cw"):
            out[s.name] = {"steps": s.steps, "step_size": step, "loss": "ce" if s.kind == "pgd" else "margin",
                           "random_start": "uniform", "seed": seed,
                           **({"attack_precision": "bf16 autocast (fp32 perturbation and scoring)"}
                              if s.precision == "bf16" else {})}
        elif s.kind == "fgsm":
            out[s.name] = {"step_size": eps, "random_start": "none"}
        elif s.kind == "a3":
            a3o = dict(opts["a3"])
            if "schedule" in a3o:
                a3o["schedule"] = [r.__dict__ if hasattr(r, "__dict__") else r for r in a3o["schedule"]]
            out[s.name] = {"schedule": "default (13 rounds)" if "schedule" not in a3o else "custom", **a3o,
                           "seed": seed}
        elif s.kind == "autoattack":
            out[s.name] = {"version": "standard", **opts["autoattack"], "seed": seed}
        elif s.kind == "md":
            out[s.name] = {"steps": 50, "change_point": 20, "restarts": 1, **opts["md"], "seed": seed}
        elif s.kind == "rays":
            out[s.name] = {"query_limit": s.steps if s.steps is not None else opts["rays_queries"]}
    out["_common"] = {"eps": eps, "batch_size": batch_size, "purifier": purified, "precision": "fp32 (TF32 off)",
                      "mode": "eval"}
    return out


def _masking(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int,
             masks: Mapping[str, np.ndarray], specs: list[AttackSpec]) -> dict[str, Any]:
    """masking_check on the first examples: PGD (margin loss) on an eps grid up to 0.5,
    FGSM vs PGD at eps, and RayS vs white-box when RayS ran."""

    def attack_fn(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, e: float) -> torch.Tensor:
        return atk.pgd(m, xs, ys, e, step_size=max(e / 4, 1e-8), steps=steps, loss="margin",
                       generator=torch.Generator(device=xs.device).manual_seed(seed))

    rays_name = next((s.name for s in specs if s.kind == "rays"), None)
    rays_result = None if rays_name is None else {"eps": eps, "robust": masks[rays_name][: len(x)]}
    grid = sorted({eps / 2, eps, 2 * eps, 4 * eps} - {0.0}) if eps > 0 else [1 / 255]
    out = masking_check(model, x, y, [e for e in grid if e <= 1.0], attack_fn, rays_result, eps=eps if eps > 0 else None)
    out["n"] = len(x)
    out["attack"] = f"pgd{steps} (margin loss, step eps/4)"
    return out


# --------------------------------------------------------------------------- runs


WHICH = ("final", "best")
_EPOCH_RE = re.compile(r"^epoch-(\d+)$")


def _check_which(which: str) -> str:
    if which in WHICH or _EPOCH_RE.match(str(which)):
        return which
    raise ValueError(f"which must be one of {', '.join(WHICH)} (or epoch-NNN for a kept checkpoint), got {which!r}")


def load_model(record: Any, which: str = "final", store: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """The run's model (eval mode, CPU) and a description ``{"which", "epoch", "file"}``.

    ``which="final"``: the last epoch's checkpoint (``ckpt/epoch-NNN.pt``, kept when the
    spec's ``checkpoints.last`` is true); ``"best"``: ``best.pt``; ``"epoch-NNN"``: that
    kept checkpoint.
    """
    from hardex import data, models
    from hardex.runs.files import load_checked

    _check_which(which)
    spec = record.spec
    cfg = spec.train
    d = Path(record.path)
    if which == "best":
        f = d / "best.pt"
        if not f.exists():
            raise FileNotFoundError(f"run {spec.short_hash}: no best.pt in {d} (spec.checkpoints.best is "
                                    f"{spec.checkpoints.best}; records imported from results/ carry no checkpoints)")
        payload = load_checked(f)
        state, epoch = payload["model"], int(payload["epoch"])
    else:
        epoch_no = cfg.epochs if which == "final" else int(_EPOCH_RE.match(which).group(1))
        f = d / "ckpt" / f"epoch-{epoch_no:03d}.pt"
        if not f.exists():
            raise FileNotFoundError(f"run {spec.short_hash}: no checkpoint {f} (spec.checkpoints.last is "
                                    f"{spec.checkpoints.last}; records imported from results/ carry no checkpoints)")
        payload = load_checked(f)
        state, epoch = payload["trainer"]["model"], int(payload["epoch"])
    info = data.DATASETS[cfg.dataset.name]
    model = models.build_model(cfg.model.name, cfg.num_classes, info.image_size, cfg.model.normalize)
    model.load_state_dict(state)
    return model.eval(), {"which": which, "epoch": epoch, "file": str(f)}


def subset_test_split(dataset: Any, n: int | None, seed: int) -> Any:
    """A seeded subset of ``n`` examples (sorted by position), or all when n is None or
    at least the split's size."""
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise ValueError(f"n must be >= 1 or None (all), got {n}")
    rng = np.random.default_rng(int(seed))
    return dataset.subset(np.sort(rng.permutation(len(dataset))[:n]))


def cache_key(attacks: Sequence[str], n: int | None, seed: int, which: str, eps: float,
              options: Mapping[str, Any] | None = None) -> str:
    """File name stem: readable parts plus a short hash of everything that changes the
    result (attack options included)."""
    names = [parse_attack(a).name for a in attacks]
    fields = {"format": EVAL_FORMAT, "attacks": names, "n": n, "seed": seed, "which": which,
              "eps": round(float(eps), 10), "options": options or {}}
    versions = {a: ATTACK_VERSIONS[a] for a in names if a in ATTACK_VERSIONS}
    if versions:  # absent when no versioned attack is among them: those keys stay as they were
        fields["versions"] = versions
    blob = json.dumps(fields, sort_keys=True, default=str)
    h = hashlib.sha256(blob.encode()).hexdigest()[:10]
    return f"{which}-{'+'.join(names)}-n{'all' if n is None else n}-s{seed}-eps{float(eps):.5g}-{h}"


def cache_file(record: Any, attacks: Sequence[str] | str = ("pgd20", "cw20", "a3"), n: int | None = None,
               seed: int = 0, which: str = "final", *, eps: float | None = None, purifier_id: str | None = None,
               **options: Any) -> Path:
    """Where :func:`evaluate_run` caches (or finds) this evaluation of ``record``: its keywords;
    ``batch_size`` and ``device`` do not change a result and are ignored."""
    for k in ("batch_size", "device", "store", "cache", "cached_only", "data_root", "purifier"):
        options.pop(k, None)
    names = [s.name for s in _parse_all(attacks)]
    e = _check_eps(record.spec.train.attack.eps if eps is None else eps)
    opt_key = {k: v for k, v in sorted(options.items())}
    if purifier_id is not None:
        opt_key["purifier"] = purifier_id
    return Path(record.path) / "eval" / f"{cache_key(names, n, seed, which, e, opt_key)}.json"


def evaluate_run(
    record: Any,
    attacks: Sequence[str] | str = ("pgd20", "cw20", "a3"),
    n: int | None = None,
    seed: int = 0,
    which: str = "final",
    store: Any = None,
    *,
    eps: float | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    purifier: Callable[[torch.Tensor], torch.Tensor] | None = None,
    purifier_id: str | None = None,
    cache: bool = True,
    cached_only: bool = False,
    data_root: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a stored run (``record`` from :func:`hardex.runs.plan.ensure`, or a run hash /
    directory resolved in ``store``) and cache the result in ``<run dir>/eval/<key>.json``.

    ``n``: a seeded subset (``seed``) of the test split, None = all of it. ``which``:
    "final" or "best". ``eps``: default the run's training eps. ``options``: passed to
    :func:`evaluate_model` (step_size, rays_queries, a3_options, md_options,
    autoattack_options, masking, masking_n, masking_steps); they are part of the cache
    key. With a ``purifier`` the result is cached only under a ``purifier_id``.
    Returns :func:`evaluate_model`'s dict plus ``run``, ``which``, ``epoch``, ``seed``
    and ``cached`` (True when read from the file). ``cached_only`` (a build that renders
    from records only): a result not in the cache raises :class:`hardex.runs.errors.NoRecord`
    instead of evaluating.
    """
    from hardex import data
    from hardex.runs.files import _json_default, atomic_write_json
    from hardex.runs.store import RunStore

    if not hasattr(record, "spec"):
        store = store if store is not None else RunStore()
        record = store.load(record)
    _check_which(which)
    specs = _parse_all(attacks)
    names = [s.name for s in specs]
    cfg = record.spec.train
    e = _check_eps(cfg.attack.eps if eps is None else eps)
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive integer or None (all test examples), got {n}")
    opt_key = {k: v for k, v in sorted(options.items())}
    if purifier is not None:
        opt_key["purifier"] = purifier_id
    f = cache_file(record, names, n, seed, which, eps=e, purifier_id=purifier_id if purifier is not None else None,
                   **options)
    key = f.stem
    use_cache = cache and (purifier is None or purifier_id is not None)
    if use_cache and f.exists():
        try:
            out = json.loads(f.read_text())
            if out.get("key") == key:
                return {**out, "cached": True}
        except ValueError:
            pass  # not ours or damaged (cannot be partial: written by rename); recompute
    if cached_only:  # e.g. `hardex book --render-only`: nothing is evaluated
        from hardex.runs.errors import NoRecord

        raise NoRecord(f"not run yet (no record): no cached evaluation {key} ({', '.join(names)}, n={n}, "
                       f"seed {seed}, {which}) of run {record.spec.short_hash[:12]}")
    model, where = load_model(record, which)
    test = data.load_dataset(cfg.dataset.name, "test", root=data_root)
    sub = subset_test_split(test, n, seed)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(dev)
    res = evaluate_model(model, sub.to(dev), names, e, batch_size, seed=seed, purifier=purifier,
                         num_classes=cfg.num_classes, device=dev, **options)
    out = {"key": key, "run": record.spec.short_hash, "which": which, "epoch": where["epoch"], "seed": seed,
           "n_requested": n, "options": json.loads(json.dumps(opt_key, default=str)), **res,
           "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")}
    out = json.loads(json.dumps(out, default=_json_default))  # the same types as a cached read
    if use_cache:
        atomic_write_json(f, out)
    return {**out, "cached": False}


def table(result: Mapping[str, Any]) -> str:
    """A readable plain-text table of one evaluation result: accuracy (%), its exact 95%
    interval (Clopper-Pearson, :func:`hardex.paper.stats.proportion_interval`), forward and
    backward passes per example and seconds per attack."""
    from hardex.paper.stats import proportion_interval

    n = result["n"]
    pe = result.get("per_example", {})
    rows = [("clean", "clean", None)]
    rows += [(k, k, result["cost"].get(k)) for k in result["robust_acc"]]
    rows.append(("worst case", "worst_case", None))
    eps = result["eps"]
    lines = [f"n={n}  eps={eps:.5g} ({255 * eps:.4g}/255)" + (f"  run={result['run']} ({result['which']}, epoch "
                                                             f"{result['epoch']})" if "run" in result else "")]
    lines.append(f"{'attack':<12} {'acc %':>7} {'95% CI (exact)':>16} {'fwd/ex':>8} {'bwd/ex':>8} {'seconds':>9}")
    accs = {"clean": result["clean_acc"], "worst_case": result["worst_case_acc"], **result["robust_acc"]}
    for name, key, c in rows:
        a = accs.get(key)
        acc = "-" if a is None else f"{100 * a:.2f}"
        ci = ""
        if key in pe and n:
            iv = proportion_interval(pe[key])
            ci = f"[{iv['lo']:.1f}, {iv['hi']:.1f}]"
        line = f"{name:<12} {acc:>7} {ci:>16}"
        if c is not None:
            line += f" {c['forward'] / max(n, 1):>8.1f} {c['backward'] / max(n, 1):>8.1f} {c['seconds']:>9.2f}"
        lines.append(line.rstrip())
    m = result.get("masking")
    if m is not None:
        lines.append("masking check: " + ("SUSPICIOUS: " + "; ".join(m["reasons"]) if m["suspicious"] else "passed"))
    return "\n".join(lines)
