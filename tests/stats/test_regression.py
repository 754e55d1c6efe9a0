"""Regression adjustment (several covariates) and post-stratification, checked independently.

Independent: statsmodels OLS on the raw per-unit arrays (θ, effect, HC2 standard errors), CUPED
as compare computes it, post-stratification as weighted stratum means and Lin's interacted
regression. Simulations draw sufficient statistics exactly from their sampling distribution (mean
vector ~ N(μ, Σ/n), scatter matrix ~ Wishart(n − 1, Σ), independent); run with ``pytest -s`` to
see the measured numbers.
"""

from __future__ import annotations

import datetime as dt
import doctest

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from ab_pipelines.stats import (
    Moments,
    RatioMoments,
    RegressionMoments,
    compare,
    compare_adjusted,
    compare_poststratified,
)
from ab_pipelines.stats import regression as regression_module

ALPHA = 0.05
EXPERIMENTS = 2000
FIELDS = ("effect", "se", "ci_low", "ci_high", "p_value", "df", "mean_a", "mean_b")


def _band(rate: float, trials: int = EXPERIMENTS) -> tuple[float, float]:
    """The 99.9% binomial band of an observed rate around ``rate``."""
    lo, hi = sps.binom.ppf([0.0005, 0.9995], trials, rate)
    return lo / trials, hi / trials


def _units(seed=0, n=4000, share=0.45, lift=0.3, k=3):
    """Raw units: covariates X (n × k, correlated), a 0/1 arm and y linear in X plus noise."""
    rng = np.random.default_rng(seed)
    mix = np.triu(np.full((k, k), 0.3)) + np.eye(k) * 0.7
    X = rng.gamma(2.0, 1.0, (n, k)) @ mix
    arm = (rng.random(n) < share).astype(float)
    beta = np.linspace(1.0, -0.7, k)
    y = 5.0 + X @ beta + lift * arm + rng.normal(0.0, 1.5, n)
    return y, X, arm


def _split(y, X, arm, den=None):
    pick = lambda mask: RegressionMoments.from_values(  # noqa: E731
        y[mask], X[mask], None if den is None else den[mask]
    )
    return pick(arm == 0), pick(arm == 1)


def _columns(m: RegressionMoments, idx) -> RegressionMoments:
    """The sums of a subset of Z's columns (responses first)."""
    idx = np.asarray(idx)
    return RegressionMoments(
        m.n, np.asarray(m.sums)[..., idx], np.asarray(m.cross)[..., idx[:, None], idx], m.responses
    )


# --- the sufficient statistics ------------------------------------------------------------------


def test_sums_merge_and_column_names():
    y, X, arm = _units(1, n=300)
    m = RegressionMoments.from_values(y, X)
    z = np.column_stack([y, X])
    assert m.n == 300 and m.covariates == 3 and m.responses == 1
    np.testing.assert_allclose(m.sums, z.sum(0), rtol=1e-12)
    np.testing.assert_allclose(m.cross, z.T @ z, rtol=1e-12)
    a, b = _split(y, X, arm)
    both = a + b
    assert both.n == 300
    np.testing.assert_allclose(both.cross, m.cross, rtol=1e-12)
    # The SQL's names: n, c_sum, c_sum_sq, then c_d_sum per pair; the ratio's are RatioMoments'.
    names = RegressionMoments.column_names(["num", "den", "pre_num", "pre_den"])
    assert sorted(names) == sorted(RatioMoments.__dataclass_fields__)
    assert len(RegressionMoments.column_names(["y", "a", "b", "c"])) == 1 + 2 * 4 + 6
    with pytest.raises(ValueError):
        RegressionMoments.column_names(["a_b", "c", "a", "b_c"])  # a_b_c_sum twice


def test_from_columns_reads_a_gold_row():
    rng = np.random.default_rng(2)
    num, den = rng.gamma(2.0, 3.0, 400), rng.poisson(3, 400) + 1.0
    pre_num, pre_den = num * rng.lognormal(0, 0.3, 400), den + rng.poisson(1, 400)
    row = RatioMoments.from_values(num, den, pre_num, pre_den).__dict__
    m = RegressionMoments.from_columns(row, ["num", "den", "pre_num", "pre_den"], responses=2)
    ref = RegressionMoments.from_values(num, np.column_stack([pre_num, pre_den]), den=den)
    np.testing.assert_allclose(m.sums, ref.sums, rtol=1e-12)
    np.testing.assert_allclose(m.cross, ref.cross, rtol=1e-12)
    y, x = num, pre_num
    cuped = RegressionMoments.from_moments(Moments.from_values(y, x))
    np.testing.assert_allclose(cuped.cross, RegressionMoments.from_values(y, x).cross, rtol=1e-12)
    # A mean metric's gold row has den = pre_den = 1: read as a ratio, it is the mean.
    ones = np.ones_like(num)
    arm = np.arange(400) % 2
    rows = [
        RatioMoments.from_values(
            num[arm == g], ones[arm == g], pre_num[arm == g], ones[arm == g]
        ).__dict__
        for g in (0, 1)
    ]
    as_ratio = [
        RegressionMoments.from_columns(r, ["num", "den", "pre_num", "pre_den"], 2) for r in rows
    ]
    as_mean = [RegressionMoments.from_columns(r, ["num", "pre_num"]) for r in rows]
    for relative in (False, True):
        x, z = (
            compare_adjusted(*as_ratio, relative=relative),
            compare_adjusted(*as_mean, relative=relative),
        )
        for field in FIELDS + ("variance_reduction",):
            assert getattr(x, field) == pytest.approx(getattr(z, field), rel=1e-9), field


