"""hardex.paper.stats: each statistic against scipy / a float64 reference, calibration of the
verdicts by simulation, and the minimum detectable effect against a simulated power curve.
Simulations are seeded and vectorised (the whole file runs in seconds)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from hardex.paper import stats as st

N_SIM = 1000


def _models(rng, n, acc_a, acc_b, disc=0.2):
    """Paired 0/1 outcomes of two models with true accuracies acc_a, acc_b that disagree on
    about ``disc`` of the examples: cell probabilities (1,1), (1,0), (0,1), (0,0)."""
    d = acc_a - acc_b
    p10, p01 = (disc + d) / 2, (disc - d) / 2
    p11 = acc_a - p10
    cells = rng.choice(4, size=n, p=[p11, p10, p01, 1 - p11 - p10 - p01])
    return (cells <= 1), (cells == 0) | (cells == 2)


def test_as_outcomes_bit_strings_and_arrays():
    assert st.as_outcomes("0110").tolist() == [False, True, True, False]
    assert st.as_outcomes([1, 0]).tolist() == [True, False]
    with pytest.raises(ValueError):
        st.as_outcomes("01x")
    with pytest.raises(ValueError):
        st.paired("01", "011")


def test_mcnemar_exact_matches_binomtest():
    a = "1" * 30 + "0" * 12 + "1" * 5 + "0" * 53
    b = "1" * 30 + "1" * 12 + "0" * 5 + "0" * 53
    r = st.mcnemar_exact(a, b)
    assert (r["n10"], r["n01"]) == (5, 12)
    assert r["p"] == pytest.approx(sps.binomtest(5, 17, 0.5).pvalue, rel=1e-12)
    assert st.mcnemar_exact("10", "10")["p"] == 1.0
    c = st.paired(a, b)
    assert c.p == pytest.approx(r["p"]) and c.effect == pytest.approx(-7.0)


def test_t_interval_matches_scipy():
    d = [1.2, 0.4, 2.9, 1.7]
    m, lo, hi = st.t_interval(d)
    ref = sps.t.interval(0.95, 3, loc=np.mean(d), scale=sps.sem(d))
    assert m == pytest.approx(np.mean(d)) and (lo, hi) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError):
        st.t_interval([1.0])


def test_paired_bootstrap_equals_float64_reference_on_the_same_resample():
    rng = np.random.default_rng(3)
    a, b = _models(rng, 500, 0.55, 0.5)
    lo, hi = st.paired_bootstrap(a, b, n_boot=2000, seed=7)
    # reference: the same multinomial draws, each resample's difference by hand in float64
    n = a.size
    cells = np.array([(a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum()])
    draws = np.random.default_rng(7).multinomial(n, cells / n, size=2000)
    ref = np.array([100.0 * (float(r[1]) - float(r[2])) / n for r in draws], dtype=np.float64)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=1e-12)
    # and the cell shortcut has the distribution of resampling example indices
    idx = np.random.default_rng(8).integers(0, n, size=(4000, n))
    by_index = 100.0 * (a[idx].mean(1) - b[idx].mean(1))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(by_index, [0.025, 0.975])), abs=0.6)


def test_hierarchical_bootstrap_reference_and_one_seed_case():
    rng = np.random.default_rng(4)
    pairs = [_models(rng, 400, 0.55 + 0.01 * s, 0.5) for s in range(3)]
    A, B = [p[0] for p in pairs], [p[1] for p in pairs]
    got = st.hierarchical_bootstrap(A, B, n_boot=1500, seed=11, return_samples=True)
    # reference: resample example indices (shared by the seeds) and seeds, in float64, with
    # the same generator calls replaced by a plain loop over resamples
    D = np.stack([x.astype(float) - y.astype(float) for x, y in zip(A, B)])
    pat, cnt = np.unique(D.T, axis=0, return_counts=True)
    g = np.random.default_rng(11)
    draws = g.multinomial(400, cnt / 400, size=1500)
    pick = g.integers(0, 3, size=(1500, 3))
    ref = np.array([np.mean([(draws[r] @ pat[:, s]) / 400 for s in pick[r]]) for r in range(1500)]) * 100
    assert np.allclose(got, ref, rtol=0, atol=1e-10)
    # with one seed the hierarchical bootstrap is the paired one
    one = st.hierarchical_bootstrap(A[:1], B[:1], n_boot=1000, seed=2)
    # (in distribution: it draws over 3 difference patterns, the paired one over 4 cells)
    assert one == pytest.approx(st.paired_bootstrap(A[0], B[0], n_boot=1000, seed=2), abs=0.75)


def test_seed_interval_against_an_independent_computation():
    """The book's interval for k >= 2 seeds: sqrt(t_{k-1}^2 s^2 / k + z^2 c), c the mean
    covariance between seeds of the per-example differences / n, against numpy's cov and
    scipy's t, and as paired() / equivalence() / accuracy() report it."""
    rng = np.random.default_rng(4)
    pairs = [_models(rng, 400, 0.55 + 0.01 * s, 0.5) for s in range(3)]
    A, B = [p[0] for p in pairs], [p[1] for p in pairs]
    D = np.stack([x.astype(float) - y.astype(float) for x, y in zip(A, B)])
    d = 100 * D.mean(axis=1)
    C = np.cov(D)  # 3 x 3 over the 400 examples (ddof 1)
    c = max(0.0, (C.sum() - np.trace(C)) / 6) * 1e4 / 400
    h = math.sqrt(sps.t.ppf(0.975, 2) ** 2 * d.var(ddof=1) / 3 + sps.norm.ppf(0.975) ** 2 * c)
    eff, lo, hi = st.seed_interval(A, B)
    assert (eff, lo, hi) == pytest.approx((d.mean(), d.mean() - h, d.mean() + h), rel=1e-9)
    cmp = st.paired(A, B)
    assert (cmp.effect, cmp.lo, cmp.hi) == pytest.approx((eff, lo, hi), rel=1e-12)
    assert cmp.seeds == 3 and cmp.n == 400 and "seed-level t-interval over 3" in cmp.method and cmp.p is None
    assert cmp.method_short == "seed t-interval (3 seeds)" and cmp.extra["per_seed"] == pytest.approx(list(d))
    # equivalence: the 90% interval of the same construction; accuracy: differences with an all-wrong model
    e = st.equivalence(A, B, 20.0)
    h90 = math.sqrt(sps.t.ppf(0.95, 2) ** 2 * d.var(ddof=1) / 3 + sps.norm.ppf(0.95) ** 2 * c)
    assert (e.lo, e.hi, e.level, e.verdict) == pytest.approx((d.mean() - h90, d.mean() + h90, 0.9, st.HOLDS))
    acc = st.accuracy(A)
    assert acc.seeds == 3 and acc.effect == pytest.approx(100 * np.mean([x.mean() for x in A]))
    assert "accuracies" in acc.method
    # a seed spread the seeds show widens the interval; two identical seeds leave only the shared part
    same = st.seed_interval([A[0], A[0]], [B[0], B[0]])
    var0 = np.var(D[0], ddof=1) * 1e4 / 400
    assert same[2] - same[0] == pytest.approx(sps.norm.ppf(0.975) * math.sqrt(var0), rel=1e-9)
    with pytest.raises(ValueError, match="2 seeds"):
        st.seed_halfwidth(D[:1])


