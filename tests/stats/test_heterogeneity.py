"""heterogeneity_test and heterogeneity_scan: Cochran's Q against a direct computation on raw arrays
and statsmodels' meta-analysis (combine_effects), and by simulation on sufficient statistics.

Run with ``pytest -s`` to see the measured rates.
"""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

import ab_pipelines.stats.heterogeneity as heterogeneity_module
from ab_pipelines.stats import (
    HeterogeneityTest,
    Moments,
    RatioMoments,
    adjust_pvalues,
    heterogeneity_scan,
    heterogeneity_test,
)

ALPHA = 0.05
REPLAYS = 2000


def _band(rate: float, trials: int = REPLAYS) -> tuple[float, float]:
    """The 99.9% binomial band of an observed rate around ``rate``."""
    lo, hi = sps.binom.ppf([0.0005, 0.9995], trials, rate)
    return lo / trials, hi / trials


def _levels(seed, effects=(0.5, 0.5, 0.5, 0.5, -1.0)):
    """Raw skewed values per level and arm, baselines and sizes differing by level."""
    rng = np.random.default_rng(seed)
    out = []
    for level, effect in enumerate(effects):
        base = 5.0 + level
        a = rng.gamma(2.0, base / 2.0, int(rng.integers(1500, 3000)))
        b = rng.gamma(2.0, (base + effect) / 2.0, int(rng.integers(1500, 3000)))
        out.append((a, b))
    return out


def _direct_q(d, v):
    """Cochran's Q, I², DerSimonian–Laird τ² and the fixed-effect mean, written out."""
    w = 1 / v
    mean = np.sum(w * d) / np.sum(w)
    q = np.sum(w * (d - mean) ** 2)
    df = d.size - 1
    return dict(
        q=q,
        p=sps.chi2.sf(q, df),
        i2=max(0.0, (q - df) / q),
        tau2=max(0.0, (q - df) / (w.sum() - (w**2).sum() / w.sum())),
        mean=mean,
        se=1 / np.sqrt(w.sum()),
    )


@pytest.mark.parametrize("relative", [False, True])
def test_q_against_direct_computation_and_statsmodels(relative):
    raw = _levels(1)
    h = heterogeneity_test(
        [Moments.from_values(a) for a, _ in raw], [Moments.from_values(b) for _, b in raw], relative
    )
    ma = np.array([a.mean() for a, _ in raw])
    mb = np.array([b.mean() for _, b in raw])
    va = np.array([a.var(ddof=1) / a.size for a, _ in raw])
    vb = np.array([b.var(ddof=1) / b.size for _, b in raw])
    if relative:  # delta method for mb/ma − 1 with independent arms
        d, v = mb / ma - 1, vb / ma**2 + va * mb**2 / ma**4
    else:
        d, v = mb - ma, va + vb
    np.testing.assert_allclose(h.effect, d, rtol=1e-10)
    np.testing.assert_allclose(h.effect_se, np.sqrt(v), rtol=1e-10)
    ref = _direct_q(d, v)
    meta = combine_effects(d, v, method_re="chi2")  # chi2: the DerSimonian–Laird moment estimate
    homogeneity = meta.test_homogeneity()
    assert h.df == homogeneity.df == 4
    for got, direct, sm in (
        (h.q, ref["q"], meta.q),
        (h.p_value, ref["p"], homogeneity.pvalue),
        (h.i2, ref["i2"], meta.i2),
        (h.tau2, ref["tau2"], meta.tau2),
        (h.pooled_effect, ref["mean"], meta.mean_effect_fe),
        (h.pooled_se, ref["se"], meta.sd_eff_w_fe),
    ):
        assert got == pytest.approx(direct, rel=1e-9)
        assert got == pytest.approx(sm, rel=1e-9)
    assert h.p_value < 1e-3 and h.i2 > 0.5  # the planted level is there: not 0 = 0