# --- one covariate is CUPED ---------------------------------------------------------------------


@pytest.mark.parametrize("sequential", [None, 5000])
@pytest.mark.parametrize("relative", [False, True])
def test_one_covariate_without_ridge_is_compare_cuped(relative, sequential):
    y, X, arm = _units(3, k=1)
    x = X[:, 0]
    kw = dict(relative=relative, sequential_tuning=sequential)
    a, b = (Moments.from_values(y[arm == g], x[arm == g]) for g in (0, 1))
    c = compare(a, b, cuped=True, **kw)
    r = compare_adjusted(*_split(y, X, arm), ridge=0.0, **kw)
    for field in FIELDS + ("variance_reduction",):
        assert getattr(r, field) == pytest.approx(getattr(c, field), rel=1e-10, abs=1e-14), field
    assert r.theta == pytest.approx([c.theta], rel=1e-10)
    # compare reports ȳ − θx̄, here ȳ − θ(x̄ − x̄_pooled): the same difference.
    assert r.adjusted_mean_b - r.adjusted_mean_a == pytest.approx(
        c.adjusted_mean_b - c.adjusted_mean_a, rel=1e-10
    )


def test_one_covariate_vectorized_is_compare_cuped():
    rng = np.random.default_rng(4)
    arms = []
    for lift in (0.0, 0.2):
        y = rng.normal(10, 3, (50, 400))
        x = 0.5 * y + rng.normal(0, 2, (50, 400))
        y = y + lift
        arms.append(
            Moments(400, y.sum(1), (y * y).sum(1), x.sum(1), (x * x).sum(1), (x * y).sum(1))
        )
    c = compare(*arms, relative=True, cuped=True)
    r = compare_adjusted(*(RegressionMoments.from_moments(m) for m in arms), relative=True)
    for field in FIELDS + ("variance_reduction",):
        np.testing.assert_allclose(getattr(r, field), getattr(c, field), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.theta[:, 0], c.theta, rtol=1e-10)


# --- several covariates against statsmodels ------------------------------------------------------


def test_several_covariates_match_statsmodels():
    y, X, arm = _units(5)
    r = compare_adjusted(*_split(y, X, arm), relative=False, guard=False)
    # θ is by definition the OLS slope vector of y on X over both arms pooled.
    pooled = sm.OLS(y, sm.add_constant(X)).fit()
    np.testing.assert_allclose(r.theta, pooled.params[1:], rtol=1e-9)
    # Then the effect is the difference in means of y − Xθ, its se HC2 (= Welch for two groups).
    adjusted = sm.OLS(y - X @ pooled.params[1:], sm.add_constant(arm)).fit(cov_type="HC2")
    assert r.effect == pytest.approx(adjusted.params[1], rel=1e-9)
    assert r.se == pytest.approx(adjusted.bse[1], rel=1e-9)
    # ANCOVA, y on [1, arm, X − x̄] (HC2): its θ is the within-arm slope, not the pooled one, so it
    # agrees up to an O(1/n) gap (here 1.7% of a standard error) ...
    Xc = X - X.mean(0)
    ancova = sm.OLS(y, np.column_stack([np.ones_like(y), arm, Xc])).fit(cov_type="HC2")
    print(
        f"\n3 covariates: effect {r.effect:.6f} vs ANCOVA {ancova.params[1]:.6f} "
        f"({(r.effect - ancova.params[1]) / r.se:+.4f} se); se {r.se:.6f} vs {ancova.bse[1]:.6f}"
    )
    assert abs(r.effect - ancova.params[1]) < 0.05 * r.se
    # ... and pooling="within" is ANCOVA: the same θ and effect; its se is Welch's on y − Xθ
    # (θ held fixed), which HC2 of ANCOVA exceeds by the O(k/N) cost of estimating θ.
    w = compare_adjusted(*_split(y, X, arm), relative=False, guard=False, pooling="within")
    np.testing.assert_allclose(w.theta, ancova.params[2:], rtol=1e-9)
    assert w.effect == pytest.approx(ancova.params[1], rel=1e-9)
    fixed = sm.OLS(y - X @ ancova.params[2:], sm.add_constant(arm)).fit(cov_type="HC2")
    assert w.se == pytest.approx(fixed.bse[1], rel=1e-9)
    assert w.se == pytest.approx(ancova.bse[1], rel=3e-3) and w.se < ancova.bse[1]
    raw = sm.OLS(y, sm.add_constant(arm)).fit(cov_type="HC2")
    assert r.variance_reduction == pytest.approx(1 - (r.se / raw.bse[1]) ** 2, rel=1e-9)
    assert r.adjusted_mean_a == pytest.approx(
        (y - Xc @ pooled.params[1:])[arm == 0].mean(), rel=1e-10
    )


