"""Error bars for the book's verdicts (issue 15): paired comparisons of two models on the
same test examples, intervals across training seeds, verdicts, equivalence tests and the
minimum detectable effect of a planned comparison.

Conventions
-----------
- Inputs are per-example 0/1 outcomes (1 = correct / robust), as bit strings
  (``evaluate``'s ``per_example`` entries, ``"0110..."``), bool or 0/1 arrays. Model ``a``
  is the one the claim says is better; the **effect is acc(a) - acc(b) in accuracy points**
  (percentage points, 0-100 scale, as the paper's tables), never a fraction. Every interval
  and margin is in points too.
- Intervals are two-sided at ``level`` (default 95%), percentile intervals of a seeded
  bootstrap (``seed``, ``n_boot`` resamples) unless the method says otherwise; every result
  names its method.
- Paired, one seed: the bootstrap of the accuracy difference of paired 0/1 outcomes depends
  only on the counts of the four (a, b) cells, so examples are resampled as a multinomial
  draw of those counts: exact (the same distribution as resampling example indices) and fast.
- Several seeds (k >= 2, the same test examples for every seed): a **seed-level t-interval
  with the shared test set in quadrature** (:func:`seed_interval`). Each seed s gives a paired
  difference d_s; their mean is the effect. Its variance has two parts: what moves from seed
  to seed (the training seed's own spread plus the example noise that is not shared between
  seeds), estimated by the sample variance s^2 of the d_s with k - 1 degrees of freedom, and
  the test-set noise every seed shares (the same test images), estimated from the per-example
  differences as the mean covariance c between seeds (divided by n; many degrees of
  freedom). Var(mean d) = E[s^2] / k + c exactly. The half-width is
  sqrt((t_{k-1} s)^2 / k + (z sqrt(c))^2): each part at its own quantile, added in quadrature.
  With k = 2 or 3 the t quantile (12.7, 4.3) is what keeps the verdict honest; a percentile
  bootstrap over so few seeds (:func:`hierarchical_bootstrap`, kept for comparison) cannot
  see the seed spread and says "holds" for a true effect of 0 several times too often, and a
  Welch-Satterthwaite t (one quantile for the sum) is still too liberal at k = 2. The
  calibration by simulation (:mod:`hardex.paper.calibration`, its table in the book's
  appendix) shows the false "holds" rate at or below 2.5% for 2-5 seeds, seed spreads up to
  1.5 points and 1,000 or 10,000 test examples. :func:`t_interval` (Student t over per-seed
  numbers only) remains for callers that have nothing else.
- One training seed: the test-example bootstrap cannot see how much the effect would move
  with another training seed. ``seed_sd`` (points, a stated assumption) adds that spread:
  each bootstrap sample of the effect gets a normal draw of sd ``seed_sd`` (the convolution
  of the example distribution with the seed distribution; :func:`with_seed_noise`), so the
  interval, and so the verdict, covers both. With several seeds the seed-level interval
  measures the spread and ``seed_sd`` is not used.
- Verdicts (:func:`verdict`): **holds** when the interval lies entirely on the claimed side of
  zero, **does not hold** when entirely on the other side, **inconclusive** when it contains
  zero. Claims of "no difference" use two one-sided tests (TOST, :func:`equivalence`): holds
  when the 1 - 2 alpha (90%) interval lies inside (-margin, +margin); does not hold when the
  95% interval lies entirely outside it; inconclusive otherwise.

Pure numpy / scipy (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
N_BOOT = 4000

__all__ = [
    "Comparison", "as_outcomes", "mcnemar_exact", "paired_bootstrap", "hierarchical_bootstrap",
    "t_interval", "paired", "across_seeds", "unpaired", "equivalence", "bootstrap_mean_diff",
    "deterministic", "two_sample", "contrast", "verdict", "mde", "min_equivalence_margin", "combine", "accuracy",
    "with_seed_noise", "summary_contrast", "seed_interval", "seed_halfwidth", "proportion_interval",
]


@dataclass
class Comparison:
    """One comparison's statistics (effect, interval and margin in accuracy points)."""

    effect: float | None
    lo: float | None
    hi: float | None
    method: str
    n: int | None = None  # test (or training) examples
    seeds: int | None = None
    verdict: str = INCONCLUSIVE
    level: float = 0.95
    direction: str = ">"  # ">": the claim says effect > 0; "<": effect < 0; "=": equivalence
    margin: float | None = None
    p: float | None = None  # exact McNemar p (two-sided), where paired with one seed
    extra: dict[str, Any] = field(default_factory=dict)
    unit: str = "points"  # of effect, interval and margin ("points": accuracy points, 0-100)
    method_short: str = ""  # a few words for tables; ``method`` is the full description

    def __post_init__(self) -> None:
        if not self.method_short:
            self.method_short = short_method(self.method)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("effect", "lo", "hi", "p", "margin"):
            if d[k] is not None:
                d[k] = float(d[k]) if math.isfinite(d[k]) else None
        return d

    def interval_text(self) -> str:
        if self.effect is None:
            return "-"
        if self.lo is None or self.hi is None:
            return f"{self.effect:+.2f}"
        return f"{self.effect:+.2f} [{self.lo:+.2f}, {self.hi:+.2f}]"