def test_deviations_are_each_level_against_the_rest():
    raw = _levels(2)
    h = heterogeneity_test(
        [Moments.from_values(a) for a, _ in raw], [Moments.from_values(b) for _, b in raw], False
    )
    d = np.array([b.mean() - a.mean() for a, b in raw])
    v = np.array([a.var(ddof=1) / a.size + b.var(ddof=1) / b.size for a, b in raw])
    for level in range(len(raw)):
        rest = np.arange(len(raw)) != level
        w = 1 / v[rest]
        pooled_rest = np.sum(w * d[rest]) / w.sum()
        z = (d[level] - pooled_rest) / np.sqrt(v[level] + 1 / w.sum())
        assert h.deviation_z[level] == pytest.approx(z, rel=1e-9)
    assert h.driver == 4  # the planted level
    crit = sps.norm.isf(ALPHA / (2 * len(raw)))
    np.testing.assert_array_equal(h.drivers(ALPHA), np.abs(h.deviation_z) > crit)
    assert h.drivers(ALPHA)[4]


def test_ratio_metric_levels():
    """Ratio metric per level: compare's delta method, recomputed here from linearised values."""
    rng = np.random.default_rng(3)
    a_levels, b_levels, d, v = [], [], [], []
    for level, lift in enumerate((0.05, 0.05, 0.05, -0.05)):
        arms = []
        for arm_lift in (0.0, lift):
            n = 2500
            den = rng.poisson(2.0 + level, n) + 1.0
            num = den * rng.gamma(3.0, 10.0 * (1 + arm_lift), n)
            arms.append((num, den))
        (na, da), (nb, db) = arms
        ra, rb = na.sum() / da.sum(), nb.sum() / db.sum()
        var_a = ((na - ra * da) / da.mean()).var(ddof=1) / na.size
        var_b = ((nb - rb * db) / db.mean()).var(ddof=1) / nb.size
        d.append(rb / ra - 1)
        v.append(var_b / ra**2 + var_a * rb**2 / ra**4)
        a_levels.append(RatioMoments.from_values(na, da))
        b_levels.append(RatioMoments.from_values(nb, db))
    h = heterogeneity_test(a_levels, b_levels)
    np.testing.assert_allclose(h.effect, d, rtol=1e-10)
    np.testing.assert_allclose(h.effect_se, np.sqrt(v), rtol=1e-10)
    meta = combine_effects(np.array(d), np.array(v), method_re="chi2")
    assert h.q == pytest.approx(meta.q, rel=1e-9)
    assert h.i2 == pytest.approx(meta.i2, rel=1e-9)


def test_cuped_within_each_level():
    """cuped=True: per level the effect of y − θx, θ = cov(y, x)/var(x) over the level's two arms
    pooled, written out here; Q from those effects as statsmodels combines them."""
    rng = np.random.default_rng(6)
    a_levels, b_levels, d, v, d_raw = [], [], [], [], []
    for level, effect in enumerate((0.4, 0.4, 0.4, -0.4)):
        arms = []
        for arm_effect in (0.0, effect):
            x = rng.gamma(2.0, 3.0 + level, 2000)
            y = 2.0 + level + arm_effect + 0.8 * x + rng.normal(0, 3.0, x.size)
            arms.append((y, x))
        (ya, xa), (yb, xb) = arms
        xs, ys = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        theta = np.cov(ys, xs)[0, 1] / xs.var(ddof=1)
        ua, ub = ya - theta * xa, yb - theta * xb
        d.append(ub.mean() - ua.mean())
        v.append(ua.var(ddof=1) / ua.size + ub.var(ddof=1) / ub.size)
        d_raw.append(yb.mean() - ya.mean())
        a_levels.append(Moments.from_values(ya, xa))
        b_levels.append(Moments.from_values(yb, xb))
    h = heterogeneity_test(a_levels, b_levels, relative=False, cuped=True)
    raw = heterogeneity_test(a_levels, b_levels, relative=False)
    np.testing.assert_allclose(h.effect, d, rtol=1e-9)
    np.testing.assert_allclose(h.effect_se, np.sqrt(v), rtol=1e-9)
    np.testing.assert_allclose(raw.effect, d_raw, rtol=1e-9)
    assert h.q == pytest.approx(combine_effects(np.array(d), np.array(v)).q, rel=1e-9)
    assert np.all(h.effect_se < 0.8 * raw.effect_se)  # x explains much of y: CUPED is sharper
    assert h.q > raw.q


