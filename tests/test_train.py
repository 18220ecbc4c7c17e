"""Trainer: TRADES loss vs a float64 reference, config validation, determinism, bit-exact
resume and branching, DPLS switched on mid-run, edits; plus a CIFAR-10 check (data)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from hardex import targets as T
from hardex.config import TrainConfig
from hardex.runs.files import load_store_file
from hardex.train import Trainer, trades_loss

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_tiny_cifar(root: Path, n_train: int = 10, n_test: int = 10, seed: int = 0) -> Path:
    """root/cifar10/{train,test}/<class>/NNNN.png: 32x32 noisy images, one colour per class."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, size=(10, 3))
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = base[c][None, None, :] + rng.normal(0, 30, size=(32, 32, 3))
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_tiny_cifar(tmp_path_factory.mktemp("data"))


def small_cfg(**over) -> TrainConfig:
    base = dict(model={"name": "tiny_cnn"}, epochs=2, schedule={"milestones": [1]},
                tracking={"until_epoch": 1}, attack={"steps": 2}, batch_size=25,
                eval={"pgd_steps": 2, "subset": 30, "final_pgd_steps": [2]}, device="cpu")
    base.update(over)
    return TrainConfig(**base)


def strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds"}


# ------------------------------------------------------------------- TRADES loss


def test_trades_loss_matches_float64_reference():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 4)
    x = torch.rand(6, 12)
    x_adv = (x + 0.03 * torch.randn(6, 12)).clamp(0, 1)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    beta = 6.0
    factors = np.array([1.0, 0.9, 0.75, 0.5, 1.0, 0.6])
    soft = T.dpls_targets(y, factors, 4)
    w = torch.tensor([1.0, 0.5, 0.25, 1.0, 0.8, 0.3])

    W, b = lin.weight.detach().double(), lin.bias.detach().double()
    zn, za = x.double() @ W.T + b, x_adv.double() @ W.T + b
    ref_soft = T.dpls_targets(y, factors, 4, dtype=torch.float64)

    def ref(targets, weights):
        ln = zn - torch.logsumexp(zn, 1, keepdim=True)   # log p_nat
        la = za - torch.logsumexp(za, 1, keepdim=True)   # log p_adv
        ce = -(targets * ln).sum(1) * weights
        kl = (ln.exp() * (ln - la)).sum(1)
        return float(ce.mean() + beta * kl.mean()), float(kl.mean())

    onehot64 = torch.nn.functional.one_hot(y, 4).double()
    for targets, weights, r in [
        (y, None, ref(onehot64, torch.ones(6, dtype=torch.float64))),
        (soft, None, ref(ref_soft, torch.ones(6, dtype=torch.float64))),
        (y, w, ref(onehot64, w.double())),
    ]:
        with torch.no_grad():
            total, kl = trades_loss(lin(x), lin(x_adv), targets, beta, weights)
        assert float(total) == pytest.approx(r[0], rel=1e-5)
        assert float(kl) == pytest.approx(r[1], rel=1e-4, abs=1e-7)


# ------------------------------------------------------------------- config


@pytest.mark.parametrize("over, match", [
    (dict(targets={"kind": "dpls", "lam": 0.05}), r"lam=0.05 is outside \[1/C, 1\]"),
    (dict(targets={"kind": "ls", "lam": 1.2}), "lam=1.2 is outside"),
    (dict(attack={"eps": 1.5}), r"eps=1.5 is outside \[0, 1\]"),
    (dict(attack={"eps": -0.1}), "eps=-0.1 is outside"),
    (dict(tracking={"until_epoch": 4}), "T=4 is greater than epochs=2"),
    (dict(schedule={"milestones": [2, 5]}), r"milestones \[5\] lie beyond epochs=2"),
    (dict(dataset={"name": "imagenet"}), "unknown dataset 'imagenet'; allowed: cifar10"),
    (dict(model={"name": "vgg16"}), "unknown model 'vgg16'; allowed: preact_resnet18"),
    (dict(algorithm="fgsm"), "unknown algorithm 'fgsm'; allowed: std, pgd, trades, mart"),
    (dict(colour="red"), "colour"),
    (dict(targets={"kind": "dpls", "lam": 0.5, "measure": "margin"}), "targets.measure"),
    (dict(edits=[{"kind": "prune"}]), "exactly one of indices and rule"),
])
def test_config_validation(over, match):
    with pytest.raises(ValidationError, match=match):
        small_cfg(**over)


