"""l-inf attacks for training and evaluation, and the evaluation loop.

Conventions (all attacks):

- Inputs are images in [0, 1]; the perturbation, the projection onto the eps-ball and
  the clamp to [0, 1] are always computed in fp32, whatever ``autocast_dtype`` the
  forward pass uses (ANCHORS.md: fp16 input gradients underflow and sign(0) = 0 silently
  weakens the attack; bf16 keeps fp32's exponent).
- Attack gradients are taken with ``torch.autograd.grad`` with respect to the input
  only, so no parameter ``.grad`` is ever touched and the attack can run between a
  caller's ``zero_grad`` and ``step`` without interfering.
- The loss is summed over the batch, not averaged: only its sign per pixel matters, and
  a sum keeps the gradient magnitudes independent of the batch size (less underflow).
- Step loops contain no ``.item()`` or other host synchronisation.
- The attacks never change ``model.train()`` / ``model.eval()``: which BatchNorm mode
  the training-time attack sees is a method choice and belongs to the caller (use
  :func:`bn_eval`). Evaluation (:func:`evaluate`, :func:`autoattack`) always runs in
  eval mode and fp32 (:func:`eval_precision`).

BatchNorm mode of the training-time attack in the public reference code (read, not
copied; checked against the sources named):

- yaodongyu/TRADES, ``trades.py`` (``trades_loss``): ``model.eval()`` before crafting the
  adversarial example, ``model.train()`` after; start x + 0.001 * N(0, 1), sign steps
  on KL(f(x) || f(x_adv)) (sum reduction), projection, clamp. **Eval mode.**
  (An older revision of the same file had no ``model.eval()``; the released one does.)
- locuslab/robust_overfitting, ``train_cifar.py``: ``model.train()`` at the start of each
  epoch and ``attack_pgd`` is called on the training batch without a mode change; the
  start is uniform in [-eps, eps]. **Train mode** (the attack's forward passes also
  update the BN running statistics).
- P2333/Bag-of-Tricks-for-AT, ``train_cifar.py``: ``attack_pgd(..., BNeval=args.BNeval)``
  calls ``model.eval()`` before and ``model.train()`` after the attack when the
  ``--BNeval`` flag is given (default off); uniform start. The paper's baseline
  schedule follows this repository with **eval mode** (``--BNeval``).
- rucy74/DAFA (same group as the paper, ANCHORS.md): eval mode for both PGD-AT and
  TRADES, start x + 0.001 * N(0, 1).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "margin_loss",
    "cross_entropy",
    "pgd",
    "fgsm",
    "trades_attack",
    "bn_eval",
    "eval_precision",
    "evaluate",
    "autoattack",
    "AttackFn",
]

AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES = ("ce", "margin")
RANDOM_STARTS = ("uniform", "normal", "none")


# --------------------------------------------------------------------------- losses


def _is_soft(y: torch.Tensor) -> bool:
    return y.is_floating_point() and y.dim() == 2


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Cross-entropy with integer labels (N) or soft targets (N x C probabilities).

    Soft targets let DPLS hand its smoothed labels to the attack; for one-hot targets
    the value equals the hard-label CE. Computed in fp32.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    if _is_soft(y):
        if y.shape != logits.shape:
            raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, got {tuple(y.shape)}")
        per = -(y.float() * logp).sum(dim=1)
    else:
        per = -logp.gather(1, y.long().view(-1, 1)).squeeze(1)
    return _reduce(per, reduction)


def margin_loss(logits: torch.Tensor, y: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """CW-style margin per example: max over non-true logits minus the true logit.

    Positive exactly when the example is misclassified, so ascending it attacks the
    decision directly (no softmax saturation). With soft targets the true class is
    their argmax.
    """
    z = logits.float()
    label = y.argmax(dim=1) if _is_soft(y) else y.long()
    true = z.gather(1, label.view(-1, 1)).squeeze(1)
    others = z.masked_fill(F.one_hot(label, z.shape[1]).bool(), float("-inf"))
    return _reduce(others.max(dim=1).values - true, reduction)


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "mean":
        return per.mean()
    raise ValueError(f"unknown reduction {reduction!r}; allowed: none, sum, mean")


# --------------------------------------------------------------------------- validation and helpers


def _check_eps(eps: float) -> float:
    e = float(eps)
    if not (0.0 <= e <= 1.0) or math.isnan(e):
        raise ValueError(f"eps must lie in [0, 1] (images are in [0, 1]; 8/255 = {8 / 255:.4f}), got {eps}")
    return e


def _check_steps(steps: int, step_size: float) -> tuple[int, float]:
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    s = float(step_size)
    if not s > 0 or math.isinf(s):
        raise ValueError(f"step_size must be a finite number > 0, got {step_size}")
    return int(steps), s


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _autocast_off(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Autocast disabled inside an enclosing :func:`_autocast` region (a nested region: it
    keeps the enclosing one's cache of cast weights); nothing when there is none."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def _noise(
    kind: str, x: torch.Tensor, eps: float, start_std: float, generator: torch.Generator | None
) -> torch.Tensor:
    dev = generator.device if generator is not None else x.device
    if kind == "uniform":
        u = torch.rand(x.shape, generator=generator, device=dev, dtype=torch.float32)
        return ((2.0 * u - 1.0) * eps).to(x.device)
    if kind == "normal":
        return (start_std * torch.randn(x.shape, generator=generator, device=dev, dtype=torch.float32)).to(x.device)
    return torch.zeros_like(x)


def _start(
    x: torch.Tensor, eps: float, random_start: str, start_std: float, generator: torch.Generator | None
) -> torch.Tensor:
    if random_start not in RANDOM_STARTS:
        raise ValueError(f"unknown random_start {random_start!r}; allowed: {', '.join(RANDOM_STARTS)}")
    if random_start == "none":
        return x.clone()
    return _project(x + _noise(random_start, x, eps, start_std, generator), x, eps)


# --------------------------------------------------------------------------- attacks


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    eps: float,
    step_size: float,
    steps: int,
    loss: str | Callable[[torch.Tensor], torch.Tensor] = "ce",
    random_start: str = "uniform",
    start_std: float = 0.001,
    autocast_dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected sign-gradient ascent (Madry et al., 2018) in the l-inf ball; returns x_adv.

    ``y``: integer labels or soft targets (N x C). ``loss``: "ce" or "margin" (CW), summed
    over the batch, or a callable ``logits -> scalar`` that is ascended as it is (it must sum,
    not average, over the examples so each example's step does not depend on the batch size;
    ``y`` is then unused and may be None).
    ``random_start``: "uniform" = x + U(-eps, eps) (Madry, robust_overfitting,
    Bag-of-Tricks); "normal" = x + start_std * N(0, 1) (TRADES, DAFA); "none" = x.
    The start is projected and clamped, so ``steps=0`` returns a valid point.
    ``generator`` makes the start reproducible. The model's mode is not changed.
    """
    eps = _check_eps(eps)
    steps, step_size = _check_steps(steps, step_size)
    if callable(loss):
        objective = loss
    elif loss in LOSSES:
        if y is None:
            raise ValueError(f"loss={loss!r} needs labels y; y=None is allowed only with a callable loss")
        loss_fn, target = (cross_entropy if loss == "ce" else margin_loss), y.detach()

        def objective(logits: torch.Tensor) -> torch.Tensor:
            return loss_fn(logits, target, reduction="sum")
    else:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)} or a callable logits -> scalar")
    x = x.detach().float()
    x_adv = _start(x, eps, random_start, start_std, generator)
    # One autocast region for all steps: autocast caches the low-precision copies of the
    # weights for the life of a region, so they are cast once per attack instead of once
    # per step (fewer kernels, the same values). The objective and the update stay in the
    # precision they had outside the region.
    with _autocast(x.device, autocast_dtype):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x_adv)
                with _autocast_off(x.device, autocast_dtype):
                    value = objective(logits)
            if value.dim() != 0:
                raise ValueError(f"a callable loss must return a scalar (summed over the batch), got shape "
                                 f"{tuple(value.shape)}")
            (grad,) = torch.autograd.grad(value, [x_adv])
            with _autocast_off(x.device, autocast_dtype):
                x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return x_adv.detach()


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float | None = None,
    loss: str = "ce",
    random_start: str = "none",
    start_std: float = 0.001,
    autocast_dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One signed-gradient step (Goodfellow et al., 2015), projected to the eps-ball.

    ``step_size`` defaults to eps. For "fast AT" (Wong et al., 2020) use
    ``random_start="uniform", step_size=1.25 * eps``.
    """
    eps = _check_eps(eps)
    step = eps if step_size is None else step_size
    if step_size is None and eps == 0.0:
        return _start(x.detach().float(), eps, random_start, start_std, generator)  # nothing to do in a 0-ball
    return pgd(
        model,
        x,
        y,
        eps,
        step_size=step,
        steps=1,
        loss=loss,
        random_start=random_start,
        start_std=start_std,
        autocast_dtype=autocast_dtype,
        generator=generator,
    )


def trades_attack(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    start_std: float = 0.001,
    autocast_dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    return_clean_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """TRADES' inner maximisation: sign ascent on KL(softmax(f(x)) || softmax(f(x_adv))).

    As in the TRADES reference: start x + start_std * N(0, 1), sum-reduced KL, projection
    and clamp after each step. The clean distribution is computed once (the reference
    recomputes it every step; in eval mode, as TRADES runs it, the values are
    identical). The caller picks the BN mode (TRADES: eval, see module docstring).

    ``return_clean_logits=True`` returns ``(x_adv, clean_logits)``: the fp32 logits of
    that one no-grad clean forward. Under ``bn_eval`` they are exactly what difficulty
    tracking measures (``difficulty.clean_logits``: eval mode, no grad, same
    precision), so a TRADES trainer can track difficulty without an extra forward.
    """
    eps = _check_eps(eps)
    steps, step_size = _check_steps(steps, step_size)
    x = x.detach().float()
    with _autocast(x.device, autocast_dtype):  # one region: weights cast once (see pgd)
        with torch.no_grad():
            clean_logits = model(x).float()
        with _autocast_off(x.device, autocast_dtype):
            p_clean = F.softmax(clean_logits, dim=1)
            x_adv = _start(x, eps, "normal", start_std, generator)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x_adv)
                with _autocast_off(x.device, autocast_dtype):
                    objective = F.kl_div(F.log_softmax(logits.float(), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(objective, [x_adv])
            with _autocast_off(x.device, autocast_dtype):
                x_adv = _project(x_adv.detach() + step_size * grad.sign(), x, eps)
    if return_clean_logits:
        return x_adv.detach(), clean_logits
    return x_adv.detach()


# --------------------------------------------------------------------------- modes and precision


@contextlib.contextmanager
def bn_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put the model (every submodule) in eval mode; restore each submodule's
    previous mode afterwards, even if the model was in a mixed state."""
    previous = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in previous:
            m.training = flag


