"""`hardex bench`: adversarial-training speed, hardex's path against a reference-style loop,
in one process on one device.

For each model x algorithm (PGD-AT-k, TRADES-k) it times

(a) **reference-style loop** (written here, from the public code's structure, not copied):
    fp32 model in NCHW, torch defaults for cuDNN (no autotuning; PyTorch's default TF32
    setting for convolutions is recorded), a CPU ``torch.utils.data.DataLoader`` over
    uint8 HWC images with torchvision's ``RandomCrop(32, padding=4)``,
    ``RandomHorizontalFlip()``, ``ToTensor()`` on PIL images and a blocking ``.to(device)``.
    PGD-AT as locuslab/robust_overfitting: model in train mode during the attack, uniform
    start, ``loss.backward()`` through the whole model (parameter gradients computed and
    thrown away) to get the input gradient, one extra forward per restart for its
    max-loss bookkeeping, ``loss.item()`` and accuracy ``.item()`` every step for its log.
    TRADES as yaodongyu/TRADES ``trades.py``: eval mode, start x + 0.001 N(0, 1), KL
    against a clean forward recomputed at every step, ``torch.autograd.grad`` on the
    input (that repository already takes input-only gradients), then two forwards of the
    clean batch and one of x_adv for the outer loss.
(b) **hardex's path**: ``hardex.train.Trainer.run_epoch`` itself (eval and probes off)
    on a dataset resident on the device, with device-side augmentation, input-only
    attack gradients, ``precision`` (bf16 autocast by default) and the
    ``hardex.fastpath`` options (channels_last, torch.compile) applied to
    ``trainer.model`` after construction. Timed twice: with difficulty tracking (the
    Trainer's extra eval-mode clean forward and the accumulator update of epochs <= T)
    and without; the difference is the tracking overhead.

Timing: ``--warmup`` steps first (reference: batches of the same loader; hardex:
ceil(warmup / steps) whole epochs of the same ``steps``-step training set), then
``--steps`` steady-state steps per repeat, ``torch.cuda.synchronize()`` before and after
every timed region, median over ``--repeats``. images/s = steps x batch / seconds;
s/epoch = ``epoch_images`` (50,000) / images/s; speedup = images/s (b) / images/s (a).

FLOPs: **counted** with ``torch.utils.flop_counter``'s per-operator formulas (a dispatch
mode, :func:`count_work`) over one step of each path (hardex: a one-step epoch of a non-compiled Trainer), so a full backward
counts weight gradients and an input-only one does not; achieved TFLOP/s = counted
FLOPs per image x images/s. ``model_flops`` gives the algorithmic minimum for
comparison: ``models.forward_flops`` (conv + linear MACs x 2) x forward-equivalents
(PGD-AT-k: 2k + 3; TRADES-k: 2k + 7; +1 with tracking). The peak is a large matmul timed
in the same run (bf16 on CUDA, fp32 on CPU; its dtype is recorded).

Evaluation throughput (fp32, TF32 off, eval mode, as hardex evaluates): PGD-20 (eps
8/255, step 2/255) through ``attacks.evaluate``, and AutoAttack through
``attacks.autoattack`` on labels = the model's own predictions with a tiny eps
(``--aa-eps``, default 1e-4) so that no point is broken early and every attack runs its
full budget on every point: the worst case, i.e. the cost per robust image.

Data are random uint8 images with random labels from a fixed seed (timing only).

The GPU report (estimated, not yet measured, at about 5 minutes on one H100; commit the JSON;
then again with ``--compile`` and ``--compile-mode reduce-overhead``)::

    hardex bench --device cuda --models preact_resnet18 wrn28_10 --algorithms pgd trades \
        --steps 30 --warmup 10 --repeats 2 --batch-size 128 --out results/bench/h100-<date>.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hardex import attacks, data, fastpath, models
from hardex.paths import repo_root
from hardex.provenance import git_commit

__all__ = [
    "ANCHORS",
    "TARGETS",
    "REPORT_FIELDS",
    "RESULT_FIELDS",
    "EVAL_FIELDS",
    "throughput",
    "forward_equivalents",
    "run_bench",
    "add_cli",
    "latest_reports",
]

SCHEMA_VERSION = 1
EPOCH_IMAGES = 50_000
ALGORITHMS = ("pgd", "trades")

#: Speed anchors from public reference code and its logs (not the paper's numbers; the
#: paper's own timing is ``hardex.paper.report.paper_value("timings....")``). Source:
#: /work/shared/paper/ANCHORS.md, "Speed anchors".
ANCHORS: dict[str, dict[str, Any]] = {
    "robust_overfitting_prn18_pgd10_fp32": {
        "model": "preact_resnet18", "algorithm": "pgd", "s_per_epoch": 172.0,
        "source": "locuslab/robust_overfitting training logs (GPU not stated), fp32, PGD-10; "
                  "training only (+32 s PGD evaluation)"},
    "wong2020_prn18_pgd7_fp16_2080ti": {
        "model": "preact_resnet18", "algorithm": "pgd", "s_per_epoch": 105.0,
        "source": "Wong et al. 2020, PGD-7, fp16 (apex O2), RTX 2080Ti"},
    "robust_overfitting_wrn34_10_pgd10_fp32": {
        "model": "wrn34_10", "algorithm": "pgd", "s_per_epoch": 1177.0,
        "source": "locuslab/robust_overfitting training logs, WRN-34-10, fp32, PGD-10"},
}

#: The targets of issue 9 (benchmark numbers, never timed tests), H100, batch 128.
TARGETS: dict[str, dict[str, float]] = {
    "preact_resnet18/pgd": {"s_per_epoch": 6.0, "stretch_s_per_epoch": 4.0, "min_speedup": 10.0},
    "wrn28_10/pgd": {"s_per_epoch": 40.0, "stretch_s_per_epoch": 30.0},
    "tracking": {"max_overhead": 0.03},
}

#: Dotted keys every report has (``tests/test_bench.py`` checks them).
REPORT_FIELDS = (
    "schema", "label", "created", "hardex_commit", "git_dirty", "synthetic_data",
    "environment.device", "environment.device_name", "environment.torch", "environment.cuda",
    "environment.cudnn", "environment.python", "environment.platform",
    "environment.tf32_conv_default", "environment.tf32_matmul_default",
    "settings", "peak.dtype", "peak.n", "peak.tflops",
    "checks.pgd_host_syncs", "checks.cuda_sync_guard",
    "results", "eval", "anchors", "targets", "paper_timings", "notes",
)
#: Dotted keys of each entry of ``results``; ``hardex.tracking`` and ``hardex.no_tracking``
#: have the same fields as ``reference`` plus ``epochs_timed``.
RESULT_FIELDS = (
    "model", "algorithm", "attack_steps", "batch_size",
    "reference.seconds", "reference.steps", "reference.images_per_s", "reference.s_per_epoch",
    "reference.flops_per_image", "reference.tflops", "reference.peak_fraction",
    "reference.peak_memory_bytes", "reference.repeat_seconds", "reference.ops_per_step",
    "hardex.tracking.seconds", "hardex.tracking.images_per_s", "hardex.tracking.s_per_epoch",
    "hardex.tracking.flops_per_image", "hardex.tracking.tflops", "hardex.tracking.peak_fraction",
    "hardex.tracking.peak_memory_bytes", "hardex.tracking.ops_per_step",
    "hardex.no_tracking.seconds", "hardex.no_tracking.images_per_s", "hardex.no_tracking.s_per_epoch",
    "speedup", "speedup_no_tracking", "tracking_overhead",
    "model_flops.forward_flops_per_image", "model_flops.forward_equivalents",
    "model_flops.epoch_pflop", "model_flops.floor_s_per_epoch",
)
EVAL_FIELDS = (
    "model", "pgd20.n", "pgd20.seconds", "pgd20.images_per_s",
    "autoattack.n", "autoattack.seconds", "autoattack.images_per_s", "autoattack.version",
    "autoattack.attacks", "autoattack.eps", "autoattack.n_iter", "autoattack.robust_fraction",
)


# --------------------------------------------------------------------------- arithmetic


def throughput(seconds: float, steps: int, batch_size: int, epoch_images: int = EPOCH_IMAGES) -> dict[str, float]:
    """images/s and seconds per ``epoch_images``-image epoch from ``steps`` timed steps of
    ``batch_size`` images that took ``seconds``."""
    if seconds <= 0 or steps < 1 or batch_size < 1:
        raise ValueError(f"need seconds > 0, steps >= 1, batch_size >= 1; got {seconds}, {steps}, {batch_size}")
    ips = steps * batch_size / seconds
    return {"images_per_s": ips, "s_per_epoch": epoch_images / ips}


def forward_equivalents(algorithm: str, attack_steps: int, tracking: bool) -> int:
    """Forward-pass equivalents per image of one training step with input-only attack
    gradients (a forward = 1, an input-only backward = 1, a full backward = 2).

    PGD-AT-k: k x (forward + input backward) + forward + full backward = 2k + 3.
    TRADES-k: clean forward + k x 2 + two forwards + two full backwards = 2k + 7.
    Tracking adds one clean forward for PGD-AT; TRADES tracks from its attack's clean
    forward (``Trainer._tracks_in_attack``) at no extra pass.
    """
    if algorithm == "pgd":
        n = 2 * attack_steps + 3
    elif algorithm == "trades":
        n = 2 * attack_steps + 7
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
    return n + int(tracking and algorithm == "pgd")


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# --------------------------------------------------------------------------- device helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def matmul_peak(device: torch.device, n: int | None = None, reps: int = 10) -> dict[str, Any]:
    """Measured matmul rate: bf16 n x n x n on CUDA (n = 8192), fp32 on CPU (n = 512);
    median of ``reps`` timed products after warm-up, random (never zero) inputs."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    n = n or (8192 if cuda else 512)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
    t = _median(times)
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "seconds": t, "tflops": 2 * n**3 / t / 1e12}


