"""interaction_test, interaction_cells and interaction_scan: against independent computations on raw
arrays (statsmodels OLS/WLS with A×B dummies and robust covariance, scipy's contingency test,
numerical derivatives) and by simulation on sufficient statistics (seeded).

Run with ``pytest -s`` to see the measured rates.
"""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

import ab_pipelines.stats.interactions as interactions_module
from ab_pipelines.stats import (
    InteractionTest,
    Moments,
    RatioMoments,
    adjust_pvalues,
    heterogeneity_test,
    interaction_cells,
    interaction_scan,
    interaction_test,
)

ALPHA = 0.05
REPLAYS = 2000


def _band(rate: float, trials: int = REPLAYS) -> tuple[float, float]:
    """The 99.9% binomial band of an observed rate around ``rate``."""
    lo, hi = sps.binom.ppf([0.0005, 0.9995], trials, rate)
    return lo / trials, hi / trials


def _raw_cells(seed, k, m, n=(1500, 2600), interaction=0.15):
    """Raw skewed values per cell (i, j): lognormal, variances differing by cell, unequal sizes."""
    rng = np.random.default_rng(seed)
    cells = {}
    for i, j in itertools.product(range(k), range(m)):
        size = int(rng.integers(*n))
        shift = 0.05 * i - 0.03 * j + interaction * (i == k - 1) * (j == m - 1)
        cells[i, j] = rng.lognormal(shift, 0.8 + 0.1 * i + 0.05 * j, size)
    return cells


def _design(cells, k, m):
    """y, the A×B dummy design [1, A_i, B_j, A_i·B_j] and the columns of the interaction terms."""
    y = np.concatenate([cells[i, j] for i, j in itertools.product(range(k), range(m))])
    a = np.concatenate(
        [np.full(cells[i, j].size, i) for i, j in itertools.product(range(k), range(m))]
    )
    b = np.concatenate(
        [np.full(cells[i, j].size, j) for i, j in itertools.product(range(k), range(m))]
    )
    cols = [np.ones_like(y)]
    cols += [(a == i).astype(float) for i in range(1, k)]
    cols += [(b == j).astype(float) for j in range(1, m)]
    inter = [((a == i) & (b == j)).astype(float) for i in range(1, k) for j in range(1, m)]
    x = np.column_stack(cols + inter)
    restriction = np.zeros((len(inter), x.shape[1]))
    restriction[:, -len(inter) :] = np.eye(len(inter))
    return y, x, restriction


@pytest.mark.parametrize(("k", "m"), [(2, 2), (3, 2), (3, 4)])
def test_wald_equals_ols_with_interaction_dummies(k, m):
    """The joint Wald test of the A×B terms in OLS: HC2 exactly (its cell-mean variances are s²/n),
    HC0 and HC1 within the O(1/n) of their small-sample factors."""
    cells = _raw_cells(10 * k + m, k, m)
    t = interaction_test([[Moments.from_values(cells[i, j]) for j in range(m)] for i in range(k)])
    y, x, restriction = _design(cells, k, m)
    assert t.df == (k - 1) * (m - 1)
    for cov_type, tol in (("HC2", 1e-9), ("HC1", 2e-3), ("HC0", 2e-3)):
        fit = sm.OLS(y, x).fit(cov_type=cov_type)
        wald = fit.wald_test(restriction, use_f=False, scalar=True)
        assert t.statistic == pytest.approx(float(wald.statistic), rel=tol), cov_type
        assert t.p_value == pytest.approx(float(wald.pvalue), rel=10 * tol, abs=1e-12), cov_type
        assert wald.distribution == "chi2" and wald.df_denom == t.df  # statsmodels' chi2 df
    assert t.statistic > 5.0  # the planted interaction is there, so the equality is not 0 = 0