def test_bootstrap_mean_diff_reference():
    x, y = np.arange(10.0), np.arange(5.0)
    eff, lo, hi = st.bootstrap_mean_diff(x, y, n_boot=500, seed=1)
    g = np.random.default_rng(1)
    mx = np.array([x[i].mean() for i in g.integers(0, 10, size=(500, 10))])
    my = np.array([y[i].mean() for i in g.integers(0, 5, size=(500, 5))])
    assert eff == 2.5 and (lo, hi) == pytest.approx(tuple(np.quantile(mx - my, [0.025, 0.975])), abs=1e-12)


def test_verdict_rules_and_combine():
    assert st.verdict(0.1, 2.0) == st.HOLDS and st.verdict(-2.0, -0.1) == st.FAILS
    assert st.verdict(-0.1, 2.0) == st.INCONCLUSIVE and st.verdict(-2.0, -0.1, "<") == st.HOLDS
    h, f, i = (st.Comparison(1.0, 0.5, 1.5, "m", verdict=v) for v in (st.HOLDS, st.FAILS, st.INCONCLUSIVE))
    assert st.combine([h, h]).verdict == st.HOLDS and st.combine([h, i]).verdict == st.INCONCLUSIVE
    assert st.combine([h, f, i]).verdict == st.FAILS and st.combine([f, h], "any").verdict == st.HOLDS
    assert st.deterministic(True).verdict == st.HOLDS and st.deterministic(False).lo is None
    # a compound of EL2N contrasts is in EL2N, not points; parts in different units say so
    el2n = st.summary_contrast([0.3, 0.1], [0.1, 0.1], [50, 50], [1, -1], unit="EL2N")
    assert st.combine([el2n, el2n]).unit == "EL2N" and st.combine([h, h]).unit == "points"
    assert "differ" in st.combine([el2n, h]).unit