def count_work(fn: Callable[[], Any]) -> dict[str, int]:
    """What ``fn()`` dispatches: ``flops``, the FLOPs of its matmuls and convolutions,
    forward and backward as actually dispatched, with the formulas of
    ``torch.utils.flop_counter`` (its ``flop_registry``); and ``ops``, the number of
    non-view ATen operators it runs (views launch nothing), a device-independent proxy for
    the kernel launches of an eager step, each of which costs a few microseconds of host
    time on a GPU however small it is. ``FlopCounterMode`` itself is not used: its module
    tracker installs backward hooks that fail under ``torch.autograd.grad`` with respect to
    a leaf input, which is exactly how the attacks take their gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class _Counter(TorchDispatchMode):
        flops = 0
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            packet = func._overloadpacket
            if packet in flop_registry:
                self.flops += int(flop_registry[packet](*args, **kwargs, out_val=out))
            if not func.is_view:
                self.ops += 1
            return out

    with _Counter() as counter:
        fn()
    return {"flops": int(counter.flops), "ops": int(counter.ops)}


def count_flops(fn: Callable[[], Any]) -> int:
    """The ``flops`` of :func:`count_work`."""
    return count_work(fn)["flops"]


# --------------------------------------------------------------------------- synthetic data


def synthetic_dataset(n: int, seed: int = 0, split: str = "train", num_classes: int = 10, size: int = 32) -> data.Dataset:
    """``n`` random uint8 images with random labels (seeded): timing data only."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return data.Dataset("synthetic", split, images, labels, torch.arange(n), [str(c) for c in range(num_classes)])


