"""Datasets, augmentation, batching and index-set edits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hardex.data import (
    DATASETS,
    DataNotFoundError,
    Dataset,
    augment,
    class_balanced_topk,
    draw_augment_params,
    iterate_batches,
    keep,
    load_dataset,
    prune,
    quantile_bins,
    random_labels,
    to_float,
    topk,
)

CLASSES = ["cat", "airplane", "bird"]  # written unsorted on purpose; labels follow sorted order


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _pixel_value(cls_id: int, file_id: int) -> int:
    return 20 * cls_id + 3 * file_id + 1


def _make_folder(root: Path, split: str = "train", per_class: int = 4) -> None:
    """A 3-class image folder; every PNG is a constant image whose value encodes
    (class, file) so the tests can check order and labels after loading."""
    for cls in CLASSES:
        cls_id = sorted(CLASSES).index(cls)
        d = root / "cifar10" / split / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in reversed(range(per_class)):  # creation order must not matter
            arr = np.full((32, 32, 3), _pixel_value(cls_id, i), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"{i:04d}.png")


def _tiny_dataset(n: int = 12, c: int = 3) -> Dataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    labels = torch.arange(n) % c
    return Dataset("cifar10", "train", images, labels, torch.arange(n), [f"c{i}" for i in range(c)])


# --------------------------------------------------------------------------- loading


def test_image_folder_loads_sorted_with_stable_index(tmp_path: Path) -> None:
    _make_folder(tmp_path, "train")
    ds = load_dataset("cifar10", "train", root=tmp_path, download=False)
    assert ds.images.shape == (12, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.index.dtype == torch.int64
    assert ds.classes == sorted(CLASSES)
    assert ds.num_classes == 3 and len(ds) == 12
    assert ds.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.index.tolist() == list(range(12))
    expected = [_pixel_value(c, i) for c in range(3) for i in range(4)]
    assert ds.images[:, 0, 0, 0].tolist() == expected
    # the stable index survives subsetting
    sub = ds.subset([5, 2])
    assert sub.index.tolist() == [5, 2]
    assert sub.images[:, 0, 0, 0].tolist() == [expected[5], expected[2]]
    assert sub.subset([1]).index.tolist() == [2]
    relabelled = sub.with_labels(torch.tensor([2, 2]))
    assert relabelled.labels.tolist() == [2, 2] and relabelled.index.tolist() == [5, 2]


def test_cache_is_used_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_folder(tmp_path, "train")
    first = load_dataset("cifar10", "train", root=tmp_path)
    cache = tmp_path / "cifar10" / "train.cache.pt"
    assert cache.is_file()
    assert not any(p.name.endswith(".tmp") for p in cache.parent.iterdir())

    import hardex.data as data_mod

    def fail(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(data_mod, "_decode", fail)
    monkeypatch.setattr(data_mod, "_READ", {})  # a new process: only the disk cache is there
    second = load_dataset("cifar10", "train", root=tmp_path)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)

    # Adding a file changes the file list: the cache must be rebuilt (and decoding happen).
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(tmp_path / "cifar10" / "train" / "bird" / "0099.png")
    with pytest.raises(AssertionError, match="decoded"):
        load_dataset("cifar10", "train", root=tmp_path)
    monkeypatch.undo()
    third = load_dataset("cifar10", "train", root=tmp_path)
    assert len(third) == 13 and third.images[8, 0, 0, 0] == 200  # bird is class 1, after its 4 files


def test_a_process_reads_a_folder_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hardex.data as data_mod

    _make_folder(tmp_path, "train")
    _make_folder(tmp_path, "test", per_class=2)
    first = load_dataset("cifar10", "train", root=tmp_path)
    test_split = load_dataset("cifar10", "test", root=tmp_path)
    listed = []
    real_list = data_mod._list_image_folder
    monkeypatch.setattr(data_mod, "_list_image_folder", lambda folder: listed.append(folder) or real_list(folder))
    again = load_dataset("cifar10", "train", root=tmp_path)
    assert again.images is first.images and load_dataset("cifar10", "test", root=tmp_path).images is test_split.images
    assert listed == []  # neither listed nor read from disk
    # a new file in a class folder changes that folder's mtime: the folder is read again
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(tmp_path / "cifar10" / "train" / "bird" / "0099.png")
    changed = load_dataset("cifar10", "train", root=tmp_path)
    assert listed == [tmp_path / "cifar10" / "train"] and len(changed) == len(first) + 1
    assert sum(k[0] == str((tmp_path / "cifar10" / "train").resolve()) for k in data_mod._READ) == 1


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_folder(tmp_path, "test", per_class=2)
    monkeypatch.setenv("HARDEX_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", "test")) == 6


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'") as info:
        load_dataset("mnist")
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_dataset("cifar10", "val")


def test_missing_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", "train", root=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "cifar10" / "train") in msg  # the image folder looked at
    assert str(tmp_path / "cifar10") in msg  # torchvision's root
    assert "tar xzf" in msg and "HARDEX_DATA" in msg and "download=True" in msg


def test_dataset_info() -> None:
    assert DATASETS["svhn"].flip is False
    assert DATASETS["stl10"].image_size == 64
    assert DATASETS["cifar100"].num_classes == 100


@pytest.mark.data
def test_shared_cifar10_copy() -> None:
    root = os.environ.get("HARDEX_DATA")
    if not root or not (Path(root) / "cifar10" / "train").is_dir():
        pytest.skip(
            "shared CIFAR-10 copy not found: set HARDEX_DATA and extract "
            "cifar10-jpeg.tar.gz into $HARDEX_DATA/cifar10 (see /work/shared/data/README.md)"
        )
    train = load_dataset("cifar10", "train", root=root, download=False)
    test = load_dataset("cifar10", "test", root=root, download=False)
    assert train.images.shape == (50_000, 3, 32, 32) and len(test) == 10_000
    assert train.num_classes == 10 and train.classes[0] == "airplane" and train.classes[-1] == "truck"
    assert torch.bincount(train.labels, minlength=10).tolist() == [5_000] * 10
    assert torch.bincount(test.labels, minlength=10).tolist() == [1_000] * 10
    assert torch.equal(train.index, torch.arange(50_000))


# --------------------------------------------------------------------------- augmentation


def test_to_float() -> None:
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    out = to_float(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([0.0, 128 / 255, 1.0]))


def test_augment_deterministic_dtype_range() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment(images, torch.Generator().manual_seed(7))
    b = augment(images, torch.Generator().manual_seed(7))
    c = augment(images, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == images.shape
    assert a.min() >= 0 and a.max() <= 1
    # float input gives the same result as uint8 input
    f = augment(to_float(images), torch.Generator().manual_seed(7))
    torch.testing.assert_close(f, a)


def test_augment_matches_hand_reference() -> None:
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = augment(images, torch.Generator().manual_seed(3), pad=4, flip=True)
    dy, dx, flips = draw_augment_params(8, torch.Generator().manual_seed(3), pad=4, flip=True)
    assert flips.any() and (~flips).any(), "seed chosen so both branches are exercised"
    for i in range(8):
        padded = torch.zeros(3, 40, 40)
        padded[:, 4:36, 4:36] = images[i].float() / 255
        crop = padded[:, int(dy[i]) : int(dy[i]) + 32, int(dx[i]) : int(dx[i]) + 32]
        if flips[i]:
            crop = crop.flip(-1)
        torch.testing.assert_close(out[i], crop)


def test_augment_without_flip_or_pad() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(augment(images, torch.Generator().manual_seed(0), pad=0, flip=False), to_float(images))
    _, _, flips = draw_augment_params(64, torch.Generator().manual_seed(0), flip=False)
    assert not flips.any()


def test_iterate_batches() -> None:
    ds = _tiny_dataset(10)
    batches = list(iterate_batches(ds, 4, torch.Generator().manual_seed(1)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(iterate_batches(ds, 4, torch.Generator().manual_seed(1)))
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    assert all(b.dtype == torch.long and b.device == ds.device for b in batches)
    assert [len(b) for b in iterate_batches(ds, 4, torch.Generator(), drop_last=True)] == [4, 4]
    assert torch.cat(list(iterate_batches(ds, 3, shuffle=False))).tolist() == list(range(10))


# --------------------------------------------------------------------------- index-set edits


def test_keep_and_prune() -> None:
    ds = _tiny_dataset(12).subset([11, 3, 7, 0, 5])  # dataset order differs from index order
    kept = keep(ds, np.array([5, 11, 0]))
    assert kept.index.tolist() == [11, 0, 5]  # dataset order is preserved
    assert kept.images[:, 0, 0, 0].tolist() == [11, 0, 5]
    pruned = prune(ds, torch.tensor([3, 5]))
    assert pruned.index.tolist() == [11, 7, 0]
    assert pruned.labels.tolist() == [11 % 3, 7 % 3, 0]
    with pytest.raises(ValueError, match="not in the dataset"):
        prune(ds, [1])
    assert len(prune(ds, [1], strict=False)) == 5
    assert len(keep(ds, [])) == 0


def test_random_labels() -> None:
    ds = _tiny_dataset(12)
    chosen = np.array([9, 2, 5, 11])
    out = random_labels(ds, chosen, seed=42)
    draws = np.random.default_rng(42).integers(0, 3, size=4)  # drawn in increasing index order
    expected = ds.labels.numpy().copy()
    expected[[2, 5, 9, 11]] = draws
    assert out.labels.tolist() == expected.tolist()
    assert torch.equal(out.images, ds.images) and torch.equal(out.index, ds.index)
    # the order of `indices` and of the dataset does not matter
    shuffled = ds.subset([11, 0, 9, 4, 2, 5, 1, 3, 6, 7, 8, 10])
    out2 = random_labels(shuffled, chosen[::-1], seed=42)
    back = dict(zip(out2.index.tolist(), out2.labels.tolist()))
    assert [back[i] for i in range(12)] == expected.tolist()
    # exclude_true: every selected label changes
    big = _tiny_dataset(300)
    changed = random_labels(big, np.arange(300), seed=0, exclude_true=True)
    assert (changed.labels != big.labels).all()
    assert set(changed.labels.tolist()) == {0, 1, 2}


def test_topk() -> None:
    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.3])
    index = np.array([10, 11, 12, 13, 14])
    assert topk(scores, 3, index=index).tolist() == [11, 13, 10]  # tie 0.9: smaller index first
    assert topk(scores, 2, hardest=False, index=index).tolist() == [12, 14]
    assert topk(torch.tensor(scores), 5).tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="k must lie"):
        topk(scores, 6)


def test_class_balanced_topk() -> None:
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1], dtype=float)
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    # k=6: two per class -> {0,1} from class 0, {4,5} from class 1, {6,7} from class 2
    assert sorted(class_balanced_topk(scores, labels, 6).tolist()) == [0, 1, 4, 5, 6, 7]
    # k=7: 2 per class plus one remainder slot to the hardest unselected (index 2)
    assert sorted(class_balanced_topk(scores, labels, 7).tolist()) == [0, 1, 2, 4, 5, 6, 7]
    # easiest: per class the lowest scores
    assert sorted(class_balanced_topk(scores, labels, 3, hardest=False).tolist()) == [3, 5, 8]
    with pytest.raises(ValueError, match="fewer than"):
        class_balanced_topk(scores, labels, 9)


def test_quantile_bins() -> None:
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 6.0])
    bins = quantile_bins(scores, 3)
    assert [b.tolist() for b in bins] == [[5, 1, 3], [4, 2], [0, 6]]
    assert sorted(np.concatenate(bins).tolist()) == list(range(7))
    bins = quantile_bins(scores, 2, index=np.arange(100, 107))
    assert [b.tolist() for b in bins] == [[105, 101, 103, 104], [102, 100, 106]]
