"""hardex.theory against independent computations: hand formulas with scipy.stats, finite
differences, Monte Carlo, brute force."""

import itertools

import numpy as np
import pytest
from scipy.stats import norm

from hardex import theory as th


def logistic_loss(w, x, b):
    return np.log1p(np.exp(-(w * x + b)))  # -log sigma(w x + b), label +1


def test_gradient_scale_is_the_logistic_gradient_per_unit_input():
    rng = np.random.default_rng(0)
    for x, b in rng.normal(size=(20, 2)) * 2:
        h = 1e-6
        fd = (logistic_loss(1 + h, x, b) - logistic_loss(1 - h, x, b)) / (2 * h)
        assert abs(fd) / abs(x) == pytest.approx(th.gradient_scale(x + b), rel=1e-6)


def test_d_std_and_d_adv_by_hand():
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    d1, d2, eps = 0.3, 1.7, 0.6
    assert th.d_std(d1, d2) == pytest.approx((1 - sig(d1)) - (1 - sig(d2)), abs=1e-15)
    assert th.d_adv(d1, d2, eps) == pytest.approx((1 - sig(d1 - eps)) - (1 - sig(d2 - eps)), abs=1e-15)


def test_definition1_vectors_reduce_to_margin_form_for_equal_norms():
    # Two inputs with the same norm and a perturbation orthogonal to both norms' change is not
    # available in general; without a perturbation the vector form is ||x|| times the margin form.
    w = np.array([0.6, 0.8])
    x1 = np.array([0.8, 0.6])
    x2 = np.array([0.0, 1.0])
    dstd, _ = th.gradient_difference_vectors(x1, x2, w, 0.0, 0.1)
    assert dstd == pytest.approx(th.d_std(w @ x1, w @ x2) * 1.0)


def test_theorem2_holds_inside_its_condition_random_points():
    rng = np.random.default_rng(1)
    d1 = rng.uniform(0, 5, 100000)
    d2 = d1 + rng.uniform(1e-3, 5, d1.size)
    eps = rng.uniform(0, 1, d1.size) * (d1 + d2) / 2
    inside = th.theorem2_condition(d1, d2, eps)
    assert inside.mean() > 0.99
    assert (th.d_std(d1, d2) < th.d_adv(d1, d2, eps))[inside].all()


def test_exact_region_boundary_is_eps_equals_d1_plus_d2():
    for d1, d2 in [(0.5, 2.0), (-0.5, 1.5), (1.0, 1.2)]:
        e = d1 + d2
        assert th.d_adv(d1, d2, e) == pytest.approx(th.d_std(d1, d2), abs=1e-14)
        assert th.d_adv(d1, d2, e * 0.99) > th.d_std(d1, d2)
        assert th.d_adv(d1, d2, e * 1.01) < th.d_std(d1, d2)
        # and D_adv peaks at eps = (d1 + d2) / 2 (Corollary 3, Eq. 5 holds up to there)
        es = np.linspace(0, 2 * e, 20001)
        assert es[np.argmax(th.d_adv(d1, d2, es))] == pytest.approx(e / 2, abs=2e-3 * e)


def test_task_validation():
    with pytest.raises(ValueError, match="beta"):
        th.GaussianTask(beta=1.5)
    with pytest.raises(ValueError, match="eps"):
        th.GaussianTask(eta=1.0, beta=0.3, eps=0.2)


def test_samplers_match_definitions():
    rng = np.random.default_rng(2)
    task = th.GaussianTask(eta=1.0, beta=0.3, eps=0.5, d=4)
    X, y = th.sample_normal(200000, task, rng)
    yx = y[:, None] * X
    np.testing.assert_allclose(yx.mean(0), [1.0, 0.3, 0.3, 0.3, 0.3, 0.0], atol=0.01)
    assert (X[:, -1] == 0).all()
    Xh, yh = th.sample_hard(200000, task, rng, "test")
    np.testing.assert_allclose((yh[:, None] * Xh).mean(0), [0.0, 0.3, 0.3, 0.3, 0.3, 0.3], atol=0.01)
    assert (Xh[:, 0] == 0).all()
    alpha = np.full(100000, 0.25)
    Xd, yd = th.sample_with_difficulty(alpha, 1 - alpha, task, rng)
    assert (yd * Xd[:, 0]).mean() == pytest.approx(0.25, abs=0.01)
    assert (yd * Xd[:, -1]).mean() == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("m,n", [(1000, 100), (500, 500), (100, 1000)])
def test_equations_8_and_9_against_scipy_hand_formulas(m, n):
    task = th.GaussianTask(eta=1.0, beta=0.3, eps=0.5, d=10, b=0.4)
    z = np.hypot(m, n)
    w0, w1 = m / z, n / z
    b, eta, beta, eps = task.b, task.eta, task.beta, task.eps

    def acc(c, w):  # Pr(w N(c, 1) + y b > 0) for equally likely y = +-1
        return 0.5 * (norm.sf(-(c + b / w)) + norm.sf(-(c - b / w)))

    e8, e9 = th.equation8(m, n, task), th.equation9(m, n, task)
    assert e8["std"] == pytest.approx(acc(eta, w0), abs=1e-12)
    assert e8["rob"] == pytest.approx(acc(eta - eps, w0), abs=1e-12)
    assert e9["std"] == pytest.approx(acc(beta * eta, w1), abs=1e-12)
    assert e9["rob"] == pytest.approx(acc(beta * eta - eps, w1), abs=1e-12)


