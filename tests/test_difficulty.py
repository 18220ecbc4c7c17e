"""Difficulty accumulators: exact recomputation, state round trip, BN untouched, ranking."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from hardex import difficulty as D


def _stream(seed=0, n=40, c=5, epochs=3, batch=8):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=g)
    out = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            out.append((idx, torch.randn(len(idx), c, generator=g) * 3, labels[idx]))
    return labels, out


def test_accumulator_equals_direct_recomputation():
    n, c = 40, 5
    labels, stream = _stream(n=n, c=c)
    acc = D.Accumulator(n, c)
    for idx, z, y in stream:
        acc.update(idx, z, y)
    sums = {m: np.zeros(n) for m in D.MEASURES}
    counts = np.zeros(n)
    votes = np.zeros((n, c), dtype=np.int64)
    for idx, z, y in stream:  # direct recomputation, float64, no shared code
        z64 = z.double().numpy()
        for j, i in enumerate(idx.tolist()):
            row = z64[j]
            p = np.exp(row - row.max())
            p /= p.sum()
            onehot = np.eye(c)[int(y[j])]
            sums["zero_one"][i] += float(row.argmax() != int(y[j]))
            sums["ce"][i] += -np.log(p[int(y[j])])
            sums["el2n"][i] += np.sqrt(((p - onehot) ** 2).sum())
            counts[i] += 1
            votes[i, row.argmax()] += 1
    assert np.array_equal(acc.counts, counts)
    np.testing.assert_array_equal(acc.scores("zero_one"), sums["zero_one"] / counts)
    np.testing.assert_allclose(acc.scores("ce"), sums["ce"] / counts, rtol=1e-5)
    np.testing.assert_allclose(acc.scores("el2n"), sums["el2n"] / counts, rtol=1e-5)
    assert np.array_equal(acc.pred_counts, votes)
    assert np.array_equal(acc.most_frequent_prediction(), votes.argmax(1))


def test_unseen_examples_are_nan_and_state_round_trip():
    acc = D.Accumulator(10, 3)
    acc.update(torch.tensor([1, 4]), torch.tensor([[3.0, 0, 0], [0, 0, 3.0]]), torch.tensor([0, 1]))
    s = acc.scores("zero_one")
    assert np.isnan(s[0]) and s[1] == 0.0 and s[4] == 1.0
    assert acc.most_frequent_prediction()[0] == -1
    acc2 = D.Accumulator.from_state_dict(acc.state_dict())
    for k, v in acc.arrays().items():
        np.testing.assert_array_equal(acc2.arrays()[k], v)
    with pytest.raises(ValueError, match="shape mismatch"):
        D.Accumulator(11, 3).load_state_dict(acc.state_dict())
    with pytest.raises(ValueError, match="unknown difficulty measure"):
        D.Accumulator(10, 3, measures=["zero_one", "margin"])


def test_minmax():
    np.testing.assert_allclose(D.minmax([2.0, 4.0, 7.0, 12.0]), [0, 0.2, 0.5, 1.0])
    out = D.minmax([np.nan, 1.0, 3.0])
    assert np.isnan(out[0]) and list(out[1:]) == [0.0, 1.0]
    assert list(D.minmax([5.0, 5.0])) == [0.0, 0.0]


def test_clean_logits_leaves_batchnorm_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(3))
    model(torch.rand(4, 3, 8, 8))  # materialise, move running stats off their init
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc = D.Accumulator(16, 3)
    x = torch.rand(16, 3, 8, 8) * 5
    z = D.clean_logits(model, x)
    acc.update(torch.arange(16), z, torch.zeros(16, dtype=torch.long))
    after = model.state_dict()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert all(m.training for m in model.modules())
    assert not z.requires_grad
    # and the logits are the eval-mode ones
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), z)


def test_external_scores(tmp_path):
    n = 6
    c = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 1.0])  # C-score style: low = hard
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "cs.npz", scores=c, labels=labels)
    s = D.load_external_scores(tmp_path / "cs.npz", n, labels=labels)
    np.testing.assert_allclose(s, 1 - c)
    assert int(np.nanargmax(s)) == 1  # lowest C-score = hardest
    with pytest.raises(ValueError, match="labels differ"):
        D.load_external_scores(tmp_path / "cs.npz", n, labels=labels[::-1].copy())
    np.savez(tmp_path / "part.npz", s=np.array([0.2, 0.8]), idx=np.array([4, 0]))
    s = D.load_external_scores(tmp_path / "part.npz", n, key="s", index_key="idx",
                               lower_is_harder=False)
    assert s[4] == 0.2 and s[0] == 0.8 and np.isnan(s[1])
    with pytest.raises(KeyError, match="no key"):
        D.load_external_scores(tmp_path / "part.npz", n)


def test_ranking_helpers():
    pytest.importorskip("hardex.data")
    s = np.array([0.5, np.nan, 0.9, 0.1, 0.7, 0.3, 0.0, 1.0])
    assert list(D.hardest(s, 2)) == [2, 7]
    assert list(D.easiest(s, 2)) == [3, 6]
    assert list(D.select(s, fraction=2 / 7, which="hard")) == [2, 7]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert list(D.hardest(s, 2, labels=labels, balanced=True)) == [2, 7]
    bins = D.quantile_bins(s, 7)
    assert sum(len(b) for b in bins) == 7
    assert list(bins[0]) == [6] and list(bins[-1]) == [7]


def test_device_buffers_match_host_path(monkeypatch):
    """The accelerator path (device buffers, folded in on read) adds exactly what the host
    path adds. Without an accelerator, the device path is called directly on CPU tensors."""
    torch.manual_seed(0)
    n, C = 40, 5
    host, dev = D.Accumulator(n, C), D.Accumulator(n, C)
    for step in range(6):
        idx = torch.randperm(n)[:16]
        z, y = torch.randn(16, C), torch.randint(0, C, (16,))
        host.update(idx, z, y)
        dev._update_device(idx, z, y)
        if step == 2:  # a read in the middle folds in what is pending, once
            assert np.array_equal(dev.counts, host.counts)
    for m in host.measures:
        np.testing.assert_allclose(dev.scores(m), host.scores(m), rtol=1e-12, equal_nan=True)
    assert np.array_equal(dev.pred_counts, host.pred_counts)
    assert np.array_equal(dev.state_dict()["counts"], host.state_dict()["counts"])
    assert dev._pending is None  # reading flushed everything
