"""compare: every formula against an independent computation on the raw arrays."""

from __future__ import annotations

import time

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from ab_pipelines.stats import Moments, RatioMoments, compare


def _arms(seed=0, n_a=3000, n_b=3200, lift=0.05, rho=0.7):
    """Raw (Y, X) per arm: X the pre-period covariate, correlated rho with Y; skewed Y."""
    rng = np.random.default_rng(seed)
    out = []
    for n, mu in ((n_a, 10.0), (n_b, 10.0 * (1 + lift))):
        x = rng.gamma(2.0, 5.0, n)
        y = mu + rho * (x - 10.0) + rng.normal(0, 5.0 * np.sqrt(2) * np.sqrt(1 - rho**2), n)
        out.append((y, x))
    return out


def test_welch_matches_scipy():
    (ya, _), (yb, _) = _arms(1)
    r = compare(Moments.from_values(ya), Moments.from_values(yb), relative=False, alpha=0.05)
    t = sps.ttest_ind(yb, ya, equal_var=False)
    va, vb = ya.var(ddof=1) / ya.size, yb.var(ddof=1) / yb.size
    df = (va + vb) ** 2 / (va**2 / (ya.size - 1) + vb**2 / (yb.size - 1))
    q = sps.t.ppf(0.975, df)
    assert r.effect == pytest.approx(yb.mean() - ya.mean(), rel=1e-10)
    assert r.p_value == pytest.approx(t.pvalue, rel=1e-8)
    assert r.df == pytest.approx(df, rel=1e-10)
    assert r.se == pytest.approx(np.sqrt(va + vb), rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.effect - q * r.se, r.effect + q * r.se))
    ci = t.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-8)
    assert (r.mean_a, r.mean_b) == pytest.approx((ya.mean(), yb.mean()))


def test_relative_delta_method_against_simulation():
    """The delta-method se of the relative lift equals the spread of the lift over 4,000 replays."""
    rng = np.random.default_rng(7)
    n, reps = 400, 4000
    ya = rng.lognormal(0.0, 1.0, (reps, n))
    yb = rng.lognormal(0.1, 1.0, (reps, n))
    a = Moments(n, ya.sum(1), (ya**2).sum(1))
    b = Moments(n, yb.sum(1), (yb**2).sum(1))
    r = compare(a, b, relative=True)
    lift = yb.mean(1) / ya.mean(1) - 1
    np.testing.assert_allclose(r.effect, lift, rtol=1e-10)
    # Var of the estimate over replays vs the mean delta-method variance: within 5%.
    assert np.mean(r.se**2) / lift.var() == pytest.approx(1.0, abs=0.05)
    # Closed form (gbstats frequentist_variance): σa²·μb²/(na·μa⁴) + σb²/(nb·μa²).
    one = compare(Moments.from_values(ya[0]), Moments.from_values(yb[0]), relative=True)
    ma, mb = ya[0].mean(), yb[0].mean()
    var = ya[0].var(ddof=1) * mb**2 / (n * ma**4) + yb[0].var(ddof=1) / (n * ma**2)
    assert one.se == pytest.approx(np.sqrt(var), rel=1e-10)