_SHORT = (("equivalence", "TOST"), ("seed-level t", "seed t-interval"), ("hierarchical bootstrap", "hierarchical bootstrap"),
          ("paired bootstrap", "paired bootstrap"), ("two-sample bootstrap", "two-sample bootstrap"),
          ("t-interval", "seed t-interval"), ("unpaired binomial bootstrap of a contrast", "binomial bootstrap (contrast)"),
          ("unpaired binomial", "binomial bootstrap (unpaired)"), ("normal interval", "normal interval"),
          ("bootstrap", "bootstrap"), ("mcnemar", "McNemar test"), ("exact", "exact"))


def short_method(method: str) -> str:
    """A few words naming ``method`` for a table column (the full text goes in a tooltip or a
    footnote): the first family it names, else its first clause."""
    low = (method or "").lower()
    if low.startswith(("all of", "any of")):
        return low.split(" (", 1)[0]
    for key, name in _SHORT:
        if key in low:
            return name + (" + stated seed sd" if "seed-to-seed sd" in low else "")
    return (method or "-").split(";")[0].split(" (")[0][:40]


# --------------------------------------------------------------------------- inputs


def as_outcomes(x: Any) -> np.ndarray:
    """A bool array from a bit string ``"0101"``, a bool / 0-1 sequence or array."""
    if isinstance(x, str):
        a = np.frombuffer(x.encode(), dtype=np.uint8)
        if a.size and not np.isin(a, (48, 49)).all():
            raise ValueError("a bit string of outcomes may only contain '0' and '1'")
        return a == 49
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"outcomes must be one-dimensional, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError("outcomes must be 0/1 or bool")
        a = a.astype(bool)
    return a


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_outcomes(a), as_outcomes(b)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes need the same test examples: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("no test examples")
    return a, b


def _percentile(samples: np.ndarray, level: float) -> tuple[float, float]:
    q = (1 - level) / 2
    lo, hi = np.quantile(samples, [q, 1 - q], axis=-1)
    return float(lo), float(hi)


# --------------------------------------------------------------------------- statistics


def mcnemar_exact(a: Any, b: Any) -> dict[str, Any]:
    """Exact McNemar test of paired outcomes: ``n10`` = examples a gets right and b wrong,
    ``n01`` the reverse; two-sided p = binomial test of n10 out of n10 + n01 at 1/2
    (``scipy.stats.binomtest``); p = 1 when there are no discordant pairs."""
    a, b = _pair(a, b)
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    p = float(sps.binomtest(n10, n10 + n01, 0.5).pvalue) if n10 + n01 else 1.0
    return {"n10": n10, "n01": n01, "p": p}