@contextlib.contextmanager
def _synthetic_load(train: data.Dataset, test: data.Dataset) -> Iterator[None]:
    """Make ``hardex.data.load_dataset`` return the synthetic splits (so the real Trainer
    runs unchanged on them); restored afterwards."""
    original = data.load_dataset

    def load(name: str, split: str = "train", root: Any = None, download: bool = True, device: Any = "cpu") -> data.Dataset:
        return (train if split == "train" else test).to(device)

    data.load_dataset = load
    try:
        yield
    finally:
        data.load_dataset = original


# --------------------------------------------------------------------------- (a) reference-style loop


class _PILDataset(torch.utils.data.Dataset):
    """uint8 N x C x H x W images served as PIL images through a torchvision transform,
    as torchvision's CIFAR10 dataset does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable) -> None:
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, as CIFAR10.data
        self.labels = labels.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_loader(ds: data.Dataset, batch_size: int, workers: int, pin_memory: bool, seed: int = 0):
    from torchvision import transforms

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    return torch.utils.data.DataLoader(
        _PILDataset(ds.images, ds.labels, tf), batch_size=batch_size, shuffle=True, num_workers=workers,
        pin_memory=pin_memory, drop_last=True, generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0)


def reference_pgd_at_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                          eps: float, alpha: float, steps: int, log: dict[str, float]) -> None:
    """One PGD-AT step in the reference style (robust_overfitting): train mode, uniform
    start, full ``backward()`` for the input gradient, one extra forward for the restart
    bookkeeping, ``.item()`` logging each step."""
    model.train()
    delta = torch.empty_like(x).uniform_(-eps, eps)
    delta = (torch.clamp(x + delta, 0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x + delta), y)
        loss.backward()
        d = torch.clamp(delta.detach() + alpha * delta.grad.detach().sign(), -eps, eps)
        delta.data = torch.clamp(x + d, 0, 1) - x
        delta.grad.zero_()
    with torch.no_grad():  # restart bookkeeping: loss per example of the final delta
        F.cross_entropy(model(x + delta), y, reduction="none")
    delta = delta.detach()
    out = model(x + delta)
    loss = F.cross_entropy(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    log["loss"] += loss.item() * y.size(0)
    log["acc"] += (out.max(1)[1] == y).sum().item()


def reference_trades_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                          eps: float, alpha: float, steps: int, beta: float, log: dict[str, float]) -> None:
    """One TRADES step in the reference style (trades.py): eval-mode attack on a KL that
    recomputes the clean forward each step, input-only ``autograd.grad``; train-mode outer
    loss with two clean forwards."""
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum")
        (grad,) = torch.autograd.grad(loss_kl, [x_adv])
        x_adv = x_adv.detach() + alpha * torch.sign(grad.detach())
        x_adv = torch.clamp(torch.min(torch.max(x_adv, x - eps), x + eps), 0.0, 1.0)
    model.train()
    x_adv = x_adv.detach()
    opt.zero_grad()
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1), reduction="sum") / x.shape[0]
    loss = loss_natural + beta * loss_robust
    loss.backward()
    opt.step()


def time_reference(model_name: str, algorithm: str, device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    bs, steps, warmup, repeats = s["batch_size"], s["steps"], s["warmup"], s["repeats"]
    torch.manual_seed(s["seed"])
    model = models.build_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    n = (warmup + steps * repeats + 1) * bs
    ds = synthetic_dataset(n, seed=s["seed"])
    loader = reference_loader(ds, bs, s["ref_workers"], pin_memory=device.type == "cuda", seed=s["seed"])
    eps, alpha, k = s["eps"], s["eps"] / 4, s["attack_steps"]
    log = {"loss": 0.0, "acc": 0.0}

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if algorithm == "pgd":
            reference_pgd_at_step(model, opt, x, y, eps, alpha, k, log)
        else:
            reference_trades_step(model, opt, x, y, eps, alpha, k, s["beta"], log)

    old_bench = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False  # reference: torch defaults
    try:
        it = iter(loader)
        x0, y0 = next(it)
        work = count_work(lambda: step(x0.to(device), y0.to(device)))
        for _ in range(warmup):
            x, y = next(it)
            step(x.to(device), y.to(device))
        _reset_memory(device)
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                x, y = next(it)
                step(x.to(device), y.to(device))
            _sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        torch.backends.cudnn.benchmark = old_bench
        del loader
    out = _timing(times, steps, bs, s)
    out.update(flops_per_image=work["flops"] / bs, ops_per_step=work["ops"], peak_memory_bytes=_peak_memory(device))
    return out


def _timing(times: list[float], steps: int, bs: int, s: dict[str, Any]) -> dict[str, Any]:
    sec = _median(times)
    return {"seconds": sec, "steps": steps, "repeat_seconds": times, **throughput(sec, steps, bs, s["epoch_images"])}


# --------------------------------------------------------------------------- (b) hardex's path


def _train_config(model_name: str, algorithm: str, s: dict[str, Any], epochs: int, tracking: bool, device: torch.device):
    from hardex.config import TrainConfig

    return TrainConfig.model_validate({
        "model": {"name": model_name}, "algorithm": algorithm, "beta": s["beta"],
        "attack": {"eps": s["eps"], "steps": s["attack_steps"]},
        "epochs": epochs, "batch_size": s["batch_size"], "seed": s["seed"],
        "schedule": {"milestones": []},
        "tracking": {"until_epoch": epochs if tracking else 0},
        "eval": {"every": 0, "final_pgd_steps": []},
        "precision": s["precision"], "device": str(device),
    })


def _trainer(model_name: str, algorithm: str, s: dict[str, Any], n_steps: int, epochs: int, tracking: bool,
             device: torch.device, fast: bool = True):
    from hardex.train import Trainer

    bs = s["batch_size"]
    train = synthetic_dataset(n_steps * bs, seed=s["seed"])
    test = synthetic_dataset(bs, seed=s["seed"] + 1, split="test")
    with _synthetic_load(train, test):
        tr = Trainer(_train_config(model_name, algorithm, s, epochs, tracking, device), device=device)
    if fast:
        fastpath.prepare_model(tr.model, channels_last=s["channels_last"], compile=s["compile"],
                               compile_mode=s["compile_mode"])
    return tr


def time_hardex(model_name: str, algorithm: str, device: torch.device, s: dict[str, Any], tracking: bool) -> dict[str, Any]:
    bs, steps, repeats = s["batch_size"], s["steps"], s["repeats"]
    warm_epochs = math.ceil(s["warmup"] / steps)
    # FLOPs of one step, counted on a non-compiled one-step Trainer (same math)
    counter = _trainer(model_name, algorithm, s, 1, 1, tracking, device, fast=False)
    work = count_work(counter.run_epoch)
    del counter
    tr = _trainer(model_name, algorithm, s, steps, warm_epochs + repeats, tracking, device)
    times = []
    with fastpath.fast_backends(cudnn_benchmark=device.type == "cuda"):
        for _ in range(warm_epochs):
            tr.run_epoch()
        _reset_memory(device)
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            tr.run_epoch()
            _sync(device)
            times.append(time.perf_counter() - t0)
    out = _timing(times, steps, bs, s)
    out.update(flops_per_image=work["flops"] / bs, ops_per_step=work["ops"], peak_memory_bytes=_peak_memory(device),
               epochs_timed=repeats)
    del tr
    return out


def _rates(entry: dict[str, Any], peak_tflops: float) -> None:
    entry["tflops"] = entry["flops_per_image"] * entry["images_per_s"] / 1e12
    entry["peak_fraction"] = entry["tflops"] / peak_tflops


def bench_one(model_name: str, algorithm: str, device: torch.device, s: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"model": model_name, "algorithm": algorithm, "attack_steps": s["attack_steps"],
                           "batch_size": s["batch_size"]}
    ref = time_reference(model_name, algorithm, device, s) if s["reference"] else None
    on = time_hardex(model_name, algorithm, device, s, tracking=True)
    off = time_hardex(model_name, algorithm, device, s, tracking=False)
    for entry in (ref, on, off):
        if entry is not None:
            _rates(entry, peak["tflops"])
    res["reference"] = ref
    res["hardex"] = {"tracking": on, "no_tracking": off}
    res["speedup"] = on["images_per_s"] / ref["images_per_s"] if ref else None
    res["speedup_no_tracking"] = off["images_per_s"] / ref["images_per_s"] if ref else None
    res["tracking_overhead"] = on["seconds"] / off["seconds"] - 1.0
    fwd = models.forward_flops(models.build_model(model_name))
    fe = forward_equivalents(algorithm, s["attack_steps"], tracking=True)
    epoch_flop = fwd * fe * s["epoch_images"]
    res["model_flops"] = {"forward_flops_per_image": fwd, "forward_equivalents": fe,
                          "epoch_pflop": epoch_flop / 1e15, "floor_s_per_epoch": epoch_flop / (peak["tflops"] * 1e12),
                          "counting": "models.forward_flops (conv+linear, 2 x MACs) x forward-equivalents "
                                      "(PGD-AT-k 2k+3, TRADES-k 2k+7, +1 tracking), at the measured peak"}
    return res


# --------------------------------------------------------------------------- evaluation throughput


def eval_throughput(model_name: str, device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(s["seed"])
    model = models.build_model(model_name).to(device).eval()
    out: dict[str, Any] = {"model": model_name}
    ds = synthetic_dataset(s["eval_n"], seed=s["seed"] + 2, split="test").to(device)
    pgd20 = {"pgd20": partial(attacks.pgd, eps=8 / 255, step_size=2 / 255, steps=20)}
    attacks.evaluate(model, ds.subset(range(min(len(ds), 8))), pgd20, batch_size=s["eval_batch_size"])  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    attacks.evaluate(model, ds, pgd20, batch_size=s["eval_batch_size"])
    _sync(device)
    sec = time.perf_counter() - t0
    out["pgd20"] = {"n": len(ds), "seconds": sec, "images_per_s": len(ds) / sec, "eps": 8 / 255, "step_size": 2 / 255,
                    "batch_size": s["eval_batch_size"], "precision": "fp32, TF32 off"}
    x = data.to_float(ds.images[: s["aa_n"]])
    with torch.no_grad(), attacks.eval_precision():
        y = model(x).argmax(1)  # labels = own predictions: every point starts correct
    version = s["aa_version"]
    runs = list(s["aa_attacks"]) if version == "custom" else None
    _sync(device)
    t0 = time.perf_counter()
    mask = attacks.autoattack(model, x, y, eps=s["aa_eps"], version=version, attacks_to_run=runs,
                              batch_size=s["eval_batch_size"], return_mask=True, n_iter=s["aa_iters"])
    _sync(device)
    sec = time.perf_counter() - t0
    out["autoattack"] = {"n": len(x), "seconds": sec, "images_per_s": len(x) / sec, "version": version,
                         "attacks": runs or "standard (apgd-ce, apgd-t, fab-t, square)", "eps": s["aa_eps"],
                         "n_iter": s["aa_iters"], "robust_fraction": float(mask.float().mean()),
                         "note": "labels = the model's predictions and a tiny eps, so no point is broken "
                                 "early: worst-case cost per robust image"}
    return out


def sync_checks(device: torch.device) -> dict[str, Any]:
    """Host synchronisations inside one ``attacks.pgd`` call (counted) and, on CUDA, the
    same call under PyTorch's sync debug mode "error"."""
    model = models.build_model("tiny_cnn").to(device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(8, 3, 32, 32, device=device, generator=g)
    y = torch.randint(0, 10, (8,), device=device, generator=g)
    call = partial(attacks.pgd, model, x, y, eps=8 / 255, step_size=2 / 255, steps=3, generator=g)
    with fastpath.HostSyncCounter() as counter:
        call()
    guard = "n/a (no CUDA device)"
    if device.type == "cuda":
        try:
            with fastpath.cuda_sync_guard("error"):
                call()
            guard = "passed"
        except RuntimeError as err:
            guard = f"raised: {err}"
    return {"pgd_host_syncs": counter.total, "cuda_sync_guard": guard}


# --------------------------------------------------------------------------- report


def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "gpu_memory_bytes": torch.cuda.get_device_properties(device).total_memory if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "tf32_conv_default": torch.backends.cudnn.allow_tf32,
        "tf32_matmul_default": torch.backends.cuda.matmul.allow_tf32,
    }


