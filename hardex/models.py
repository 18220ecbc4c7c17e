"""Image classifiers used by the paper and its baselines, plus a tiny CNN for smoke runs.

Every model takes inputs in [0, 1]. Input normalisation, when wanted, is the model's
first layer (``normalize=(mean, std)``), so that attacks always work in pixel space and
eps means the same thing for every model (ANCHORS.md: normalisation inside vs outside
the model is a classic source of wrong robustness numbers, Bag-of-Tricks#4).

All networks end in adaptive average pooling, so the same definitions serve 32x32
(CIFAR, SVHN) and 64x64 (STL-10 resized, as in the paper) inputs.

Architectures follow the common public definitions of these networks (the CIFAR
ResNet/PreActResNet of Kuang Liu as used by robust_overfitting and AWP; the
WideResNet of Zagoruyko & Komodakis as used by TRADES), written from their papers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODEL_NAMES",
    "Normalize",
    "PreActBlock",
    "PreActResNet",
    "BasicBlock",
    "ResNet",
    "WideBasic",
    "WideResNet",
    "TinyCNN",
    "build_model",
    "count_parameters",
    "forward_flops",
]

#: Names accepted by :func:`build_model`; ``wrn<depth>_<width>`` is accepted for any
#: depth with (depth - 4) divisible by 6.
MODEL_NAMES: tuple[str, ...] = (
    "preact_resnet18",
    "resnet18",
    "wrn28_10",
    "wrn34_10",
    "wrn<depth>_<width>",
    "tiny_cnn",
)


class Normalize(nn.Module):
    """(x - mean) / std per channel, as a layer so that the model sees [0, 1] inputs.

    mean and std are buffers (saved with the state dict, moved with ``.to``), never
    parameters, so they are neither trained nor counted by :func:`count_parameters`.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise ValueError(f"normalize: mean has {mean_t.numel()} values but std has {std_t.numel()}")
        if bool((std_t <= 0).any()):
            raise ValueError(f"normalize: std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


# --------------------------------------------------------------------------- PreActResNet


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016b): BN-ReLU-conv twice, identity skip."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        # The projection shortcut takes the pre-activated input, as in the original design.
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """CIFAR PreActResNet: 3x3 stem without max-pool, four stages, final BN-ReLU, GAP, linear."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.relu(self.bn(out))
        return self.linear(torch.flatten(self.pool(out), 1))


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Post-activation basic block (He et al., 2016a) with a 1x1 conv + BN projection."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stride-1 stem and no max-pool (the ImageNet stem would discard
    most of a 32x32 image), four stages, GAP, linear."""

    def __init__(self, num_blocks: Sequence[int], num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))


# --------------------------------------------------------------------------- WideResNet


class WideBasic(nn.Module):
    """WideResNet block: BN-ReLU-conv3x3, (dropout), BN-ReLU-conv3x3; 1x1 projection when
    the shape changes, applied to the pre-activated input (Zagoruyko & Komodakis, 2016)."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = F.relu(self.bn2(self.conv1(out)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


class WideResNet(nn.Module):
    """WRN-depth-width: a 16-channel stem and three stages of (depth - 4) / 6 blocks with
    16w, 32w, 64w channels; final BN-ReLU, GAP, linear. Dropout 0 as in TRADES/the paper."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        if width < 1:
            raise ValueError(f"WideResNet width must be >= 1, got {width}")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.in_planes = channels[0]
        self.block1 = self._make_layer(channels[1], n, 1, dropout)
        self.block2 = self._make_layer(channels[2], n, 2, dropout)
        self.block3 = self._make_layer(channels[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(channels[3])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(WideBasic(self.in_planes, planes, s, dropout))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.block3(self.block2(self.block1(out)))
        out = F.relu(self.bn(out))
        return self.linear(torch.flatten(self.pool(out), 1))


# --------------------------------------------------------------------------- tiny CNN


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU stages (16, 32, 64 channels), ~24k parameters, ~5 MFLOP a forward.

    Not a paper model: it exists so that smoke runs and tests exercise every code path
    (BatchNorm modes included) in seconds on a CPU. The widths halve those of its first
    version (32, 64, 128): that halved the smoke book's training time on the 2-core CI
    machine (one smoke run: 21.7 s -> 11.5 s) and it still learns enough for the plots
    to move (that run: 34% vs 39% clean test accuracy after 5 epochs on 1,000 images).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        def stage(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            if pool:
                layers.append(nn.MaxPool2d(2))
            return layers

        self.features = nn.Sequential(*stage(3, 16, True), *stage(16, 32, True), *stage(32, 64, False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------- factory

_WRN_RE = re.compile(r"^wrn(\d+)_(\d+)$")


def build_model(
    name: str,
    num_classes: int = 10,
    image_size: int = 32,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
) -> nn.Module:
    """Build a classifier by name; inputs are images in [0, 1] of size ``image_size``.

    ``image_size`` is only validated (all networks pool adaptively); it is an argument so
    that callers state the input size they intend and a wrong size fails here, not deep
    in a training loop. With ``normalize=(mean, std)`` the model is
    ``Sequential(Normalize, net)``, so the normalisation is the first module.
    """
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 (three stride-2 stages), got {image_size}")
    key = name.lower().replace("-", "_")
    net: nn.Module
    if key in ("preact_resnet18", "preactresnet18", "prn18"):
        net = PreActResNet([2, 2, 2, 2], num_classes)
    elif key == "resnet18":
        net = ResNet([2, 2, 2, 2], num_classes)
    elif key == "tiny_cnn":
        net = TinyCNN(num_classes)
    elif (m := _WRN_RE.match(key)) is not None:
        depth, width = int(m.group(1)), int(m.group(2))
        try:
            net = WideResNet(depth, width, num_classes)
        except ValueError as err:
            raise ValueError(f"model {name!r}: {err}") from None
    else:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if normalize is not None:
        mean, std = normalize
        return nn.Sequential(Normalize(mean, std), net)
    return net


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN running stats and Normalize are excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: nn.Module, image_size: int = 32, num_classes: int | None = None) -> int:
    """FLOPs of one forward pass on one image: 2 x multiply-accumulates of every Conv2d
    and Linear layer, counted with forward hooks.

    BN, ReLU, pooling and additions are ignored, matching how the usual "1.11 GFLOP for
    PRN-18" figures are computed; this is the number the speed benchmark divides by.
    ``num_classes`` is accepted for symmetry with :func:`build_model` and unused (the
    model already knows its head size). The model's mode is left unchanged.
    """
    del num_classes
    total = 0

    def conv_hook(mod: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += 2 * out.numel() * k

    def linear_hook(mod: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * mod.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = {m: m.training for m in model.modules()}
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
        for m, flag in was_training.items():
            m.training = flag
    return int(total)