def test_cuped_matches_ols():
    (ya, xa), (yb, xb) = _arms(2)
    r = compare(
        Moments.from_values(ya, xa), Moments.from_values(yb, xb), relative=False, cuped=True
    )
    y, x = np.concatenate([ya, yb]), np.concatenate([xa, xb])
    arm = np.r_[np.zeros(ya.size), np.ones(yb.size)]
    # θ is by definition the slope of Y on X over the two arms pooled: exact.
    pooled = sm.OLS(y, sm.add_constant(x)).fit()
    assert r.theta == pytest.approx(pooled.params[1], rel=1e-10)
    # The effect agrees with the regression Y ~ arm + (X − mean X) (Deng et al. 2013) up to the
    # O(1/n) gap between the pooled θ and the within-arm OLS slope; so does its robust se.
    ols = sm.OLS(y, np.column_stack([np.ones_like(y), arm, x - x.mean()])).fit(cov_type="HC1")
    assert r.effect == pytest.approx(ols.params[1], rel=2e-3)
    assert r.theta == pytest.approx(ols.params[2], rel=1e-2)
    assert r.se == pytest.approx(ols.bse[1], rel=1e-2)
    # The adjusted means, and the variance reduction vs the raw comparison.
    assert r.adjusted_mean_a == pytest.approx(ya.mean() - r.theta * xa.mean())
    raw = compare(Moments.from_values(ya), Moments.from_values(yb), relative=False)
    assert r.variance_reduction == pytest.approx(1 - r.se**2 / raw.se**2)
    assert 0.3 < r.variance_reduction < 0.7


def test_cuped_relative_over_unadjusted_baseline():
    (ya, xa), (yb, xb) = _arms(3)
    r = compare(Moments.from_values(ya, xa), Moments.from_values(yb, xb), relative=True, cuped=True)
    x = np.concatenate([xa, xb])
    theta = np.cov(np.concatenate([ya, yb]), x)[0, 1] / x.var(ddof=1)
    va, vb = ya - theta * xa, yb - theta * xb
    assert r.effect == pytest.approx((vb.mean() - va.mean()) / ya.mean(), rel=1e-10)
    # gbstats' delta-method form: Var ≈ var(v_b)/(n_b ȳa²) + var(v_a)·ȳb²/(n_a ȳa⁴), unadjusted ȳ.
    var = vb.var(ddof=1) / (yb.size * ya.mean() ** 2) + va.var(ddof=1) * yb.mean() ** 2 / (
        ya.size * ya.mean() ** 4
    )
    assert r.se == pytest.approx(np.sqrt(var), rel=1e-10)
    # ... which is close to the exact gradient on (v_a, ȳa, v_b): within a percent here.
    d = vb.mean() - va.mean()
    g = np.array([-1 / ya.mean(), -d / ya.mean() ** 2])
    cov_a = np.cov(np.vstack([va, ya])) / ya.size
    exact = g @ cov_a @ g + vb.var(ddof=1) / (yb.size * ya.mean() ** 2)
    assert r.se == pytest.approx(np.sqrt(exact), rel=1e-2)


def _ratio_arms(seed=4, n=2500):
    rng = np.random.default_rng(seed)
    out = []
    for lift in (0.0, 0.04):
        pre_den = rng.poisson(4, n) + 1.0
        den = np.maximum(rng.poisson(pre_den), 1.0)
        speed = rng.gamma(4.0, 50.0, n)  # per-user load time, persistent over periods
        pre_num = pre_den * speed * rng.lognormal(0, 0.2, n)
        num = den * speed * (1 + lift) * rng.lognormal(0, 0.2, n)
        out.append((num, den, pre_num, pre_den))
    return out


def _linearised(num, den):
    """Per-unit influence values of Σnum/Σden: (num − R·den)/mean(den)."""
    return (num - num.sum() / den.sum() * den) / den.mean()


