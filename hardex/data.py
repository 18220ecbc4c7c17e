"""Datasets as uint8 tensors with a stable per-example index, device-side augmentation and
batching, and the index-set edits the paper's experiments are made of.

Why tensors and not DataLoaders: CIFAR-sized datasets fit in GPU memory (150 MB as
uint8), and keeping them there with batched augmentation removes the input pipeline
from the profile entirely. Everything random is drawn from an explicit
``torch.Generator`` (or a seeded numpy Generator), so an epoch's batches and
augmentations are a pure function of the seed, which resume-after-kill relies on.

Every example carries ``index``: its position in the full split as loaded. Subsetting,
pruning and relabelling keep it, so difficulty scores, top-k sets and per-example
records written by one run can be matched against another run's data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from hardex.paths import data_root

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DataNotFoundError",
    "Dataset",
    "load_dataset",
    "augment",
    "draw_augment_params",
    "apply_augment",
    "to_float",
    "iterate_batches",
    "keep",
    "prune",
    "random_labels",
    "topk",
    "class_balanced_topk",
    "quantile_bins",
]

IndexLike = Union[np.ndarray, torch.Tensor, Sequence[int]]


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: classes, the image size models see, whether a
    horizontal flip is a label-preserving augmentation (not for digits)."""

    num_classes: int
    image_size: int
    flip: bool
    resize: bool = False  # resize to image_size once at load (STL-10: 96 -> 64)


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(num_classes=10, image_size=32, flip=True),
    "cifar100": DatasetInfo(num_classes=100, image_size=32, flip=True),
    "svhn": DatasetInfo(num_classes=10, image_size=32, flip=False),
    # The paper trains STL-10 at 64x64; its labelled splits are 5,000 / 8,000 images.
    "stl10": DatasetInfo(num_classes=10, image_size=64, flip=True, resize=True),
}

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
_CACHE_VERSION = 1


class DataNotFoundError(RuntimeError):
    """The dataset is neither in the image-folder layout nor loadable by torchvision."""


# --------------------------------------------------------------------------- Dataset