def test_relative_effect_over_unadjusted_baseline():
    y, X, arm = _units(6)
    r = compare_adjusted(*_split(y, X, arm), relative=True, guard=False)
    theta = sm.OLS(y, sm.add_constant(X)).fit().params[1:]
    v = y - X @ theta
    va, vb, ya, yb = v[arm == 0], v[arm == 1], y[arm == 0], y[arm == 1]
    assert r.effect == pytest.approx((vb.mean() - va.mean()) / ya.mean(), rel=1e-9)
    # compare's (gbstats') delta-method form, with the unadjusted means.
    var = vb.var(ddof=1) / (vb.size * ya.mean() ** 2) + va.var(ddof=1) * yb.mean() ** 2 / (
        va.size * ya.mean() ** 4
    )
    assert r.se == pytest.approx(np.sqrt(var), rel=1e-9)


def test_ratio_metric_regression_on_linearised_values():
    rng = np.random.default_rng(7)
    n = 5000
    arm = (rng.random(n) < 0.5).astype(float)
    speed = rng.gamma(4.0, 50.0, n)
    pre_den = rng.poisson(4, n) + 1.0
    den = rng.poisson(pre_den) + 1.0
    pre_num = pre_den * speed * rng.lognormal(0, 0.3, n)
    platform = rng.integers(0, 3, n)
    num = den * speed * (1 + 0.04 * arm) * (1 + 0.2 * (platform == 1)) * rng.lognormal(0, 0.3, n)
    X = np.column_stack([pre_num, pre_den, platform == 1, platform == 2]).astype(float)
    for relative in (False, True):
        r = compare_adjusted(*_split(num, X, arm, den), relative=relative, guard=False)
        # θ: OLS of the pooled linearised ratio (num − R·den)/mean(den) on X.
        lin = (num - num.sum() / den.sum() * den) / den.mean()
        theta = sm.OLS(lin, sm.add_constant(X)).fit().params[1:]
        np.testing.assert_allclose(r.theta, theta, rtol=1e-8)
        xbar = X.mean(0)
        v, w, u = [], [], []
        for g in (0, 1):
            m, d, x = num[arm == g], den[arm == g], X[arm == g]
            ratio = m.sum() / d.sum()
            u.append(ratio)
            v.append(ratio - theta @ (x.mean(0) - xbar))
            z = (m - ratio * d) / d.mean() - x @ theta  # the arm's linearised adjusted value
            w.append(z.var(ddof=1) / z.size)
        if relative:
            assert r.effect == pytest.approx((v[1] - v[0]) / u[0], rel=1e-9)
            var = w[1] / u[0] ** 2 + w[0] * u[1] ** 2 / u[0] ** 4
            assert r.se == pytest.approx(np.sqrt(var), rel=1e-9)
        else:
            assert r.effect == pytest.approx(v[1] - v[0], rel=1e-9)
            assert r.se == pytest.approx(np.sqrt(w[0] + w[1]), rel=1e-9)
        assert r.mean_a == pytest.approx(u[0]) and r.variance_reduction > 0.3


def test_ridge_is_least_squares_on_augmented_data():
    """Ridge on standardised covariates = OLS with √(ridge·(N − 1))·I appended (Hoerl & Kennard)."""
    y, X, arm = _units(8, n=600, k=4)
    ridge = 0.05
    r = compare_adjusted(*_split(y, X, arm), relative=False, ridge=ridge, guard=False)
    sd = X.std(0, ddof=1)
    Z = np.vstack([(X - X.mean(0)) / sd, np.sqrt(ridge * (y.size - 1)) * np.eye(4)])
    t = np.concatenate([y - y.mean(), np.zeros(4)])
    theta = sm.OLS(t, Z).fit().params / sd
    np.testing.assert_allclose(r.theta, theta, rtol=1e-9)
    ols = compare_adjusted(*_split(y, X, arm), relative=False, guard=False)
    assert np.linalg.norm(r.theta * sd) < np.linalg.norm(ols.theta * sd)
    assert r.variance_reduction < ols.variance_reduction  # OLS minimises the residual variance


def test_collinear_and_constant_covariates():
    """Every level of an attribute as a dummy (collinear), a constant and a duplicate covariate."""
    y, X, arm = _units(9, k=2)
    rng = np.random.default_rng(9)
    level = rng.integers(0, 3, y.size)
    y = y + 0.8 * (level == 1) - 0.5 * (level == 2)
    dummies = np.eye(3)[level]
    full = np.column_stack([X, dummies, np.ones_like(y), X[:, 0]])
    lean = np.column_stack([X, dummies[:, 1:]])
    r = compare_adjusted(*_split(y, full, arm), relative=True, guard=False)
    ref = compare_adjusted(*_split(y, lean, arm), relative=True, guard=False)
    for field in FIELDS + ("variance_reduction",):
        assert getattr(r, field) == pytest.approx(getattr(ref, field), rel=1e-8), field
    assert r.theta[5] == 0.0  # the constant
    assert r.theta[0] == pytest.approx(r.theta[6], rel=1e-8)  # the duplicate shares its slope
    ols = sm.OLS(y, sm.add_constant(lean)).fit()
    assert ref.theta == pytest.approx(ols.params[1:], rel=1e-8)