def test_effects_and_contrasts_on_raw_arrays():
    k, m = 3, 3
    cells = _raw_cells(3, k, m)
    t = interaction_test([[Moments.from_values(cells[i, j]) for j in range(m)] for i in range(k)])
    mean = np.array([[cells[i, j].mean() for j in range(m)] for i in range(k)])
    var = np.array(
        [[cells[i, j].var(ddof=1) / cells[i, j].size for j in range(m)] for i in range(k)]
    )
    np.testing.assert_allclose(t.cell_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(t.cell_n, [[cells[i, j].size for j in range(m)] for i in range(k)])
    np.testing.assert_allclose(t.effect, mean[1:] - mean[:1], rtol=1e-10)
    np.testing.assert_allclose(t.effect_se, np.sqrt(var[1:] + var[:1]), rtol=1e-10)
    for i, j in itertools.product(range(1, k), range(1, m)):
        # A's effect (arm i) in B's arm j minus in B's arm 0: four cells, independent.
        c = (mean[i, j] - mean[0, j]) - (mean[i, 0] - mean[0, 0])
        se = np.sqrt(var[i, j] + var[0, j] + var[i, 0] + var[0, 0])
        assert t.contrast[i - 1, j - 1] == pytest.approx(c, rel=1e-10)
        assert t.contrast_se[i - 1, j - 1] == pytest.approx(se, rel=1e-10)
    z = np.abs(t.contrast_z)
    assert t.driver == tuple(int(x) + 1 for x in np.unravel_index(np.argmax(z), z.shape))
    assert t.driver == (2, 2)  # the planted cell
    crit = sps.norm.isf(ALPHA / (2 * z.size))
    np.testing.assert_array_equal(t.drivers(ALPHA), z > crit)


def _linearised_var(num, den):
    """Variance of Σnum/Σden from the per-unit influence values (num − R·den)/mean(den)."""
    r = num.sum() / den.sum()
    return ((num - r * den) / den.mean()).var(ddof=1) / num.size


def test_ratio_metric_against_weighted_least_squares():
    """Σnum/Σden per cell is WLS of num/den on the cell dummies with weights den; its HC0 sandwich
    is the delta-method variance times (n − 1)/n, so the statistics agree to O(1/n)."""
    rng = np.random.default_rng(8)
    k, m = 2, 3
    raw = {}
    for i, j in itertools.product(range(k), range(m)):
        n = int(rng.integers(2000, 3000))
        den = rng.poisson(3.0, n) + 1.0
        num = den * rng.gamma(2.0, 5.0 * (1 + 0.1 * i + 0.05 * j - 0.2 * (i == 1) * (j == 2)), n)
        raw[i, j] = (num, den)
    t = interaction_test(
        [[RatioMoments.from_values(*raw[i, j]) for j in range(m)] for i in range(k)]
    )
    # Cell variance from the per-unit linearised values (num − R·den)/mean(den).
    var = {key: _linearised_var(*value) for key, value in raw.items()}
    for i, j in itertools.product(range(k), range(m)):
        num, den = raw[i, j]
        assert t.cell_mean[i, j] == pytest.approx(num.sum() / den.sum(), rel=1e-12)
        if i > 0:
            se = np.sqrt(var[i, j] + var[0, j])
            assert t.effect_se[i - 1, j] == pytest.approx(se, rel=1e-10)
    num = np.concatenate([raw[i, j][0] for i, j in itertools.product(range(k), range(m))])
    den = np.concatenate([raw[i, j][1] for i, j in itertools.product(range(k), range(m))])
    cells = {key: value[0] / value[1] for key, value in raw.items()}
    _, x, restriction = _design(cells, k, m)
    fit = sm.WLS(num / den, x, weights=den).fit(cov_type="HC0")
    wald = fit.wald_test(restriction, use_f=False, scalar=True)
    assert t.statistic == pytest.approx(float(wald.statistic), rel=1e-3)
    assert t.statistic > 5.0


def test_relative_contrasts_against_numerical_derivatives():
    """relative=True: the Wald test on differences of lifts, its covariance rebuilt here by
    finite differences of the lift contrasts in the cell means."""
    k, m = 3, 3
    cells = _raw_cells(5, k, m)
    t = interaction_test(
        [[Moments.from_values(cells[i, j]) for j in range(m)] for i in range(k)], relative=True
    )
    mean = np.array([[cells[i, j].mean() for j in range(m)] for i in range(k)])
    var = np.array(
        [[cells[i, j].var(ddof=1) / cells[i, j].size for j in range(m)] for i in range(k)]
    )

    def contrasts(v):
        v = v.reshape(k, m)
        lift = v[1:] / v[:1] - 1
        return (lift[:, 1:] - lift[:, :1]).ravel()

    v0 = mean.ravel()
    h = 1e-6 * np.abs(v0)
    jac = np.column_stack(
        [
            (contrasts(v0 + h[c] * e) - contrasts(v0 - h[c] * e)) / (2 * h[c])
            for c, e in enumerate(np.eye(k * m))
        ]
    )
    cov = jac @ np.diag(var.ravel()) @ jac.T
    g = contrasts(v0)
    w = g @ np.linalg.solve(cov, g)
    assert t.statistic == pytest.approx(w, rel=1e-6)
    assert t.p_value == pytest.approx(sps.chi2.sf(w, (k - 1) * (m - 1)), rel=1e-5)
    np.testing.assert_allclose(t.contrast.ravel(), g, rtol=1e-12)
    np.testing.assert_allclose(t.contrast_se.ravel(), np.sqrt(np.diag(cov)), rtol=1e-6)
    np.testing.assert_allclose(t.effect, mean[1:] / mean[:1] - 1, rtol=1e-12)


@pytest.mark.parametrize("relative", [False, True])
def test_two_arms_of_a_is_cochran_q_across_b(relative):
    """With k = 2 the interaction test is Cochran's Q of A's effects (compare) across B's arms."""
    rng = np.random.default_rng(11)
    m = 4
    p = np.array([[0.10, 0.11, 0.09, 0.10], [0.105, 0.115, 0.10, 0.09]])
    n = rng.integers(3000, 5000, (2, m)).astype(float)
    s = rng.binomial(n.astype(int), p).astype(float)
    t = interaction_test(Moments(n, s, s), relative=relative)
    q = heterogeneity_test(Moments(n[0], s[0], s[0]), Moments(n[1], s[1], s[1]), relative=relative)
    assert t.statistic == pytest.approx(q.q, rel=1e-10)
    assert t.df == q.df == m - 1
    assert t.p_value == pytest.approx(q.p_value, rel=1e-9)
    np.testing.assert_allclose(t.effect[0], q.effect, rtol=1e-10)
    np.testing.assert_allclose(t.effect_se[0], q.effect_se, rtol=1e-10)


def test_traffic_p_value_is_pearsons_independence_test():
    rng = np.random.default_rng(4)
    for table in (
        rng.multinomial(20000, np.full(6, 1 / 6)).reshape(2, 3),
        [[900, 1100], [1000, 1000]],
    ):
        table = np.asarray(table, dtype=float)
        t = interaction_test(Moments(table, 0.1 * table, 0.1 * table))
        ref = sps.chi2_contingency(table, correction=False)
        assert t.traffic_p_value == pytest.approx(ref.pvalue, rel=1e-10)


def test_batches_nested_input_and_scalars_agree():
    rng = np.random.default_rng(2)
    n = rng.integers(2000, 3000, (5, 3, 2)).astype(float)
    s = rng.binomial(n.astype(int), 0.2).astype(float)
    batch = interaction_test(Moments(n, s, s))
    assert batch.statistic.shape == (5,)
    assert batch.contrast.shape == (5, 2, 1)
    for b in range(5):
        one = interaction_test(Moments(n[b], s[b], s[b]))
        nested = interaction_test(
            [[Moments(int(n[b, i, j]), s[b, i, j], s[b, i, j]) for j in range(2)] for i in range(3)]
        )
        assert isinstance(one.statistic, float)
        for r in (one, nested):
            assert r.statistic == pytest.approx(batch.statistic[b], rel=1e-12)
            assert r.p_value == pytest.approx(batch.p_value[b], rel=1e-12)
            np.testing.assert_allclose(r.contrast_se, batch.contrast_se[b], rtol=1e-12)
        assert one.driver == (batch.driver[0][b], batch.driver[1][b])


def test_fields_broadcast_within_cells():
    """A count given once for every cell broadcasts like compare's fields do."""
    s = np.array([[100.0, 110.0], [130.0, 105.0]])
    one = interaction_test(Moments(1000, s, s))
    full = interaction_test(Moments(np.full((2, 2), 1000.0), s, s))
    assert one.statistic == pytest.approx(full.statistic, rel=1e-12)
    scan = interaction_scan({"x": Moments(1000, s, s), "y": Moments(np.full((2, 2), 1000.0), s, s)})
    assert scan["x"].statistic == pytest.approx(scan["y"].statistic, rel=1e-12)


def test_degenerate_cells_give_nan_never_raise():
    n = np.full((6, 2, 2), 1000.0)
    s = np.full((6, 2, 2), 100.0)
    n[1, 1, 1], s[1, 1, 1] = 1.0, 1.0  # a cell with one unit
    n[2, 0, 1], s[2, 0, 1] = 0.0, 0.0  # an empty cell (the pair barely overlaps)
    s[3] = 0.0  # no conversions anywhere: no variance
    s[4, 0, :] = 0.0  # A's baseline converts nobody: relative lifts undefined
    n[5] = 0.0  # the pair shares no units
    for relative in (False, True):
        t = interaction_test(Moments(n, s, s), relative=relative)
        bad = [1, 2, 3, 5] + ([4] if relative else [])
        assert np.isnan(t.statistic[bad]).all() and np.isnan(t.p_value[bad]).all()
        assert np.isnan(t.contrast[bad]).all() and np.isnan(t.effect_se[bad]).all()
        assert t.statistic[0] == pytest.approx(0.0, abs=1e-12) and t.p_value[0] == pytest.approx(
            1.0
        )
        assert t.driver[0][bad].tolist() == [-1] * len(bad)
    traffic = interaction_test(Moments(n, s, s)).traffic_p_value
    # An empty cell inside full rows and columns is a traffic interaction; no units at all is NaN.
    assert traffic[2] < 1e-100 and np.isnan(traffic[5]) and traffic[0] == pytest.approx(1.0)
    ratio = RatioMoments(
        n=[[0, 0], [0, 0]],
        num_sum=np.zeros((2, 2)),
        num_sum_sq=np.zeros((2, 2)),
        den_sum=np.zeros((2, 2)),
        den_sum_sq=np.zeros((2, 2)),
        num_den_sum=np.zeros((2, 2)),
    )
    assert np.isnan(interaction_test(ratio).statistic)
    with pytest.raises(ValueError):
        interaction_test(Moments(np.ones(3), np.ones(3), np.ones(3)))


def test_interaction_cells_equal_direct_grouping_of_units():
    """All pairs' cells from one grouping by assignment vector = each pair's cells from the units."""
    rng = np.random.default_rng(6)
    units, experiments = 30000, 5
    arms = rng.integers(0, 2, (units, experiments))
    arms[:, 3] = rng.integers(0, 3, units)  # a three-arm experiment
    arms[rng.random(units) < 0.3, 4] = -1  # units not exposed to experiment 4
    num = rng.gamma(2.0, 3.0, units)
    den = rng.poisson(2.0, units) + 1.0
    groups, inverse = np.unique(arms, axis=0, return_inverse=True)
    inverse = inverse.ravel()

    def sums(x):
        return np.bincount(inverse, weights=x, minlength=len(groups))

    ones = np.ones(units)
    g = RatioMoments(sums(ones), sums(num), sums(num**2), sums(den), sums(den**2), sums(num * den))
    assert len(groups) < 100  # 30,000 units summarised by a few dozen groups
    cells = interaction_cells(groups, g)
    assert cells.n.shape == (experiments, experiments, 3, 3)
    for e, f in itertools.combinations(range(experiments), 2):
        for i, j in itertools.product(range(3), range(3)):
            unit = (arms[:, e] == i) & (arms[:, f] == j)
            assert cells.n[e, f, i, j] == unit.sum()
            assert cells.num_den_sum[e, f, i, j] == pytest.approx(
                (num * den)[unit].sum(), rel=1e-12
            )
            assert cells.den_sum_sq[e, f, i, j] == pytest.approx((den**2)[unit].sum(), rel=1e-12)
    mean = Moments(
        sums(ones)[None].repeat(2, 0),
        np.stack([sums(num), sums(den)]),
        np.stack([sums(num**2), sums(den**2)]),
    )
    both = interaction_cells(groups, mean, n_arms=3)  # leading axis: two metrics
    np.testing.assert_allclose(both.sum[1, 0, 3], cells.den_sum[0, 3], rtol=1e-12)


def test_scan_batches_and_corrects_with_benjamini_hochberg():
    rng = np.random.default_rng(12)
    entries = {}
    for e in range(12):
        k, m = (2, 2) if e < 8 else (3, 2)
        n = rng.integers(3000, 4000, (k, m)).astype(float)
        p = np.full((k, m), 0.1)
        p[-1, -1] += 0.012 * (e % 4 == 0)
        s = rng.binomial(n.astype(int), p).astype(float)
        entries[("exp", e, "conversion")] = Moments(n, s, s)
    den = rng.poisson(3.0, (2, 2, 500)) + 1.0
    num = den * rng.gamma(2.0, 2.0, (2, 2, 500))
    entries[("exp", 12, "revenue_per_order")] = RatioMoments(
        np.full((2, 2), 500.0),
        num.sum(-1),
        (num**2).sum(-1),
        den.sum(-1),
        (den**2).sum(-1),
        (num * den).sum(-1),
    )
    entries[("exp", 13, "conversion")] = Moments(
        np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))
    )
    done = interaction_test(entries[("exp", 0, "conversion")])
    entries[("exp", 14, "conversion")] = done
    scan = interaction_scan(entries, alpha=0.1)
    assert scan.keys == tuple(entries)
    for key, value in entries.items():
        one = value if isinstance(value, InteractionTest) else interaction_test(value)
        r = scan[key]
        assert (np.isnan(r.statistic) and np.isnan(one.statistic)) or r.statistic == pytest.approx(
            one.statistic, rel=1e-12
        )
        np.testing.assert_allclose(r.contrast, one.contrast, rtol=1e-12)
        assert r.df == one.df and isinstance(r.df, int)
    raw = np.array([scan[key].p_value for key in entries])
    finite = ~np.isnan(raw)
    assert not finite[13] and np.isnan(scan.p_adjusted[13])
    ref = multipletests(raw[finite], method="fdr_bh")[1]
    np.testing.assert_allclose(scan.p_adjusted[finite], ref, rtol=1e-12)
    flagged = [k for k, p in zip(scan.keys, scan.p_adjusted, strict=True) if p <= 0.1]
    assert sorted(scan.flagged) == sorted(flagged)
    assert [scan.p_value[scan.keys.index(k)] for k in scan.flagged] == sorted(
        scan.p_value[scan.keys.index(k)] for k in flagged
    )


