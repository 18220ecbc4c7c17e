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
- Several seeds (the same test examples for every seed): a **hierarchical bootstrap** --
  resample the test examples (jointly for all seeds: the test set is shared, so its noise is
  too), then resample the seeds with replacement, and average the per-seed differences. The
  joint example resample is a multinomial draw over the observed patterns of per-seed
  differences d_s in {-1, 0, 1}^k, exact as above. :func:`t_interval` (Student t over the
  per-seed differences) is the alternative when only per-seed numbers exist.
- One training seed: the test-example bootstrap cannot see how much the effect would move
  with another training seed. ``seed_sd`` (points, a stated assumption) adds that spread:
  each bootstrap sample of the effect gets a normal draw of sd ``seed_sd`` (the convolution
  of the example distribution with the seed distribution; :func:`with_seed_noise`), so the
  interval, and so the verdict, covers both. With several seeds the hierarchical bootstrap
  sees the seeds and ``seed_sd`` is not used.
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
    "with_seed_noise", "summary_contrast", "proportion_interval",
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


def _samples(a: Any, b: Any, n_boot: int, seed: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Bootstrap samples of the effect, n, k and the per-seed effects for single or per-seed inputs."""
    a_s, b_s = _seed_lists(a, b)
    D = _diff_matrix(a_s, b_s)
    k, n = D.shape
    if k == 1:
        s = paired_bootstrap(a_s[0], b_s[0], n_boot, seed, return_samples=True)
    else:
        s = hierarchical_bootstrap(a_s, b_s, n_boot, seed, return_samples=True)
    return s, n, k, 100.0 * D.mean(axis=1)


def paired(a: Any, b: Any, direction: str = ">", n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95,
           mcnemar: bool = True, tol: float = 0.0, seed_sd: float = 0.0) -> Comparison:
    """acc(a) - acc(b) on the same test examples: effect, bootstrap interval, exact McNemar p
    and the verdict for the claim ``effect <direction> 0``. ``a`` and ``b`` are one seed's
    outcomes or per-seed lists of them (same test examples): then the hierarchical
    bootstrap and no McNemar p (see :func:`across_seeds`). ``mcnemar=False`` skips the
    p-value (simulations). ``tol``: the tolerance of a ">=" / "<=" claim (:func:`verdict`).
    ``seed_sd``: one seed's interval also covers a stated seed spread (module docstring)."""
    s, n, k, per_seed = _samples(a, b, n_boot, seed)
    if k == 1:
        s = with_seed_noise(s, seed_sd, seed)
    lo, hi = _percentile(s, level)
    eff = float(per_seed.mean())
    if k == 1 and mcnemar:
        a_s, b_s = _seed_lists(a, b)
        mc = mcnemar_exact(a_s[0], b_s[0])
        return Comparison(eff, lo, hi, f"paired bootstrap over test examples ({n_boot} resamples){_seed_note(seed_sd)}; "
                          "exact McNemar p", n, 1, verdict(lo, hi, direction, tol), level, direction, p=mc["p"],
                          extra={"n10": mc["n10"], "n01": mc["n01"]})
    if k == 1:
        return Comparison(eff, lo, hi, f"paired bootstrap over test examples ({n_boot} resamples){_seed_note(seed_sd)}",
                          n, 1, verdict(lo, hi, direction, tol), level, direction)
    return Comparison(eff, lo, hi, f"hierarchical bootstrap: test examples, then {k} seeds ({n_boot} resamples)",
                      n, k, verdict(lo, hi, direction, tol), level, direction,
                      extra={"per_seed": [float(x) for x in per_seed]})


def accuracy(a: Any, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Comparison:
    """One model's accuracy (points) with its interval: one seed's outcomes (bootstrap over
    test examples) or per-seed lists (hierarchical: examples, then seeds), as a comparison
    with an all-wrong model."""
    a_s, _ = _seed_lists(a, a)
    zeros = [np.zeros(as_outcomes(x).size, dtype=bool) for x in a_s]
    c = paired(a_s if len(a_s) > 1 else a_s[0], zeros if len(a_s) > 1 else zeros[0], ">", n_boot, seed, level,
               mcnemar=False)
    c.method = c.method.replace("paired bootstrap", "bootstrap")
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
    """:func:`paired` for per-seed lists of outcomes (hierarchical bootstrap when k >= 2)."""
    return paired(list(a_seeds), list(b_seeds), direction, **kw)


def equivalence(a: Any, b: Any, margin: float, alpha: float = 0.05, n_boot: int = N_BOOT, seed: int = 0,
                seed_sd: float = 0.0) -> Comparison:
    """Is acc(a) - acc(b) within +-``margin`` points? Two one-sided tests at ``alpha`` via the
    bootstrap: holds when the 1 - 2 alpha interval lies inside (-margin, margin). ``a``/``b``
    as in :func:`paired`. The stored interval is the 90% one (for alpha 0.05). ``seed_sd``:
    as in :func:`paired`."""
    s, n, k, per_seed = _samples(a, b, n_boot, seed)
    if k == 1:
        s = with_seed_noise(s, seed_sd, seed)
    v, lo, hi = _tost(s, float(margin), alpha)
    how = ("paired bootstrap" + _seed_note(seed_sd)) if k == 1 else f"hierarchical bootstrap ({k} seeds)"
    return Comparison(float(per_seed.mean()), lo, hi, f"equivalence within +-{margin:g} points: TOST (alpha {alpha:g}) "
                      f"on the {how} ({n_boot} resamples)", n, k, v, 1 - 2 * alpha, "=", float(margin))


def unpaired(acc_a: float | Sequence[float], n_a: int, acc_b: float | Sequence[float], n_b: int,
             direction: str = ">", margin: float | None = None, n_boot: int = N_BOOT, seed: int = 0,
             level: float = 0.95, tol: float = 0.0, seed_sd: float = 0.0) -> Comparison:
    """Aggregate accuracies only (fractions in [0, 1], no per-example outcomes), on ``n_a``
    and ``n_b`` examples. One seed: a parametric bootstrap of two independent binomials
    (conservative for models scored on the same examples: it ignores their positive
    correlation). Several seeds (sequences of per-seed accuracies): Student t over the per-seed
    differences. ``margin``: an equivalence claim (TOST) instead of a directional one.
    ``seed_sd``: one seed's interval also covers a stated seed spread (as :func:`paired`)."""
    pa, pb = np.atleast_1d(np.asarray(acc_a, float)), np.atleast_1d(np.asarray(acc_b, float))
    if pa.size != pb.size:
        raise ValueError("need the same number of seeds for both models")
    k = pa.size
    if k >= 2:
        d = 100 * (pa - pb)
        method = f"t-interval over {k} per-seed differences (aggregate accuracies)"
        if margin is None:
            eff, lo, hi = t_interval(d, level)
            return Comparison(eff, lo, hi, method, int(n_a), k, verdict(lo, hi, direction), level, direction)
        eff, lo, hi = t_interval(d, 2 * level - 1)
        _, lo95, hi95 = t_interval(d, level)
        v = HOLDS if -margin < lo and hi < margin else FAILS if lo95 >= margin or hi95 <= -margin else INCONCLUSIVE
        return Comparison(eff, lo, hi, f"equivalence within +-{margin:g} points: TOST on the " + method,
                          int(n_a), k, v, 2 * level - 1, "=", float(margin))
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
                     direction: str = ">", level: float = 0.95, scale: float = 1.0, what: str = "") -> Comparison:
    """A linear contrast sum_i w_i mean_i (times ``scale``) of independent sample means known
    only by their summary statistics (mean, sample sd, n; e.g. a probe set's mean EL2N and its
    sd): a normal (z) interval with standard error sqrt(sum_i w_i^2 sd_i^2 / n_i). For a paired
    difference on one set (adversarial - clean EL2N of the same examples) pass the mean
    difference and the sd of the per-example differences as one term."""
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
                      level, direction)