def test_degenerate_inputs_give_nan_not_exceptions():
    y, X, arm = _units(10, n=200)
    a, b = _split(y, X, arm)
    one = RegressionMoments.from_values(y[:1], X[:1])
    assert np.isnan(compare_adjusted(one, b).effect)
    few = RegressionMoments.from_values(y[:2], X[:2])
    assert np.isnan(compare_adjusted(few, few).se)  # N = 4 ≤ k + 2 = 5
    zero = RegressionMoments.from_values(np.zeros(50), X[:50])
    assert np.isnan(compare_adjusted(zero, b, relative=True).effect)
    assert np.isfinite(compare_adjusted(zero, b, relative=False).effect)
    empty = RegressionMoments(0, np.zeros(4), np.zeros((4, 4)))
    r = compare_adjusted(empty, empty)
    assert np.isnan(r.effect) and np.isnan(r.p_value) and np.isnan(r.theta).all()
    # Arrays: the bad element is NaN, the others are computed.
    stack = lambda *ms: RegressionMoments(  # noqa: E731
        np.array([m.n for m in ms]), np.stack([m.sums for m in ms]), np.stack([m.cross for m in ms])
    )
    v = compare_adjusted(stack(a, one, a), stack(b, b, b))
    assert np.isnan(v.effect[1]) and np.isfinite(v.effect[[0, 2]]).all()
    assert v.effect[0] == pytest.approx(compare_adjusted(a, b).effect, rel=1e-12)


def test_bad_calls_raise():
    y, X, arm = _units(11, n=100)
    a, b = _split(y, X, arm)
    with pytest.raises(ValueError):
        compare_adjusted(a, _columns(b, [0, 1, 2]))
    with pytest.raises(ValueError):
        compare_adjusted(a, b, alpha=0.0)
    with pytest.raises(ValueError):
        compare_adjusted(a, b, ridge=-1.0)
    with pytest.raises(ValueError):
        compare_adjusted(a, b, pooling="arms")
    with pytest.raises(ValueError):
        RegressionMoments(10, np.zeros(1), np.zeros((1, 1)))  # no covariate
    with pytest.raises(ValueError):
        compare_poststratified([Moments(10, 5.0, 5.0)], [Moments(10, 5.0, 5.0)], cuped=True)


# --- simulations on sufficient statistics -------------------------------------------------------


def _normal_arms(rng, n, mu, cov, k) -> RegressionMoments:
    """Exact sufficient statistics of n iid N(mu, cov) rows Z, for k experiments."""
    means = rng.multivariate_normal(mu, cov / n, k)
    scatter = sps.wishart.rvs(df=n - 1, scale=cov, size=k, random_state=rng)
    cross = scatter + n * means[:, :, None] * means[:, None, :]
    return RegressionMoments(np.full(k, float(n)), n * means, cross)


def _linear_model(beta, corr=0.3, noise=1.0, extra=0):
    """cov of Z = [y, x_1 .. x_k, e_1 .. e_extra]: y = β'x + ε, x equicorrelated, e pure noise."""
    k = len(beta)
    cxx = np.full((k, k), corr) + np.eye(k) * (1 - corr)
    beta = np.asarray(beta, dtype=float)
    p = 1 + k + extra
    cov = np.eye(p)
    cov[1 : 1 + k, 1 : 1 + k] = cxx
    cov[0, 1 : 1 + k] = cov[1 : 1 + k, 0] = cxx @ beta
    cov[0, 0] = beta @ cxx @ beta + noise**2
    return cov


def _effect_spread(cov, n, lift=0.0, seed=0, **kw):
    """Effects over EXPERIMENTS experiments: raw, CUPED (x_1 alone) and all covariates."""
    rng = np.random.default_rng(seed)
    mu = np.r_[10.0, np.ones(cov.shape[0] - 1)]
    a = _normal_arms(rng, n, mu, cov, EXPERIMENTS)
    b = _normal_arms(rng, n, mu + np.r_[lift, np.zeros(cov.shape[0] - 1)], cov, EXPERIMENTS)
    full = compare_adjusted(a, b, relative=False, **kw)
    cuped = compare_adjusted(_columns(a, [0, 1]), _columns(b, [0, 1]), relative=False, **kw)
    raw = compare(*(Moments(m.n, m.sums[:, 0], m.cross[:, 0, 0]) for m in (a, b)), relative=False)
    return raw, cuped, full


def _effect_variances(cov, n, seed=0, **kw):
    raw, cuped, full = _effect_spread(cov, n, seed=seed, **kw)
    return {
        "raw": raw.effect.var(),
        "cuped": cuped.effect.var(),
        "full": full.effect.var(),
        "reported_cuped": np.mean(cuped.variance_reduction),
        "reported_full": np.mean(full.variance_reduction),
        "full_chosen": np.mean(np.any(full.theta[:, 1:] != 0, axis=1)),
    }