@dataclass
class Dataset:
    """A labelled image split held as tensors.

    images: uint8, N x C x H x W. labels: int64, N. index: int64, N, the example's
    position in the full split, kept through every subset and edit. classes: class names
    in label order.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dim() != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if self.labels.shape != (n,) or self.index.shape != (n,):
            raise ValueError(
                f"images ({n}), labels {tuple(self.labels.shape)} and index {tuple(self.index.shape)} disagree in length"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: str | torch.device) -> Dataset:
        """The same data on ``device`` (uint8 stays uint8: 4x less memory than float)."""
        return replace(
            self,
            images=self.images.to(device),
            labels=self.labels.to(device),
            index=self.index.to(device),
        )

    def subset(self, positions: IndexLike) -> Dataset:
        """The examples at ``positions`` (positions into this dataset, not stable indices)."""
        pos = torch.as_tensor(_as_numpy_int(positions), dtype=torch.long, device=self.images.device)
        if pos.numel() and (int(pos.min()) < -len(self) or int(pos.max()) >= len(self)):
            raise IndexError(f"subset positions out of range for a dataset of {len(self)} examples")
        return replace(self, images=self.images[pos], labels=self.labels[pos], index=self.index[pos])

    def with_labels(self, labels: IndexLike) -> Dataset:
        """The same images with new labels (e.g. noisy or relabelled)."""
        lab = torch.as_tensor(_as_numpy_int(labels), dtype=torch.long, device=self.labels.device)
        if lab.shape != self.labels.shape:
            raise ValueError(f"with_labels: expected {len(self)} labels, got {tuple(lab.shape)}")
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.num_classes):
            raise ValueError(f"with_labels: labels must lie in [0, {self.num_classes - 1}]")
        return replace(self, labels=lab)


# --------------------------------------------------------------------------- loading


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Load a split as a :class:`Dataset`.

    Lookup order:
    1. ``<root>/<name>/<split>/<class>/<image files>``: classes sorted alphabetically
       (their order is the label order), files sorted by name within a class. Decoded
       once with Pillow and cached as ``<root>/<name>/<split>.cache.pt``; the cache is
       rebuilt when the list of files (names and sizes) changes. This is how offline
       machines use the shared CIFAR-10 JPEG copy.
    2. torchvision's dataset class with root ``<root>/<name>`` (downloading if allowed).

    ``root`` defaults to $HARDEX_DATA, else ~/.cache/hardex/data (hardex.paths.data_root).
    STL-10 is resized to 64x64 (antialiased) once here.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; allowed: {', '.join(SPLITS)}")
    info = DATASETS[name]
    base = data_root(root) / name
    folder = base / split

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    if _is_image_folder(folder):
        images, labels, classes = _load_image_folder(folder, base / f"{split}.cache.pt")
    else:
        try:
            images, labels, classes = _load_torchvision(name, split, base, download)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError ...
            raise DataNotFoundError(_not_found_message(name, split, folder, base, download, err)) from err

    if info.resize and images.shape[-1] != info.image_size:
        images = _resize_uint8(images, info.image_size)
    if images.shape[-2:] != (info.image_size, info.image_size):
        raise ValueError(
            f"{name}/{split}: images are {tuple(images.shape[-2:])}, expected "
            f"{info.image_size}x{info.image_size}"
        )
    # No check of len(classes) against info.num_classes: small hand-made folders (tests,
    # class subsets) are legitimate; callers size models by dataset.num_classes.
    index = torch.arange(images.shape[0], dtype=torch.long)
    return Dataset(name, split, images, labels, index, classes).to(device)


def _not_found_message(name: str, split: str, folder: Path, base: Path, download: bool, err: BaseException) -> str:
    how_download = (
        "run once on a machine with network access (download=True)"
        if download
        else "pass download=True on a machine with network access"
    )
    return (
        f"dataset {name!r} split {split!r} not found. Looked for (1) an image folder "
        f"{folder}/<class>/<images> and (2) torchvision's {name} files under {base} "
        f"(download={download}; torchvision said: {type(err).__name__}: {err}). "
        f"To provide it: set HARDEX_DATA or pass root=, then either extract an image-folder "
        f"copy, e.g. `mkdir -p $HARDEX_DATA/{name} && tar xzf {name}-jpeg.tar.gz -C $HARDEX_DATA/{name}` "
        f"(it must contain {split}/<class>/*.jpg), or {how_download}."
    )


def _is_image_folder(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    return any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


def _list_image_folder(folder: Path) -> tuple[list[str], list[tuple[str, str]], str]:
    """Classes, (class, file) pairs in load order, and a fingerprint of names and sizes."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for cls in classes:
        with os.scandir(folder / cls) as it:
            entries = sorted(
                (e for e in it if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)),
                key=lambda e: e.name,
            )
        for e in entries:
            files.append((cls, e.name))
            digest.update(f"{cls}/{e.name}:{e.stat().st_size}\n".encode())
    return classes, files, digest.hexdigest()


def _decode(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# Image folders this process has already read, by folder: a book chapter trains dozens of
# runs in one process, and listing 50,000 files plus reading the 150 MB cache cost about a
# second per run. The key holds the modification times of the folder and of its class
# folders, so adding, removing or renaming an image makes the next call read the folder
# again. Callers get the same tensors each time; the library never changes them in place
# (Dataset's edits return new tensors).
_READ: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[str]]] = {}
_READ_MAX = 4  # e.g. the train and test splits of two datasets


def _folder_key(folder: Path) -> tuple:
    with os.scandir(folder) as it:
        dirs = sorted((e.name, e.stat().st_mtime_ns) for e in it if e.is_dir() and not e.name.startswith("."))
    return str(folder.resolve()), folder.stat().st_mtime_ns, tuple(dirs)