def test_batches_and_sequences_agree():
    rng = np.random.default_rng(4)
    n = rng.integers(3000, 5000, (2, 6, 4)).astype(float)
    s = rng.binomial(n.astype(int), 0.1).astype(float)
    batch = heterogeneity_test(Moments(n[0], s[0], s[0]), Moments(n[1], s[1], s[1]))
    assert batch.q.shape == (6,) and batch.deviation_z.shape == (6, 4)
    for t in range(6):
        one = heterogeneity_test(
            [Moments(n[0, t, level], s[0, t, level], s[0, t, level]) for level in range(4)],
            [Moments(n[1, t, level], s[1, t, level], s[1, t, level]) for level in range(4)],
        )
        assert isinstance(one.q, float) and one.df == 3
        assert one.q == pytest.approx(batch.q[t], rel=1e-12)
        np.testing.assert_allclose(one.deviation_z, batch.deviation_z[t], rtol=1e-12)
        assert one.driver == batch.driver[t]


def test_degenerate_levels_are_left_out_never_raise():
    n = np.full((5, 2, 4), 2000.0)  # (test, arm, level)
    s = np.full((5, 2, 4), 200.0)
    s[:, 1, 0] = 260.0
    n[1, :, 3], s[1, :, 3] = 0.0, 0.0  # a level without units: left out, L = 3
    n[2, 0, 2], s[2, 0, 2] = 1.0, 1.0  # a level with one baseline unit: left out
    n[3, :, 1:] = 0.0  # one usable level: no test
    s[4, 0, :] = 0.0  # the baseline converts nobody: no relative lift anywhere
    h = heterogeneity_test(Moments(n[:, 0], s[:, 0], s[:, 0]), Moments(n[:, 1], s[:, 1], s[:, 1]))
    assert h.df.tolist()[:3] == [3.0, 2.0, 2.0]
    assert np.isnan(h.deviation_z[1, 3]) and np.isnan(h.effect[2, 2])
    keep = [0, 1, 2]
    sub = heterogeneity_test(
        Moments(n[1, 0, keep], s[1, 0, keep], s[1, 0, keep]),
        Moments(n[1, 1, keep], s[1, 1, keep], s[1, 1, keep]),
    )
    assert h.q[1] == pytest.approx(sub.q, rel=1e-12)
    for t in (3, 4):
        assert np.isnan([h.q[t], h.p_value[t], h.df[t], h.i2[t], h.pooled_effect[t]]).all()
        assert h.driver[t] == -1
    assert h.driver[0] == 0
    flat = heterogeneity_test(
        Moments(n[0, 0], s[0, 0], s[0, 0]), Moments(n[0, 0], s[0, 0], s[0, 0])
    )
    assert flat.q == 0.0 and flat.i2 == 0.0 and flat.p_value == 1.0 and flat.tau2 == 0.0


def test_scan_batches_and_corrects_with_benjamini_hochberg():
    rng = np.random.default_rng(5)
    entries = {}
    for t in range(10):
        levels = 3 if t < 6 else 5
        n = rng.integers(3000, 4000, (2, levels)).astype(float)
        p = np.full((2, levels), 0.1)
        p[1] *= 1.05
        p[1, 0] *= 1.0 + 0.25 * (t % 3 == 0)
        s = rng.binomial(n.astype(int), p).astype(float)
        entries[("exp", "conversion", f"attr{t}")] = (
            [Moments(n[0, i], s[0, i], s[0, i]) for i in range(levels)],
            Moments(n[1], s[1], s[1]),
        )
    entries[("exp", "conversion", "empty")] = (Moments(np.zeros(3), np.zeros(3), np.zeros(3)),) * 2
    done = heterogeneity_test(*entries[("exp", "conversion", "attr0")])
    entries[("exp", "conversion", "done")] = done
    scan = heterogeneity_scan(entries, alpha=0.1)
    assert scan.keys == tuple(entries)
    for key, value in entries.items():
        one = value if isinstance(value, HeterogeneityTest) else heterogeneity_test(*value)
        assert scan[key].q == pytest.approx(one.q, rel=1e-12, nan_ok=True)
        np.testing.assert_allclose(scan[key].deviation_z, one.deviation_z, rtol=1e-12)
    raw = scan.p_value
    finite = ~np.isnan(raw)
    assert finite.sum() == len(entries) - 1
    np.testing.assert_allclose(
        scan.p_adjusted[finite], multipletests(raw[finite], method="fdr_bh")[1], rtol=1e-12
    )
    expected = sorted(
        (k for k, p in zip(scan.keys, scan.p_adjusted, strict=True) if p <= 0.1),
        key=lambda k: raw[scan.keys.index(k)],
    )
    assert list(scan.flagged) == expected and len(expected) >= 2