def _rate(fn, sims):
    return float(np.mean([fn(a, b) for a, b in sims]))


def _sims(seed, n, acc_a, acc_b, disc=0.2, k=N_SIM):
    """k simulated comparisons, drawn as one vectorised matrix of cells."""
    d = acc_a - acc_b
    p10, p01 = (disc + d) / 2, (disc - d) / 2
    p11 = acc_a - p10
    cum = np.cumsum([p11, p10, p01])
    u = np.random.default_rng(seed).random((k, n), dtype=np.float32)
    cells = (u > cum[0]).astype(np.int8) + (u > cum[1]) + (u > cum[2])
    return list(zip(cells <= 1, (cells == 0) | (cells == 2)))


CAL = {}


def test_calibration_of_the_directional_verdict():
    null = _sims(0, 10_000, 0.5, 0.5)
    alt = _sims(1, 10_000, 0.53, 0.5)
    CAL["null holds"] = _rate(lambda a, b: st.paired(a, b, n_boot=500, seed=1, mcnemar=False).verdict == st.HOLDS, null)
    CAL["3-point holds"] = _rate(lambda a, b: st.paired(a, b, n_boot=500, seed=1, mcnemar=False).verdict == st.HOLDS, alt)
    print(f"\ncalibration (1,000 comparisons, 10,000 examples, discordance 20%): same accuracy -> holds "
          f"{100 * CAL['null holds']:.1f}%; true +3 points -> holds {100 * CAL['3-point holds']:.1f}%")
    assert CAL["null holds"] <= 0.05 and CAL["3-point holds"] >= 0.95


def test_calibration_of_the_equivalence_test():
    margin = 2.0
    same = _sims(2, 10_000, 0.5, 0.5)
    edge = _sims(3, 10_000, 0.5 + margin / 100, 0.5)
    eq_same = _rate(lambda a, b: st.equivalence(a, b, margin, n_boot=500, seed=1).verdict == st.HOLDS, same)
    eq_edge = _rate(lambda a, b: st.equivalence(a, b, margin, n_boot=500, seed=1).verdict == st.HOLDS, edge)
    print(f"\nequivalence (margin {margin} points): true 0 -> holds {100 * eq_same:.1f}%; true difference at the "
          f"margin -> holds {100 * eq_edge:.1f}%")
    assert eq_same >= 0.95 and eq_edge <= 0.07  # ~5%: bootstrap endpoints add a little noise


def test_mde_against_a_simulated_power_curve():
    # one seed, 2,000 examples, discordance 20%: at the MDE "holds" in ~80% of comparisons
    n, disc = 2000, 0.2
    m = st.mde(n, 1, disc)
    assert m == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(1e4 * disc / n))
    curve = {}
    for f, s in ((0.5, 10), (1.0, 11), (1.5, 12)):
        sims = _sims(s, n, 0.5 + f * m / 100, 0.5, disc, k=600)
        curve[f] = _rate(lambda a, b: st.paired(a, b, n_boot=600, seed=1, mcnemar=False).verdict == st.HOLDS, sims)
    print(f"\nMDE {m:.2f} points (n {n}, 1 seed); simulated power at 0.5/1/1.5 x MDE: "
          + ", ".join(f"{100 * v:.0f}%" for v in curve.values()))
    assert abs(curve[1.0] - 0.8) < 0.06 and curve[0.5] < 0.45 and curve[1.5] > 0.95


def test_mde_with_seed_spread_against_simulation():
    # 3 seeds, per-seed true effects spread by seed_sd; the hierarchical bootstrap verdict
    n, disc, sd, k = 2000, 0.2, 1.0, 3
    m = st.mde(n, k, disc, sd)
    assert m > st.mde(n, k, disc) and st.mde(n, 1, disc, sd) > st.mde(n, 1, disc)
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(200):
        eff = m + sd * rng.standard_normal(k)
        pairs = [_models(rng, n, 0.5 + e / 200, 0.5 - e / 200, disc) for e in eff]
        c = st.paired([p[0] for p in pairs], [p[1] for p in pairs], n_boot=400, seed=1)
        hits.append(c.verdict == st.HOLDS)
    rate = float(np.mean(hits))
    print(f"\nMDE {m:.2f} points (n {n}, {k} seeds, seed sd {sd}): simulated power {100 * rate:.0f}%")
    # independent test noise per seed here, shared in the model: the MDE is conservative
    assert rate >= 0.72