def test_config_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.attack.eps, c.attack.step, c.attack.steps) == (0.031, 0.031 / 4, 10)
    assert (c.optimizer.lr, c.optimizer.momentum, c.optimizer.weight_decay) == (0.1, 0.9, 5e-4)
    assert (c.epochs, c.schedule.milestones, c.batch_size) == (110, (100, 105), 128)
    assert c.attack.bn_mode == "eval" and c.tracking.until_epoch == 90
    d = TrainConfig(targets={"kind": "dpls", "lam": 0.5})
    assert d.targets_from == 91
    with pytest.raises(ValidationError):
        c.epochs = 3  # frozen
    assert hash(c) == hash(TrainConfig())


# ------------------------------------------------------------------- training


DPLS_OVER = dict(targets={"kind": "dpls", "lam": 0.5},
                 probes=[{"name": "hard", "rule": {"k": 20}},
                         {"name": "quint", "quantiles": {"n_bins": 5}, "metrics": ["clean_acc"]}])


@pytest.fixture(scope="module")
def dpls_run(tiny_root):
    """PGD-AT, tiny_cnn, 2 epochs, difficulty on epoch 1, DPLS (lam 0.5) from epoch 2."""
    tr = Trainer(small_cfg(**DPLS_OVER), data_root=tiny_root)
    first = tr.run_epoch()
    y = tr.base_train.labels
    t1, _ = tr.batch_targets(tr.base_train.index, y, epoch=1)
    second = tr.run_epoch()
    return tr, [strip(first), strip(second)], t1


def test_determinism_and_bit_exact_resume(tiny_root, dpls_run):
    a, rows_a, _ = dpls_run
    b = Trainer(small_cfg(**DPLS_OVER), data_root=tiny_root)
    assert strip(b.run_epoch()) == rows_a[0]  # two Trainers, same seed: identical metrics
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)  # as the store would
    buf.seek(0)
    c = Trainer(small_cfg(**DPLS_OVER), data_root=tiny_root)
    c.load_state_dict(load_store_file(buf))
    assert c.epoch == 1
    assert strip(c.run_epoch()) == rows_a[1]  # stop after 1, reload, continue: bit-exact
    for (k, va), vc in zip(a.model.state_dict().items(), c.model.state_dict().values()):
        assert torch.equal(va, vc), k
    for k, v in a.difficulty_arrays().items():
        np.testing.assert_array_equal(v, c.difficulty_arrays()[k])
    assert a.best_state()["epoch"] == c.best_state()["epoch"]
    assert a.final_evaluation() == c.final_evaluation()


def test_pgd_dpls_switched_on_at_epoch_2(dpls_run):
    tr, (r1, r2), t1 = dpls_run
    assert r1["tracked"] and r1["targets"] == {"kind": "dpls", "active": False}
    y = tr.base_train.labels
    assert t1 is y  # class ids = one-hot before from_epoch
    assert not r2["tracked"] and r2["targets"]["active"]
    s = tr.accumulator.scores("zero_one")
    hardest, easiest = np.argsort(-s, kind="stable")[:3], np.argsort(s, kind="stable")[:3]
    assert s[hardest].min() > s[easiest].max()
    t2, _ = tr.batch_targets(tr.base_train.index, y, epoch=2)
    onehot = torch.nn.functional.one_hot(y, 10).float()
    assert torch.equal(t2[easiest], onehot[easiest])  # easiest stay one-hot
    assert not torch.allclose(t2[hardest], onehot[hardest])  # hardest are smoothed
    h = int(np.argmax(s))
    assert float(t2[h, y[h]]) == pytest.approx(0.5)
    f = tr.difficulty_arrays()["dpls_factors"]
    assert r2["targets"]["avg_factor"] == pytest.approx(f.mean())
    assert r2["probes"]["hard"]["n"] == 20 and len(r2["probes"]["quint"]) == 5
    assert 0.0 <= r2["test_pgd_acc"] <= 1.0 and r2["train_adv_acc"] is not None


def test_branch_from_parent_equals_single_run(tiny_root, dpls_run):
    """Baseline to epoch 1; a child with DPLS from epoch 2 loading it == one DPLS run."""
    parent = Trainer(small_cfg(), data_root=tiny_root)
    parent.run_epoch()
    child = Trainer(small_cfg(**DPLS_OVER), data_root=tiny_root)
    child.load_state_dict(parent.state_dict())
    assert strip(child.run_epoch()) == dpls_run[1][1]