# --- simulations on sufficient statistics ---------------------------------------------------

# Five levels of an attribute (platforms) whose baseline conversion differs (8–12%).
BASELINES = np.array([0.08, 0.10, 0.12, 0.09, 0.11])


def _binomial_levels(rng, n, lifts, shape):
    """Exact sufficient statistics per (…, arm, level): binomial conversions."""
    p = np.stack(np.broadcast_arrays(BASELINES, BASELINES * (1 + np.asarray(lifts))), axis=-2)
    s = rng.binomial(int(n), np.broadcast_to(p, shape + p.shape)).astype(float)
    m = Moments(np.full_like(s, float(n)), s, s)
    arm = lambda k: Moments(m.n[..., k, :], m.sum[..., k, :], m.sum_sq[..., k, :])  # noqa: E731
    return arm(0), arm(1)


def test_type_one_error_of_single_tests():
    """H0 true (the same effect at every level): each test rejects ~5% of the time."""
    rng = np.random.default_rng(20261129)
    lo, hi = _band(ALPHA)
    rates = {}
    a, b = _binomial_levels(rng, 5000, np.full(5, 0.04), (REPLAYS,))
    rates["proportion, 5 levels, +4% everywhere, relative"] = heterogeneity_test(a, b).p_value
    # Absolute H0: +0.4 points at every level.
    p = np.stack([BASELINES, BASELINES + 0.004])
    s = rng.binomial(5000, np.broadcast_to(p, (REPLAYS, 2, 5))).astype(float)
    m = [Moments(np.full((REPLAYS, 5), 5000.0), s[:, k], s[:, k]) for k in (0, 1)]
    rates["proportion, 5 levels, +0.4 points everywhere, absolute"] = heterogeneity_test(
        *m, relative=False
    ).p_value
    a, b = _binomial_levels(rng, 5000, np.full(5, 0.0), (REPLAYS,))
    rates["proportion, 2 levels, A/A, relative"] = heterogeneity_test(
        Moments(a.n[:, :2], a.sum[:, :2], a.sum_sq[:, :2]),
        Moments(b.n[:, :2], b.sum[:, :2], b.sum_sq[:, :2]),
    ).p_value
    # Ratio metric from raw draws: orders per user and value per order, +3% value everywhere.
    shape = (REPLAYS, 4, 300)
    arms = []
    for lift in (0.0, 0.03):
        den = rng.integers(1, 6, shape).astype(float)
        num = den * 30.0 * (1 + np.arange(4)[:, None] * 0.2) * (1 + lift)
        num = num * rng.standard_exponential(shape)
        arms.append(
            RatioMoments(
                np.full(shape[:-1], 300.0),
                num.sum(-1),
                (num**2).sum(-1),
                den.sum(-1),
                (den**2).sum(-1),
                (num * den).sum(-1),
            )
        )
    rates["ratio, 4 levels, +3% everywhere, relative"] = heterogeneity_test(*arms).p_value
    for name, p in rates.items():
        rate = np.mean(p < ALPHA)
        print(f"\nheterogeneity type I, {name}: {rate:.4f} (99.9% band {lo:.4f}–{hi:.4f})")
        assert not np.isnan(p).any()
        assert lo <= rate <= hi, name