@pytest.mark.parametrize("threat", ["none", "paper", "linf"])
@pytest.mark.parametrize("kind", ["normal", "hard"])
def test_linear_accuracy_matches_monte_carlo(kind, threat):
    task = th.GaussianTask(b=0.3)
    rng = np.random.default_rng(3)
    w = rng.normal(size=task.dim)
    w /= np.linalg.norm(w)
    p, se = th.monte_carlo_accuracy(w, task, kind, threat, 400000, rng)
    assert abs(p - th.linear_accuracy(w, task, kind, threat)) < 5 * se


def test_worst_case_perturbation_is_worst():
    task = th.GaussianTask()
    rng = np.random.default_rng(4)
    w = rng.normal(size=task.dim)
    X, y = th.sample_normal(50, task, rng)
    worst = y * ((X - task.eps * y[:, None] * np.sign(w)) @ w)
    for _ in range(200):
        delta = rng.uniform(-task.eps, task.eps, size=X.shape)
        assert (y * ((X + delta) @ w) >= worst - 1e-12).all()


def test_theorems_6_7_monotone_by_finite_differences():
    task = th.GaussianTask(b=0.5)
    m = 1000
    for n in (50, 200, 800, 1600):
        lo, hi = th.equation8(m, n, task), th.equation8(m, n + 1, task)
        assert hi["std"] < lo["std"] and hi["rob"] < lo["rob"]
    for n in (200, 800, 1600):  # for n << m b the bias saturates hard-test accuracy at exactly 1/2
        lo, hi = th.equation9(m, n, task), th.equation9(m, n + 1, task)
        assert hi["std"] > lo["std"] and hi["rob"] < lo["rob"]
    # with b = 0 the accuracies do not depend on n
    flat = th.GaussianTask(b=0.0)
    assert th.equation8(m, 10, flat)["std"] == pytest.approx(th.equation8(m, 1000, flat)["std"], abs=1e-15)


def test_corollary2_derivative_matches_finite_differences():
    task = th.GaussianTask(b=0.3)
    for m, n in [(1000, 100), (300, 900), (50, 20)]:
        h = 1e-4

        def total(nt):
            return m * th.overall_std_accuracy(m, nt, task, 1, 0) + n * th.overall_std_accuracy(m, nt, task, 0, 1)

        fd = (total(n + h) - total(n - h)) / (2 * h)
        assert th.corollary2_derivative(m, n, task) == pytest.approx(fd, rel=1e-5, abs=1e-10)


def test_corollary2_small_bias_condition_is_exact_in_the_limit():
    task = th.GaussianTask(b=1e-4)
    k = task.beta * np.exp(task.eta**2 * (1 - task.beta**2) / 2)
    m = 1000
    n_star = (k * m**3) ** (1 / 3)
    assert th.corollary2_derivative(m, int(n_star * 0.97), task) > 0
    assert th.corollary2_derivative(m, int(n_star * 1.03) + 1, task) < 0


def test_trained_linear_model_recovers_paper_weights_and_linf_weights():
    task = th.GaussianTask()
    rng = np.random.default_rng(5)
    X, y, support = th.sample_training_set(4000, 2000, task, rng)
    w = th.train_adversarial_linear(X, y, task, "paper", support=support, steps=3000)
    np.testing.assert_allclose(w, th.paper_weights(4000, 2000, task), atol=0.03)
    X, y, support = th.sample_training_set(6000, 1000, task, rng)
    w = th.train_adversarial_linear(X, y, task, "linf", steps=3000)
    np.testing.assert_allclose(w, th.linf_weights(6000, 1000, task), atol=0.03)


def test_theorem9_optimiser_against_brute_force():
    task = th.GaussianTask(eps=0.4, b=0.0)
    alpha = np.array([0.15, 0.55, 0.9])
    gamma = 1 - alpha
    budget = 0.9
    lam = th.optimise_ls_factors(alpha, gamma, task, budget=budget)
    best = -np.inf
    grid = np.linspace(0.5, 1.0, 201)
    for l1, l2 in itertools.product(grid, grid):  # third factor from the budget
        rest = budget**2 - (2 * l1 - 1) ** 2 - (2 * l2 - 1) ** 2
        if rest < 0 or rest > 1:
            continue
        cand = np.array([l1, l2, 0.5 + np.sqrt(rest) / 2])
        best = max(best, th.theorem9_objective(cand, alpha, gamma, task))
    assert th.theorem9_objective(lam, alpha, gamma, task) >= best - 1e-3
    assert np.linalg.norm(2 * lam - 1) == pytest.approx(budget, abs=1e-6)
    assert np.all(np.diff(lam[np.argsort(alpha)]) >= -1e-9)  # monotone in alpha


def test_dpls_factors_from_alpha():
    lam = th.dpls_factors_from_alpha(np.array([0.0, 0.5, 1.0]), 0.6)
    np.testing.assert_allclose(lam, [0.6, 0.8, 1.0])
    with pytest.raises(ValueError, match="lam_min"):
        th.dpls_factors_from_alpha(np.array([0.1, 0.2]), 0.4)


def test_uniform_ls_leaves_the_direction_unchanged():
    task = th.GaussianTask(eps=0.4, b=0.0)
    alpha = np.random.default_rng(6).uniform(size=50)
    np.testing.assert_allclose(th.ls_weights(np.full(50, 0.8), alpha, 1 - alpha, task),
                               th.ls_weights(np.ones(50), alpha, 1 - alpha, task), atol=1e-12)