def test_three_informative_covariates_beat_cuped():
    cov = _linear_model([0.6, 0.5, 0.5])
    v = _effect_variances(cov, 1000, seed=20261201)
    # Population variance reductions: ρ²(y, x_1) for CUPED, R²(y; x_1..x_3) for all three.
    r2_cuped = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    r2_full = 1 - 1.0 / cov[0, 0]
    cuped_ratio, full_ratio = v["cuped"] / v["raw"], v["full"] / v["raw"]
    print(
        f"\n3 informative covariates, n=1000/arm: Var/Var_raw CUPED {cuped_ratio:.4f} "
        f"(1-rho^2 {1 - r2_cuped:.4f}), all three {full_ratio:.4f} (1-R^2 {1 - r2_full:.4f}); "
        f"reported variance_reduction CUPED {v['reported_cuped']:.4f}, "
        f"all {v['reported_full']:.4f}; guard kept all in {v['full_chosen']:.1%}"
    )
    assert cuped_ratio == pytest.approx(1 - r2_cuped, rel=0.1)
    assert full_ratio == pytest.approx(1 - r2_full, rel=0.1)
    assert full_ratio / cuped_ratio == pytest.approx((1 - r2_full) / (1 - r2_cuped), rel=0.05)
    assert v["reported_full"] == pytest.approx(r2_full, rel=0.02)
    assert v["full_chosen"] == 1.0


@pytest.mark.parametrize("n", [100, 2000])
def test_pure_noise_covariates_cost_at_most_noise(n):
    """Eight covariates unrelated to y beside the metric's own pre-period value (ρ = 0.7), +0.3."""
    extra, lift, big_n = 8, 0.3, 2 * n
    cov = _linear_model([0.7], noise=np.sqrt(1 - 0.49), extra=extra)
    # ANCOVA's effect variance is ∝ (N − 3)/(N − k − 3) with k normal covariates (E of Hotelling's
    # imbalance term): the 8 useless slopes cost the ratio of k = 9 to k = 1.
    cost = (big_n - 4) / (big_n - 12)
    print(f"\n{extra} pure-noise covariates, n={n}/arm, theory for their price {cost:.4f}:")
    for pooling in ("within", "total"):
        for guard in (False, True):
            _, cuped, full = _effect_spread(
                cov, n, lift, seed=20261202 + n, pooling=pooling, guard=guard
            )
            ratio = full.effect.var() / cuped.effect.var()
            shrink = (full.effect.mean() - cuped.effect.mean()) / lift
            kept = np.mean(np.any(full.theta[:, 1:] != 0, axis=1))
            print(
                f"  pooling={pooling} guard={guard}: Var(all)/Var(CUPED) {ratio:.4f}, mean effect "
                f"{full.effect.mean() / lift:.4f}·truth (CUPED {cuped.effect.mean() / lift:.4f}), "
                f"all kept in {kept:.1%}"
            )
            if guard:
                assert ratio <= 1 + 0.25 * (cost - 1) + 0.002 and kept < 0.1
                assert abs(shrink) < 0.25 * extra / big_n + 0.002
            elif pooling == "within":
                assert ratio == pytest.approx(cost, abs=0.015)
                assert abs(shrink) < 0.002
            else:  # the effect leaks into the pooled covariance: shrinkage by about k/N
                assert shrink == pytest.approx(-extra / big_n, abs=0.3 * extra / big_n + 0.002)
                assert ratio < cost


@pytest.mark.parametrize("relative", [False, True])
def test_aa_false_positive_rate(relative):
    rng = np.random.default_rng(20261203)
    cov = _linear_model([0.6, 0.5, 0.5], extra=2)
    mu = np.r_[10.0, np.ones(5)]
    a, b = (_normal_arms(rng, 800, mu, cov, EXPERIMENTS) for _ in range(2))
    lo, hi = _band(ALPHA)
    rates = {}
    for ridge in (0.0, 0.1):
        r = compare_adjusted(a, b, relative=relative, alpha=ALPHA, ridge=ridge)
        rates[ridge] = np.mean(r.p_value < ALPHA)
    seq = compare_adjusted(a, b, relative=relative, sequential_tuning=5000)
    seq_rate = np.mean(seq.p_value < ALPHA)
    print(
        f"\nA/A, 5 covariates, relative={relative}: false-positive rate {rates[0.0]:.4f} (OLS), "
        f"{rates[0.1]:.4f} (ridge 0.1), sequential {seq_rate:.4f} (band {lo:.4f}–{hi:.4f})"
    )
    assert all(lo <= rate <= hi for rate in rates.values())
    assert seq_rate <= hi


