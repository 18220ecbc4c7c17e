"""Closed forms and simulators of the paper's theory (Sections 3.1.1, 3.2, 4.2; Appendix A).

Everything here is NumPy/SciPy on the CPU and seeded; the theory chapter of the book and
tests/test_theory.py check each formula against an independent computation.

Three models, as in the paper:

* Section 3.1.1 (Definition 1, Theorem 2, Corollary 3): a logistic model f(x) = sigma(w.x + b)
  with |w| = 1; an example's *margin* d = w.x + b. With the paper's assumption that all inputs
  have (almost) the same norm (Eq. 18), the loss-gradient norm of an example with label +1 is
  proportional to 1 - sigma(d) = sigma(-d), and an l-inf attack of size eps lowers the margin
  by eps (w.delta = -eps).
* Section 3.2 (Definitions 4, 5; Equations 8, 9; Theorems 6, 7; Corollary 2): a linear model
  sign(w.x + b) on Gaussian data with one robust feature x0, d non-robust features and one
  memorisation feature x_{d+1}, trained adversarially on m normal and n hard examples.
* Section 4.2 (Definition 8, Theorem 9): per-example robust-feature coefficients alpha_i and
  per-example label-smoothing factors lambda_i.

Two threat models appear for the linear model. The paper's derivation (Eqs. 35-37) perturbs
only the features an example *has*: x0 of a normal example, x_{d+1} of a hard one, and the
non-robust features of both ("support" below, written ``threat="paper"``). A real l-inf
adversary may move every coordinate by eps, including x_{d+1} of a normal example, whose
value is 0 (``threat="linf"``); for a linear model its worst case has the closed form
y w.(x + delta) = y w.x - eps * ||w||_1. The chapter shows both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy.special import expit
from scipy.stats import norm

Threat = Literal["none", "paper", "linf"]
Kind = Literal["normal", "hard"]

# --------------------------------------------------------------------------------------
# Section 3.1.1: gradient-norm differences of a hard and an easy example
# --------------------------------------------------------------------------------------


def gradient_scale(margin: np.ndarray | float) -> np.ndarray:
    """|dL/dw| / ||x|| for a label-+1 example with margin d = w.x + b: 1 - sigma(d) (Eq. 12)."""
    return expit(-np.asarray(margin, dtype=float))


def d_std(d1, d2) -> np.ndarray:
    """D_std(x1, x2) of Definition 1 under the equal-norm assumption (Eq. 21, numerator)."""
    return gradient_scale(d1) - gradient_scale(d2)


def d_adv(d1, d2, eps) -> np.ndarray:
    """D_adv(x1, x2, eps): both margins lowered by eps (w.delta = -eps, Eq. 21, denominator)."""
    eps = np.asarray(eps, dtype=float)
    return gradient_scale(np.asarray(d1) - eps) - gradient_scale(np.asarray(d2) - eps)


def theorem2_condition(d1, d2, eps) -> np.ndarray:
    """The sufficient condition of Theorem 2: d1 >= 0 and 0 < eps < (d1 + d2) / 2."""
    d1, d2, eps = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (d1, d2, eps)))
    return (d1 >= 0) & (eps > 0) & (eps < (d1 + d2) / 2)


def theorem2_exact_region(d1, d2, eps) -> np.ndarray:
    """Where D_std < D_adv holds exactly (for d1 < d2 and eps > 0): eps < d1 + d2.

    h(x) = sigma(-x) - sigma(-x - a) with a = d2 - d1 > 0 is symmetric about x = -a/2 and
    unimodal, and D_std = h(d1), D_adv = h(d1 - eps); so h(d1 - eps) > h(d1) exactly when
    |d1 - eps + a/2| < |d1 + a/2|, i.e. 0 < eps < d1 + d2. Theorem 2's condition
    (eps < (d1 + d2)/2) is the half of this interval on which h is also monotone.
    """
    d1, d2, eps = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (d1, d2, eps)))
    return (d1 < d2) & (eps > 0) & (eps < d1 + d2)


def gradient_difference_vectors(x1, x2, w, b, eps) -> tuple[float, float]:
    """Definition 1 literally, for vectors: (D_std, D_adv) with delta = -eps * w / ||w||^2.

    Used to show that the margin form above is Definition 1 when ||x1|| = ||x2|| and the
    perturbation leaves the norms equal (the paper's Eq. 18 assumption).
    """
    x1, x2, w = (np.asarray(v, dtype=float) for v in (x1, x2, w))
    delta = -eps * w / np.dot(w, w)

    def gnorm(x):
        return np.linalg.norm((1 - expit(np.dot(w, x) + b)) * x)

    return gnorm(x1) - gnorm(x2), gnorm(x1 + delta) - gnorm(x2 + delta)


# --------------------------------------------------------------------------------------
# Section 3.2: Gaussian data with robust, non-robust and memorisation features
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianTask:
    """Parameters of Definitions 4, 5 and 8.

    eta: mean of the robust feature; beta: relative strength of the d non-robust features
    (0 < beta < 1); eps: the adversary's l-inf budget, with beta*eta < eps < eta so that x0
    is robust and x_1..x_d are not; d: number of non-robust features; b: the classifier's
    bias at test time (the theorems' monotonicity is strict only for b != 0; for b = 0 the
    normal-test and hard-test accuracies of Eqs. 8 and 9 do not depend on n at all).
    """

    eta: float = 1.0
    beta: float = 0.3
    eps: float = 0.5
    d: int = 10
    b: float = 0.5

    def __post_init__(self):
        if not 0 < self.beta < 1:
            raise ValueError(f"beta={self.beta} must satisfy 0 < beta < 1")
        if not self.beta * self.eta < self.eps < self.eta:
            raise ValueError(
                f"eps={self.eps} must satisfy beta*eta={self.beta * self.eta} < eps < eta={self.eta}"
            )
        if self.d < 1:
            raise ValueError(f"d={self.d} must be >= 1")

    @property
    def dim(self) -> int:
        return self.d + 2


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def sample_normal(n: int, task: GaussianTask, rng: np.random.Generator):
    """Definition 4: x0 ~ N(eta y, 1), x_1..d ~ N(beta eta y, 1), x_{d+1} = 0. Returns (X, y)."""
    y = _labels(n, rng)
    X = np.empty((n, task.dim))
    X[:, 0] = rng.normal(task.eta * y, 1.0)
    X[:, 1 : task.d + 1] = rng.normal(task.beta * task.eta * y[:, None], 1.0, size=(n, task.d))
    X[:, task.d + 1] = 0.0
    return X, y


def sample_hard(n: int, task: GaussianTask, rng: np.random.Generator, phase: str = "train"):
    """Definition 5: x0 = 0, x_1..d ~ N(beta eta y, 1), x_{d+1} ~ N(eta y, 1) in training and
    N(beta eta y, 1) on unseen test data. Returns (X, y)."""
    if phase not in ("train", "test"):
        raise ValueError(f"phase={phase!r}; allowed: 'train', 'test'")
    y = _labels(n, rng)
    X = np.empty((n, task.dim))
    X[:, 0] = 0.0
    X[:, 1 : task.d + 1] = rng.normal(task.beta * task.eta * y[:, None], 1.0, size=(n, task.d))
    mem = task.eta if phase == "train" else task.beta * task.eta
    X[:, task.d + 1] = rng.normal(mem * y, 1.0)
    return X, y


def sample_with_difficulty(alpha, gamma, task: GaussianTask, rng: np.random.Generator, phase="train"):
    """Definition 8: x0 ~ N(alpha_i eta y, 1), x_1..d ~ N(beta eta y, 1), and x_{d+1} ~
    N(gamma_i eta y, 1) in training, N(beta eta y, 1) on unseen data. Returns (X, y)."""
    alpha = np.asarray(alpha, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    if alpha.shape != gamma.shape or alpha.ndim != 1:
        raise ValueError("alpha and gamma must be 1-D arrays of the same length")
    if phase not in ("train", "test"):
        raise ValueError(f"phase={phase!r}; allowed: 'train', 'test'")
    n = alpha.size
    y = _labels(n, rng)
    X = np.empty((n, task.dim))
    X[:, 0] = rng.normal(alpha * task.eta * y, 1.0)
    X[:, 1 : task.d + 1] = rng.normal(task.beta * task.eta * y[:, None], 1.0, size=(n, task.d))
    mem = gamma * task.eta if phase == "train" else np.full(n, task.beta * task.eta)
    X[:, task.d + 1] = rng.normal(mem * y, 1.0)
    return X, y


def paper_weights(m: int, n: int, task: GaussianTask) -> np.ndarray:
    """w_adv of Eq. 8: w0 = m / (Z (m+n)), w_1..d = 0, w_{d+1} = n / (Z (m+n)), ||w|| = 1."""
    if m < 0 or n < 0 or m + n == 0:
        raise ValueError(f"need m, n >= 0 and m + n > 0, got m={m}, n={n}")
    w = np.zeros(task.dim)
    z = np.hypot(m, n)
    w[0], w[task.d + 1] = m / z, n / z
    return w


def _test_moments(task: GaussianTask, kind: Kind):
    """Per-coordinate mean of y*x and variance of x for unseen test examples of a kind."""
    mean = np.zeros(task.dim)
    var = np.zeros(task.dim)
    mean[1 : task.d + 1] = task.beta * task.eta
    var[1 : task.d + 1] = 1.0
    if kind == "normal":
        mean[0], var[0] = task.eta, 1.0
    elif kind == "hard":
        mean[task.d + 1], var[task.d + 1] = task.beta * task.eta, 1.0
    else:
        raise ValueError(f"kind={kind!r}; allowed: 'normal', 'hard'")
    return mean, var


def perturbation_mask(task: GaussianTask, kind: Kind, threat: Threat) -> np.ndarray:
    """Which coordinates the adversary may move by eps, per threat model."""
    if threat == "none":
        return np.zeros(task.dim, dtype=bool)
    if threat == "linf":
        return np.ones(task.dim, dtype=bool)
    if threat == "paper":
        _, var = _test_moments(task, kind)
        return var > 0  # the features this kind of example has
    raise ValueError(f"threat={threat!r}; allowed: 'none', 'paper', 'linf'")


def linear_accuracy(w, task: GaussianTask, kind: Kind, threat: Threat = "none", b: float | None = None) -> float:
    """Exact accuracy of sign(w.x + b) on unseen examples of a kind, under a worst-case attack.

    y w.x is Gaussian with mean w.mu and variance sum_j w_j^2 var_j; the worst perturbation
    in the allowed coordinates lowers it by eps * sum_{j allowed} |w_j|; the two classes are
    equally likely, and the bias enters as +b for y = +1 and -b for y = -1.
    Eqs. 8 and 9 are this function at w = paper_weights(m, n) with threat="paper".
    """
    w = np.asarray(w, dtype=float)
    b = task.b if b is None else b
    mean, var = _test_moments(task, kind)
    mask = perturbation_mask(task, kind, threat)
    mu = float(w @ mean) - task.eps * float(np.abs(w[mask]).sum())
    sd = float(np.sqrt(np.sum(w**2 * var)))
    if sd == 0:
        return 0.5 * (float(mu + b > 0) + float(mu - b > 0))
    return 0.5 * (norm.cdf((mu + b) / sd) + norm.cdf((mu - b) / sd))


def equation8(m: int, n: int, task: GaussianTask) -> dict[str, float]:
    """Eq. 8: standard and robust accuracy on normal test data of the model trained on (m, n)."""
    w = paper_weights(m, n, task)
    return {
        "std": linear_accuracy(w, task, "normal", "none"),
        "rob": linear_accuracy(w, task, "normal", "paper"),
    }


def equation9(m: int, n: int, task: GaussianTask) -> dict[str, float]:
    """Eq. 9: standard and robust accuracy on hard test data of the model trained on (m, n)."""
    w = paper_weights(m, n, task)
    return {
        "std": linear_accuracy(w, task, "hard", "none"),
        "rob": linear_accuracy(w, task, "hard", "paper"),
    }


def monte_carlo_accuracy(
    w, task: GaussianTask, kind: Kind, threat: Threat, n_samples: int, rng: np.random.Generator, b: float | None = None
) -> tuple[float, float]:
    """Accuracy on fresh samples with the worst-case perturbation applied explicitly.

    The perturbation is delta_j = -eps * y * sign(w_j) on the allowed coordinates (the
    maximiser of the loss for a linear model, by Hoelder's inequality). Returns (accuracy,
    standard error).
    """
    w = np.asarray(w, dtype=float)
    b = task.b if b is None else b
    if kind == "normal":
        X, y = sample_normal(n_samples, task, rng)
    else:
        X, y = sample_hard(n_samples, task, rng, phase="test")
    mask = perturbation_mask(task, kind, threat)
    delta = -task.eps * y[:, None] * np.sign(w)[None, :] * mask[None, :]
    correct = np.sign((X + delta) @ w + b) == y
    p = float(correct.mean())
    return p, float(np.sqrt(max(p * (1 - p), 1e-12) / n_samples))


def linf_weights(m: int, n: int, task: GaussianTask) -> np.ndarray | None:
    """Weights of the model adversarially trained on (m, n) against a plain l-inf attack.

    With the hinge in its linear part (the paper's assumption), the objective is
    -E[y w.x] + eps ||w||_1 on the unit sphere, minimised by soft-thresholding the feature
    means: w_j ~ sign(mu_j) (|mu_j| - eps)_+ with mu_0 = m eta/(m+n), mu_{d+1} = n eta/(m+n)
    and mu_i = beta eta (< eps, so the non-robust weights vanish). Returns None when every
    mean is within eps of zero (the objective is then minimised by w = 0, not on the sphere).
    """
    mu = np.zeros(task.dim)
    mu[0] = m * task.eta / (m + n)
    mu[1 : task.d + 1] = task.beta * task.eta
    mu[task.d + 1] = n * task.eta / (m + n)
    w = np.sign(mu) * np.clip(np.abs(mu) - task.eps, 0, None)
    nrm = np.linalg.norm(w)
    return w / nrm if nrm > 1e-12 else None


def train_adversarial_linear(
    X,
    y,
    task: GaussianTask,
    threat: Threat = "paper",
    support=None,
    margin: float = 1e3,
    steps: int = 3000,
    lr: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """Adversarially train a unit-norm linear model on samples by projected subgradient descent.

    Objective (Eq. 34 with the inner maximisation in closed form):
        mean_i max(0, margin - y_i w.x_i + eps * sum_{j in A_i} |w_j|)  s.t.  ||w||_2 = 1,
    where A_i are the coordinates the adversary may move for example i: all of them for
    threat="linf"; for threat="paper" the features example i has (``support``, a boolean
    array N x dim; defaults to the nonzero entries of X). The paper drops the hinge by
    assuming ||x|| <= 1 (Eq. 35); the large default ``margin`` keeps every example in the
    hinge's linear part, which is the same assumption for unnormalised Gaussian inputs.
    The bias is 0 in training, as in the paper's derivation.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if threat == "linf":
        A = np.ones_like(X, dtype=bool)
    elif threat == "paper":
        A = (X != 0) if support is None else np.asarray(support, dtype=bool)
    else:
        raise ValueError(f"threat={threat!r}; allowed for training: 'paper', 'linf'")
    rng = np.random.default_rng(seed)
    w = rng.normal(size=X.shape[1])
    w /= np.linalg.norm(w)
    yX = y[:, None] * X
    Af = A.astype(float)
    for t in range(steps):
        active = (margin - yX @ w + task.eps * (Af @ np.abs(w))) > 0
        if not active.any():
            break
        grad = (-yX[active].sum(0) + task.eps * Af[active].sum(0) * np.sign(w)) / len(y)
        w = w - lr / np.sqrt(t + 1) * grad
        w /= np.linalg.norm(w)
    return w


def sample_training_set(m: int, n: int, task: GaussianTask, rng: np.random.Generator):
    """m normal and n hard training examples (Definitions 4, 5), with each example's support."""
    Xn, yn = sample_normal(m, task, rng)
    Xh, yh = sample_hard(n, task, rng, phase="train")
    X = np.vstack([Xn, Xh])
    y = np.concatenate([yn, yh])
    support = np.zeros_like(X, dtype=bool)
    support[:, 1 : task.d + 1] = True
    support[:m, 0] = True
    support[m:, task.d + 1] = True
    return X, y, support


# --------------------------------------------------------------------------------------
# Corollary 2: overall standard accuracy against the condition n^3 <= beta m^3
# --------------------------------------------------------------------------------------


def overall_std_accuracy(m: int, n_train: float, task: GaussianTask, mix_normal: float, mix_hard: float) -> float:
    """Standard accuracy on a test mixture (weights mix_normal : mix_hard) of the model trained
    on m normal and n_train hard examples (n_train may be fractional for derivatives)."""
    z = np.hypot(m, n_train)
    w = np.zeros(task.dim)
    w[0], w[task.d + 1] = m / z, n_train / z
    a_n = linear_accuracy(w, task, "normal", "none")
    a_h = linear_accuracy(w, task, "hard", "none") if n_train > 0 else 0.5
    return (mix_normal * a_n + mix_hard * a_h) / (mix_normal + mix_hard)


def corollary2_derivative(m: int, n: int, task: GaussianTask) -> float:
    """d/dn of m*A_normal(n) + n*A_hard(n) at fixed test mixture m:n (the sum in Eq. 64),
    in closed form: A(g) = (Phi(c + g) + Phi(c - g))/2 with g = b/w_k, so
    dA/dn = (phi(c + g) - phi(c - g))/2 * dg/dn."""
    b, eta, beta = task.b, task.eta, task.beta
    r = np.hypot(m, n)
    g_n = b * r / m
    dg_n = b * n / (m * r)
    g_h = b * r / n
    dg_h = -b * m**2 / (n**2 * r)
    d_normal = 0.5 * (norm.pdf(eta + g_n) - norm.pdf(eta - g_n)) * dg_n
    d_hard = 0.5 * (norm.pdf(beta * eta + g_h) - norm.pdf(beta * eta - g_h)) * dg_h
    return float(m * d_normal + n * d_hard)


def corollary2_condition(m, n, task: GaussianTask) -> np.ndarray:
    """The paper's sufficient condition for the overall standard accuracy to rise with n."""
    return np.asarray(n, dtype=float) ** 3 <= task.beta * np.asarray(m, dtype=float) ** 3


def corollary2_small_bias_condition(m, n, task: GaussianTask) -> np.ndarray:
    """The first-order condition with the Gaussian factors kept: to first order in g,
    phi(c + g) - phi(c - g) = -2 g c phi(c), so the sum of Eq. 64 is positive iff
    n^3 < beta * exp(eta^2 (1 - beta^2) / 2) * m^3. The paper's Taylor step drops the ratio
    phi(beta eta) / phi(eta) = exp(eta^2 (1 - beta^2) / 2)."""
    k = task.beta * np.exp(task.eta**2 * (1 - task.beta**2) / 2)
    return np.asarray(n, dtype=float) ** 3 < k * np.asarray(m, dtype=float) ** 3


# --------------------------------------------------------------------------------------
# Section 4.2, Theorem 9: per-example label-smoothing factors
# --------------------------------------------------------------------------------------


def ls_weights(lam, alpha, gamma, task: GaussianTask) -> np.ndarray:
    """Unit-norm weight of the model adversarially trained (paper threat model) on Definition-8
    data with per-example LS factors lam (Appendix A.4): a binary LS factor lam turns the label
    y into (2 lam - 1) y in the linear loss, so
        w0 ~ sum_i (2 lam_i - 1)(alpha_i eta - eps),  w_{d+1} ~ sum_i (2 lam_i - 1)(gamma_i eta - eps),
    and the non-robust weights are 0 as in Eq. 37."""
    c = 2 * np.asarray(lam, dtype=float) - 1
    u0 = float(c @ (np.asarray(alpha) * task.eta - task.eps))
    u1 = float(c @ (np.asarray(gamma) * task.eta - task.eps))
    w = np.zeros(task.dim)
    w[0], w[task.d + 1] = u0, u1
    nrm = np.linalg.norm(w)
    return w / nrm if nrm > 0 else w


def theorem9_objective(lam, alpha, gamma, task: GaussianTask) -> float:
    """The quantity the proof of Theorem 9 maximises (Eq. 67): Z (w0 - w_{d+1}) =
    sum_i (2 lam_i - 1) (alpha_i - gamma_i) eta, before the normalisation Z."""
    return float(np.sum((2 * np.asarray(lam) - 1) * (np.asarray(alpha) - np.asarray(gamma)) * task.eta))


def optimise_ls_factors(alpha, gamma, task: GaussianTask, budget: float, seed: int = 0) -> np.ndarray:
    """Per-example LS factors in [0.5, 1] that maximise Theorem 9's objective numerically.

    The objective is linear in lam, so (as in the proof, where the normalisation Z fixes the
    scale) it is maximised under a fixed Euclidean budget ||2 lam - 1||_2 = budget; without a
    budget every factor would simply be 1. Solved with SLSQP from a random feasible start.
    """
    alpha = np.asarray(alpha, dtype=float)
    k = alpha.size
    rng = np.random.default_rng(seed)
    if not 0 < budget <= np.sqrt(k):
        raise ValueError(f"budget={budget} must lie in (0, sqrt(k)={np.sqrt(k):.3f}]")
    x0 = rng.uniform(0.5, 1.0, size=k)
    scale = budget / np.linalg.norm(2 * x0 - 1)
    x0 = np.clip(0.5 + (x0 - 0.5) * scale, 0.5, 1.0)
    res = optimize.minimize(
        lambda lam: -theorem9_objective(lam, alpha, gamma, task),
        x0,
        jac=lambda lam: -2 * (alpha - np.asarray(gamma)) * task.eta,
        bounds=[(0.5, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda lam: np.linalg.norm(2 * lam - 1) - budget,
                      "jac": lambda lam: 2 * (2 * lam - 1) / max(np.linalg.norm(2 * lam - 1), 1e-12)}],
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    if not res.success:
        raise RuntimeError(f"SLSQP did not converge: {res.message}")
    return res.x


def robust_accuracy_with_difficulty(w, alpha_test, task: GaussianTask) -> float:
    """Mean robust accuracy of sign(w.x) (bias 0) on unseen Definition-8 examples with robust
    coefficients alpha_test, under the worst l-inf attack. At test time every coordinate of
    such an example is a feature it has (x_{d+1} ~ N(beta eta y, 1)), so the paper's threat
    model and plain l-inf coincide: the margin drops by eps * ||w||_1."""
    w = np.asarray(w, dtype=float)
    alpha_test = np.asarray(alpha_test, dtype=float)
    mean_other = task.beta * task.eta * (w[1 : task.d + 1].sum() + w[task.d + 1])
    mu = w[0] * alpha_test * task.eta + mean_other - task.eps * np.abs(w).sum()
    sd = np.linalg.norm(w)
    return float(norm.cdf(mu / sd).mean())


def dpls_factors_from_alpha(alpha, lam_min: float) -> np.ndarray:
    """DPLS factors (Algorithm 2) with difficulty S = min-max normalised (1 - alpha): the easiest
    example (largest alpha) gets 1, the hardest gets lam_min. In the toy model the factor is a
    binary-label LS factor, so lam_min must lie in [1/2, 1]."""
    if not 0.5 <= lam_min <= 1:
        raise ValueError(f"lam_min={lam_min} must lie in [0.5, 1] for two classes")
    alpha = np.asarray(alpha, dtype=float)
    span = alpha.max() - alpha.min()
    s = (alpha.max() - alpha) / span if span > 0 else np.zeros_like(alpha)
    return 1 - (1 - lam_min) * s