# --- simulations on sufficient statistics ---------------------------------------------------


def _lognormal_replays(rng, k, m, n):
    """Sufficient statistics of null worlds from raw skewed draws: additive effects of A and B."""
    shape = (REPLAYS, k, m, n)
    y = (
        rng.lognormal(0.0, 1.0, shape)
        + 0.1 * np.arange(k)[:, None, None]
        + 0.05 * np.arange(m)[:, None].T[..., None]
    )
    return Moments(np.full(shape[:-1], float(n)), y.sum(-1), (y * y).sum(-1))


def _ratio_replays(rng, k, m, n, relative):
    """Null worlds of a ratio metric (orders per user, value per order) from raw draws.

    ``relative``: A and B multiply the value per order, (1 + 0.05 i)(1 + 0.03 j), so A's lift is
    the same in every arm of B; otherwise they add to it (+1.5 i − 1.0 j): no absolute interaction.
    """
    shape = (REPLAYS, k, m, n)
    i = np.arange(k)[:, None, None]
    j = np.arange(m)[None, :, None]
    den = rng.integers(1, 6, shape).astype(float)
    value = 30.0 * rng.standard_exponential(shape)
    value = value * (1 + 0.05 * i) * (1 + 0.03 * j) if relative else value + 1.5 * i - 1.0 * j
    num = den * value
    return RatioMoments(
        np.full(shape[:-1], float(n)),
        num.sum(-1),
        (num**2).sum(-1),
        den.sum(-1),
        (den**2).sum(-1),
        (num * den).sum(-1),
    )


