"""e_value, e_bh and monitor_discoveries: against closed forms, direct enumeration, statsmodels'
BH, and a simulation of 28 daily looks at 20 metrics (run with ``pytest -s`` to see the numbers)."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from ab_pipelines.stats import (
    Discoveries,
    Moments,
    adjust_pvalues,
    always_valid_p_value,
    compare,
    e_bh,
    e_value,
    monitor_discoveries,
    sequential_rho,
)
from ab_pipelines.stats import evalues as evalues_module

ALPHA = 0.05
NSTAR = 5000


# --- the e-process -----------------------------------------------------------------------------


@pytest.mark.parametrize(("z", "n"), [(0.0, 100), (1.0, 5000), (2.5, 20_000), (-3.0, 56_000)])
def test_e_value_is_the_normal_mixture_integral(z, n):
    """E_N = ∫ exp(λS − λ²N/2) dN(0, ρ²)(λ), S = z·sqrt(N), integrated numerically."""
    rho = sequential_rho(ALPHA, NSTAR)
    s = z * np.sqrt(n)

    def integrand(lam):
        return np.exp(lam * s - lam**2 * n / 2) * sps.norm.pdf(lam, scale=rho)

    ref, _ = integrate.quad(integrand, -40 * rho, 40 * rho, points=[s / n], limit=200)
    assert e_value(z, 1.0, n, ALPHA, NSTAR) == pytest.approx(ref, rel=1e-8)


def test_e_value_is_one_over_the_always_valid_p_value_below_one():
    rng = np.random.default_rng(3)
    effect, se = rng.normal(0, 3, 500), rng.uniform(0.5, 2, 500)
    n = rng.integers(10, 100_000, 500)
    e = e_value(effect, se, n, ALPHA, NSTAR)
    p = always_valid_p_value(effect, se, n, ALPHA, NSTAR)
    below = p < 1
    assert below.sum() > 50 and (~below).sum() > 50
    np.testing.assert_allclose(e[below] * p[below], 1.0, rtol=1e-12)
    assert np.all(e[~below] <= 1.0)  # where 1/p is floored at 1, the e-process is below 1


@pytest.mark.parametrize("n", [500, 5000, 20_000])
def test_mean_one_under_the_null_and_one_over_p_is_not_an_e_value(n):
    """E[E_N] = 1 for z ~ N(0, 1) (numerical integral); E[1/p] = E[max(E_N, 1)] > 1, equal to the
    module's closed form P(|Z| < z0) + P(|Z| >= z0/sqrt(a + 1)).

    |z| <= 37 keeps E_N finite in float64; the integrand is a N(0, a + 1) density, so the range
    holds >= 6.5 of its standard deviations up to n = 20,000 (a = 31.7)."""
    lim = 37.0
    e = lambda z: e_value(z, 1.0, n, ALPHA, NSTAR) * sps.norm.pdf(z)  # noqa: E731
    mean, _ = integrate.quad(e, -lim, lim, limit=200)
    assert mean == pytest.approx(1.0, abs=1e-9)
    capped = lambda z: max(e_value(z, 1.0, n, ALPHA, NSTAR), 1.0) * sps.norm.pdf(z)  # noqa: E731
    a = n * sequential_rho(ALPHA, NSTAR) ** 2
    z0 = np.sqrt((a + 1) * np.log1p(a) / a)
    mean_capped, _ = integrate.quad(capped, -lim, lim, points=[-z0, z0], limit=200)
    closed = (1 - 2 * sps.norm.sf(z0)) + 2 * sps.norm.sf(z0 / np.sqrt(a + 1))
    assert mean_capped == pytest.approx(closed, abs=1e-9)
    assert closed > 1.05
    if n == NSTAR:
        assert closed == pytest.approx(1.48, abs=0.005)  # the number quoted in the module


def test_e_value_degenerate_inputs():
    out = e_value(
        [np.nan, 1.0, 0.0, 1.0, 1.0, 1e6],
        [1.0, np.nan, 0.0, 1.0, 1.0, 1e-3],
        [10, 10, 10, 0, -1, 10],
    )
    assert np.isnan(out[[0, 1, 2, 4]]).all()
    assert out[3] == 1.0  # no units: the e-process has not moved from 1
    assert out[5] == np.inf
    assert isinstance(e_value(1.0, 1.0, 100), float)


# --- e-BH ----------------------------------------------------------------------------------------


def _e_bh_by_enumeration(e, alpha):
    """The largest self-consistent set: every member's e >= m/(α·|S|), over all 2^m subsets."""
    m = len(e)
    best = ()
    for size in range(1, m + 1):
        for subset in itertools.combinations(range(m), size):
            if all(e[j] >= m / (alpha * size) for j in subset) and size > len(best):
                best = subset
    out = np.zeros(m, dtype=bool)
    out[list(best)] = True
    return out