def _load_image_folder(folder: Path, cache_path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    key = _folder_key(folder)
    if key not in _READ:
        for old in [k for k in _READ if k[0] == key[0]]:  # this folder as it was before a change
            del _READ[old]
        while len(_READ) >= _READ_MAX:  # the oldest first: they are large
            del _READ[next(iter(_READ))]
        _READ[key] = _read_image_folder(folder, cache_path)
    return _READ[key]


def _read_image_folder(folder: Path, cache_path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    classes, files, fingerprint = _list_image_folder(folder)
    if not files:
        raise DataNotFoundError(f"image folder {folder} has class folders but no image files ({', '.join(IMAGE_EXTENSIONS)})")
    cached = _read_cache(cache_path, fingerprint)
    if cached is not None:
        return cached
    paths = [folder / cls / fname for cls, fname in files]
    # Pillow releases the GIL while decoding, so threads give a real speed-up.
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(_decode, paths, chunksize=256))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"image folder {folder}: images have different sizes {sorted(shapes)[:4]}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    class_id = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([class_id[c] for c, _ in files], dtype=torch.long)
    _write_cache(cache_path, fingerprint, images, labels, classes)
    return images, labels, classes


def _read_cache(path: Path, fingerprint: str) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign file is simply rebuilt
        return None
    if not isinstance(blob, dict) or blob.get("version") != _CACHE_VERSION or blob.get("fingerprint") != fingerprint:
        return None
    return blob["images"], blob["labels"], list(blob["classes"])


def _write_cache(path: Path, fingerprint: str, images: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> None:
    """Atomic write (temp file + os.replace) so a concurrent reader never sees half a file;
    a read-only data directory just means no cache."""
    blob: dict[str, Any] = {
        "version": _CACHE_VERSION,
        "fingerprint": fingerprint,
        "images": images,
        "labels": labels,
        "classes": list(classes),
    }
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            torch.save(blob, fh)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; others sharing the data root must read it
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _load_torchvision(name: str, split: str, base: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    import torchvision.datasets as tvd

    train = split == "train"
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        ds = cls(root=str(base), train=train, download=download)
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)
        classes = list(ds.classes)
    elif name == "svhn":
        ds = tvd.SVHN(root=str(base), split=split, download=download)
        images = torch.from_numpy(np.asarray(ds.data)).contiguous()  # already N x C x H x W
        labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)  # torchvision maps '10' to 0
        classes = [str(i) for i in range(10)]
    elif name == "stl10":
        ds = tvd.STL10(root=str(base), split=split, download=download)
        images = torch.from_numpy(np.asarray(ds.data)).contiguous()  # N x C x 96 x 96
        labels = torch.as_tensor(np.asarray(ds.labels), dtype=torch.long)
        classes = list(ds.classes)
    else:  # pragma: no cover - guarded by load_dataset
        raise ValueError(name)
    return images, labels, classes


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 images, in chunks to bound memory."""
    out = []
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], size, size))


# --------------------------------------------------------------------------- augmentation


def _to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """``t`` on ``device``. A CPU tensor bound for a CUDA device goes through pinned memory
    with ``non_blocking=True``: a plain ``.to("cuda")`` from pageable memory waits until
    the device's queue has drained, i.e. one host synchronisation per batch (the CPU
    generator's draws feed every batch). The values are identical either way."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if t.device == dev:
        return t
    if t.device.type == "cpu" and dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32 unchanged."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def draw_augment_params(
    n: int, generator: torch.Generator, pad: int = 4, flip: bool = True, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random crop offsets (dy, dx in [0, 2*pad]) and flip flags of one batch.

    Drawn in a fixed order (dy, dx, flip) on the generator's device, so a batch's
    augmentation is determined by the generator state alone, whatever device the images
    are on. Exposed so tests and probes can reproduce exactly what :func:`augment` did.
    """
    gdev = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev)
    if flip:
        flips = torch.rand((n,), generator=generator, device=gdev) < 0.5
    else:
        flips = torch.zeros((n,), dtype=torch.bool, device=gdev)
    if device is not None:
        dy, dx, flips = _to_device(dy, device), _to_device(dx, device), _to_device(flips, device)
    return dy, dx, flips


def apply_augment(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Crop each zero-padded image at (dy, dx) and flip where ``flips``; one gather, no
    Python loop over images."""
    x = to_float(images)
    n, c, h, w = x.shape
    if pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
    rows = dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)  # n x h
    cols = dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)  # n x w
    # A flip is a crop read right-to-left: reverse the column indices.
    cols = torch.where(flips.view(n, 1), cols.flip(1), cols)
    out = x[
        torch.arange(n, device=x.device).view(n, 1, 1, 1),
        torch.arange(c, device=x.device).view(1, c, 1, 1),
        rows.view(n, 1, h, 1),
        cols.view(n, 1, 1, w),
    ]
    return out


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with ``pad``-pixel zero padding and random horizontal flip (the standard
    CIFAR augmentation), batched on the images' device; returns float32 in [0, 1].

    Pass ``flip=DATASETS[name].flip`` (False for SVHN: flipped digits change meaning).
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    dy, dx, flips = draw_augment_params(images.shape[0], generator, pad, flip, device=images.device)
    return apply_augment(images, dy, dx, flips, pad)


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield LongTensor batches of positions into ``dataset``, on the dataset's device.

    The permutation is drawn from ``generator`` (on its device); with ``generator=None``
    torch's global RNG is used, which is only acceptable in throwaway code.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    if shuffle:
        gdev = generator.device if generator is not None else torch.device("cpu")
        order = _to_device(torch.randperm(n, generator=generator, device=gdev), dataset.device)
    else:
        order = torch.arange(n, device=dataset.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : min(start + batch_size, stop)]