def paired_bootstrap(a: Any, b: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
                     return_samples: bool = False) -> tuple[float, float] | np.ndarray:
    """Percentile interval (points) of acc(a) - acc(b) over resampled test examples: a
    multinomial resample of the four cell counts (exact; see the module docstring). The
    draws are ``np.random.default_rng(seed).multinomial(n, p_cells, size=n_boot)`` with the
    cells in the order (1,1), (1,0), (0,1), (0,0)."""
    a, b = _pair(a, b)
    n = a.size
    cells = np.array([(a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()], dtype=np.int64)
    draws = np.random.default_rng(seed).multinomial(n, cells / n, size=n_boot)
    samples = 100.0 * (draws[:, 1] - draws[:, 2]) / n
    return samples if return_samples else _percentile(samples, level)


def _diff_matrix(a_seeds: Sequence[Any], b_seeds: Sequence[Any]) -> np.ndarray:
    if len(a_seeds) != len(b_seeds) or not len(a_seeds):
        raise ValueError(f"need the same number (>= 1) of seeds for both models: {len(a_seeds)} vs {len(b_seeds)}")
    rows = [_pair(x, y) for x, y in zip(a_seeds, b_seeds)]
    n = {r[0].size for r in rows}
    if len(n) != 1:
        raise ValueError(f"every seed must be evaluated on the same test examples; sizes {sorted(n)}")
    return np.stack([x.astype(np.int8) - y.astype(np.int8) for x, y in rows])  # k x n, in {-1, 0, 1}


def hierarchical_bootstrap(a_seeds: Sequence[Any], b_seeds: Sequence[Any], n_boot: int = N_BOOT, seed: int = 0,
                           level: float = 0.95, return_samples: bool = False) -> tuple[float, float] | np.ndarray:
    """Percentile interval (points) of the mean over seeds of acc(a_s) - acc(b_s): each
    resample draws the test examples (jointly for all seeds, as a multinomial over the
    observed patterns of per-seed differences), then k seeds with replacement. With one seed
    it equals :func:`paired_bootstrap`'s distribution."""
    D = _diff_matrix(a_seeds, b_seeds)
    k, n = D.shape
    patterns, counts = np.unique(D.T, axis=0, return_counts=True)  # P x k, P
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, counts / n, size=n_boot)  # B x P
    per_seed = draws @ patterns.astype(np.float64) / n  # B x k
    if k > 1:
        pick = rng.integers(0, k, size=(n_boot, k))
        per_seed = np.take_along_axis(per_seed, pick, axis=1)
    samples = 100.0 * per_seed.mean(axis=1)
    return samples if return_samples else _percentile(samples, level)


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of per-seed differences (points): Student t with k - 1 degrees of
    freedom (``scipy.stats.t``); needs k >= 2."""
    d = np.asarray(diffs, dtype=np.float64)
    k = d.size
    if k < 2:
        raise ValueError("a t-interval needs at least 2 seeds")
    m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(k))
    h = float(sps.t.ppf(0.5 + level / 2, k - 1)) * se
    return m, m - h, m + h


def seed_halfwidth(D: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The seed-level interval's parts for per-example differences ``D`` of shape (..., k, n),
    k >= 2 seeds x n shared test examples, values in {-1, 0, 1} (a - b): (effect, half-width,
    seed-to-seed sd s, shared test-set sd sqrt(c)), all in points, one per leading index
    (the calibration passes many simulated comparisons at once). See the module docstring:
    half-width = sqrt(t_{k-1}^2 s^2 / k + z^2 c), c = max(0, mean off-diagonal covariance of
    the seeds' per-example differences) / n."""
    X = np.asarray(D, dtype=np.float64)
    k, n = X.shape[-2:]
    if k < 2:
        raise ValueError("the seed-level interval needs at least 2 seeds")
    if n < 2:
        raise ValueError("the seed-level interval needs at least 2 test examples")
    m = X.mean(axis=-1)  # (..., k): each seed's difference as a fraction
    d = 100.0 * m
    s2 = d.var(axis=-1, ddof=1)
    gram = np.einsum("...kn,...ln->...kl", X, X) / n
    cov = (gram - m[..., :, None] * m[..., None, :]) * n / (n - 1)  # covariance over examples, k x k
    off = (cov.sum(axis=(-2, -1)) - np.trace(cov, axis1=-2, axis2=-1)) / (k * (k - 1))
    c = np.maximum(off, 0.0) * 1e4 / n  # points^2: the variance of the mean the seeds share
    t = float(sps.t.ppf(0.5 + level / 2, k - 1))
    z = float(sps.norm.ppf(0.5 + level / 2))
    return d.mean(axis=-1), np.sqrt(t * t * s2 / k + z * z * c), np.sqrt(s2), np.sqrt(c)


def seed_interval(a_seeds: Sequence[Any], b_seeds: Sequence[Any], level: float = 0.95) -> tuple[float, float, float]:
    """(effect, lo, hi) in points of the mean over k >= 2 seeds of acc(a_s) - acc(b_s), every
    seed evaluated on the same test examples: :func:`seed_halfwidth`."""
    eff, h, _, _ = seed_halfwidth(_diff_matrix(a_seeds, b_seeds), level)
    return float(eff), float(eff - h), float(eff + h)


SEED_METHOD = ("seed-level t-interval over {k} per-seed paired differences ({df} df), widened in quadrature by "
               "the test-set variance the seeds share (hardex.paper.stats.seed_interval)")