def test_trades_std_and_edits_run(tiny_root):
    tr = Trainer(small_cfg(algorithm="trades", epochs=2, precision="bf16",
                           edits=[{"kind": "prune", "from_epoch": 2, "rule": {"k": 30}},
                                  {"kind": "random_labels", "indices": [0, 1, 2], "seed": 3}],
                           targets={"kind": "dpr", "lam": 0.2}), data_root=tiny_root)
    r1, r2 = tr.run_epoch(), tr.run_epoch()
    assert r1["n_train"] == 100 and r2["n_train"] == 70
    assert r2["train_kl"] >= 0 and r2["targets"]["avg_weight"] <= 1.0
    assert np.isfinite(r2["train_loss"])
    std = Trainer(small_cfg(algorithm="std", epochs=1, schedule={"milestones": []},
                            targets={"kind": "ls", "lam": 0.9},
                            tracking={"until_epoch": 1}), data_root=tiny_root)
    r = std.run_epoch()
    assert r["targets"] == {"kind": "ls", "active": True, "avg_factor": 0.9}
    assert r["train_adv_acc"] is None and r["train_clean_acc"] is not None


def test_external_source_random_labels_from_epoch_1(tiny_root):
    scores = np.linspace(0, 1, 100)
    cfg = small_cfg(epochs=1, schedule={"milestones": []},
                    edits=[{"kind": "random_labels", "seed": 0,
                            "rule": {"k": 25, "measure": "zero_one", "source": "parent"}}])
    tr = Trainer(cfg, data_root=tiny_root, scores={"parent": {"zero_one": scores}})
    ds = tr.training_set(1)
    changed = np.flatnonzero(ds.labels.numpy() != tr.base_train.labels.numpy())
    assert set(changed) <= set(range(75, 100)) and len(changed) > 10
    with pytest.raises(KeyError, match="not passed"):
        Trainer(cfg, data_root=tiny_root).training_set(1)


# ------------------------------------------------------------------- real data


def _cifar_root():
    root = os.environ.get("HARDEX_DATA")
    return Path(root) if root and (Path(root) / "cifar10").exists() else None


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.skipif(_cifar_root() is None, reason="needs $HARDEX_DATA/cifar10 (offline CIFAR-10 copy)")
def test_cifar10_pgd_at_tiny_cnn_learns_robustness():
    cfg = TrainConfig(
        dataset={"name": "cifar10", "subset": {"n": 2000, "balanced": True, "seed": 0}},
        model={"name": "tiny_cnn"}, algorithm="pgd", epochs=6, schedule={"milestones": [5]},
        optimizer={"lr": 0.05}, batch_size=64, attack={"steps": 5},
        tracking={"until_epoch": 4}, targets={"kind": "dpls", "lam": 0.5},
        eval={"pgd_steps": 10, "subset": 1000, "final_pgd_steps": [10]}, device="cpu")
    tr = Trainer(cfg, data_root=_cifar_root())
    for _ in range(cfg.epochs):
        r = tr.run_epoch()
        print(f"epoch {r['epoch']}: lr {r['lr']:.3g} train_adv {r['train_adv_acc']:.3f} "
              f"test clean {r['test_clean_acc']:.3f} PGD-10 {r['test_pgd_acc']:.3f} "
              f"targets {r['targets']} ({r['seconds']:.0f} s)")
    s = tr.accumulator.scores("zero_one")
    in_train = np.isfinite(s)
    order = np.flatnonzero(in_train)[np.argsort(-s[in_train], kind="stable")]
    hard, easy = order[:3], order[-3:]
    pos = torch.as_tensor(tr._pos_of_index[np.concatenate([hard, easy])])
    y = tr.base_train.labels[pos]
    t, _ = tr.batch_targets(torch.as_tensor(np.concatenate([hard, easy])), y, epoch=cfg.epochs)
    for i, row in zip(np.concatenate([hard, easy]), t):
        print(f"index {i} difficulty {s[i]:.2f} target {np.round(row.numpy(), 3).tolist()}")
    assert r["test_pgd_acc"] > 0.15
    assert float(t[0].max()) == pytest.approx(0.5, abs=0.05) and float(t[-1].max()) == 1.0