@contextlib.contextmanager
def eval_precision() -> Iterator[None]:
    """True fp32 for evaluation: autocast off, TF32 off for matmul and cuDNN (on
    Ampere/Hopper "fp32" convolutions otherwise run in TF32), highest matmul precision.
    Restores the previous settings afterwards."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    old_precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.autocast(device_type="cpu", enabled=False))
            if torch.cuda.is_available():
                stack.enter_context(torch.autocast(device_type="cuda", enabled=False))
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn
        torch.set_float32_matmul_precision(old_precision)


# --------------------------------------------------------------------------- evaluation


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate(
    model: nn.Module,
    dataset: Any,
    attacks: Mapping[str, AttackFn] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Clean and robust accuracy of ``model`` on ``dataset`` (a hardex.data.Dataset).

    ``attacks`` maps a name to ``f(model, x, y) -> x_adv`` (e.g. a ``functools.partial``
    of :func:`pgd`). Runs in eval mode and fp32 (:func:`eval_precision`); the model's
    previous mode is restored afterwards.

    Returns a dict:
      ``n``; ``clean_acc``; ``robust_acc`` {name: acc}; ``worst_acc`` (correct on the
      clean input and under every attack, the per-example worst case);
      ``correct`` {"clean": bool array, name: bool array} by dataset position;
      ``worst`` (bool array); ``index`` (the stable example indices) and ``labels``
      (numpy), so callers can compute subset and per-class accuracies.
    Accuracies are fractions in [0, 1].
    """
    from hardex.data import to_float

    attacks = dict(attacks or {})
    if "clean" in attacks:
        raise ValueError("attack name 'clean' is reserved for the unattacked accuracy")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device) if device is not None else _model_device(model)
    n = len(dataset)
    hits: dict[str, list[torch.Tensor]] = {name: [] for name in ["clean", *attacks]}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="evaluate", unit="batch")
    with bn_eval(model), eval_precision():
        for start in starts:
            x = to_float(dataset.images[start : start + batch_size].to(dev))
            y = dataset.labels[start : start + batch_size].to(dev)
            with torch.no_grad():
                hits["clean"].append(model(x).argmax(1) == y)
            for name, attack in attacks.items():
                x_adv = attack(model, x, y)
                with torch.no_grad():
                    hits[name].append(model(x_adv).argmax(1) == y)
    correct = {
        name: torch.cat(v).cpu().numpy().astype(bool) if v else np.zeros(0, dtype=bool) for name, v in hits.items()
    }
    worst = np.logical_and.reduce([correct[k] for k in correct]) if n else np.zeros(0, dtype=bool)

    def acc(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else float("nan")

    return {
        "n": n,
        "clean_acc": acc(correct["clean"]),
        "robust_acc": {name: acc(correct[name]) for name in attacks},
        "worst_acc": acc(worst),
        "correct": correct,
        "worst": worst,
        "index": dataset.index.detach().cpu().numpy(),
        "labels": dataset.labels.detach().cpu().numpy(),
    }


def _autoattack_class() -> type:
    """The AutoAttack class: ``autoattack`` (fra31's package, installed from git) if
    present, else ``pyautoattack`` (the PyPI package ``pyautoattack``, whose module is
    named ``pyautoattack`` and whose API is keyword-only)."""
    try:
        from autoattack import AutoAttack  # type: ignore[import-not-found]
    except ImportError:
        try:
            from pyautoattack import AutoAttack  # type: ignore[import-not-found]
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("autoattack() needs the 'pyautoattack' package (pip install pyautoattack)") from err
    return AutoAttack


def _set_apgd_iterations(apgd: Any, n_iter: int) -> None:
    """APGD derives its step-size checkpoints from n_iter in its constructor
    (0.22 / 0.06 / 0.03 of n_iter); keep them consistent when overriding n_iter."""
    apgd.n_iter = n_iter
    if hasattr(apgd, "n_iter_orig"):
        apgd.n_iter_orig = n_iter
    if hasattr(apgd, "n_iter_2"):
        apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
        apgd.n_iter_min = max(int(0.06 * n_iter), 1)
        apgd.size_decr = max(int(0.03 * n_iter), 1)


def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    version: str = "standard",
    batch_size: int = 256,
    attacks_to_run: list[str] | None = None,
    seed: int = 0,
    return_mask: bool = False,
    verbose: bool = False,
    n_iter: int | None = None,
    n_restarts: int | None = None,
) -> torch.Tensor:
    """AutoAttack (Croce & Hein, 2020), l-inf; returns x_adv, or with ``return_mask=True``
    a bool tensor that is True where the example is still classified correctly (robust).

    Runs in eval mode and fp32 (AutoAttack's constants are not meant for reduced
    precision). ``version="custom"`` with e.g. ``attacks_to_run=["apgd-ce"]`` runs a
    subset. ``n_iter`` / ``n_restarts`` override APGD's iterations (100) and restarts
    (5 for APGD-CE/DLR) for smoke runs and tests; leave them None for reported numbers.
    AutoAttack reseeds torch's global RNG; we fork the RNG so the caller's random
    stream is untouched. Works with both the fra31 ``autoattack`` module and PyPI's
    ``pyautoattack`` (imported lazily: the library imports without either).
    """
    eps = _check_eps(eps)
    if version == "custom" and not attacks_to_run:
        raise ValueError("version='custom' needs attacks_to_run, e.g. ['apgd-ce']")
    if attacks_to_run is not None and version != "custom":
        raise ValueError(f"attacks_to_run is only honoured with version='custom', got version={version!r}")
    AutoAttack = _autoattack_class()
    dev = _model_device(model)
    x = x.detach().float().to(dev)
    y = y.detach().long().to(dev)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.bool, device=dev) if return_mask else x
    params = inspect.signature(AutoAttack.__init__).parameters
    kwargs: dict[str, Any] = {"norm": "Linf", "eps": eps, "version": version, "seed": seed, "device": str(dev)}
    if "attacks" in params:  # pyautoattack
        if attacks_to_run is not None:
            kwargs["attacks"] = list(attacks_to_run)
    else:  # fra31 autoattack
        kwargs["verbose"] = verbose
        if attacks_to_run is not None:
            kwargs["attacks_to_run"] = list(attacks_to_run)
    run_params = inspect.signature(AutoAttack.run_standard_evaluation).parameters
    bs_kw = {"batch_size": batch_size} if "batch_size" in run_params else {"bs": batch_size}
    fork_devices = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with bn_eval(model), eval_precision(), torch.random.fork_rng(devices=fork_devices):
        adversary = AutoAttack(model, **kwargs)
        for name in ("apgd", "apgd_targeted"):
            sub = getattr(adversary, name, None)
            if sub is not None and n_iter is not None:
                _set_apgd_iterations(sub, int(n_iter))
            if sub is not None and n_restarts is not None and name == "apgd":
                sub.n_restarts = int(n_restarts)
        result = adversary.run_standard_evaluation(x, y, **bs_kw)
        x_adv = (result[0] if isinstance(result, tuple) else result).detach()
        if not return_mask:
            return x_adv
        with torch.no_grad():
            return torch.cat(
                [model(x_adv[i : i + batch_size]).argmax(1) == y[i : i + batch_size] for i in range(0, len(x), batch_size)]
            )