def bootstrap_mean_diff(x: Any, y: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
                        scale: float = 1.0) -> tuple[float, float, float]:
    """(effect, lo, hi) of mean(x) - mean(y) for two independent samples of per-example
    values (e.g. EL2N scores of the hard and the easy set), times ``scale``: a percentile
    bootstrap resampling each sample's indices (``rng.integers``, x first, then y)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not x.size or not y.size:
        raise ValueError("both samples need at least one value")
    rng = np.random.default_rng(seed)
    mx = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    my = y[rng.integers(0, y.size, size=(n_boot, y.size))].mean(axis=1)
    lo, hi = _percentile(scale * (mx - my), level)
    return scale * float(x.mean() - y.mean()), lo, hi


# --------------------------------------------------------------------------- verdicts


def verdict(lo: float | None, hi: float | None, direction: str = ">", tol: float = 0.0) -> str:
    """holds / does not hold / inconclusive for an interval and the claimed sign of the effect.

    ``">"`` / ``"<"``: the interval must exclude 0 on the claimed side. ``">="`` / ``"<="``
    (non-inferiority, "a is not below b" within ``tol`` points): holds when the interval lies
    at or above -tol, does not hold when it lies entirely below -tol."""
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if direction in ("<", "<="):
        lo, hi = -hi, -lo
    elif direction not in (">", ">="):
        raise ValueError(f"direction must be '>', '<', '>=' or '<=', got {direction!r}")
    if direction in (">=", "<="):
        return HOLDS if lo >= -tol else FAILS if hi < -tol else INCONCLUSIVE
    return HOLDS if lo > 0 else FAILS if hi < 0 else INCONCLUSIVE


def _tost(samples: np.ndarray, margin: float, alpha: float) -> tuple[str, float, float]:
    lo90, hi90 = _percentile(samples, 1 - 2 * alpha)
    lo95, hi95 = _percentile(samples, 1 - alpha)
    if -margin < lo90 and hi90 < margin:
        return HOLDS, lo90, hi90
    if lo95 >= margin or hi95 <= -margin:
        return FAILS, lo90, hi90
    return INCONCLUSIVE, lo90, hi90


def with_seed_noise(samples: np.ndarray, seed_sd: float, seed: int = 0) -> np.ndarray:
    """Bootstrap samples of one seed's effect (points) plus a normal draw of sd ``seed_sd``
    points each (``np.random.default_rng([seed, 1]).normal``): the distribution of the effect
    when another training seed would move it by that much (module docstring)."""
    if seed_sd < 0 or not math.isfinite(seed_sd):
        raise ValueError(f"seed_sd must be a finite number of points >= 0, got {seed_sd!r}")
    if not seed_sd:
        return samples
    return samples + np.random.default_rng([seed, 1]).normal(0.0, float(seed_sd), np.shape(samples))


def _seed_note(seed_sd: float) -> str:
    return f"; + a stated seed-to-seed sd of {seed_sd:g} points (one training seed)" if seed_sd else ""


def _seed_lists(a: Any, b: Any) -> tuple[list[Any], list[Any]]:
    """([a], [b]) for one seed's outcomes, (list(a), list(b)) for per-seed lists of them."""
    multi = not isinstance(a, str) and len(a) > 0 and (isinstance(a[0], str) or np.ndim(a[0]) == 1)
    return (list(a), list(b)) if multi else ([a], [b])


def _samples(a: Any, b: Any, n_boot: int, seed: int) -> tuple[np.ndarray | None, int, int, np.ndarray]:
    """One seed: bootstrap samples of the effect, n, 1 and the effect; several seeds: (None, n,
    k, the k x n matrix of per-example differences) for :func:`seed_halfwidth`."""
    a_s, b_s = _seed_lists(a, b)
    D = _diff_matrix(a_s, b_s)
    k, n = D.shape
    if k == 1:
        return paired_bootstrap(a_s[0], b_s[0], n_boot, seed, return_samples=True), n, 1, 100.0 * D.mean(axis=1)
    return None, n, k, D


def _seed_extra(D: np.ndarray, level: float) -> tuple[float, float, float, dict[str, Any]]:
    eff, h, sd, shared = seed_halfwidth(D, level)
    per_seed = 100.0 * D.mean(axis=1)
    return float(eff), float(eff - h), float(eff + h), {
        "per_seed": [float(x) for x in per_seed], "seed_sd_observed": float(sd), "test_set_sd": float(shared)}