@pytest.mark.parametrize("seed", range(40))
def test_e_bh_is_the_largest_self_consistent_set(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 8))
    alpha = float(rng.choice([0.05, 0.1, 0.2]))
    e = np.exp(rng.normal(2.5, 2.0, m))
    if seed % 4 == 0 and m > 2:
        e[1] = e[0]  # ties
    if seed % 5 == 0:
        e[0] = m / (alpha * m)  # exactly on a threshold
    np.testing.assert_array_equal(e_bh(e, alpha), _e_bh_by_enumeration(e, alpha))


@pytest.mark.parametrize("seed", range(10))
def test_e_bh_equals_bh_on_one_over_e(seed):
    """Wang & Ramdas: e-BH is BH applied to 1/e (statsmodels' fdr_bh as the reference)."""
    rng = np.random.default_rng(100 + seed)
    e = np.exp(rng.normal(2.0, 2.5, 25))
    ref = multipletests(np.minimum(1.0, 1.0 / e), alpha=0.1, method="fdr_bh")[0]
    np.testing.assert_array_equal(e_bh(e, 0.1), ref)


def test_e_bh_batched_nan_and_fixed_family():
    rng = np.random.default_rng(5)
    e = np.exp(rng.normal(2.0, 2.0, (30, 6)))
    e[::4, 3:] = np.nan
    out = e_bh(e, 0.1)
    for row, mask in zip(e, out, strict=True):
        keep = ~np.isnan(row)
        assert not mask[~keep].any()
        np.testing.assert_array_equal(mask[keep], _e_bh_by_enumeration(row[keep], 0.1))
    # A fixed family of 6 counts the NaN as never-rejected members: fewer or equal rejections.
    fixed = e_bh(e, 0.1, m=6)
    assert np.all(~fixed | out)
    np.testing.assert_array_equal(fixed[1::4], out[1::4])
    with pytest.raises(ValueError):
        e_bh([1.0, -1.0])
    with pytest.raises(ValueError):
        e_bh([1.0, 2.0, 3.0], m=2)
    with pytest.raises(ValueError):
        e_bh([1.0], alpha=1.0)


# --- the monitor --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(15))
def test_monitor_is_e_bh_on_the_stopped_e_processes(seed):
    """At every look: the standing set is monotone, self-consistent for the stopped values, the
    largest such set (enumeration), and contains whatever per-look e-BH rejected."""
    rng = np.random.default_rng(200 + seed)
    looks, m, alpha = 12, 6, 0.1
    e = np.exp(np.cumsum(rng.normal(0.1, 1.0, (looks, m)), 0))
    e[rng.random((looks, m)) < 0.05] = np.nan
    d = monitor_discoveries(e, alpha)
    assert isinstance(d, Discoveries) and d.m == m
    frozen = np.full(m, np.nan)
    per_look_union = np.zeros(m, dtype=bool)
    for t in range(looks):
        before = d.rejected[t - 1] if t else np.zeros(m, dtype=bool)
        assert np.all(d.rejected[t] >= before)
        stopped = np.where(before, frozen, e[t])
        ref = _e_bh_by_enumeration(np.nan_to_num(stopped, nan=0.0), alpha)
        np.testing.assert_array_equal(d.rejected[t], ref)
        frozen = np.where(d.rejected[t] & ~before, e[t], frozen)
        per_look_union |= _e_bh_by_enumeration(np.nan_to_num(e[t], nan=0.0), alpha)
    assert np.all(~per_look_union | d.final)
    for k in range(m):
        if d.first_look[k] >= 0:
            assert d.rejected[d.first_look[k], k] and not d.rejected[: d.first_look[k], k].any()
            assert d.stopped_e[k] == e[d.first_look[k], k]
        else:
            assert not d.final[k]


def test_monitor_batched_matches_one_by_one():
    rng = np.random.default_rng(7)
    e = np.exp(np.cumsum(rng.normal(0.2, 1.0, (5, 10, 4)), 1))
    d = monitor_discoveries(e, 0.1)
    for i in range(5):
        one = monitor_discoveries(e[i], 0.1)
        np.testing.assert_array_equal(d.rejected[i], one.rejected)
        np.testing.assert_array_equal(d.first_look[i], one.first_look)
    with pytest.raises(ValueError):
        monitor_discoveries([1.0, 2.0])