def deterministic(holds: bool, method: str = "exact (deterministic)", effect: float | None = None,
                  n: int | None = None) -> Comparison:
    """A claim that is not a noisy comparison (a deterministic fact, a seeded simulation, a
    check with its own decision rule): the verdict is the computed fact, and ``method`` says
    why no interval applies."""
    return Comparison(effect, None, None, method, n, None, HOLDS if bool(holds) else FAILS, direction="")


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
    return Comparison(None if worst is None else worst.effect, None if worst is None else worst.lo,
                      None if worst is None else worst.hi,
                      f"{how} of {len(parts)} comparisons (shown: the least favourable); " + "; ".join(methods),
                      min(ns) if ns else None, min(ks) if ks else None, v, direction=f"{how}",
                      extra={"parts": [p.to_dict() for p in parts]})


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
    """
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be >= 1")
    z_a, z_b = sps.norm.ppf(0.5 + level / 2), sps.norm.ppf(power)
    var_e = 1e4 * discordance / n  # points^2
    var_true = var_e + seed_sd**2 / seeds
    var_int = var_true if seeds > 1 or seed_sd_in_interval else var_e
    return float(z_a * math.sqrt(var_int) + z_b * math.sqrt(var_true))


def min_equivalence_margin(n: int, seeds: int = 1, discordance: float = 0.2, seed_sd: float = 0.0,
                           alpha: float = 0.05, power: float = 0.8, seed_sd_in_interval: bool = False) -> float:
    """The smallest equivalence margin (points) that TOST (:func:`equivalence`) confirms with
    probability ``power`` when the true difference is 0 (the noise model of :func:`mde`,
    ``seed_sd_in_interval`` as there): z_{1-alpha} * se_interval + z_{(1+power)/2} * se_estimate."""
    if n < 1 or seeds < 1:
        raise ValueError("n and seeds must be >= 1")
    var_e = 1e4 * discordance / n
    var_true = var_e + seed_sd**2 / seeds
    var_int = var_true if seeds > 1 or seed_sd_in_interval else var_e
    return float(sps.norm.ppf(1 - alpha) * math.sqrt(var_int) + sps.norm.ppf(0.5 + power / 2) * math.sqrt(var_true))
