"""thompson_weights, floor_weights and compare_by_period: against closed forms, numerical
integration, raw arrays and ``compare``, and a simulated 3-arm bandit with a planted time trend
(run with ``pytest -s`` to see the measured numbers)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import integrate, optimize
from scipy import stats as sps

from ab_pipelines.stats import (
    BanditWeights,
    Moments,
    compare,
    compare_by_period,
    compare_poststratified,
    floor_weights,
    thompson_weights,
)
from ab_pipelines.stats import bandit as bandit_module

# --- Thompson weights ---------------------------------------------------------------------------


def _arms(means, sds, ns):
    """Moments with exactly these per-arm means, sample sds and sizes."""
    n, m, s = (np.asarray(x, dtype=float) for x in (ns, means, sds))
    return Moments(n=n, sum=n * m, sum_sq=(n - 1) * s**2 + n * m**2)


@pytest.mark.parametrize("seed", range(6))
def test_two_arms_closed_form_and_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    means, sds, ns = rng.normal(10, 0.3, 2), rng.uniform(5, 15, 2), rng.integers(500, 5000, 2)
    arms = _arms(means, sds, ns)
    s2 = sds**2 / ns
    exact = sps.norm.cdf((means[1] - means[0]) / np.sqrt(s2.sum()))
    w = thompson_weights(arms, floor=0.0)
    np.testing.assert_allclose(w.best_probability, [1 - exact, exact], rtol=1e-12)
    np.testing.assert_allclose(w.weights, [1 - exact, exact], rtol=1e-12)
    assert w.draws is None
    mc = thompson_weights(arms, floor=0.0, method="monte_carlo", draws=40_000, seed=seed)
    assert mc.draws == 40_000
    assert abs(mc.best_probability[1] - exact) <= 4 * np.sqrt(exact * (1 - exact) / 40_000) + 1e-9
    low = thompson_weights(arms, floor=0.0, higher_is_better=False)
    np.testing.assert_allclose(low.best_probability, [exact, 1 - exact], rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_more_arms_monte_carlo_against_the_integral(seed):
    """w_k = ∫ φ_k(x) Π_{i≠k} Φ((x − m_i)/s_i) dx (GrowthBook's formula), by scipy's quad."""
    rng = np.random.default_rng(10 + seed)
    k = 3 + seed
    means, sds, ns = rng.normal(10, 0.25, k), rng.uniform(5, 15, k), rng.integers(500, 5000, k)
    arms = _arms(means, sds, ns)
    m, s = means, sds / np.sqrt(ns)
    ref = []
    for j in range(k):
        others = [i for i in range(k) if i != j]

        def f(x, j=j, others=others):
            return sps.norm.pdf(x, m[j], s[j]) * np.prod(sps.norm.cdf((x - m[others]) / s[others]))

        ref.append(integrate.quad(f, m[j] - 12 * s[j], m[j] + 12 * s[j], limit=200)[0])
    ref = np.array(ref)
    assert ref.sum() == pytest.approx(1.0, abs=1e-6)
    draws = 20_000
    w = thompson_weights(arms, floor=0.0, draws=draws, seed=seed)
    tol = 4 * np.sqrt(ref * (1 - ref) / draws) + 1e-9
    assert np.all(np.abs(w.best_probability - ref) <= tol)
    np.testing.assert_allclose(w.posterior_mean, means, rtol=1e-12)
    np.testing.assert_allclose(w.posterior_sd, s, rtol=1e-10)


def test_deterministic_given_the_seed_and_batch_independent():
    rng = np.random.default_rng(4)
    k, bandits = 4, 6
    arms = _arms(
        rng.normal(10, 0.2, (bandits, k)), np.full((bandits, k), 10.0), np.full((bandits, k), 2000)
    )
    one = thompson_weights(arms, seed=11)
    again = thompson_weights(arms, seed=11)
    other = thompson_weights(arms, seed=12)
    np.testing.assert_array_equal(one.weights, again.weights)
    assert not np.array_equal(one.best_probability, other.best_probability)
    for i in range(bandits):
        alone = thompson_weights(_arms(arms.mean[i], np.full(k, 10.0), np.full(k, 2000)), seed=11)
        np.testing.assert_allclose(alone.weights, one.weights[i], rtol=1e-12)


def test_burn_in_current_weights_and_degenerate_arms():
    arms = _arms([10.0, 10.5, 10.2], [10.0, 10.0, 10.0], [5000, 80, 5000])
    w = thompson_weights(arms)  # one arm below the default 100 units
    assert isinstance(w, BanditWeights) and w.updated is False
    np.testing.assert_allclose(w.weights, [1 / 3] * 3)
    assert np.isfinite(w.best_probability).all()  # shown, not used
    held = thompson_weights(arms, current_weights=[0.2, 0.3, 0.5])
    np.testing.assert_allclose(held.weights, [0.2, 0.3, 0.5])
    assert thompson_weights(arms, min_units=50).updated is True
    # An arm with one unit has no variance: no update, whatever min_units says.
    one = Moments(n=[1, 500, 500], sum=[3.0, 50.0, 60.0], sum_sq=[9.0, 50.0, 60.0])
    w = thompson_weights(one, min_units=0)
    assert w.updated is False and np.isnan(w.best_probability).all()
    # Zero variance (no conversions yet in one arm) is a point mass, not an error.
    zero = Moments(n=[500, 500], sum=[0.0, 50.0], sum_sq=[0.0, 50.0])
    w = thompson_weights(zero)
    assert w.updated is True
    np.testing.assert_allclose(w.best_probability, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(w.weights, [0.01, 0.99])
    with pytest.raises(ValueError):
        thompson_weights(arms, floor=0.5)
    with pytest.raises(ValueError):
        thompson_weights(Moments(n=[10], sum=[1.0], sum_sq=[1.0]))


# --- the floor ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_floor_by_root_finding(seed):
    """w = max(floor, c·p) with Σw = 1: c found by Brent's method, independently."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    p = rng.dirichlet(np.full(k, 0.3))
    floor = float(rng.uniform(0.0, 1.0 / k))
    c = optimize.brentq(
        lambda c: np.maximum(floor, c * p).sum() - 1.0, 0.0, 1.0 / p.max() * 2, xtol=1e-15
    )
    np.testing.assert_allclose(floor_weights(p, floor), np.maximum(floor, c * p), atol=1e-12)


def test_floor_is_honoured_where_clamp_and_renormalise_is_not():
    p = np.array([0.995, 0.004, 0.001])
    gb = np.maximum(p, 0.01)
    gb /= gb.sum()  # GrowthBook's bandits.py: p[p < floor] = floor; p /= sum(p)
    assert gb.min() < 0.01
    w = floor_weights(p, 0.01)
    assert w.min() >= 0.01 - 1e-15 and w.sum() == pytest.approx(1.0)
    batch = floor_weights(np.random.default_rng(1).dirichlet([0.2] * 5, 500), 0.05)
    assert batch.min() >= 0.05 - 1e-12
    np.testing.assert_allclose(batch.sum(-1), 1.0)


# --- the period-weighted comparison ------------------------------------------------------------


def _periods(rng, sizes_a, sizes_b, drift):
    """Raw values per period and arm, and their per-period Moments (periods on the last axis)."""
    raw_a = [rng.normal(10 + drift * p, 5, n) for p, n in enumerate(sizes_a)]
    raw_b = [rng.normal(10.5 + drift * p, 6, n) for p, n in enumerate(sizes_b)]

    def stack(raw):
        return Moments(
            n=np.array([len(x) for x in raw], dtype=float),
            sum=np.array([x.sum() for x in raw]),
            sum_sq=np.array([(x**2).sum() for x in raw]),
        )

    return raw_a, raw_b, stack(raw_a), stack(raw_b)


@pytest.mark.parametrize("relative", [False, True])
def test_compare_by_period_on_raw_arrays(relative):
    rng = np.random.default_rng(8)
    sizes_a, sizes_b = [400, 120, 30, 12], [400, 700, 900, 1100]
    raw_a, raw_b, a, b = _periods(rng, sizes_a, sizes_b, drift=2.0)
    total = np.array([1200, 1100, 1000, 1150], dtype=float)  # N_p over all arms of the bandit
    r = compare_by_period(a, b, period_share=total, relative=relative)
    w = total / total.sum()
    v_a = sum(wp * x.mean() for wp, x in zip(w, raw_a, strict=True))
    v_b = sum(wp * x.mean() for wp, x in zip(w, raw_b, strict=True))
    ta = np.array([wp**2 * x.var(ddof=1) / len(x) for wp, x in zip(w, raw_a, strict=True)])
    tb = np.array([wp**2 * x.var(ddof=1) / len(x) for wp, x in zip(w, raw_b, strict=True)])
    # Satterthwaite on the difference's terms (compare's Welch df is that of the difference too).
    df = (ta.sum() + tb.sum()) ** 2 / (
        np.sum(ta**2 / (np.array(sizes_a) - 1)) + np.sum(tb**2 / (np.array(sizes_b) - 1))
    )
    if relative:
        effect = (v_b - v_a) / abs(v_a)
        var = ta.sum() * v_b**2 / v_a**4 + tb.sum() / v_a**2
    else:
        effect, var = v_b - v_a, ta.sum() + tb.sum()
    assert r.effect == pytest.approx(effect, rel=1e-10)
    assert r.se == pytest.approx(np.sqrt(var), rel=1e-10)
    assert r.df == pytest.approx(df, rel=1e-10)
    half = sps.t.ppf(0.975, df) * np.sqrt(var)
    assert r.ci_low == pytest.approx(effect - half, rel=1e-9)
    assert r.p_value == pytest.approx(2 * sps.t.sf(abs(effect) / np.sqrt(var), df), rel=1e-9)
    assert r.adjusted_mean_a == pytest.approx(v_a, rel=1e-12)
    assert r.mean_a == pytest.approx(np.concatenate(raw_a).mean(), rel=1e-12)
    assert r.n_b == sum(sizes_b)
    pooled = compare(
        Moments.from_values(np.concatenate(raw_a)),
        Moments.from_values(np.concatenate(raw_b)),
        relative=relative,
    )
    assert r.variance_reduction == pytest.approx(1 - var / pooled.se**2, rel=1e-9)


@pytest.mark.parametrize("relative", [False, True])
def test_one_period_is_compare(relative):
    rng = np.random.default_rng(2)
    _, _, a, b = _periods(rng, [300], [500], drift=0.0)
    r = compare_by_period(a, b, relative=relative)
    ref = compare(
        Moments(a.n[0], a.sum[0], a.sum_sq[0]),
        Moments(b.n[0], b.sum[0], b.sum_sq[0]),
        relative=relative,
    )
    for field in ("effect", "se", "df", "ci_low", "ci_high", "p_value", "mean_a", "mean_b"):
        assert getattr(r, field) == pytest.approx(getattr(ref, field), rel=1e-10), field


def test_two_arm_shares_give_the_post_stratified_estimate():
    """With w_p = the two arms' own shares, the estimate is compare_poststratified's (strata =
    periods); only the variance differs (post-stratification adds the shares' randomness)."""
    rng = np.random.default_rng(3)
    _, _, a, b = _periods(rng, [300, 200, 100], [300, 400, 500], drift=1.0)
    r = compare_by_period(a, b, relative=True)
    ps = compare_poststratified(a, b, relative=True)
    assert r.effect == pytest.approx(ps.effect, rel=1e-12)
    assert r.adjusted_mean_a == pytest.approx(ps.adjusted_mean_a, rel=1e-12)
    assert r.se <= ps.se


def test_compare_by_period_degenerate_and_batched():
    rng = np.random.default_rng(4)
    _, _, a, b = _periods(rng, [300, 1, 100], [300, 400, 500], drift=1.0)
    r = compare_by_period(a, b, relative=False)
    assert np.isnan(r.effect) and np.isnan(r.se) and np.isnan(r.p_value)
    # A period nobody entered (w_p = 0) drops out instead.
    r = compare_by_period(a, b, period_share=[1.0, 0.0, 1.0], relative=False)
    assert np.isfinite(r.effect)
    _, _, a2, b2 = _periods(rng, [300, 50, 100], [300, 400, 500], drift=1.0)
    stacked_a = Moments(
        *(np.stack([getattr(a2, f), getattr(a2, f)]) for f in ("n", "sum", "sum_sq"))
    )
    stacked_b = Moments(
        *(np.stack([getattr(b2, f), getattr(b2, f)]) for f in ("n", "sum", "sum_sq"))
    )
    rr = compare_by_period(stacked_a, stacked_b)
    one = compare_by_period(a2, b2)
    np.testing.assert_allclose(rr.effect, one.effect, rtol=1e-12)
    with pytest.raises(ValueError):
        compare_by_period(a2, b2, alpha=0.0)
    with pytest.raises(ValueError):
        compare_by_period(a2, b2, period_share=[1.0, -1.0, 1.0])


def test_docstring_examples_run():
    result = doctest.testmod(bandit_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 8 and result.failed == 0


# --- simulation: a 3-arm bandit over 14 days with a planted time trend ------------------------

RUNS, DAYS, PER_DAY, DRAWS = 1000, 14, 3000, 2000
BASE, SD, TREND = 10.0, 10.0, 0.02  # every arm's mean grows 2% of the base a day
DELTA = np.array([0.0, 0.2, 0.5])  # control, +2%, +5% (additive: the effect is constant)
FLOOR = 0.01


@pytest.fixture(scope="module")
def bandit_runs():
    """RUNS bandits: day d's split is the Thompson weights after day d − 1 (equal on day 1);
    PER_DAY units a day split multinomially; per arm and day the mean ~ N(μ, SD²/n) and the
    scatter ~ SD²·χ²(n − 1), exact for normal units. Weights weight by period, seed = day."""
    rng = np.random.default_rng(20261227)
    k = len(DELTA)
    n, s, ss = (np.zeros((RUNS, k, 0)) for _ in range(3))
    weights = np.full((RUNS, k), 1.0 / k)
    history = []
    for day in range(DAYS):
        mu = BASE * (1 + TREND * day) + DELTA
        units = rng.multinomial(PER_DAY, weights).astype(float)
        ybar = mu + SD * rng.standard_normal((RUNS, k)) / np.sqrt(np.maximum(units, 1))
        scatter = SD**2 * rng.chisquare(np.maximum(units - 1, 1))
        n = np.concatenate([n, units[..., None]], -1)
        s = np.concatenate([s, (units * ybar)[..., None]], -1)
        ss = np.concatenate([ss, (scatter + units * ybar**2)[..., None]], -1)
        w = thompson_weights(Moments(n, s, ss), by_period=True, floor=FLOOR, draws=DRAWS, seed=day)
        weights = w.weights
        history.append(weights)
    return Moments(n, s, ss), np.array(history)


def test_best_arm_gets_most_traffic_and_the_floor_holds(bandit_runs):
    _, history = bandit_runs  # (DAYS, RUNS, arms): the weights published after each day
    share = np.mean(history[:, :, 2] > 0.6, axis=1)
    print("\nshare of runs whose best arm (+5%) has > 60% of traffic, after day 1..14:")
    print(" ".join(f"{x:.2f}" for x in share))
    print(
        "median weight of the best arm:",
        " ".join(f"{x:.2f}" for x in np.median(history[:, :, 2], 1)),
    )
    print(f"smallest weight of any arm on any day: {history.min():.4f} (floor {FLOOR})")
    lo = sps.binomtest(int(share[-1] * RUNS), RUNS).proportion_ci(confidence_level=0.999).low
    # The claim: 3 arms (+0%, +2%, +5%, sd = mean), 3,000 units a day, a 2%-a-day trend: after
    # 14 days the best arm has > 60% of the traffic in >= 90% of runs.
    assert lo >= 0.90
    assert share[-1] > share[0]
    assert history.min() >= FLOOR - 1e-12
    np.testing.assert_allclose(history.sum(-1), 1.0)


def test_period_weighted_effect_is_unbiased_and_pooled_is_not(bandit_runs):
    arms, history = bandit_runs
    control = Moments(arms.n[:, 0], arms.sum[:, 0], arms.sum_sq[:, 0])
    best = Moments(arms.n[:, 2], arms.sum[:, 2], arms.sum_sq[:, 2])
    total = arms.n.sum(1)  # N_p over all three arms
    weighted = compare_by_period(control, best, period_share=total, relative=False)
    pooled = compare(
        Moments(control.n.sum(-1), control.sum.sum(-1), control.sum_sq.sum(-1)),
        Moments(best.n.sum(-1), best.sum.sum(-1), best.sum_sq.sum(-1)),
        relative=False,
    )
    truth = DELTA[2]
    # Relative: the truth under constant weights is δ over the period-weighted control mean.
    rel = compare_by_period(control, best, period_share=total, relative=True)
    w = total / total.sum(-1, keepdims=True)
    truth_rel = truth / (w * (BASE * (1 + TREND * np.arange(DAYS)))).sum(-1)
    for name, est, tr, c in (
        ("period-weighted", weighted.effect, truth, weighted),
        ("pooled (naive)", pooled.effect, truth, pooled),
        ("period-weighted relative", rel.effect, truth_rel, rel),
    ):
        err = est - tr
        se = err.std(ddof=1) / np.sqrt(RUNS)
        cover = np.mean((c.ci_low <= tr) & (tr <= c.ci_high))
        print(
            f"\n{name}: mean error {err.mean():+.4f} (se {se:.4f}, z {err.mean() / se:+.2f}), "
            f"sd {err.std(ddof=1):.3f} vs mean reported se {np.mean(c.se):.3f}, "
            f"95% coverage {cover:.3f}"
        )
    err = weighted.effect - truth
    se = err.std(ddof=1) / np.sqrt(RUNS)
    # Unbiased: the mean error is within 3 Monte Carlo se of 0 (2 se would fail 5% of seeds).
    assert abs(err.mean()) <= 3 * se
    assert abs(np.mean(rel.effect - truth_rel)) <= 3 * np.std(rel.effect - truth_rel) / np.sqrt(
        RUNS
    )
    # Its interval covers: 99.9% binomial band around 95%.
    lo, hi = sps.binom.ppf([0.0005, 0.9995], RUNS, 0.95) / RUNS
    assert lo <= np.mean((weighted.ci_low <= truth) & (truth <= weighted.ci_high)) <= hi
    # The pooled estimate mixes early control days with late best-arm days: biased upwards.
    bias = np.mean(pooled.effect - truth)
    assert bias > 10 * pooled.effect.std() / np.sqrt(RUNS) and bias > 0.5 * truth
