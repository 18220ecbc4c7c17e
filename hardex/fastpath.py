"""GPU fast-path mechanisms that change no result beyond floating-point noise.

What lives elsewhere (already on the fast path): the dataset resident on the device and
batched device-side augmentation (``hardex.data``), attacks that take input-only
gradients with the perturbation, projection and clamp in fp32 and no host
synchronisation in their step loops (``hardex.attacks``), bf16 autocast for training and
the training-time attack (``TrainConfig.precision = "bf16"``).

This module adds what a caller switches on per run:

* :func:`prepare_model`: channels_last weights (NHWC convolutions, the layout the tensor
  cores want) and ``torch.compile`` of the model in place (``nn.Module.compile``, so the
  state-dict keys, the parameters the optimiser holds and ``train()``/``eval()`` keep
  working unchanged; the attack's eval-mode graph and the step's train-mode graph are
  compiled once each).
* :func:`fast_backends`: cuDNN autotuning (``cudnn.benchmark``) for fixed-shape training;
  evaluation keeps using ``attacks.eval_precision`` (fp32, TF32 off).
* :class:`HostSyncCounter`: counts calls that force a device-to-host synchronisation
  (``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()``, ``bool()/int()/float()`` of a
  tensor, ``.nonzero()``); on a CUDA device :func:`cuda_sync_guard` additionally uses
  PyTorch's own sync debug mode. Tests use them to prove the PGD loop never waits for
  the host.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = [
    "COMPILE_MODES",
    "prepare_model",
    "is_channels_last",
    "fast_backends",
    "HostSyncCounter",
    "cuda_sync_guard",
]

#: ``torch.compile`` modes accepted by :func:`prepare_model` (None = PyTorch's default).
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def prepare_model(
    model: nn.Module,
    channels_last: bool = False,
    compile: bool = False,
    compile_mode: str | None = None,
    compile_backend: str = "inductor",
) -> nn.Module:
    """Apply the fast-path model options in place and return the same module.

    ``channels_last``: every 4-d parameter and buffer is stored NHWC
    (``model.to(memory_format=torch.channels_last)``; the Parameter objects are kept,
    so an optimiser built before this call still updates them). Inputs need no
    conversion: a convolution whose weight is channels_last produces channels_last
    output. ``compile``: ``model.compile(mode=compile_mode, backend=compile_backend)``,
    in place; the module is still an ``nn.Module`` with the same ``state_dict`` keys.
    ``compile_backend="aot_eager"`` traces through Dynamo and AOTAutograd without code
    generation (used by the CPU tests); "inductor" is the fast one.
    """
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile_mode {compile_mode!r}; allowed: {', '.join(map(str, COMPILE_MODES))}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_model needs an nn.Module, got {type(model).__name__}")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        kwargs: dict[str, Any] = {"backend": compile_backend}
        if compile_mode is not None:
            kwargs["mode"] = compile_mode
        model.compile(**kwargs)
    return model


def is_channels_last(model: nn.Module) -> bool:
    """True when every 4-d parameter of ``model`` is stored channels_last."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


@contextlib.contextmanager
def fast_backends(cudnn_benchmark: bool = True) -> Iterator[None]:
    """cuDNN autotuning on for the duration (fixed input shapes make it pay); restored after.

    TF32 is left as the caller set it: under bf16 autocast the convolutions run in bf16
    anyway, and the evaluation code turns TF32 off itself (``attacks.eval_precision``).
    """
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


class HostSyncCounter:
    """Context manager that counts tensor calls which force a host synchronisation.

    It wraps the ``torch.Tensor`` methods in :attr:`METHODS` for the duration and
    counts each call (per method name in :attr:`counts`, total in :attr:`total`); the
    calls still run. This works on any device, so a CPU test can show that code
    would make no host round trip on a GPU. ``.to(device)`` and ``.copy_`` are not
    counted: a host-to-device copy does not wait for the device's queue to drain.
    """

    METHODS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._saved: dict[str, Any] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> HostSyncCounter:
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)
            self._saved[name] = original

            def wrapper(*args: Any, __name: str = name, __orig: Any = original, **kwargs: Any) -> Any:
                self.counts[__name] += 1
                return __orig(*args, **kwargs)

            setattr(torch.Tensor, name, wrapper)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)
        self._saved.clear()


@contextlib.contextmanager
def cuda_sync_guard(mode: str = "error") -> Iterator[None]:
    """PyTorch's CUDA sync debug mode for the duration ("warn" or "error"): a
    synchronising CUDA call inside warns or raises. No-op without CUDA."""
    if mode not in ("warn", "error"):
        raise ValueError(f"mode must be 'warn' or 'error', got {mode!r}")
    if not torch.cuda.is_available():
        yield
        return
    old = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(old)