# The planted differential impact: +3% at four levels, −5% at the fifth (a bug on one platform),
# 80,000 units per level and arm (800,000 in the experiment). The 20 others: +3% everywhere.
PLANTED = np.array([0.03, 0.03, 0.03, 0.03, -0.05])
UNITS = 80_000
NULL_REPLAYS = 10000  # the homogeneous world: a tight band around the false alarm rate


def _scan_rates(a, b, check_against_scan=50):
    """BH over the tests of each replay (the last-but-one axis): what heterogeneity_scan does,
    checked equal to heterogeneity_scan on the first replays."""
    h = heterogeneity_test(a, b)
    flagged = adjust_pvalues(h.p_value, method="bh") <= ALPHA
    for r in range(check_against_scan):
        entries = {
            t: (
                Moments(a.n[r, t], a.sum[r, t], a.sum_sq[r, t]),
                Moments(b.n[r, t], b.sum[r, t], b.sum_sq[r, t]),
            )
            for t in range(a.n.shape[1])
        }
        assert set(heterogeneity_scan(entries).flagged) == set(np.flatnonzero(flagged[r]))
    return h, flagged


def test_scan_finds_a_planted_level_and_keeps_false_alarms_down():
    rng = np.random.default_rng(20261130)
    lo, hi = _band(ALPHA)
    lifts = np.stack([PLANTED] + [np.full(5, 0.03)] * 20)  # 21 tests per replay
    a, b = _binomial_levels(rng, UNITS, lifts, (REPLAYS,))  # (replays, 21, 5)
    h, flagged = _scan_rates(a, b)
    power = flagged[:, 0].mean()
    nulls_flagged = flagged[:, 1:].any(axis=1).mean()
    fdr = np.mean(flagged[:, 1:].sum(1) / np.maximum(flagged.sum(1), 1))
    # Theory for the planted test: noncentral χ²₄ with λ = Q of the true lifts and variances.
    pb = BASELINES * (1 + PLANTED)
    v = pb * (1 - pb) / (UNITS * BASELINES**2) + BASELINES * (1 - BASELINES) * pb**2 / (
        UNITS * BASELINES**4
    )
    w = 1 / v
    lam = np.sum(w * (PLANTED - np.sum(w * PLANTED) / w.sum()) ** 2)
    theory_single = sps.ncx2.sf(sps.chi2.isf(ALPHA, 4), 4, lam)
    theory_bonferroni = sps.ncx2.sf(sps.chi2.isf(ALPHA / 21, 4), 4, lam)
    single = np.mean(h.p_value[:, 0] < ALPHA)
    named = np.mean(h.drivers()[flagged[:, 0], 0, 4])
    top = np.mean(h.driver[flagged[:, 0], 0] == 4)
    print(
        f"\nheterogeneity scan, 21 tests, one level at −5% vs +3% (80,000 units per level and arm): "
        f"found by BH in {power:.4f} of {REPLAYS} replays (Bonferroni theory "
        f"{theory_bonferroni:.4f}); single test at 5% {single:.4f} (theory {theory_single:.4f}); "
        f"the −5% level named a driver in {named:.4f} of the finds and the top one in {top:.4f}; "
        f"some homogeneous test flagged "
        f"too in {nulls_flagged:.4f}; false discovery proportion {fdr:.4f}"
    )
    assert power >= 0.80
    band_single = _band(theory_single)
    assert band_single[0] <= single <= band_single[1]
    assert fdr <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / REPLAYS)
    assert named >= 0.95 and top >= 0.95
    # 20 homogeneous tests alone: the family-wise false alarm rate.
    a, b = _binomial_levels(rng, UNITS, np.full((20, 5), 0.03), (NULL_REPLAYS,))
    _, flagged = _scan_rates(a, b)
    fwer = flagged.any(axis=1).mean()
    lo, hi = _band(ALPHA, NULL_REPLAYS)
    print(
        f"heterogeneity scan, 20 homogeneous tests, {NULL_REPLAYS} replays: family-wise false "
        f"alarm rate {fwer:.4f} "
        f"(target {ALPHA}; 99.9% binomial band around it {lo:.4f}–{hi:.4f})"
    )
    assert fwer <= hi


def test_doctests():
    result = doctest.testmod(heterogeneity_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