def test_unpaired_and_equivalence_shapes():
    c = st.unpaired(0.55, 1000, 0.50, 1000)
    assert c.effect == pytest.approx(5.0) and c.lo < 5 < c.hi and "unpaired" in c.method
    t = st.unpaired([0.55, 0.56, 0.57], 1000, [0.5, 0.5, 0.51], 1000)
    assert t.seeds == 3 and "t-interval" in t.method and t.verdict == st.HOLDS
    # k seeds of aggregates: t over the per-seed differences, widened by the binomial test-set term
    d = 100 * (np.array([0.55, 0.56, 0.57]) - np.array([0.5, 0.5, 0.51]))
    c_ = np.mean(1e4 * (np.array([0.55, 0.56, 0.57]) * [0.45, 0.44, 0.43] + np.array([0.5, 0.5, 0.51]) * [0.5, 0.5, 0.49]) / 1000)
    h = math.sqrt(sps.t.ppf(0.975, 2) ** 2 * d.var(ddof=1) / 3 + sps.norm.ppf(0.975) ** 2 * c_)
    assert (t.lo, t.hi) == pytest.approx((d.mean() - h, d.mean() + h))
    e = st.unpaired(0.50, 10000, 0.50, 10000, margin=2.0)
    assert e.verdict == st.HOLDS and e.direction == "="
    assert st.Comparison(1.0, 0.5, 1.5, "m").interval_text() == "+1.00 [+0.50, +1.50]"


def test_non_inferiority_contrast_two_sample_and_accuracy():
    assert st.verdict(-0.5, 1.0, ">=", tol=1.0) == st.HOLDS and st.verdict(-3.0, -1.5, ">=", tol=1.0) == st.FAILS
    assert st.verdict(-1.5, 1.0, ">=", tol=1.0) == st.INCONCLUSIVE and st.verdict(-1.0, 0.5, "<=", tol=1.0) == st.HOLDS
    same = st.paired("1" * 50 + "0" * 50, "1" * 50 + "0" * 50, ">=")
    assert (same.lo, same.hi, same.verdict) == (0.0, 0.0, st.HOLDS)
    # contrast: a difference of differences of independent binomials, with an offset
    c = st.contrast([0.6, 0.5, 0.55, 0.5], [10000] * 4, [1, -1, -1, 1], offset=1.0)
    assert c.effect == pytest.approx(6.0) and c.lo < 6.0 < c.hi and c.verdict == st.HOLDS
    g = np.random.default_rng(0)
    ref = 100 * (g.binomial(np.array([10000] * 4)[None, :], np.array([0.6, 0.5, 0.55, 0.5])[None, :], size=(4000, 4))
                 / 10000) @ np.array([1, -1, -1, 1.0]) + 1.0
    assert (c.lo, c.hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=1e-9)
    t = st.two_sample(np.ones(50), np.zeros(50))
    assert t.effect == 100.0 and t.verdict == st.HOLDS and t.n == 100
    a = st.accuracy("1" * 30 + "0" * 70)
    assert a.effect == pytest.approx(30.0) and a.lo < 30 < a.hi
    assert st.accuracy(["1" * 30 + "0" * 70] * 2).seeds == 2


def test_min_equivalence_margin_against_simulation():
    n, disc = 2000, 0.2
    m = st.min_equivalence_margin(n, 1, disc)
    sims = _sims(20, n, 0.5, 0.5, disc, k=500)
    rate = _rate(lambda a, b: st.equivalence(a, b, m, n_boot=600, seed=1).verdict == st.HOLDS, sims)
    print(f"\nsmallest equivalence margin {m:.2f} points (n {n}): simulated power {100 * rate:.0f}%")
    assert abs(rate - 0.8) < 0.07


# --------------------------------------------------------------------------- one seed + a stated seed spread