def paired(a: Any, b: Any, direction: str = ">", n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
           mcnemar: bool = True, tol: float = 0.0, seed_sd: float = 0.0) -> Comparison:
    """acc(a) - acc(b) on the same test examples: effect, interval, exact McNemar p and the
    verdict for the claim ``effect <direction> 0``. ``a`` and ``b`` are one seed's outcomes
    (bootstrap over test examples) or per-seed lists of them on the same test examples (the
    seed-level interval, :func:`seed_interval`; no McNemar p). ``mcnemar=False`` skips the
    p-value (simulations). ``tol``: the tolerance of a ">=" / "<=" claim (:func:`verdict`).
    ``seed_sd``: one seed's interval also covers a stated seed spread (module docstring)."""
    s, n, k, per_seed = _samples(a, b, n_boot, seed)
    if k >= 2:
        eff, lo, hi, extra = _seed_extra(per_seed, level)
        return Comparison(eff, lo, hi, SEED_METHOD.format(k=k, df=k - 1), n, k, verdict(lo, hi, direction, tol),
                          level, direction, extra=extra, method_short=f"seed t-interval ({k} seeds)")
    s = with_seed_noise(s, seed_sd, seed)
    lo, hi = _percentile(s, level)
    eff = float(per_seed.mean())
    how = f"paired bootstrap over test examples ({n_boot} resamples){_seed_note(seed_sd)}"
    short = "paired bootstrap" + (f" + stated seed sd {seed_sd:g}" if seed_sd else "")
    if mcnemar:
        a_s, b_s = _seed_lists(a, b)
        mc = mcnemar_exact(a_s[0], b_s[0])
        return Comparison(eff, lo, hi, how + "; exact McNemar p", n, 1, verdict(lo, hi, direction, tol), level,
                          direction, p=mc["p"], extra={"n10": mc["n10"], "n01": mc["n01"]}, method_short=short)
    return Comparison(eff, lo, hi, how, n, 1, verdict(lo, hi, direction, tol), level, direction, method_short=short)


