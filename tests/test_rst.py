"""RST (Carmon et al., 2019) in the Trainer: batch composition, pseudo labels as targets, the
unlabelled loss weight, DPLS on the labelled / unlabelled / both parts with the unlabelled
difficulty 1 - right / trained (paper, Section 5), bit-exact resume, and errors. Small data
made here."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from hardex import methods as M
from hardex import targets as tgt
from hardex import train as train_mod
from hardex.provenance import sha256_file
from hardex.runs.files import load_store_file
from hardex.train import Trainer
from test_train import make_tiny_cifar, small_cfg, strip

N_U = 37  # unlabelled images (not a multiple of the per-batch count: the permutation wraps)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_tiny_cifar(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def unl(tmp_path_factory):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(N_U, 32, 32, 3), dtype=np.uint8)  # NHWC
    labels = rng.integers(0, 10, size=N_U)
    path = tmp_path_factory.mktemp("unl") / "pseudo.npz"
    np.savez(path, images=images, labels=labels)
    return path, images, labels


def rst_cfg(**over):
    base = dict(batch_size=20, rst={"fraction": 0.4}, epochs=2, tracking={"until_epoch": 1})
    base.update(over)
    return small_cfg(**base)


def record_steps(tr: Trainer) -> list[dict]:
    seen = []
    orig = tr._step

    def spy(x, y, t, w, index=None, epoch=None, clean=None, loss_weights=None, **kw):
        seen.append({"y": y.clone(), "index": index.clone(), "t": t.clone(), "epoch": epoch,
                     "lw": None if loss_weights is None else loss_weights.clone()})
        return orig(x, y, t, w, index, epoch, clean, loss_weights=loss_weights, **kw)

    tr._step = spy
    return seen


def test_batch_composition_and_pseudo_labels(tiny_root, unl):
    path, _, labels = unl
    tr = Trainer(rst_cfg(), data_root=tiny_root, unlabeled=path)
    steps = record_steps(tr)
    tr.run_epoch()
    n, n_lab = tr.num_examples, len(tr.base_train)  # 100 labelled, 12 + 8 per batch
    assert len(steps) == int(np.ceil(n_lab / 12))
    lab, unl_idx = [], []
    for s in steps:
        i = s["index"]
        is_u = i >= n
        assert int(is_u.sum()) == 8 and not is_u[: len(i) - 8].any()  # labelled part first
        lab += i[~is_u].tolist()
        u = (i[is_u] - n).tolist()
        unl_idx += u
        assert torch.equal(s["y"][-8:], torch.as_tensor(labels[u]))  # pseudo labels are the targets
        assert s["t"].dtype == torch.int64 and torch.equal(s["t"], s["y"])
    assert sorted(lab) == sorted(tr.base_train.index.tolist())  # one pass over the labelled set
    assert sorted(unl_idx[:N_U]) == list(range(N_U))  # each unlabelled image once before any repeats
    assert len(unl_idx) == 8 * len(steps)


def test_unlabelled_weight_scales_their_loss_in_the_batch_mean(tiny_root, unl):
    tr = Trainer(rst_cfg(rst={"fraction": 0.4, "weight": 0.25}), data_root=tiny_root, unlabeled=unl[0])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (10,), generator=g)
    lw = torch.tensor([1.0] * 6 + [0.25] * 4)
    b = M.Batch(x=x, y=y, index=torch.arange(10), epoch=1, targets=y, weights=None, x_adv=x, loss_weights=lw)
    loss, _ = tr.outer_loss(tr.model, b)
    tr.model.train()
    z = tr.model(x).detach().double()
    ce = F.cross_entropy(z, y, reduction="none")
    assert float(loss.detach()) == pytest.approx(float((ce[:6].sum() + 0.25 * ce[6:].sum()) / 10), rel=1e-5)
    # and the Trainer hands exactly these factors over
    steps = record_steps(tr)
    tr.run_epoch()
    assert len(steps) == 9  # 8 batches of 12 labelled + 8 unlabelled, then 4 + 8
    for s in steps:
        assert torch.equal(s["lw"], torch.tensor([1.0] * (len(s["y"]) - 8) + [0.25] * 8))


@pytest.mark.parametrize("part", ["labelled", "unlabelled", "both"])
def test_dpls_factors_on_the_right_part(tiny_root, unl, part, monkeypatch):
    path, _, labels = unl
    lam = 0.5
    cfg = rst_cfg(targets={"kind": "dpls", "lam": lam}, rst={"fraction": 0.4, "dpls": part})
    tr = Trainer(cfg, data_root=tiny_root, unlabeled=path)
    logits = []
    orig = train_mod.difficulty.clean_logits

    def spy(model, x, dtype=None):
        z = orig(model, x, dtype)
        logits.append(z.detach().clone())
        return z

    monkeypatch.setattr(train_mod.difficulty, "clean_logits", spy)
    steps = record_steps(tr)
    tr.run_epoch()  # epoch 1: tracked, one-hot targets
    tr.run_epoch()  # epoch 2: DPLS
    n = tr.num_examples
    # the unlabelled difficulty by hand: times trained and right predictions (pseudo label) in epoch 1
    trained, right = np.zeros(N_U), np.zeros(N_U)
    for s, z in zip([s for s in steps if s["epoch"] == 1], logits):
        for i, zi in zip(s["index"][-8:].tolist(), z[-8:]):
            trained[i - n] += 1
            right[i - n] += int(zi.argmax()) == labels[i - n]
    with np.errstate(invalid="ignore"):
        d = np.where(trained > 0, 1 - right / np.maximum(trained, 1), np.nan)
    lo, hi = np.nanmin(d), np.nanmax(d)
    f_u = np.where(np.isfinite(d), 1 - (1 - lam) * (d - lo) / (hi - lo), 1.0)
    f_l = tgt.dpls_factors(tr.accumulator.scores(cfg.targets.measure), lam, 10)
    assert np.nanmin(f_u) < 1.0 and f_l.min() < 1.0  # something is smoothed
    for s in (s for s in steps if s["epoch"] == 2):
        t, i, y = s["t"], s["index"], s["y"]
        assert t.dtype == torch.float32
        true = t[torch.arange(len(y)), y].double().numpy()  # the factor on the (pseudo) label
        want_l = f_l[i[:-8].numpy()] if part != "unlabelled" else np.ones(len(i) - 8)
        want_u = f_u[(i[-8:] - n).numpy()] if part != "labelled" else np.ones(8)
        assert np.allclose(true, np.concatenate([want_l, want_u]), atol=1e-6)
        assert torch.allclose(t.sum(1), torch.ones(len(y)))


def test_resume_is_bit_exact(tiny_root, unl):
    cfg = rst_cfg(epochs=3, targets={"kind": "dpls", "lam": 0.5}, rst={"fraction": 0.4, "dpls": "both"})
    a = Trainer(cfg, data_root=tiny_root, unlabeled=unl[0])
    rows_a = [strip(a.run_epoch()) for _ in range(3)]
    b = Trainer(cfg, data_root=tiny_root, unlabeled=unl[0])
    rows_b = [strip(b.run_epoch())]
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = Trainer(cfg, data_root=tiny_root, unlabeled=unl[0])
    c.load_state_dict(load_store_file(buf))
    rows_b += [strip(c.run_epoch()) for _ in range(2)]
    assert rows_a == rows_b
    sa, sc = a.state_dict(), c.state_dict()
    assert all(torch.equal(sa["model"][k], sc["model"][k]) for k in sa["model"])
    assert torch.equal(sa["rst"]["trained"], sc["rst"]["trained"]) and sa["rst"]["pos"] == sc["rst"]["pos"]


def test_loading_and_errors(tiny_root, unl, tmp_path):
    path, images, labels = unl
    x, y = M.load_unlabeled(path, sha256_file(path))
    assert x.shape == (N_U, 3, 32, 32) and torch.equal(x, torch.from_numpy(images).permute(0, 3, 1, 2))
    x2, _ = M.load_unlabeled({"images": images.transpose(0, 3, 1, 2), "labels": labels})
    assert torch.equal(x, x2)  # NCHW given as is
    with pytest.raises(ValueError, match="sha256"):
        M.load_unlabeled(path, "0" * 64)
    with pytest.raises(KeyError, match="'labels'"):
        M.load_unlabeled({"images": images})
    with pytest.raises(ValueError, match="uint8"):
        M.load_unlabeled({"images": images.astype(np.float32), "labels": labels})
    with pytest.raises(ValueError, match=r"pseudo labels must lie in \[0, 9\]"):
        Trainer(rst_cfg(), data_root=tiny_root, unlabeled={"images": images, "labels": labels + 10})
    with pytest.raises(ValueError, match="needs pseudo-labelled data"):
        Trainer(rst_cfg(), data_root=tiny_root)
    with pytest.raises(ValueError, match="cfg.rst is None"):
        Trainer(small_cfg(), data_root=tiny_root, unlabeled=path)
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16\)"):
        Trainer(rst_cfg(), data_root=tiny_root, unlabeled={"images": images[:, :16, :16], "labels": labels})
    with pytest.raises(ValidationError, match="needs targets.kind='dpls'"):
        rst_cfg(rst={"dpls": "unlabelled"})
    with pytest.raises(ValidationError, match="both must be >= 1"):
        rst_cfg(rst={"fraction": 0.01})


def test_run_spec_carries_unlabeled_data_through_the_store(tiny_root, unl, tmp_path, monkeypatch):
    """RunSpec.unlabeled: required exactly with train.rst; its sha256, not its path, enters
    the hash; ensure() hands the file to the Trainer and refuses a changed file."""
    import shutil

    from hardex.runs.spec import RunSpec
    from hardex.runs.plan import ensure
    from hardex.runs.store import RunStore

    path = unl[0]
    cfg = rst_cfg(epochs=1, schedule={"milestones": []})
    with pytest.raises(ValidationError, match="train.rst needs pseudo-labelled data"):
        RunSpec(train=cfg)
    with pytest.raises(ValidationError, match="train.rst is not set"):
        RunSpec(train=small_cfg(), unlabeled={"file": str(path)})
    spec = RunSpec(train=cfg, unlabeled={"file": str(path)})
    assert spec.unlabeled.sha256 == sha256_file(path)
    moved = tmp_path / "elsewhere.npz"
    shutil.copy(path, moved)
    assert RunSpec(train=cfg, unlabeled={"file": str(moved)}).hash == spec.hash
    monkeypatch.setenv("HARDEX_DATA", str(tiny_root))
    [rec] = ensure([spec], RunStore(tmp_path / "runs"), progress=False)
    assert rec.metrics[-1]["epoch"] == 1
    direct = Trainer(cfg, data_root=tiny_root, unlabeled=path)
    assert strip(direct.run_epoch()) == strip(rec.metrics[-1])
    # a file changed after the spec was made is refused before training
    other = RunSpec(train=rst_cfg(epochs=1, schedule={"milestones": []}, seed=1), unlabeled={"file": str(moved)})
    np.savez(moved, images=unl[1][::-1].copy(), labels=unl[2])
    with pytest.raises(ValueError, match="has changed"):
        ensure([other], RunStore(tmp_path / "runs"), progress=False)