def test_seed_sd_widens_a_one_seed_interval_as_a_normal_convolution():
    """Against an independent computation: the bootstrap of paired 0/1 outcomes is close to
    normal with variance (p10 + p01 - (p10 - p01)^2) / n; adding a normal seed spread of sd
    s gives a half-width z * sqrt(se^2 + s^2)."""
    n, n10, n01 = 10000, 900, 700
    a = np.ones(n, bool)
    b = np.ones(n, bool)
    a[:n01] = False  # b right, a wrong
    b[n01:n01 + n10] = False  # a right, b wrong
    p10, p01 = n10 / n, n01 / n
    se = 100 * math.sqrt((p10 + p01 - (p10 - p01) ** 2) / n)
    plain = st.paired(a, b, n_boot=40000)
    wide = st.paired(a, b, n_boot=40000, seed_sd=0.8)
    z = 1.959964
    assert (plain.hi - plain.lo) / 2 == pytest.approx(z * se, rel=0.03)
    assert (wide.hi - wide.lo) / 2 == pytest.approx(z * math.sqrt(se**2 + 0.8**2), rel=0.03)
    assert wide.effect == plain.effect == pytest.approx(100 * (p10 - p01))
    assert "seed-to-seed sd of 0.8 points" in wide.method and "seed-to-seed" not in plain.method
    # seed_sd = 0 is the plain bootstrap, bit for bit; several seeds ignore it (the hierarchical bootstrap sees them)
    assert (st.paired(a, b, seed_sd=0.0).lo, st.paired(a, b, seed_sd=0.0).hi) == st.paired_bootstrap(a, b)
    two = st.paired([a, a], [b, b]), st.paired([a, a], [b, b], seed_sd=5.0)
    assert (two[0].lo, two[0].hi) == (two[1].lo, two[1].hi)
    with pytest.raises(ValueError, match="seed_sd"):
        st.paired(a, b, seed_sd=-1.0)


def test_seed_sd_keeps_false_holds_rare_when_one_seed_moves_the_effect():
    """One training seed whose true effect is 0 on average but moves by 0.5 points from seed
    to seed: the plain one-seed interval says "holds" far more often than 2.5% of the time;
    with seed_sd = 0.5 it does not."""
    rng = np.random.default_rng(5)
    n, disc, k = 10000, 0.15, 300
    sims = []
    for i, d in enumerate(rng.normal(0.0, 0.005, k)):  # each seed's true effect (fraction)
        sims += _sims(100 + i, n, 0.5 + d / 2, 0.5 - d / 2, disc, k=1)
    plain = _rate(lambda a, b: st.paired(a, b, n_boot=1000, mcnemar=False).verdict == st.HOLDS, sims)
    wide = _rate(lambda a, b: st.paired(a, b, n_boot=1000, mcnemar=False, seed_sd=0.5).verdict == st.HOLDS, sims)
    print(f"\nfalse 'holds' with one seed: plain {100 * plain:.1f}%, with seed_sd 0.5: {100 * wide:.1f}%")
    assert plain > 0.06 and wide < 0.05


def test_seed_sd_in_unpaired_equivalence_and_mde():
    u0, u1 = st.unpaired(0.52, 10000, 0.50, 10000), st.unpaired(0.52, 10000, 0.50, 10000, seed_sd=1.0)
    assert u1.hi - u1.lo > u0.hi - u0.lo and u1.effect == u0.effect
    a = "1" * 5000 + "0" * 5000
    e0, e1 = st.equivalence(a, a, 1.0), st.equivalence(a, a, 1.0, seed_sd=1.0)
    assert e0.verdict == st.HOLDS and e1.verdict != st.HOLDS  # +-1 point cannot be confirmed past a 1-point seed sd
    # the MDE of an interval that carries the seed spread: z_a and z_b both on the total sd
    z_a, z_b = 1.959964, 0.841621
    tot = math.sqrt(1e4 * 0.15 / 10000 + 0.25)
    assert st.mde(10000, 1, 0.15, 0.5, seed_sd_in_interval=True) == pytest.approx((z_a + z_b) * tot, rel=1e-5)
    assert st.mde(10000, 1, 0.15, 0.5) < st.mde(10000, 1, 0.15, 0.5, seed_sd_in_interval=True)