# --------------------------------------------------------------------------- index-set edits


def _as_numpy_int(values: IndexLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.size == 0:
        return arr.astype(np.int64).reshape(-1)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected integer indices, got dtype {arr.dtype}")
    return arr.astype(np.int64).reshape(-1)


def _as_numpy_float(values: IndexLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN; rank only finite scores")
    return arr


def _membership(dataset: Dataset, indices: IndexLike, strict: bool, what: str) -> np.ndarray:
    """Boolean mask over dataset positions: is the example's stable index in ``indices``?"""
    idx = np.unique(_as_numpy_int(indices))
    have = dataset.index.detach().cpu().numpy()
    if strict:
        missing = np.setdiff1d(idx, have)
        if missing.size:
            raise ValueError(
                f"{what}: {missing.size} indices are not in the dataset (e.g. {missing[:5].tolist()}); "
                "pass strict=False to ignore them"
            )
    return np.isin(have, idx)


def keep(dataset: Dataset, indices: IndexLike, strict: bool = True) -> Dataset:
    """Only the examples whose stable ``index`` is in ``indices``, in dataset order."""
    mask = _membership(dataset, indices, strict, "keep")
    return dataset.subset(np.flatnonzero(mask))


def prune(dataset: Dataset, indices: IndexLike, strict: bool = True) -> Dataset:
    """All examples except those whose stable ``index`` is in ``indices`` (the paper's
    "prune the top-k hard examples"), in dataset order."""
    mask = _membership(dataset, indices, strict, "prune")
    return dataset.subset(np.flatnonzero(~mask))


def random_labels(
    dataset: Dataset, indices: IndexLike, seed: int, exclude_true: bool = False, strict: bool = True
) -> Dataset:
    """Replace the labels of the examples in ``indices`` by uniformly random labels.

    The paper (Sec. 3, Fig. 6, Table 8) says "replace the labels with random labels", as
    in Zhang et al. (2017): by default each new label is uniform over all C classes, so
    the true class is drawn with probability 1/C. ``exclude_true=True`` draws uniformly
    from the C - 1 other classes instead (every selected label is then wrong).
    Labels are drawn from ``numpy.random.default_rng(seed)`` in increasing order of
    stable index, so the result does not depend on the order of ``indices`` or of the
    dataset.
    """
    mask = _membership(dataset, indices, strict, "random_labels")
    positions = np.flatnonzero(mask)
    order = np.argsort(dataset.index.detach().cpu().numpy()[positions], kind="stable")
    positions = positions[order]
    rng = np.random.default_rng(seed)
    c = dataset.num_classes
    labels = dataset.labels.detach().cpu().numpy().copy()
    if exclude_true:
        draw = rng.integers(0, c - 1, size=positions.size)
        true = labels[positions]
        draw = draw + (draw >= true)  # skip over the true class
    else:
        draw = rng.integers(0, c, size=positions.size)
    labels[positions] = draw
    return dataset.with_labels(torch.as_tensor(labels, dtype=torch.long))


def _rank(scores: np.ndarray, index: np.ndarray, hardest: bool) -> np.ndarray:
    """Positions sorted hardest-first (or easiest-first); ties broken by smaller index."""
    primary = -scores if hardest else scores
    return np.lexsort((index, primary))


def _index_for(scores: np.ndarray, index: IndexLike | None) -> np.ndarray:
    if index is None:
        return np.arange(scores.size, dtype=np.int64)
    idx = _as_numpy_int(index)
    if idx.shape != scores.shape:
        raise ValueError(f"index has {idx.size} entries but scores has {scores.size}")
    return idx


def topk(scores: IndexLike, k: int, hardest: bool = True, index: IndexLike | None = None) -> np.ndarray:
    """The stable indices of the k hardest (highest-score) examples, hardest first.

    ``index[i]`` is the stable index of ``scores[i]`` (default: ``arange(len(scores))``).
    Ties are broken by the smaller index, so the set is deterministic. ``hardest=False``
    gives the k easiest, easiest first.
    """
    s = _as_numpy_float(scores)
    idx = _index_for(s, index)
    if not 0 <= k <= s.size:
        raise ValueError(f"k must lie in [0, {s.size}], got {k}")
    return idx[_rank(s, idx, hardest)[:k]]


def class_balanced_topk(
    scores: IndexLike,
    labels: IndexLike,
    k: int,
    hardest: bool = True,
    index: IndexLike | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """k examples, k // C from each class (the hardest within the class).

    Remainder: when C does not divide k, the k mod C leftover slots go to the hardest of
    the not-yet-selected examples regardless of class, so exactly k indices are returned.
    A class with fewer than k // C examples is an error (the set could not be balanced).
    C is ``num_classes`` or ``max(labels) + 1``. Returned hardest-first within the
    balanced part (ranked across all classes), then the remainder.
    """
    s = _as_numpy_float(scores)
    lab = _as_numpy_int(labels)
    if lab.shape != s.shape:
        raise ValueError(f"labels has {lab.size} entries but scores has {s.size}")
    idx = _index_for(s, index)
    if not 0 <= k <= s.size:
        raise ValueError(f"k must lie in [0, {s.size}], got {k}")
    c = int(num_classes) if num_classes is not None else int(lab.max()) + 1 if lab.size else 0
    if c <= 0:
        return np.zeros(0, dtype=np.int64)
    per_class = k // c
    order = _rank(s, idx, hardest)
    chosen = np.zeros(s.size, dtype=bool)
    for cls in range(c):
        in_class = order[lab[order] == cls]
        if in_class.size < per_class:
            raise ValueError(f"class {cls} has {in_class.size} examples, fewer than k // C = {per_class}")
        chosen[in_class[:per_class]] = True
    balanced = order[chosen[order]]
    rest = order[~chosen[order]][: k - balanced.size]
    return idx[np.concatenate([balanced, rest])]


def quantile_bins(scores: IndexLike, n_bins: int, index: IndexLike | None = None) -> list[np.ndarray]:
    """Split examples into ``n_bins`` equal-count bins by score: bin 0 is the easiest
    (lowest scores), bin n_bins - 1 the hardest (e.g. difficulty quintiles, Fig. 9).

    Bin sizes differ by at most one (``numpy.array_split``: the first bins get the extra
    examples); ties are broken by index. Each bin is an array of stable indices sorted
    easiest-first.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    s = _as_numpy_float(scores)
    idx = _index_for(s, index)
    order = _rank(s, idx, hardest=False)
    return [idx[part] for part in np.array_split(order, n_bins)]
