"""Simulations on sufficient statistics (numpy, fixed seeds): error rates, peeking, CUPED, coverage.

Run with ``pytest -s`` to see the measured rates. Sufficient statistics are drawn exactly from
their sampling distributions: binomial sums for conversions (Σy² = Σy), and for bivariate normal
(Y, X) the mean vector ~ N(μ, Σ/n) and the scatter matrix ~ Wishart(n − 1, Σ), independent.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ab_pipelines.stats import Moments, RatioMoments, compare

ALPHA = 0.05
EXPERIMENTS = 2000


def _band(rate: float, trials: int = EXPERIMENTS) -> tuple[float, float]:
    """The 99.9% binomial band of an observed rate around ``rate``."""
    lo, hi = sps.binom.ppf([0.0005, 0.9995], trials, rate)
    return lo / trials, hi / trials


def _conversions(rng, n, p, shape):
    s = rng.binomial(n, p, shape).astype(float)
    return Moments(n=np.full(shape, float(n)), sum=s, sum_sq=s)


def _normal_arm(rng, n, mu, cov, k):
    """Exact sufficient statistics of n iid N(mu, cov) pairs (Y, X), k experiments."""
    means = rng.multivariate_normal(mu, cov / n, k)
    scatter = sps.wishart.rvs(df=n - 1, scale=cov, size=k, random_state=rng)
    sums = n * means
    prods = scatter + n * means[:, :, None] * means[:, None, :]
    return Moments(
        n=np.full(k, float(n)),
        sum=sums[:, 0],
        sum_sq=prods[:, 0, 0],
        pre_sum=sums[:, 1],
        pre_sum_sq=prods[:, 1, 1],
        sum_cross=prods[:, 0, 1],
    )


def test_aa_fixed_horizon_false_positive_rate():
    rng = np.random.default_rng(20261101)
    a = _conversions(rng, 5000, 0.1, EXPERIMENTS)
    b = _conversions(rng, 5000, 0.1, EXPERIMENTS)
    lo, hi = _band(ALPHA)
    for relative in (False, True):
        rate = np.mean(compare(a, b, relative=relative, alpha=ALPHA).p_value < ALPHA)
        print(
            f"\nA/A fixed horizon, relative={relative}: false-positive rate {rate:.4f} (band {lo:.4f}–{hi:.4f})"
        )
        assert lo <= rate <= hi


def test_daily_peeking_sequential_vs_naive():
    """28 daily looks, 1,000 new users per arm a day: ever-rejecting rates of both rules."""
    rng = np.random.default_rng(20261102)
    days, per_day = 28, 1000
    a = _conversions(rng, per_day, 0.1, (EXPERIMENTS, days))
    b = _conversions(rng, per_day, 0.1, (EXPERIMENTS, days))
    cum = lambda m: Moments(np.cumsum(m.n, 1), np.cumsum(m.sum, 1), np.cumsum(m.sum_sq, 1))  # noqa: E731
    a, b = cum(a), cum(b)
    naive = compare(a, b, relative=True, alpha=ALPHA)
    seq = compare(a, b, relative=True, alpha=ALPHA, sequential_tuning=5000)
    naive_rate = np.mean((naive.p_value < ALPHA).any(axis=1))
    seq_rate = np.mean((seq.p_value < ALPHA).any(axis=1))
    last_day = np.mean(naive.p_value[:, -1] < ALPHA)
    print(
        f"\nA/A with 28 daily looks: naive peeking rejects ever {naive_rate:.4f}, sequential "
        f"(N*=5000) {seq_rate:.4f}, fixed horizon at day 28 only {last_day:.4f} (alpha {ALPHA})"
    )
    mc = 3 * np.sqrt(ALPHA * (1 - ALPHA) / EXPERIMENTS)  # three Monte Carlo standard errors
    assert seq_rate <= ALPHA + mc
    assert naive_rate > ALPHA + mc
    # The interval side agrees: the sequence excludes 0 exactly when the p-value is below α.
    np.testing.assert_array_equal((seq.ci_low > 0) | (seq.ci_high < 0), seq.p_value < ALPHA)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_cuped_variance_ratio_is_one_minus_rho_squared(rho):
    rng = np.random.default_rng(20261103 + int(10 * rho))
    cov = np.array([[4.0, 2.0 * rho * 3.0], [2.0 * rho * 3.0, 9.0]])  # sd(Y)=2, sd(X)=3
    a = _normal_arm(rng, 1000, [10.0, 5.0], cov, EXPERIMENTS)
    b = _normal_arm(rng, 1000, [10.0, 5.0], cov, EXPERIMENTS)
    raw = compare(a, b, relative=False)
    cup = compare(a, b, relative=False, cuped=True)
    ratio = cup.effect.var() / raw.effect.var()
    print(
        f"\nCUPED rho={rho}: Var_cuped/Var_raw {ratio:.4f} vs 1-rho^2 {1 - rho**2:.4f}; "
        f"mean reported variance_reduction {np.mean(cup.variance_reduction):.4f}"
    )
    assert ratio == pytest.approx(1 - rho**2, rel=0.10)
    assert np.mean(cup.variance_reduction) == pytest.approx(rho**2, rel=0.05)


def _coverage(r, truth):
    return float(np.mean((r.ci_low <= truth) & (truth <= r.ci_high)))


def test_intervals_cover_planted_effects():
    rng = np.random.default_rng(20261104)
    lo, hi = _band(1 - ALPHA)
    rates = {}
    # Conversion 10% → 10.5%: absolute and relative (delta method) Welch intervals.
    a = _conversions(rng, 8000, 0.100, EXPERIMENTS)
    b = _conversions(rng, 8000, 0.105, EXPERIMENTS)
    rates["conversion absolute"] = _coverage(compare(a, b, relative=False), 0.005)
    rates["conversion relative"] = _coverage(compare(a, b, relative=True), 0.05)
    # CUPED on a normal metric with a planted +0.3 (3% relative) and rho = 0.7.
    cov = np.array([[4.0, 0.7 * 6.0], [0.7 * 6.0, 9.0]])
    a = _normal_arm(rng, 2000, [10.0, 5.0], cov, EXPERIMENTS)
    b = _normal_arm(rng, 2000, [10.3, 5.0], cov, EXPERIMENTS)
    rates["CUPED absolute"] = _coverage(compare(a, b, relative=False, cuped=True), 0.3)
    rates["CUPED relative"] = _coverage(compare(a, b, relative=True, cuped=True), 0.03)
    # A ratio metric (per-page load time) with a planted +4%, raw per-user data.
    n = 600
    arms = []
    for lift in (1.0, 1.04):
        den = rng.poisson(3.0, (EXPERIMENTS, n)) + 1.0
        num = den * rng.gamma(4.0, 50.0, (EXPERIMENTS, n)) * lift
        arms.append(
            RatioMoments(
                n=np.full(EXPERIMENTS, float(n)),
                num_sum=num.sum(1),
                num_sum_sq=(num**2).sum(1),
                den_sum=den.sum(1),
                den_sum_sq=(den**2).sum(1),
                num_den_sum=(num * den).sum(1),
            )
        )
    rates["ratio absolute"] = _coverage(compare(*arms, relative=False), 200.0 * 0.04)
    rates["ratio relative"] = _coverage(compare(*arms, relative=True), 0.04)
    # The same ratio with CUPED (gbstats' regression-adjusted ratio): a persistent per-user speed.
    arms = []
    for lift in (1.0, 1.04):
        speed = rng.gamma(4.0, 50.0, (EXPERIMENTS, n))
        pre_den = rng.poisson(3.0, (EXPERIMENTS, n)) + 1.0
        den = rng.poisson(3.0, (EXPERIMENTS, n)) + 1.0
        pre_num = pre_den * speed * rng.lognormal(0, 0.3, (EXPERIMENTS, n))
        num = den * speed * rng.lognormal(0, 0.3, (EXPERIMENTS, n)) * lift
        v = {"num": num, "den": den, "pre_num": pre_num, "pre_den": pre_den}
        fields = {"n": np.full(EXPERIMENTS, float(n))}
        for name in ("num", "den", "pre_num", "pre_den"):
            fields[f"{name}_sum"] = v[name].sum(1)
            fields[f"{name}_sum_sq"] = (v[name] ** 2).sum(1)
        for x, y in (
            ("num", "den"),
            ("pre_num", "pre_den"),
            ("num", "pre_num"),
            ("num", "pre_den"),
            ("den", "pre_num"),
            ("den", "pre_den"),
        ):
            fields[f"{x}_{y}_sum"] = (v[x] * v[y]).sum(1)
        arms.append(RatioMoments(**fields))
    truth = 200.0 * np.exp(0.045) * 0.04  # E[speed]·E[lognormal(0, 0.3)]·lift
    rates["ratio CUPED absolute"] = _coverage(compare(*arms, relative=False, cuped=True), truth)
    rates["ratio CUPED relative"] = _coverage(compare(*arms, relative=True, cuped=True), 0.04)
    print(f"\n95% interval coverage of planted effects (band {lo:.4f}–{hi:.4f}):")
    for name, rate in rates.items():
        print(f"  {name}: {rate:.4f}")
    for name, rate in rates.items():
        assert lo <= rate <= hi, name