def test_type_one_error_of_single_tests():
    """H0 true (effects of A and B, no interaction): each test rejects ~5% of the time."""
    rng = np.random.default_rng(20261126)
    lo, hi = _band(ALPHA)
    p_add = 0.10 + 0.005 * np.arange(2)[:, None] - 0.003 * np.arange(2)[None, :]  # additive
    p_mul = 0.10 * 1.05 ** np.arange(2)[:, None] * 0.97 ** np.arange(2)[None, :]  # multiplicative
    cases = {}
    for name, p, relative in (
        ("proportion 2x2 absolute", p_add, False),
        ("proportion 2x2 relative", p_mul, True),
    ):
        s = rng.binomial(4000, p, (REPLAYS, 2, 2)).astype(float)
        cases[name] = (Moments(np.full_like(s, 4000.0), s, s), relative)
    s = rng.binomial(3000, 0.3, (REPLAYS, 3, 3)).astype(float)
    cases["proportion 3x3 absolute (df 4)"] = (Moments(np.full_like(s, 3000.0), s, s), False)
    cases["lognormal mean 3x2 absolute"] = (_lognormal_replays(rng, 3, 2, 400), False)
    cases["ratio 2x3 relative"] = (_ratio_replays(rng, 2, 3, 300, relative=True), True)
    cases["ratio 2x2 absolute"] = (_ratio_replays(rng, 2, 2, 300, relative=False), False)
    for name, (cells, relative) in cases.items():
        t = interaction_test(cells, relative=relative)
        rate = np.mean(t.p_value < ALPHA)
        print(f"\ninteraction type I, {name}: {rate:.4f} (99.9% band {lo:.4f}–{hi:.4f})")
        assert not np.isnan(t.p_value).any()
        assert lo <= rate <= hi, name