def test_intervals_cover_planted_effects():
    rng = np.random.default_rng(20261204)
    lo, hi = _band(1 - ALPHA)
    cov = _linear_model([0.6, 0.5, 0.5], extra=2)
    mu = np.r_[10.0, np.ones(5)]
    a = _normal_arms(rng, 1500, mu, cov, EXPERIMENTS)
    b = _normal_arms(rng, 1500, mu + np.r_[0.3, np.zeros(5)], cov, EXPERIMENTS)

    def cover(r, truth):
        return float(np.mean((r.ci_low <= truth) & (truth <= r.ci_high)))

    rates = {
        "absolute": cover(compare_adjusted(a, b, relative=False), 0.3),
        "relative": cover(compare_adjusted(a, b, relative=True), 0.03),
        "absolute, ridge 0.1": cover(compare_adjusted(a, b, relative=False, ridge=0.1), 0.3),
        "absolute, within": cover(compare_adjusted(a, b, relative=False, pooling="within"), 0.3),
    }
    # A ratio metric: Z = [num, den, x_1, x_2] with E[num] = 20 (+4%), E[den] = 4.
    cov_r = np.array(
        [[9.0, 1.2, 1.8, 0.6], [1.2, 1.0, 0.3, 0.5], [1.8, 0.3, 1.0, 0.2], [0.6, 0.5, 0.2, 1.0]]
    )
    ra = _normal_arms(rng, 1500, [20.0, 4.0, 1.0, 1.0], cov_r, EXPERIMENTS)
    rb = _normal_arms(rng, 1500, [20.8, 4.0, 1.0, 1.0], cov_r, EXPERIMENTS)
    ra, rb = (RegressionMoments(m.n, m.sums, m.cross, responses=2) for m in (ra, rb))
    rates["ratio absolute"] = cover(compare_adjusted(ra, rb, relative=False), 0.2)
    rates["ratio relative"] = cover(compare_adjusted(ra, rb, relative=True), 0.04)
    print(f"\n95% coverage with several covariates (band {lo:.4f}–{hi:.4f}):")
    for name, rate in rates.items():
        print(f"  {name}: {rate:.4f}")
    for name, rate in rates.items():
        assert lo <= rate <= hi, name


def test_vectorized_equals_scalar():
    rng = np.random.default_rng(12)
    cov = _linear_model([0.5, 0.3], extra=3)
    a, b = (_normal_arms(rng, 60, np.r_[5.0, np.ones(5)], cov, 40) for _ in range(2))
    pick = lambda m, i: RegressionMoments(m.n[i], m.sums[i], m.cross[i])  # noqa: E731
    for guard in (False, True):
        v = compare_adjusted(a, b, relative=True, guard=guard, sequential_tuning=5000)
        for i in range(40):
            s = compare_adjusted(
                pick(a, i), pick(b, i), relative=True, guard=guard, sequential_tuning=5000
            )
            assert isinstance(s.effect, float) and s.theta.shape == (5,)
            for field in FIELDS + ("variance_reduction",):
                assert getattr(s, field) == pytest.approx(getattr(v, field)[i], rel=1e-12)
            np.testing.assert_allclose(s.theta, v.theta[i], rtol=1e-12)


# --- post-stratification ------------------------------------------------------------------------


def _strata_units(seed=13, n=6000, lift=0.3, spread=(0.0, 2.0, 4.0, 7.0)):
    rng = np.random.default_rng(seed)
    stratum = rng.choice(len(spread), n, p=[0.4, 0.3, 0.2, 0.1])
    arm = (rng.random(n) < 0.5).astype(float)
    x = rng.normal(0, 1, n)
    y = 10 + np.asarray(spread)[stratum] + 0.8 * x + lift * arm * (1 + 0.5 * stratum)
    return y + rng.normal(0, 2, n), x, stratum, arm


def _strata_moments(y, x, stratum, arm, cuped=False):
    levels = np.unique(stratum)
    per = lambda g: [  # noqa: E731
        Moments.from_values(
            y[(stratum == s) & (arm == g)], x[(stratum == s) & (arm == g)] if cuped else None
        )
        for s in levels
    ]
    return per(0), per(1)


def test_poststratified_matches_weighted_means_and_lin_regression():
    y, x, stratum, arm = _strata_units()
    r = compare_poststratified(*_strata_moments(y, x, stratum, arm), relative=False)
    levels = np.unique(stratum)
    w = np.array([np.mean(stratum == s) for s in levels])
    means = np.array([[y[(stratum == s) & (arm == g)].mean() for g in (0, 1)] for s in levels])
    delta = means[:, 1] - means[:, 0]
    assert r.effect == pytest.approx(w @ delta, rel=1e-10)
    # Given the strata sizes, the variance is Lin's interacted regression's HC2 (y on arm, the
    # centred stratum dummies and their products with arm); GrowthBook adds the variance of the
    # strata shares, Σ w_s (Δ_s − Δ)² / N for the effect.
    d = np.eye(len(levels))[stratum][:, 1:]
    dc = d - d.mean(0)
    lin = sm.OLS(y, np.column_stack([np.ones_like(y), arm, dc, arm[:, None] * dc])).fit(
        cov_type="HC2"
    )
    assert lin.params[1] == pytest.approx(r.effect, rel=1e-10)
    shares = w @ (delta - w @ delta) ** 2 / y.size
    assert r.se == pytest.approx(np.sqrt(lin.bse[1] ** 2 + shares), rel=1e-9)
    assert r.adjusted_mean_a == pytest.approx(w @ means[:, 0], rel=1e-12)
    assert r.mean_a == pytest.approx(y[arm == 0].mean(), rel=1e-12)
    raw = compare(
        Moments.from_values(y[arm == 0]), Moments.from_values(y[arm == 1]), relative=False
    )
    assert r.variance_reduction == pytest.approx(1 - r.se**2 / raw.se**2, rel=1e-10)
    print(f"\npost-stratification on 4 strata: variance reduction {r.variance_reduction:.3f}")
    assert r.variance_reduction > 0.3