@pytest.mark.parametrize("relative", [False, True])
def test_ratio_delta_method(relative):
    (ma, da, _, _), (mb, db, _, _) = _ratio_arms()
    r = compare(
        RatioMoments.from_values(ma, da), RatioMoments.from_values(mb, db), relative=relative
    )
    ra, rb = ma.sum() / da.sum(), mb.sum() / db.sum()
    la, lb = _linearised(ma, da), _linearised(mb, db)
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    if relative:
        assert r.effect == pytest.approx(rb / ra - 1, rel=1e-10)
        assert r.se == pytest.approx(np.sqrt(va * rb**2 / ra**4 + vb / ra**2), rel=1e-9)
    else:
        assert r.effect == pytest.approx(rb - ra, rel=1e-10)
        assert r.se == pytest.approx(np.sqrt(va + vb), rel=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_ratio_cuped_regression_adjusted(relative):
    """gbstats' regression-adjusted ratio, recomputed from linearised per-unit values."""
    arms = _ratio_arms(5)
    a, b = (RatioMoments.from_values(*arm) for arm in arms)
    r = compare(a, b, relative=relative, cuped=True)
    lin = [(_linearised(m, d), _linearised(pm, pd)) for m, d, pm, pd in arms]
    theta = sum(np.cov(post, pre)[0, 1] for post, pre in lin) / sum(
        pre.var(ddof=1) for _, pre in lin
    )
    assert r.theta == pytest.approx(theta, rel=1e-9)
    ratio = [(m.sum() / d.sum(), pm.sum() / pd.sum()) for m, d, pm, pd in arms]
    adj = [post - theta * pre for post, pre in ratio]
    z = [post - theta * pre for post, pre in lin]  # linearised adjusted values
    w = [zi.var(ddof=1) / zi.size for zi in z]
    if not relative:
        assert r.effect == pytest.approx(adj[1] - adj[0], rel=1e-10)
        assert r.se == pytest.approx(np.sqrt(sum(w)), rel=1e-9)
    else:
        u, u_b = ratio[0][0], ratio[1][0]
        d = adj[1] - adj[0]
        assert r.effect == pytest.approx(d / u, rel=1e-10)
        # gbstats' form of the delta method, with the unadjusted ratios u
        assert r.se == pytest.approx(np.sqrt(w[1] / u**2 + w[0] * u_b**2 / u**4), rel=1e-9)
    raw = compare(
        RatioMoments.from_values(*arms[0][:2]),
        RatioMoments.from_values(*arms[1][:2]),
        relative=relative,
    )
    assert r.variance_reduction == pytest.approx(1 - r.se**2 / raw.se**2)
    print(f"\nratio CUPED (relative={relative}): variance reduction {r.variance_reduction:.3f}")
    assert r.variance_reduction > 0.2


def _batch(k, seed=11, cuped=True):
    rng = np.random.default_rng(seed)
    arms = []
    for _ in range(2):
        n = rng.integers(50, 5000, k).astype(float)
        mean, sd = rng.uniform(1, 10, k), rng.uniform(0.5, 5, k)
        s = n * mean + rng.normal(0, sd * np.sqrt(n))
        ss = (n - 1) * sd**2 + s**2 / n
        xs = n * mean * 0.9 + rng.normal(0, sd * np.sqrt(n))
        xss = (n - 1) * sd**2 + xs**2 / n
        cross = (n - 1) * 0.5 * sd**2 + s * xs / n
        arms.append(Moments(n, s, ss, xs, xss, cross) if cuped else Moments(n, s, ss))
    return arms


@pytest.mark.parametrize("sequential", [None, 5000])
@pytest.mark.parametrize("cuped", [False, True])
def test_vectorized_equals_scalar(cuped, sequential):
    a, b = _batch(40, cuped=cuped)
    v = compare(a, b, relative=True, cuped=cuped, sequential_tuning=sequential)

    def pick(m, i):
        return Moments(*(None if f is None else f[i] for f in m.__dict__.values()))

    for i in range(40):
        s = compare(
            pick(a, i), pick(b, i), relative=True, cuped=cuped, sequential_tuning=sequential
        )
        for field in ("effect", "se", "ci_low", "ci_high", "p_value", "mean_a", "df"):
            assert getattr(s, field) == pytest.approx(getattr(v, field)[i], rel=1e-12, nan_ok=True)
        assert isinstance(s.effect, float)


def test_ten_thousand_comparisons_are_fast():
    a, b = _batch(10_000)
    compare(a, b)  # warm up
    timings = {}
    for cuped in (False, True):
        t0 = time.perf_counter()
        r = compare(a, b, relative=True, cuped=cuped, sequential_tuning=5000)
        timings[cuped] = (time.perf_counter() - t0) * 1000
        assert r.effect.shape == (10_000,) and np.isfinite(r.p_value).all()
    print(f"\n10,000 comparisons: {timings[False]:.1f} ms raw, {timings[True]:.1f} ms CUPED")
    assert timings[False] < 200 and timings[True] < 300  # generous for a loaded CI machine


def test_degenerate_inputs_give_nan_not_exceptions():
    a = Moments(
        n=np.array([1, 10, 10, 10]), sum=np.array([1.0, 0, 5, 5]), sum_sq=np.array([1.0, 0, 5, 5])
    )
    b = Moments(
        n=np.array([10, 10, 10, 10]), sum=np.array([5.0, 5, 5, 5]), sum_sq=np.array([5.0, 5, 5, 5])
    )
    same = Moments(n=10, sum=5.0, sum_sq=2.5)  # zero variance in both arms
    r = compare(a, b, relative=True)
    assert np.isnan(r.effect[:2]).all() and np.isnan(r.p_value[:2]).all()  # n < 2; baseline mean 0
    assert r.effect[2] == 0.0 and r.p_value[2] == pytest.approx(1.0)
    assert np.isnan(compare(same, same).p_value)
    assert np.isnan(compare(Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0), relative=False).se)
    z = RatioMoments(10, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert np.isnan(compare(z, z).effect)
    # A covariate without variance falls back to the raw estimate (θ = 0), as gbstats does.
    (ya, _), (yb, _) = _arms(9)
    c = compare(
        Moments.from_values(ya, np.ones_like(ya)),
        Moments.from_values(yb, np.ones_like(yb)),
        cuped=True,
    )
    assert c.theta == 0.0 and c.effect == pytest.approx(
        compare(Moments.from_values(ya), Moments.from_values(yb)).effect
    )


def test_bad_calls_raise():
    m = Moments(10, 5.0, 5.0)
    with pytest.raises(ValueError):
        compare(m, m, cuped=True)
    with pytest.raises(TypeError):
        compare(m, RatioMoments(10, 1.0, 1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        compare(m, m, alpha=1.5)


def test_sequential_interval_contains_fixed_and_agrees_with_its_p_value():
    a, b = _batch(2000, seed=3)
    fixed = compare(a, b, relative=False)
    seq = compare(a, b, relative=False, sequential_tuning=5000)
    assert np.all(seq.ci_low <= fixed.ci_low) and np.all(seq.ci_high >= fixed.ci_high)
    # Where it matters (not astronomically small), the always-valid p-value is the larger one; far
    # in the tail the Student t (df < ∞) is heavier than the Gaussian mixture boundary.
    mid = (fixed.p_value > 1e-8) & (fixed.df > 100)
    assert mid.sum() > 100 and np.all(seq.p_value[mid] >= fixed.p_value[mid])
    excludes_zero = (seq.ci_low > 0) | (seq.ci_high < 0)
    np.testing.assert_array_equal(excludes_zero, seq.p_value < 0.05)
    np.testing.assert_array_equal(seq.effect, fixed.effect)


def test_vectorized_ratio_equals_scalar():
    singles = [
        [RatioMoments.from_values(*arm) for arm in _ratio_arms(seed, n=300)] for seed in range(30)
    ]
    names = list(RatioMoments.__dataclass_fields__)
    stack = [
        RatioMoments(**{k: np.array([getattr(s[j], k) for s in singles]) for k in names})
        for j in (0, 1)
    ]
    v = compare(*stack, relative=True, cuped=True, sequential_tuning=5000)
    for i, (a, b) in enumerate(singles):
        s = compare(a, b, relative=True, cuped=True, sequential_tuning=5000)
        for field in (
            "effect",
            "se",
            "ci_low",
            "ci_high",
            "p_value",
            "theta",
            "variance_reduction",
        ):
            assert getattr(s, field) == pytest.approx(getattr(v, field)[i], rel=1e-12)
