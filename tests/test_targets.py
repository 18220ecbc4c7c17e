"""Targets: LS / DPLS against a hand computation of Algorithm 2, DPR, soft CE."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hardex import targets as T


def test_ls_matches_algorithm2_by_hand():
    # C = 10, lam = 0.9: 0.9 on the true class, 0.1 / 9 on each of the 9 others.
    t = T.ls_targets(torch.tensor([3, 0]), 0.9, 10, dtype=torch.float64)
    other = 0.1 / 9
    expected = np.full((2, 10), other)
    expected[0, 3] = 0.9
    expected[1, 0] = 0.9
    np.testing.assert_allclose(t.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.sum(1).numpy(), [1.0, 1.0], atol=1e-15)


def test_dpls_matches_algorithm2_by_hand():
    # Raw difficulty S = [2, 4, 7, 12]  ->  min-max  [0, 0.2, 0.5, 1.0]
    # lam = 0.5: factors 1 - 0.5 * S_norm = [1, 0.9, 0.75, 0.5]
    # off-class mass (1 - f) / (C - 1) with C = 4: [0, 1/30, 1/12, 1/6]
    S = np.array([2.0, 4.0, 7.0, 12.0])
    f = T.dpls_factors(S, 0.5, num_classes=4)
    np.testing.assert_allclose(f, [1.0, 0.9, 0.75, 0.5], rtol=0, atol=1e-15)
    labels = torch.tensor([0, 1, 2, 3])
    t = T.dpls_targets(labels, f, 4, dtype=torch.float64).numpy()
    expected = np.array([
        [1.0, 0.0, 0.0, 0.0],
        [1 / 30, 0.9, 1 / 30, 1 / 30],
        [1 / 12, 1 / 12, 0.75, 1 / 12],
        [1 / 6, 1 / 6, 1 / 6, 0.5],
    ])
    np.testing.assert_allclose(t, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-15)
    # easiest example exactly one-hot, hardest gets exactly lam
    assert np.array_equal(t[0], [1.0, 0.0, 0.0, 0.0])
    assert t[3, 3] == 0.5
    # average factor (Tables 9, 16, 17): (1 + 0.9 + 0.75 + 0.5) / 4
    assert T.average_factor(f) == pytest.approx(0.7875, abs=1e-15)
    assert T.average_factor(f, index=[0, 3]) == pytest.approx(0.75, abs=1e-15)


def test_dpls_unseen_examples_get_one_hot_and_constant_scores():
    f = T.dpls_factors(np.array([np.nan, 1.0, 3.0]), 0.3, 10)
    np.testing.assert_allclose(f, [1.0, 1.0, 0.3])
    f = T.dpls_factors(np.array([0.4, 0.4]), 0.3, 10)  # all equal: everyone "easiest"
    np.testing.assert_allclose(f, [1.0, 1.0])


def test_float32_rows_sum_to_one_and_in_range():
    g = torch.Generator().manual_seed(0)
    S = torch.rand(1000, generator=g).numpy()
    y = torch.randint(0, 100, (1000,), generator=g)
    t = T.dpls_targets(y, T.dpls_factors(S, 0.3, 100), 100)
    assert torch.allclose(t.sum(1), torch.ones(1000), atol=1e-6)
    assert float(t.min()) >= 0.0


@pytest.mark.parametrize("lam", [0.09, 1.01, -0.5, float("nan")])
def test_lam_validation_names_value_and_range(lam):
    with pytest.raises(ValueError, match=r"lam=.*outside \[1/C, 1\]"):
        T.ls_targets(torch.tensor([0]), lam, 10)
    with pytest.raises(ValueError, match="outside"):
        T.dpls_factors(np.array([0.0, 1.0]), lam, 10)


def test_lam_bounds_accepted():
    T.check_lam(0.1, 10)
    T.check_lam(1.0, 10)
    T.check_lam(0.01, 100)
    t = T.ls_targets(torch.tensor([2]), 0.1, 10)  # uniform
    assert torch.allclose(t, torch.full((1, 10), 0.1))


def test_dpr_weights_and_weighted_loss():
    w = T.dpr_weights(np.array([2.0, 4.0, 7.0, 12.0]), 0.5)
    np.testing.assert_allclose(w, [1.0, 0.9, 0.75, 0.5])
    with pytest.raises(ValueError):
        T.dpr_weights(np.array([0.0, 1.0]), 1.5)
    logits = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    ce = F.cross_entropy(logits.float(), y, reduction="none").double()
    got = T.soft_cross_entropy(logits, y, weights=torch.tensor(w))
    assert float(got) == pytest.approx(float((ce * torch.tensor(w)).sum() / 4), rel=1e-6)


def test_soft_cross_entropy_matches_torch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    a = T.soft_cross_entropy(logits, T.one_hot(y, 5))
    b = F.cross_entropy(logits, y)
    c = T.soft_cross_entropy(logits, y)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(c, b, atol=1e-6)
    t = T.ls_targets(y, 0.8, 5)
    # torch's label_smoothing=s puts 1-s+s/C on the true class: s/C = 0.2/4 -> s = 0.25
    d = F.cross_entropy(logits, y, label_smoothing=0.25)
    assert torch.allclose(T.soft_cross_entropy(logits, t), d, atol=1e-6)