def accuracy(a: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Comparison:
    """One model's accuracy (points) with its interval: one seed's outcomes (bootstrap over
    test examples) or per-seed lists (hierarchical: examples, then seeds), as a comparison
    with an all-wrong model."""
    a_s, _ = _seed_lists(a, a)
    zeros = [np.zeros(as_outcomes(x).size, dtype=bool) for x in a_s]
    c = paired(a_s if len(a_s) > 1 else a_s[0], zeros if len(a_s) > 1 else zeros[0], ">", n_boot, seed, level,
               mcnemar=False)
    c.method = c.method.replace("paired bootstrap", "bootstrap").replace("paired differences", "accuracies")
    c.method_short = c.method_short.replace("paired bootstrap", "bootstrap")
    return c


def proportion_interval(a: Any, level: float = 0.95) -> dict[str, Any]:
    """One accuracy (points) with its exact (Clopper-Pearson) interval from one set of 0/1
    outcomes (``scipy.stats.binomtest(...).proportion_ci``): valid at any n, also at 0% and
    100%, where a bootstrap interval collapses to a point. Returns ``{"acc", "lo", "hi", "k",
    "n", "level", "method"}`` (None for acc, lo, hi without outcomes)."""
    x = as_outcomes(a)
    n, k = int(x.size), int(x.sum())
    if n == 0:
        return {"acc": None, "lo": None, "hi": None, "k": 0, "n": 0, "level": level, "method": "exact (Clopper-Pearson)"}
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return {"acc": 100.0 * k / n, "lo": 100.0 * float(ci.low), "hi": 100.0 * float(ci.high), "k": k, "n": n,
            "level": level, "method": "exact (Clopper-Pearson)"}


def across_seeds(a_seeds: Sequence[Any], b_seeds: Sequence[Any], direction: str = ">", **kw: Any) -> Comparison:
    """:func:`paired` for per-seed lists of outcomes (the seed-level interval when k >= 2)."""
    return paired(list(a_seeds), list(b_seeds), direction, **kw)


def _tost_interval(lo90: float, hi90: float, lo95: float, hi95: float, margin: float) -> str:
    if -margin < lo90 and hi90 < margin:
        return HOLDS
    if lo95 >= margin or hi95 <= -margin:
        return FAILS
    return INCONCLUSIVE


def equivalence(a: Any, b: Any, margin: float, alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 0,
                seed_sd: float = 0.0) -> Comparison:
    """Is acc(a) - acc(b) within +-``margin`` points? Two one-sided tests at ``alpha``: holds
    when the 1 - 2 alpha interval lies inside (-margin, margin); does not hold when the
    1 - alpha interval lies entirely outside. One seed: the paired bootstrap (``seed_sd`` as
    in :func:`paired`); several: the seed-level interval. The stored interval is the 90% one
    (for alpha 0.05)."""
    s, n, k, per_seed = _samples(a, b, n_boot, seed)
    margin = float(margin)
    if k >= 2:
        eff, lo, hi, extra = _seed_extra(per_seed, 1 - 2 * alpha)
        _, lo95, hi95, _ = _seed_extra(per_seed, 1 - alpha)
        return Comparison(eff, lo, hi, f"equivalence within +-{margin:g} points: TOST (alpha {alpha:g}) on the "
                          + SEED_METHOD.format(k=k, df=k - 1), n, k, _tost_interval(lo, hi, lo95, hi95, margin),
                          1 - 2 * alpha, "=", margin, extra=extra, method_short=f"TOST, seed t-interval ({k} seeds)")
    s = with_seed_noise(s, seed_sd, seed)
    v, lo, hi = _tost(s, margin, alpha)
    return Comparison(float(per_seed.mean()), lo, hi, f"equivalence within +-{margin:g} points: TOST (alpha {alpha:g}) "
                      f"on the paired bootstrap{_seed_note(seed_sd)} ({n_boot} resamples)", n, 1, v, 1 - 2 * alpha, "=",
                      margin, method_short="TOST, paired bootstrap" + (f" + stated seed sd {seed_sd:g}" if seed_sd else ""))


def unpaired(acc_a: float | Sequence[float], n_a: int, acc_b: float | Sequence[float], n_b: int,
             direction: str = ">", margin: float | None = None, n_boot: int = N_BOOT, seed: int = 0,
             level: float = 0.95, tol: float = 0.0, seed_sd: float = 0.0) -> Comparison:
    """Aggregate accuracies only (fractions in [0, 1], no per-example outcomes), on ``n_a``
    and ``n_b`` examples. One seed: a parametric bootstrap of two independent binomials
    (conservative for models scored on the same examples: it ignores their positive
    correlation). Several seeds (sequences of per-seed accuracies): Student t over the per-seed
    differences, widened by the shared test set's binomial variance (as :func:`seed_interval`,
    with an upper bound for the part the seeds share). ``margin``: an equivalence claim (TOST)
    instead of a directional one.
    ``seed_sd``: one seed's interval also covers a stated seed spread (as :func:`paired`)."""
    pa, pb = np.atleast_1d(np.asarray(acc_a, float)), np.atleast_1d(np.asarray(acc_b, float))
    if pa.size != pb.size:
        raise ValueError("need the same number of seeds for both models")
    k = pa.size
    if k >= 2:
        d = 100 * (pa - pb)
        # the test set the seeds share: bounded by one seed's binomial variance of the difference
        # (no per-example outcomes to estimate it; conservative for positively correlated models)
        c = float(np.mean(1e4 * (pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)))
        method = (f"seed-level t-interval over {k} per-seed differences of aggregate accuracies ({k - 1} df), widened "
                  "in quadrature by the shared test set's binomial variance")

        def interval(lvl: float) -> tuple[float, float, float]:
            t, z = float(sps.t.ppf(0.5 + lvl / 2, k - 1)), float(sps.norm.ppf(0.5 + lvl / 2))
            h = math.sqrt(t * t * float(d.var(ddof=1)) / k + z * z * c)
            return float(d.mean()), float(d.mean()) - h, float(d.mean()) + h

        short = f"seed t-interval ({k} seeds, aggregates)"
        if margin is None:
            eff, lo, hi = interval(level)
            return Comparison(eff, lo, hi, method, int(n_a), k, verdict(lo, hi, direction, tol), level, direction,
                              method_short=short)
        eff, lo, hi = interval(2 * level - 1)
        _, lo95, hi95 = interval(level)
        return Comparison(eff, lo, hi, f"equivalence within +-{margin:g} points: TOST on the " + method, int(n_a), k,
                          _tost_interval(lo, hi, lo95, hi95, float(margin)), 2 * level - 1, "=", float(margin),
                          method_short="TOST, " + short)
    rng = np.random.default_rng(seed)
    s = 100.0 * (rng.binomial(int(n_a), pa[0], n_boot) / n_a - rng.binomial(int(n_b), pb[0], n_boot) / n_b)
    s = with_seed_noise(s, seed_sd, seed)
    eff = 100.0 * float(pa[0] - pb[0])
    method = (f"unpaired binomial bootstrap of aggregate accuracies ({n_boot} resamples; no per-example outcomes)"
              + _seed_note(seed_sd))
    if margin is not None:
        v, lo, hi = _tost(s, float(margin), (1 - level))
        return Comparison(eff, lo, hi, f"equivalence within +-{margin:g} points: TOST on the " + method,
                          int(n_a), 1, v, 1 - 2 * (1 - level), "=", float(margin))
    lo, hi = _percentile(s, level)
    return Comparison(eff, lo, hi, method, int(n_a), 1, verdict(lo, hi, direction, tol), level, direction)


def two_sample(x: Any, y: Any, direction: str = ">", n_boot: int = N_BOOT, seed: int = 0,
               level: float = 0.95, scale: float = 100.0, what: str = "") -> Comparison:
    """mean(x) - mean(y) of two independent samples of per-example values (0/1 outcomes of
    different examples, e.g. easy and hard classes, or scores such as EL2N), times ``scale``
    (100: fractions to points): :func:`bootstrap_mean_diff` and its verdict."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    eff, lo, hi = bootstrap_mean_diff(x, y, n_boot, seed, level, scale)
    return Comparison(eff, lo, hi, f"two-sample bootstrap over examples ({n_boot} resamples{'; ' + what if what else ''})",
                      int(x.size + y.size), 1, verdict(lo, hi, direction), level, direction)


def contrast(accs: Sequence[float], ns: Sequence[int], weights: Sequence[float], direction: str = ">",
             n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95, what: str = "",
             offset: float = 0.0) -> Comparison:
    """A linear contrast sum_i w_i acc_i + ``offset`` (points) of independent aggregate
    accuracies (fractions on ns[i] examples), e.g. a difference of differences (w = 1, -1, -1,
    1), or "a exceeds b by more than 50 points" (w = 1, -1, offset -50): a parametric bootstrap
    of independent binomials (unpaired; no per-example outcomes)."""
    p, n, w = (np.asarray(v, dtype=np.float64) for v in (accs, ns, weights))
    rng = np.random.default_rng(seed)
    draws = rng.binomial(n.astype(np.int64)[None, :], p[None, :], size=(n_boot, p.size)) / n
    s = 100.0 * draws @ w + offset
    lo, hi = _percentile(s, level)
    return Comparison(100.0 * float(p @ w) + offset, lo, hi, f"unpaired binomial bootstrap of a contrast of {p.size} aggregate "
                      f"accuracies ({n_boot} resamples{'; ' + what if what else ''})", int(n.min()), 1,
                      verdict(lo, hi, direction), level, direction)


def summary_contrast(means: Sequence[float], sds: Sequence[float], ns: Sequence[int], weights: Sequence[float],
                     direction: str = ">", level: float = 0.95, scale: float = 1.0, what: str = "",
                     unit: str = "points") -> Comparison:
    """A linear contrast sum_i w_i mean_i (times ``scale``) of independent sample means known
    only by their summary statistics (mean, sample sd, n; e.g. a probe set's mean EL2N and its
    sd): a normal (z) interval with standard error sqrt(sum_i w_i^2 sd_i^2 / n_i). For a paired
    difference on one set (adversarial - clean EL2N of the same examples) pass the mean
    difference and the sd of the per-example differences as one term. ``unit``: what the
    values (times ``scale``) are measured in, for the tables (e.g. ``"EL2N"``)."""
    m, sd, n, w = (np.asarray(v, dtype=np.float64) for v in (means, sds, ns, weights))
    if not (m.shape == sd.shape == n.shape == w.shape) or m.ndim != 1 or not m.size:
        raise ValueError("means, sds, ns and weights need the same (non-zero) length")
    if (n < 2).any() or (sd < 0).any():
        raise ValueError(f"need n >= 2 and sd >= 0 per term; got n {n.tolist()}, sd {sd.tolist()}")
    eff = float(scale * (w @ m))
    se = float(abs(scale) * math.sqrt(float(np.sum(w**2 * sd**2 / n))))
    h = float(sps.norm.ppf(0.5 + level / 2)) * se
    return Comparison(eff, eff - h, eff + h, f"normal interval of a contrast of {m.size} set means from their "
                      f"sds{'; ' + what if what else ''}", int(n.min()), 1, verdict(eff - h, eff + h, direction),
                      level, direction, unit=unit)


def deterministic(holds: bool, method: str = "exact (deterministic)", effect: float | None = None,
                  n: int | None = None) -> Comparison:
    """A claim that is not a noisy comparison (a deterministic fact, a seeded simulation, a
    check with its own decision rule): the verdict is the computed fact, and ``method`` says
    why no interval applies."""
    return Comparison(effect, None, None, method, n, None, HOLDS if bool(holds) else FAILS, direction="",
                      method_short="exact" if method.lower().startswith("exact") else short_method(method))


def combine(parts: Sequence[Comparison], how: str = "all") -> Comparison:
    """A compound claim: ``how="all"`` (every part must hold): holds when all hold, does not
    hold when any does not, else inconclusive. ``how="any"``: holds when one holds, does not
    hold when all do not."""
    if how not in ("all", "any"):
        raise ValueError("how must be 'all' or 'any'")
    if len(parts) == 1:
        return parts[0]
    vs = [p.verdict for p in parts]
    if how == "all":
        v = HOLDS if all(x == HOLDS for x in vs) else FAILS if FAILS in vs else INCONCLUSIVE
    elif how == "any":
        v = HOLDS if HOLDS in vs else FAILS if all(x == FAILS for x in vs) else INCONCLUSIVE
    else:
        raise ValueError("how must be 'all' or 'any'")
    ns = {p.n for p in parts if p.n is not None}
    ks = {p.seeds for p in parts if p.seeds is not None}
    methods = list(dict.fromkeys(p.method for p in parts))
    worst = min(parts, key=lambda p: -math.inf if p.lo is None else (-p.hi if p.direction in ("<", "<=") else p.lo)) \
        if parts else None
    units = {p.unit for p in parts}  # the shown effect's unit: the parts' common one
    return Comparison(None if worst is None else worst.effect, None if worst is None else worst.lo,
                      None if worst is None else worst.hi,
                      f"{how} of {len(parts)} comparisons (shown: the least favourable); " + "; ".join(methods),
                      min(ns) if ns else None, min(ks) if ks else None, v, direction=f"{how}",
                      extra={"parts": [p.to_dict() for p in parts]},
                      unit=units.pop() if len(units) == 1 else "(units differ between the parts)")


# --------------------------------------------------------------------------- power


def mde(n: int, seeds: int = 1, discordance: float = 0.2, seed_sd: float = 0.0, level: float = 0.95,
        power: float = 0.8, seed_sd_in_interval: bool = False) -> float:
    """Minimum detectable effect (points) of a paired comparison: the smallest true effect
    that gives "holds" (interval above 0) with probability ``power``.

    Model: each seed's observed effect = true effect + test-example noise + seed noise. The
    example noise of one paired difference has variance ``discordance`` / n (fraction of test
    examples on which the two models disagree; the binomial variance of d in {-1, 0, 1} at a
    small effect); it is shared by seeds evaluated on the same test set, so it does not shrink
    with k (conservative). The seed noise has sd ``seed_sd`` points per seed and shrinks as
    1/sqrt(k). With k >= 2 the interval sees both parts; with one seed it sees only the
    example part, while the estimate still carries a seed's deviation:

        MDE = z_{1-alpha/2} * se_interval + z_power * se_estimate.

    Because the test-set part does not shrink with k, more seeds do not lower the MDE here;
    they make the interval honest: with one seed and ``seed_sd`` > 0 the interval misses the
    seed spread, so "holds" comes more often than 2.5% of the time when the true effect is 0,
    unless the interval adds the stated spread itself (``seed_sd_in_interval``: the one-seed
    intervals of :func:`paired` with ``seed_sd``), which widens it as k >= 2 does.

    With k >= 2 the interval is :func:`seed_interval`'s: its half-width is
    sqrt(t_{k-1}^2 v_seed / k + z^2 var_e), where v_seed, the variance the per-seed
    differences show, is taken as seed_sd^2 + var_e (all of the example noise counted as
    not shared too: conservative, the MDE errs high).
    """
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be >= 1")
    z_b = sps.norm.ppf(power)
    var_e = 1e4 * discordance / n  # points^2
    var_true = var_e + seed_sd**2 / seeds
    return float(_halfwidth(var_e, seed_sd, seeds, level, seed_sd_in_interval) + z_b * math.sqrt(var_true))


def _halfwidth(var_e: float, seed_sd: float, seeds: int, level: float, seed_sd_in_interval: bool) -> float:
    """The expected half-width (points) of the interval a comparison of ``seeds`` seeds gets
    (the noise model of :func:`mde`)."""
    z = sps.norm.ppf(0.5 + level / 2)
    if seeds >= 2:
        t = sps.t.ppf(0.5 + level / 2, seeds - 1)
        return float(math.sqrt(t * t * (seed_sd**2 + var_e) / seeds + z * z * var_e))
    return float(z * math.sqrt(var_e + (seed_sd**2 if seed_sd_in_interval else 0.0)))


def min_equivalence_margin(n: int, seeds: int = 1, discordance: float = 0.2, seed_sd: float = 0.0,
                           alpha: float = 0.05, power: float = 0.8, seed_sd_in_interval: bool = False) -> float:
    """The smallest equivalence margin (points) that TOST (:func:`equivalence`) confirms with
    probability ``power`` when the true difference is 0 (the noise model of :func:`mde`,
    ``seed_sd_in_interval`` as there): the 1 - 2 alpha interval's half-width +
    z_{(1+power)/2} * se_estimate."""
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be >= 1")
    var_e = 1e4 * discordance / n
    var_true = var_e + seed_sd**2 / seeds
    return float(_halfwidth(var_e, seed_sd, seeds, 1 - 2 * alpha, seed_sd_in_interval)
                 + sps.norm.ppf(0.5 + power / 2) * math.sqrt(var_true))