def test_docstring_examples_run():
    result = doctest.testmod(evalues_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5 and result.failed == 0


# --- simulation: 28 daily looks, 20 metrics -------------------------------------------------------

REPS, DAYS, METRICS, PER_DAY = 2000, 28, 20, 1000
MEAN, SD = 10.0, 10.0
LIFT = np.zeros(METRICS)
PLANTED = [0, 5, 10, 15, 1]
LIFT[PLANTED] = [0.02, 0.03, 0.04, 0.05, 0.06]  # relative lifts of 5 of the 20 metrics
NULL = LIFT == 0


def _daily_looks(seed):
    """Cumulative Moments (REPS, DAYS, METRICS) of both arms: PER_DAY new units per arm a day.

    Metrics are N(mean, SD²) per unit, correlated 0.5 within four blocks of five metrics (the
    cross-metric dependence lives in the means); per day and arm the mean vector is drawn exactly,
    ~ N(μ, Σ/n), and each metric's scatter Σ(y − ȳ)² ~ SD²·χ²(n − 1) (marginally exact).
    """
    rng = np.random.default_rng(seed)
    block = np.arange(METRICS) // 5
    corr = np.where(block[:, None] == block[None, :], 0.5, 0.0)
    np.fill_diagonal(corr, 1.0)
    chol = np.linalg.cholesky(SD**2 * corr / PER_DAY)
    n = np.broadcast_to(PER_DAY * np.arange(1.0, DAYS + 1)[:, None], (REPS, DAYS, METRICS))

    def arm(mu):
        ybar = mu + rng.standard_normal((REPS, DAYS, METRICS)) @ chol.T
        scatter = SD**2 * rng.chisquare(PER_DAY - 1, (REPS, DAYS, METRICS))
        sums = np.cumsum(PER_DAY * ybar, 1)
        sum_sq = np.cumsum(scatter + PER_DAY * ybar**2, 1)
        return Moments(n=n, sum=sums, sum_sq=sum_sq)

    return arm(np.full(METRICS, MEAN)), arm(MEAN * (1 + LIFT))


@pytest.fixture(scope="module")
def looks():
    a, b = _daily_looks(20261226)
    seq = compare(a, b, relative=True, alpha=ALPHA, sequential_tuning=NSTAR)
    e = e_value(seq.effect, seq.se, seq.n_a + seq.n_b, ALPHA, NSTAR)
    # The fixed-horizon p-value of the same estimate: Welch t with compare's df.
    p_fixed = 2 * sps.t.sf(np.abs(seq.effect / seq.se), seq.df)
    return e, seq.p_value, p_fixed


def _rates(rejected):
    """FDR (mean FDP) with its 99.9% normal band, P(any false discovery) with its 99.9%
    Clopper–Pearson band, and power (share of the planted effects found)."""
    false = (rejected & NULL).sum(-1)
    fdp = false / np.maximum(rejected.sum(-1), 1)
    fdr, half = fdp.mean(), 3.29 * fdp.std(ddof=1) / np.sqrt(REPS)
    k = int((false > 0).sum())
    ci = sps.binomtest(k, REPS).proportion_ci(confidence_level=0.999)
    power = ((rejected & ~NULL).sum(-1) / (~NULL).sum()).mean()
    return fdr, (fdr - half, fdr + half), k / REPS, (ci.low, ci.high), power


def _show(name, r):
    fdr, (lo, hi), fwer, (flo, fhi), power = r
    print(
        f"\n{name:44s} FDR {fdr:.4f} ({lo:.4f}–{hi:.4f})  P(V>0) {fwer:.4f} "
        f"({flo:.4f}–{fhi:.4f})  power {power:.3f}"
    )


def test_e_bh_monitor_keeps_fdr_under_continuous_monitoring(looks):
    e, p_seq, p_fixed = looks
    monitor = monitor_discoveries(e, ALPHA).final
    # Per-look BH at level α on the always-valid p-values, "ever rejected" (the rule the pipeline
    # applies today with correction: bh), and with a running minimum of p (Johari et al.'s form).
    per_look = (adjust_pvalues(p_seq, method="bh") <= ALPHA).any(1)
    running_min = (adjust_pvalues(np.minimum.accumulate(p_seq, 1), method="bh") <= ALPHA).any(1)
    naive = (adjust_pvalues(p_fixed, method="bh") <= ALPHA).any(1)
    at_end = adjust_pvalues(p_fixed[:, -1], method="bh") <= ALPHA
    rates = {
        "e-BH monitor (stopped e-processes)": _rates(monitor),
        "per-look BH on always-valid p, ever": _rates(per_look),
        "per-look BH on running-min always-valid p": _rates(running_min),
        "per-look BH on fixed-horizon p, ever": _rates(naive),
        "BH on fixed-horizon p at day 28 only": _rates(at_end),
    }
    print(f"\n{REPS} experiments, {DAYS} daily looks, {METRICS} metrics (5 planted), alpha {ALPHA}")
    for name, r in rates.items():
        _show(name, r)
    for name, rej in (("e-BH monitor", monitor), ("BH at day 28 only", at_end)):
        found = rej[:, PLANTED].mean(0)
        by_lift = ", ".join(
            f"{lift:.0%}: {f:.2f}" for lift, f in zip(LIFT[PLANTED], found, strict=True)
        )
        print(f"\npower by planted lift, {name}: {by_lift}")
    m0 = NULL.sum()
    # e-BH: FDR <= α·m0/m, the upper end of the 99.9% band included.
    assert rates["e-BH monitor (stopped e-processes)"][1][1] <= ALPHA * m0 / METRICS
    # The proof's consequence: per-look BH on p = min(1, 1/E) is per-look e-BH, and whatever it
    # ever rejects the monitor rejects too (so its FDR bound holds as well).
    assert np.all(~per_look | monitor)
    assert rates["per-look BH on always-valid p, ever"][1][1] <= ALPHA
    # The harness can see inflation: peeking at fixed-horizon p-values breaks the FDR.
    assert rates["per-look BH on fixed-horizon p, ever"][1][0] > ALPHA
    # The monitor finds most planted effects (power of the anytime guarantee, vs 0.85 at the end).
    assert rates["e-BH monitor (stopped e-processes)"][4] > 0.6


def test_bh_baseline_is_statsmodels(looks):
    _, p_seq, _ = looks
    rng = np.random.default_rng(1)
    for rep, day in zip(rng.integers(0, REPS, 200), rng.integers(0, DAYS, 200), strict=True):
        ref = multipletests(p_seq[rep, day], alpha=ALPHA, method="fdr_bh")[0]
        np.testing.assert_array_equal(adjust_pvalues(p_seq[rep, day], method="bh") <= ALPHA, ref)


def test_null_e_processes_are_e_processes_and_their_running_max_is_not(looks):
    """On the 15 null metrics × 2000 experiments: Ville's inequality, E[min(E_τ, 20)] <= 1 at a
    stopping time, while the running maximum (1/running-min p) and 1/p both exceed 1 in mean."""
    e = looks[0][:, :, NULL]
    sup = np.max(e, axis=1)
    for x in (2.0, 5.0, 20.0):
        rate = np.mean(sup >= x)
        print(f"\nP(sup_t E_t >= {x:g}) = {rate:.4f} (Ville: <= {1 / x:.3f})")
        assert rate <= 1 / x
    hit = e >= 5.0
    tau = np.where(hit.any(1), hit.argmax(1), DAYS - 1)  # first look with E >= 5, else the last
    stopped = np.take_along_axis(e, tau[:, None, :], 1)[:, 0]

    def mean_se(x):
        per_rep = x.mean(1)  # metrics of one experiment are dependent: average them first
        return per_rep.mean(), per_rep.std(ddof=1) / np.sqrt(REPS)

    m_stop, se_stop = mean_se(np.minimum(stopped, 20.0))
    m_sup, se_sup = mean_se(np.minimum(sup, 20.0))
    m_inv, se_inv = mean_se(np.minimum(np.maximum(e[:, -1], 1.0), 20.0))
    print(
        f"\nE[min(E_tau, 20)] = {m_stop:.3f} ± {se_stop:.3f}; E[min(max_t E_t, 20)] = "
        f"{m_sup:.3f} ± {se_sup:.3f}; E[min(1/p_day28, 20)] = {m_inv:.3f} ± {se_inv:.3f}"
    )
    assert m_stop + 3 * se_stop <= 1.0
    assert m_sup - 3 * se_sup > 1.0
    assert m_inv - 3 * se_inv > 1.0