def test_channels_last_option_same_run_up_to_fp_noise(tiny_root):
    """TrainConfig.channels_last stores the weights NHWC (hardex.fastpath) and trains the
    same run as the default layout up to floating-point noise (standard training: PGD's
    sign steps turn last-bit differences into sign flips of near-zero gradients)."""
    from hardex import fastpath

    cfg = dict(algorithm="std", epochs=1, schedule={"milestones": []})
    base = Trainer(small_cfg(**cfg), data_root=tiny_root)
    nhwc = Trainer(small_cfg(**cfg, channels_last=True), data_root=tiny_root)
    assert fastpath.is_channels_last(nhwc.model) and not fastpath.is_channels_last(base.model)
    r0, r1 = base.run_epoch(), nhwc.run_epoch()
    assert r1["train_loss"] == pytest.approx(r0["train_loss"], rel=1e-4)
    for (k, a), b in zip(base.model.state_dict().items(), nhwc.model.state_dict().values()):
        torch.testing.assert_close(b.contiguous(), a.contiguous(), rtol=1e-3, atol=1e-3, msg=k)


def test_trades_tracks_difficulty_from_its_attack_without_an_extra_forward(tiny_root):
    """TRADES (eval-mode attack): the attack's clean forward is the tracking forward, so the
    run is bit-identical to one with the separate tracking forward and makes one forward
    per tracked step fewer."""
    cfg = small_cfg(algorithm="trades", epochs=2, tracking={"until_epoch": 2})
    runs = {}
    for reuse in (True, False):
        tr = Trainer(cfg, data_root=tiny_root)
        tr.reuse_trades_clean = reuse
        assert tr._tracks_in_attack() is reuse
        calls = []
        tr.model.register_forward_hook(lambda *a: calls.append(1))
        rows = [strip(tr.run_epoch()) for _ in range(2)]
        runs[reuse] = (rows, tr.difficulty_arrays(), len(calls))
    (r1, d1, n1), (r0, d0, n0) = runs[True], runs[False]
    assert r1 == r0
    for k in d0:
        assert np.array_equal(d1[k], d0[k]), k
    steps = 2 * (100 // 25)  # tracked steps: 2 epochs of 100 examples in batches of 25
    assert n0 - n1 == steps
    # nothing to reuse where a hook needs the clean logits before the attack
    assert not Trainer(small_cfg(algorithm="trades", sat={"from_epoch": 1}), data_root=tiny_root)._tracks_in_attack()


def test_probe_el2n_sd_against_a_recomputation(tiny_root):
    """A probe's EL2N means and sample sds (clean, adversarial, adversarial - clean per
    example) equal numpy's over per-example EL2N recomputed here: the clean forward and the
    same seeded PGD on the un-augmented images, in one chunk."""
    from hardex import attacks, data
    from hardex.difficulty import per_example_losses

    tr = Trainer(small_cfg(), data_root=tiny_root)
    tr.run_epoch()
    idx = np.arange(0, 40, 2)
    out = tr._probe_metrics(idx, ("clean_acc", "adv_acc", "el2n_clean", "el2n_adv"), seed=7)
    pos = torch.as_tensor(tr._pos_of_index[idx])
    x = data.to_float(tr.base_train.images[pos])
    y = tr.base_train.labels[pos]
    a = tr.cfg.attack
    with attacks.bn_eval(tr.model), attacks.eval_precision():
        with torch.no_grad():
            clean = per_example_losses(tr.model(x), y)["el2n"].double().numpy()
        x_adv = attacks.pgd(tr.model, x, y, a.eps, a.step, a.steps, loss=a.loss, random_start=a.random_start,
                            start_std=a.start_std, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            adv = per_example_losses(tr.model(x_adv), y)["el2n"].double().numpy()
    assert out["n"] == 20
    assert out["el2n_clean"] == pytest.approx(clean.mean(), rel=1e-5)
    assert out["el2n_clean_sd"] == pytest.approx(clean.std(ddof=1), rel=1e-4)
    assert out["el2n_adv"] == pytest.approx(adv.mean(), rel=1e-5)
    assert out["el2n_adv_sd"] == pytest.approx(adv.std(ddof=1), rel=1e-4)
    assert out["el2n_gap_sd"] == pytest.approx((adv - clean).std(ddof=1), rel=1e-4)
    assert "clean_acc_sd" not in out