# Seven concurrent experiments, every unit in all seven (independent 50/50 splits): 21 pairs. One
# metric, conversion, baseline 10%; experiments 1, 2, 3 and 5 have main effects (+0.1, +0.2, −0.1,
# +0.15 points). The planted interaction: experiment 0 lifts conversion by 4% (10.0% → 10.4%) when
# experiment 1 is in control and by 0% when experiment 1 is treated; every other pair is additive.
# 1.6 million units: 400,000 per cell of the pair (0, 1), 12,500 per assignment vector.
EXPERIMENTS = 7
UNITS = 1_600_000
MAIN = np.array([0.0, 0.001, 0.002, -0.001, 0.0, 0.0015, 0.0])
SCAN_REPLAYS = 2000  # the planted world
NULL_REPLAYS = 10000  # the world without interactions: a tight band around the false alarm rate


def _seven_experiments(rng, planted: bool, replays: int):
    arms = np.array(list(itertools.product([0, 1], repeat=EXPERIMENTS)))  # 128 assignment vectors
    p = 0.10 + arms @ MAIN + (0.004 * arms[:, 0] * (1 - arms[:, 1]) if planted else 0.0)
    n = rng.multinomial(UNITS, np.full(len(arms), 1 / len(arms)), size=replays).astype(float)
    s = rng.binomial(n.astype(np.int64), p).astype(float)
    cells = interaction_cells(arms, Moments(n, s, s))  # (replays, 7, 7, 2, 2)
    pairs = list(itertools.combinations(range(EXPERIMENTS), 2))
    e, f = np.array(pairs).T
    return pairs, Moments(cells.n[:, e, f], cells.sum[:, e, f], cells.sum_sq[:, e, f])