def test_poststratified_relative_by_the_delta_method():
    y, x, stratum, arm = _strata_units(14)
    r = compare_poststratified(*_strata_moments(y, x, stratum, arm), relative=True)
    levels = np.unique(stratum)
    w = np.array([np.mean(stratum == s) for s in levels])
    alpha_s, v_s = [], []
    for s in levels:
        ya, yb = y[(stratum == s) & (arm == 0)], y[(stratum == s) & (arm == 1)]
        va, vb = ya.var(ddof=1) / ya.size, yb.var(ddof=1) / yb.size
        alpha_s.append([ya.mean(), yb.mean() - ya.mean()])
        v_s.append([[va, -va], [-va, va + vb]])
    alpha_s, v_s = np.array(alpha_s), np.array(v_s)
    mean = w @ alpha_s
    dev = alpha_s - mean
    cov = np.tensordot(w**2, v_s, 1) + (w[:, None] * dev).T @ dev / y.size
    g = np.array([-mean[1] / mean[0] ** 2, 1 / mean[0]])
    assert r.effect == pytest.approx(mean[1] / mean[0], rel=1e-10)
    assert r.se == pytest.approx(np.sqrt(g @ cov @ g), rel=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_one_stratum_is_compare(relative):
    y, x, _, arm = _strata_units(15)
    a, b = (Moments.from_values(y[arm == g], x[arm == g]) for g in (0, 1))
    ps = compare_poststratified([a], [b], relative=relative)
    c = compare(a, b, relative=relative)
    for field in FIELDS:
        assert getattr(ps, field) == pytest.approx(getattr(c, field), rel=1e-10), field
    # CUPED within the stratum: compare's θ and absolute effect (compare's relative se uses
    # gbstats' simplified form, post-stratification the full covariance of the baseline mean).
    ps = compare_poststratified([a], [b], relative=False, cuped=True)
    c = compare(a, b, relative=False, cuped=True)
    for field in FIELDS:
        assert getattr(ps, field) == pytest.approx(getattr(c, field), rel=1e-10), field
    assert ps.theta == pytest.approx([c.theta], rel=1e-12)


def test_poststratified_inputs_and_degenerate_strata():
    y, x, stratum, arm = _strata_units(16)
    sa, sb = _strata_moments(y, x, stratum, arm)
    names = ("n", "sum", "sum_sq")
    stacked = [Moments(*(np.array([getattr(m, f) for m in s]) for f in names)) for s in (sa, sb)]
    one, two = compare_poststratified(sa, sb), compare_poststratified(*stacked)
    for field in FIELDS:
        assert getattr(one, field) == pytest.approx(getattr(two, field), rel=1e-12)
    # A stratum without units is skipped; one with a single unit in an arm makes the result NaN.
    empty = Moments(0, 0.0, 0.0)
    padded = compare_poststratified(sa + [empty], sb + [empty])
    assert padded.effect == pytest.approx(one.effect, rel=1e-12)
    assert padded.se == pytest.approx(one.se, rel=1e-12)
    lone = compare_poststratified(sa + [Moments(1, 3.0, 9.0)], sb + [Moments(5, 15.0, 50.0)])
    assert np.isnan(lone.effect) and np.isnan(lone.p_value)
    # A batch (leading axis) of post-stratified comparisons.
    batch = [Moments(*(np.stack([getattr(m, f)] * 3) for f in names)) for m in stacked]
    np.testing.assert_allclose(compare_poststratified(*batch).se, one.se, rtol=1e-12)


def _strata_arm(rng, n, shares, means, sd, k):
    """Per-stratum Moments of n units (multinomial strata) with normal y: exact sums, k times."""
    counts = rng.multinomial(n, shares, k).astype(float)
    m = rng.normal(np.asarray(means), sd / np.sqrt(np.maximum(counts, 1)))
    scatter = sd**2 * rng.chisquare(np.maximum(counts - 1, 1))
    return Moments(counts, counts * m, scatter + counts * m**2)


@pytest.mark.parametrize("between", [0.0, 3.0])
def test_poststratification_simulation(between):
    """Strata that explain y (stratum means spread `between`) and strata that do not."""
    rng = np.random.default_rng(20261205 + int(between))
    shares, sd, n = [0.4, 0.3, 0.2, 0.1], 2.0, 1500
    means = 10 + between * np.arange(4.0)
    a = _strata_arm(rng, n, shares, means, sd, EXPERIMENTS)
    b = _strata_arm(rng, n, shares, means, sd, EXPERIMENTS)
    b_lift = _strata_arm(rng, n, shares, means + 0.3, sd, EXPERIMENTS)
    total = lambda m: Moments(m.n.sum(-1), m.sum.sum(-1), m.sum_sq.sum(-1))  # noqa: E731
    ps = compare_poststratified(a, b, relative=False)
    raw = compare(total(a), total(b), relative=False)
    mu = np.dot(shares, means)
    r2 = np.dot(shares, (means - mu) ** 2) / (np.dot(shares, (means - mu) ** 2) + sd**2)
    ratio = ps.effect.var() / raw.effect.var()
    fp = np.mean(ps.p_value < ALPHA)
    lifted = compare_poststratified(a, b_lift, relative=True)
    truth = 0.3 / mu
    coverage = np.mean((lifted.ci_low <= truth) & (truth <= lifted.ci_high))
    print(
        f"\npost-stratification, between-strata share of Var(y) {r2:.3f}: Var_ps/Var_raw "
        f"{ratio:.4f}, mean reported reduction {np.nanmean(ps.variance_reduction):.4f}, "
        f"A/A false-positive rate {fp:.4f}, relative coverage {coverage:.4f}"
    )
    assert ratio == pytest.approx(1 - r2, abs=0.06)
    assert np.mean(ps.variance_reduction) == pytest.approx(r2, abs=0.01)
    lo, hi = _band(ALPHA)
    assert lo <= fp <= hi
    lo, hi = _band(1 - ALPHA)
    assert lo <= coverage <= hi


# --- the demo's world ---------------------------------------------------------------------------


@pytest.mark.slow
def test_variance_reduction_on_the_demo_world():
    """The demo's simulator (20,000 users, seed 7): 14 pre-period and 14 experiment days, no effect.

    Covariates per user: the metric's own pre-period value (CUPED), pre-period page views, orders,
    revenue and page load, and country and platform dummies; 100 random halvings of active users.
    """
    from ab_pipelines.simulate import DEFAULT_SEED, DEFAULT_USERS
    from ab_pipelines.simulate.population import COUNTRIES, PLATFORMS, make_population
    from ab_pipelines.simulate.traffic import day_events
    from ab_pipelines.simulate.truth import MULTIPLIER_KINDS

    pop = make_population(DEFAULT_USERS, DEFAULT_SEED)
    ones = {k: np.ones(pop.size) for k in MULTIPLIER_KINDS}
    index = {u: i for i, u in enumerate(pop.user_ids)}
    names = ("views", "load", "orders", "revenue")
    periods = {p: {k: np.zeros(pop.size) for k in names} for p in ("pre", "post")}
    first = dt.date(2026, 10, 19)
    for day in range(28):
        values = periods["pre" if day < 14 else "post"]
        events = day_events(pop, first + dt.timedelta(days=day), DEFAULT_SEED, ones, [])
        for e in events["metric_events"].values:
            u = index[e["user_id"]]
            if e["event"] == "page_view":
                values["views"][u] += 1
                values["load"][u] += e["value"]
            elif e["properties"]["currency"] == "USD":
                values["orders"][u] += 1
                values["revenue"][u] += e["value"]
    pre, post = periods["pre"], periods["post"]
    active = post["views"] > 0
    attrs = np.column_stack(
        [pop.country == i for i in range(1, len(COUNTRIES))]
        + [pop.platform == i for i in range(1, len(PLATFORMS))]
    ).astype(float)[active]
    cases = {  # metric: (per-user value, denominator, its own pre-period covariates)
        "revenue": (post["revenue"], None, ["revenue"]),
        "orders": (post["orders"], None, ["orders"]),
        "conversion": ((post["orders"] > 0) * 1.0, None, []),
        "page_load_ms": (post["load"], post["views"], ["load", "views"]),
    }
    platform = pop.platform[active]
    rng = np.random.default_rng(20261206)
    print(f"\nthe demo's world, {active.sum()} active users, 100 random halvings:")
    for metric, (y, den, own) in cases.items():
        own_x = [pre[k] for k in own] or [(pre["orders"] > 0) * 1.0]
        rest = [pre[k] for k in names if k not in own]
        X = np.column_stack(own_x + rest)[active]
        X = np.column_stack([X, attrs])
        y, den = y[active], None if den is None else den[active]
        r = 1 if den is None else 2
        vr = {"CUPED": [], "all": [], "all, no guard": [], "platform strata": []}
        for _ in range(100):
            arm = (rng.random(y.size) < 0.5).astype(float)
            a, b = _split(y, X, arm, den)
            cols = list(range(2 * r))
            cuped = compare_adjusted(_columns(a, cols), _columns(b, cols))
            vr["CUPED"].append(cuped.variance_reduction)
            vr["all"].append(compare_adjusted(a, b).variance_reduction)
            vr["all, no guard"].append(compare_adjusted(a, b, guard=False).variance_reduction)
            if den is None:
                cut = [
                    [(arm == g) & (platform == i) for i in range(len(PLATFORMS))] for g in (0, 1)
                ]
                strata = [[Moments.from_values(y[m]) for m in masks] for masks in cut]
                vr["platform strata"].append(compare_poststratified(*strata).variance_reduction)
        means = {k: np.mean(v) for k, v in vr.items() if v}
        print(f"  {metric}: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
        assert means["all"] >= means["CUPED"] - 0.002


def test_docstring_examples_run():
    result = doctest.testmod(regression_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