def _paper_timings() -> dict[str, Any]:
    from hardex.paper.report import paper_value

    hours = paper_value("timings.pgd_cifar10_full_200_epochs_wrn28_10")
    return {"wrn28_10/pgd": {"hours_200_epochs": hours, "s_per_epoch": hours * 3600 / 200,
                             "source": "paper appendix: 47 h for 200 epochs of PGD-AT, WRN-28-10, one RTX 8000",
                             "key": "timings.pgd_cifar10_full_200_epochs_wrn28_10"}}


def run_bench(settings: dict[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every measurement of ``settings`` (see :func:`settings_from_args`); return the report."""
    s = dict(settings)
    device = torch.device(s["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {s['device']}: CUDA is not available here; use --device cpu")
    env = environment(device)
    log(f"bench on {env['device_name']} ({device}), torch {env['torch']}")
    peak = matmul_peak(device)
    commit = git_commit()
    log(f"matmul peak ({peak['dtype']}, n={peak['n']}): {peak['tflops']:.2f} TFLOP/s")
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "label": s["label"] or ("CPU quick run: plumbing check, not a speed result" if device.type == "cpu" else "GPU"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hardex_commit": (commit or "").removesuffix("-dirty") or None,
        "git_dirty": bool(commit and commit.endswith("-dirty")),
        "synthetic_data": True,
        "data": f"random uint8 images and labels, seed {s['seed']} (timing only)",
        "environment": env, "settings": s, "peak": peak, "checks": sync_checks(device),
        "results": [], "eval": [], "anchors": ANCHORS, "targets": TARGETS, "paper_timings": _paper_timings(),
        "notes": [
            "speedup = images/s of hardex's Trainer (tracking on) / images/s of the reference-style loop, same process and device",
            "s_per_epoch = epoch_images / images_per_s from steady-state steps (median over repeats)",
            "flops_per_image: counted with torch.utils.flop_counter formulas (count_work) over one step of each path",
            "ops_per_step: non-view ATen operators dispatched in that step (count_work), a proxy for eager-mode "
            "kernel launches; hardex's count is of a one-step epoch (its per-epoch bookkeeping included)",
            "reference TRADES already uses input-only gradients (as trades.py); reference PGD-AT uses a full backward",
        ],
    }
    for m in s["models"]:
        for a in s["algorithms"]:
            log(f"-- {m} / {a}")
            r = bench_one(m, a, device, s, peak)
            report["results"].append(r)
            log(_line(r))
        if s["eval"]:
            e = eval_throughput(m, device, s)
            report["eval"].append(e)
            log(f"   eval {m}: PGD-20 {e['pgd20']['images_per_s']:.1f} img/s, "
                f"AutoAttack {e['autoattack']['images_per_s']:.2f} img/s")
    return report


def _line(r: dict[str, Any]) -> str:
    h = r["hardex"]["tracking"]
    ref = r["reference"]
    parts = [f"   hardex {h['s_per_epoch']:.1f} s/epoch ({h['images_per_s']:.0f} img/s, {h['tflops']:.2f} TFLOP/s)"]
    if ref:
        parts.append(f"reference {ref['s_per_epoch']:.1f} s/epoch, speedup {r['speedup']:.2f}x")
    parts.append(f"tracking overhead {100 * r['tracking_overhead']:.1f}%")
    return "; ".join(parts)


def table(report: dict[str, Any]):
    """One row per model x algorithm: the figures the Performance page shows."""
    import pandas as pd

    rows = []
    for r in report["results"]:
        h, ref = r["hardex"]["tracking"], r["reference"] or {}
        mem = h.get("peak_memory_bytes")
        rows.append({
            "device": report["environment"]["device_name"], "model": r["model"], "algorithm": f"{r['algorithm']}-{r['attack_steps']}",
            "batch": r["batch_size"], "s/epoch": h["s_per_epoch"], "images/s": h["images_per_s"],
            "reference s/epoch": ref.get("s_per_epoch"), "speedup": r["speedup"], "TFLOP/s": h["tflops"],
            "% of peak": 100 * h["peak_fraction"], "memory GiB": None if mem is None else mem / 2**30,
            "ops/step": h.get("ops_per_step"), "reference ops/step": ref.get("ops_per_step"),
            "tracking overhead %": 100 * r["tracking_overhead"],
        })
    return pd.DataFrame(rows)


def latest_reports(folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """All reports under ``results/bench/`` (or ``folder``), newest first by ``created``."""
    base = Path(folder) if folder is not None else repo_root() / "results" / "bench"
    reports = []
    for p in sorted(base.glob("*.json")):
        rep = json.loads(p.read_text())
        rep["_path"] = str(p.relative_to(base.parent.parent)) if base.is_relative_to(repo_root()) else str(p)
        reports.append(rep)
    return sorted(reports, key=lambda r: r.get("created", ""), reverse=True)


# --------------------------------------------------------------------------- CLI

QUICK = {"models": ["tiny_cnn"], "batch_size": 16, "steps": 2, "warmup": 1, "repeats": 1, "ref_workers": 0,
         "eval_n": 16, "eval_batch_size": 16, "aa_n": 4, "aa_version": "custom", "aa_attacks": ["apgd-ce"], "aa_iters": 5,
         "attack_steps": 10}
DEFAULTS = {"models": ["preact_resnet18", "wrn28_10"], "algorithms": list(ALGORITHMS), "batch_size": 128, "steps": 30,
            "warmup": 10, "repeats": 2, "ref_workers": 2, "eval_n": 512, "eval_batch_size": 256, "aa_n": 64,
            "aa_version": "custom", "aa_attacks": ["apgd-ce", "apgd-t"], "aa_iters": None, "attack_steps": 10}


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve the CLI options: explicit options win, then --quick's sizes, then defaults."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = {**DEFAULTS, **(QUICK if args.quick else {})}
    s: dict[str, Any] = {k: (getattr(args, k) if getattr(args, k, None) is not None else v) for k, v in base.items()}
    cuda = torch.device(device).type == "cuda"
    s.update(
        device=device, quick=bool(args.quick), precision=args.precision,
        channels_last=cuda if args.channels_last is None else args.channels_last,
        compile=bool(args.compile), compile_mode=args.compile_mode, reference=not args.no_reference,
        eval=not args.no_eval, eps=args.eps, beta=args.beta, seed=args.seed, epoch_images=args.epoch_images,
        aa_eps=args.aa_eps, label=args.label,
    )
    bad = [a for a in s["algorithms"] if a not in ALGORITHMS]
    if bad:
        raise ValueError(f"unknown algorithm(s) {bad}; allowed: {', '.join(ALGORITHMS)}")
    from hardex.config import ModelConfig

    for m in s["models"]:
        ModelConfig(name=m)  # a clear error naming the model and the allowed names
    for key in ("batch_size", "steps", "repeats"):
        if s[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {s[key]}")
    if s["warmup"] < 0:
        raise ValueError(f"--warmup must be >= 0, got {s['warmup']}")
    return s


def _run(args: argparse.Namespace) -> int:
    try:
        s = settings_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else (
        repo_root() / "results" / "bench" / f"{s['device'].split(':')[0]}-{_dt.date.today().isoformat()}.json")
    report = run_bench(s)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 2):
        print(table(report).to_string(index=False))
    print(f"wrote {out}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("bench", help="time hardex's training path against a reference-style loop (JSON report)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda if available)")
    p.add_argument("--models", nargs="+", help=f"default: {' '.join(DEFAULTS['models'])}")
    p.add_argument("--algorithms", nargs="+", help="pgd and/or trades (default: both)")
    p.add_argument("--steps", type=int, help="timed steady-state steps per repeat (default 30)")
    p.add_argument("--warmup", type=int, help="warm-up steps before timing (default 10)")
    p.add_argument("--repeats", type=int, help="timed repeats; the median is reported (default 2)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--attack-steps", type=int, help="training attack steps (default 10)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16", help="hardex path precision (default bf16)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="hardex path: channels_last model (default: on for CUDA)")
    p.add_argument("--compile", action="store_true", help="hardex path: torch.compile the model (inductor)")
    p.add_argument("--compile-mode", choices=[m for m in fastpath.COMPILE_MODES if m], help="torch.compile mode")
    p.add_argument("--ref-workers", type=int, help="reference DataLoader workers (default 2; --quick 0)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference-style loop")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation throughput")
    p.add_argument("--eval-n", type=int, help="images for the PGD-20 throughput (default 512)")
    p.add_argument("--eval-batch-size", type=int, help="evaluation batch size (default 256)")
    p.add_argument("--aa-n", type=int, help="images for the AutoAttack throughput (default 64)")
    p.add_argument("--aa-version", choices=["standard", "custom"], help="default custom")
    p.add_argument("--aa-attacks", nargs="+", help="attacks of --aa-version custom (default apgd-ce apgd-t)")
    p.add_argument("--aa-iters", type=int, help="APGD iterations override (default: AutoAttack's 100)")
    p.add_argument("--aa-eps", type=float, default=1e-4, help="AutoAttack eps for the worst-case cost (default 1e-4)")
    p.add_argument("--eps", type=float, default=0.031, help="training attack eps (default 0.031, step eps/4)")
    p.add_argument("--beta", type=float, default=6.0, help="TRADES beta")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epoch-images", type=int, default=EPOCH_IMAGES, help="images per extrapolated epoch (50000)")
    p.add_argument("--quick", action="store_true", help="CPU-sized run: tiny_cnn, batch 16, 2 steps, synthetic data")
    p.add_argument("--label", help="free-text label stored in the report")
    p.add_argument("--out", help="JSON report path (default results/bench/<device>-<date>.json)")
    p.set_defaults(func=_run)