def test_summary_contrast_against_a_bootstrap_of_the_raw_values():
    """From means and sds only, the interval of mean(x) - mean(y) agrees with the bootstrap of
    the raw values (bootstrap_mean_diff, an independent computation) for large samples."""
    g = np.random.default_rng(3)
    x, y = g.gamma(2.0, 0.3, 800), g.gamma(1.5, 0.2, 600)
    c = st.summary_contrast([x.mean(), y.mean()], [x.std(ddof=1), y.std(ddof=1)], [x.size, y.size], [1, -1])
    eff, lo, hi = st.bootstrap_mean_diff(x, y, n_boot=20000, seed=1)
    assert c.effect == pytest.approx(eff) and (c.lo, c.hi) == pytest.approx((lo, hi), abs=0.004)
    assert c.verdict == st.HOLDS and c.n == 600
    # a paired difference enters as one term: mean and sd of the per-example differences
    d = g.normal(0.01, 0.2, 500)
    p = st.summary_contrast([d.mean()], [d.std(ddof=1)], [500], [1])
    assert (p.hi - p.lo) / 2 == pytest.approx(1.959964 * d.std(ddof=1) / math.sqrt(500))
    assert p.verdict == st.INCONCLUSIVE
    with pytest.raises(ValueError, match="same"):
        st.summary_contrast([1.0], [0.1, 0.2], [10], [1])
    with pytest.raises(ValueError, match="n >= 2"):
        st.summary_contrast([1.0], [0.1], [1], [1])


# --------------------------------------------------------------------------- few seeds (issue 25)


def _not_above_promised(row, alpha=1e-3):
    """A cell's false-'holds' count is compatible with a rate of at most 2.5%: the one-sided
    binomial test of Binomial(trials, 2 x 2.5%) (both directions counted) does not reject."""
    from hardex.paper.calibration import PROMISED

    return sps.binomtest(row["errors"], row["trials"], 2 * PROMISED, alternative="greater").pvalue > alpha


def test_few_seed_verdicts_are_calibrated_by_simulation():
    """2-5 seeds x seed spread 0-1.5 points x 1,000 / 10,000 shared test examples, true effect
    0: the book's seed-level interval says "holds" at most 2.5% of the time (each cell within
    simulation error, and pooled); the percentile hierarchical bootstrap it replaced does not
    keep that promise at 3 seeds and a 1-point spread. ~10 s on the 2-core CI machine (300
    trials per cell; the committed table, hardex/paper/calibration.json, has 4,000)."""
    from hardex.paper import calibration as cal

    rows = cal.table(trials=300, old_trials=0, one_seed_trials=0)
    assert {(r["seeds"], r["seed sd"], r["examples"]) for r in rows} == {
        (k, s, n) for k in (2, 3, 4, 5) for s in (0.0, 0.5, 1.0, 1.5) for n in (1000, 10000)}
    bad = [r for r in rows if not _not_above_promised(r)]
    assert not bad, bad
    errors, trials = sum(r["errors"] for r in rows), sum(r["trials"] for r in rows)
    pooled, se = errors / (2 * trials), math.sqrt(0.05 * 0.95 / trials) / 2
    print(f"\nfew-seed calibration: pooled false 'holds' {100 * pooled:.2f}% over {len(rows)} cells x 300 trials")
    assert pooled <= cal.PROMISED + 2 * se
    old = cal.bootstrap_errors(3, 1.0, 10000, trials=150)
    print(f"percentile hierarchical bootstrap, 3 seeds, seed sd 1, 10,000 examples: {100 * old['rate']:.1f}%")
    assert not _not_above_promised(old, alpha=0.01)


def test_committed_calibration_table_is_the_functions_output():
    """hardex/paper/calibration.json (shown in the appendix) was made by hardex.paper.calibration
    with its current settings: two cells recomputed give the same counts, and every cell of the
    book's interval is within simulation error of at most 2.5%."""
    from hardex.paper import calibration as cal

    rec = cal.load()
    assert rec["settings"] == cal.settings()
    rows = {(r["seeds"], r["seed sd"], r["examples"], r["method"]): r for r in rec["rows"]}
    for key in ((2, 1.5, 1000), (3, 0.5, 1000)):
        stored = {k: v for k, v in rows[(*key, "seed t-interval")].items() if k not in ("seeds", "seed sd", "examples", "method")}
        assert stored == cal.seed_interval_errors(*key)
    ours = [r for r in rec["rows"] if r["method"] == "seed t-interval"]
    assert len(ours) == 32 and all(_not_above_promised(r) for r in ours)
    table = cal.frame(rec)
    assert list(table.columns) == ["seed sd 0", "seed sd 0.5", "seed sd 1", "seed sd 1.5"]