def _scan_rates(pairs, cells, check_against_scan=50):
    """BH over the 21 pairs of each replay: the batched computation interaction_scan does (checked
    equal to interaction_scan on the first replays)."""
    t = interaction_test(cells)  # (replays, 21)
    adjusted = adjust_pvalues(t.p_value, method="bh")
    flagged = adjusted <= ALPHA
    for r in range(check_against_scan):
        scan = interaction_scan(
            {
                pair: Moments(cells.n[r, c], cells.sum[r, c], cells.sum_sq[r, c])
                for c, pair in enumerate(pairs)
            }
        )
        assert set(scan.flagged) == {pair for c, pair in enumerate(pairs) if flagged[r, c]}
    return t, flagged


def test_scan_finds_a_planted_interaction_and_keeps_false_alarms_down():
    rng = np.random.default_rng(20261128)
    lo, hi = _band(ALPHA, NULL_REPLAYS)
    # World 1: the planted interaction among 21 pairs.
    pairs, cells = _seven_experiments(rng, planted=True, replays=SCAN_REPLAYS)
    t, flagged = _scan_rates(pairs, cells)
    power = flagged[:, 0].mean()
    nulls_flagged = flagged[:, 1:].any(axis=1)
    fdr = np.mean(flagged[:, 1:].sum(1) / np.maximum(flagged.sum(1), 1))
    # The pair's single test against theory: noncentral χ²₁ with λ = Δ²/Σσ²_cell.
    p_cells = 0.10 + np.array([[0.0, MAIN[1]], [0.004, MAIN[1]]])
    lam = 0.004**2 / np.sum(p_cells * (1 - p_cells) / (UNITS / 4))
    theory_single = sps.ncx2.sf(sps.chi2.isf(ALPHA, 1), 1, lam)
    theory_bonferroni = sps.ncx2.sf(sps.chi2.isf(ALPHA / len(pairs), 1), 1, lam)
    single = np.mean(t.p_value[:, 0] < ALPHA)
    print(
        f"\nscan, 21 pairs, planted +4%/0% interaction (400,000 units per cell): found by BH in "
        f"{power:.4f} of {SCAN_REPLAYS} replays (Bonferroni theory {theory_bonferroni:.4f}); single "
        f"test at 5% {single:.4f} (theory {theory_single:.4f}); some null pair flagged too in "
        f"{nulls_flagged.mean():.4f}; false discovery proportion {fdr:.4f}"
    )
    assert power >= 0.80
    assert _band(theory_single, SCAN_REPLAYS)[0] <= single <= _band(theory_single, SCAN_REPLAYS)[1]
    assert fdr <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / SCAN_REPLAYS)
    # The contrast estimates the planted one without bias: A's effect with B treated (0) minus
    # with B in control (+0.004 points), and every find has its sign.
    contrast = t.contrast[:, 0, 0, 0]
    se_mean = contrast.std(ddof=1) / np.sqrt(SCAN_REPLAYS)
    print(f"mean contrast {contrast.mean():.6f} (planted -0.004, Monte Carlo se {se_mean:.6f})")
    assert abs(contrast.mean() + 0.004) < 4 * se_mean
    assert np.all(contrast[flagged[:, 0]] < 0)
    # World 2: 20 pairs without interaction (the pair (0, 1) dropped from world 1's design).
    pairs, cells = _seven_experiments(rng, planted=False, replays=NULL_REPLAYS)
    keep = [c for c, pair in enumerate(pairs) if pair != (0, 1)]
    cells = Moments(cells.n[:, keep], cells.sum[:, keep], cells.sum_sq[:, keep])
    _, flagged = _scan_rates([pairs[c] for c in keep], cells)
    fwer = flagged.any(axis=1).mean()
    print(
        f"scan, 20 non-interacting pairs, {NULL_REPLAYS} replays: family-wise false alarm rate "
        f"{fwer:.4f} "
        f"(target {ALPHA}; 99.9% binomial band around it {lo:.4f}–{hi:.4f})"
    )
    assert fwer <= hi


def test_doctests():
    result = doctest.testmod(interactions_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
