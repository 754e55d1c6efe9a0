"""Quantile metrics: the summaries against raw data, gbstats case by case, and simulations.

The simulations draw strongly clustered event data (users with many correlated events: a user's
log-latency level plus event noise, intra-user correlation 0.8, geometric event counts of mean 10)
with fixed seeds, and check against the analytic truth: a user-level N(0, 1) plus event-level
N(0, 0.5²) log-value is N(0, 1.25) over events, so the event-level ν-quantile is
100·exp(√1.25·Φ⁻¹(ν)). Run with ``pytest -s`` to see the measured rates.
"""

from __future__ import annotations

import doctest
import json
import subprocess
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import ab_pipelines.stats.quantile as quantile_module
from ab_pipelines.stats import (
    N_STAR_GRID,
    QuantileMoments,
    bound_levels,
    compare_quantiles,
    n_star_for,
    quantile_summaries,
)
from tests.stats.test_peer_gbstats import peer_python

ALPHA = 0.05
Z = sps.norm.ppf(1 - ALPHA / 2)
LOG_SD = np.sqrt(1.25)


def _band(rate: float, trials: int) -> tuple[float, float]:
    """The 99.9% binomial band of an observed rate around ``rate``."""
    lo, hi = sps.binom.ppf([0.0005, 0.9995], trials, rate)
    return lo / trials, hi / trials


def _true_quantile(q: float) -> float:
    return 100.0 * np.exp(LOG_SD * sps.norm.ppf(q))


def _clustered_arm(rng, users, tail=None):
    """Event-level data of one arm: (unit ids, values). ``tail=(c, f)`` multiplies values > c by f."""
    k = rng.geometric(0.1, users)
    ids = np.repeat(np.arange(users), k)
    y = 100.0 * np.exp(np.repeat(rng.normal(0.0, 1.0, users), k) + rng.normal(0.0, 0.5, k.sum()))
    if tail is not None:
        y = np.where(y > tail[0], y * tail[1], y)
    return ids, y


def _stack(arms: list[QuantileMoments]) -> QuantileMoments:
    """Arms as one QuantileMoments of arrays, so one compare_quantiles call tests them all."""
    names = [f.name for f in fields(QuantileMoments) if f.name != "q"]
    return QuantileMoments(
        q=arms[0].q, **{k: np.array([getattr(m, k) for m in arms], dtype=float) for k in names}
    )


def _take(m: QuantileMoments, sl) -> QuantileMoments:
    names = [f.name for f in fields(QuantileMoments) if f.name != "q"]
    return QuantileMoments(q=m.q, **{k: getattr(m, k)[sl] for k in names})


def _unclustered(m: QuantileMoments) -> QuantileMoments:
    """The naive reading: the same events treated as independent (the per-unit sums dropped)."""
    return QuantileMoments(
        q=m.q, n=m.n, n_star=m.n_star, quantile=m.quantile, lower=m.lower, upper=m.upper
    )


# --- the summaries against the raw values -------------------------------------------------------


def _ecdf(y, x):
    """(#values ≤ x, #values < x) / n."""
    return np.mean(y <= x), np.mean(y < x)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("ties", [False, True])
def test_quantile_and_bounds_are_the_sample_quantiles(q, ties):
    rng = np.random.default_rng(31)
    ids, y = _clustered_arm(rng, 700)
    if ties:
        y = np.round(y, -1)  # latencies rounded to 10 ms: many ties
    m = quantile_summaries(ids, y, q)
    assert m.n == y.size and m.n_star == n_star_for(y.size) < y.size
    lo, hi = bound_levels(q, m.n_star)
    for level, got in ((q, m.quantile), (lo, m.lower), (hi, m.upper)):
        # the inverted-CDF quantile: the smallest observed x with F_n(x) ≥ level
        at, below = _ecdf(y, got)
        assert got in y and at >= level > below
        if not ties:
            # numpy's default (linear) quantile lies between neighbouring order statistics:
            # within one rank of ours (percentile_approx may be off by ε·n ranks more)
            linear = np.quantile(y, level)
            assert abs(np.sum(y <= linear) - np.sum(y <= got)) <= 1
    assert m.lower <= m.quantile <= m.upper


def test_per_unit_sums_match_a_loop_over_units():
    rng = np.random.default_rng(32)
    ids, y = _clustered_arm(rng, 300)
    labels = np.array([f"user-{i}" for i in ids])  # any hashable unit id
    y[rng.choice(y.size, 25, replace=False)] = np.nan  # NULLs are ignored
    m = quantile_summaries(labels, y, 0.9)
    per_unit: dict[str, list[float]] = {}
    for unit, value in zip(labels.tolist(), y.tolist(), strict=True):
        if value == value:  # not NaN
            per_unit.setdefault(unit, []).append(value)
    s = [sum(v <= m.quantile for v in vs) for vs in per_unit.values()]
    n = [len(vs) for vs in per_unit.values()]
    assert m.n == sum(n) == np.sum(~np.isnan(y))
    assert m.n_units == len(per_unit)
    assert m.below_sum == sum(s)
    assert m.below_sum_sq == sum(x * x for x in s)
    assert m.events_sum == sum(n)
    assert m.events_sum_sq == sum(x * x for x in n)
    assert m.below_events_sum == sum(a * b for a, b in zip(s, n, strict=True))
    # unit-level: the quantile of the per-unit sums
    u = quantile_summaries(labels, y, 0.9, kind="unit")
    sums = np.array([sum(vs) for vs in per_unit.values()])
    assert u.n == len(per_unit) and not u.clustered
    at, below = _ecdf(sums, u.quantile)
    assert np.isclose(sums, u.quantile, rtol=1e-12).any() and at >= 0.9 > below


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_rank_error_of_an_approximate_percentile_moves_the_se_within_the_stated_bound(q):
    """percentile_approx with accuracy A may answer any level within ε = 1/A of the one asked."""
    rng = np.random.default_rng(38)
    ids, y = _clustered_arm(rng, 4000)  # about 40,000 events
    m = quantile_summaries(ids, y, q)
    eps = 1.0 / 10_000  # Spark's default accuracy
    lo, hi = bound_levels(q, m.n_star)
    bound = eps / (Z * np.sqrt(q * (1 - q) / m.n_star))  # the docstring's relative se error
    for d_lo, d_hi in ((-eps, eps), (eps, -eps)):  # the widest and the narrowest answers
        lo_x, hi_x = np.quantile(y, [lo + d_lo, hi + d_hi], method="inverted_cdf")
        change = abs((hi_x - lo_x) / (m.upper - m.lower) - 1.0)
        assert change <= 1.25 * bound, (change, bound)  # 1.25: the density is not flat over L..U


def test_grid_and_levels_are_growthbooks():
    assert N_STAR_GRID[0] == 100 and N_STAR_GRID[-1] == 52_428_800 and len(N_STAR_GRID) == 20
    assert n_star_for(50) == 100 and n_star_for(201) == 200 and n_star_for(200) == 100
    assert list(n_star_for(np.array([6401, 10**9]))) == [6400, 52_428_800]
    lo, hi = bound_levels(0.99, np.array(N_STAR_GRID))
    half = 1.959963984540054 * np.sqrt(0.99 * 0.01 / np.array(N_STAR_GRID))
    np.testing.assert_allclose(hi, np.minimum(0.99 + half, 1 - 1e-8))
    np.testing.assert_allclose(lo, 0.99 - half)


def test_one_event_per_unit_reduces_to_the_iid_variance():
    rng = np.random.default_rng(33)
    y = rng.lognormal(size=5000)
    m = quantile_summaries(np.arange(y.size), y, 0.9)
    # S_i ∈ {0, 1}, N_i = 1: Var_c(Ī) = Ī(1 − Ī)/(K − 1) ≈ ν(1 − ν)/n
    assert m.variance == pytest.approx(m.iid_variance, rel=2e-3)
    assert compare_quantiles(m, m).se == pytest.approx(
        compare_quantiles(_unclustered(m), _unclustered(m)).se, rel=2e-3
    )


# --- the comparison: API, degenerate inputs ------------------------------------------------------


def _pair(rng, users=500, q=0.9):
    a = quantile_summaries(*_clustered_arm(rng, users), q)
    b = quantile_summaries(*_clustered_arm(rng, users, tail=(150.0, 1.2)), q)
    return a, b


def test_sequential_is_refused_with_a_clear_error():
    a, b = _pair(np.random.default_rng(34))
    with pytest.raises(ValueError, match="fixed-horizon only"):
        compare_quantiles(a, b, sequential_tuning=5000)


def test_arms_must_match():
    a, b = _pair(np.random.default_rng(35))
    with pytest.raises(TypeError):
        compare_quantiles(a, _unclustered(b))
    other = quantile_summaries(np.arange(1000), np.arange(1000.0), 0.5)
    with pytest.raises(ValueError, match="same quantile level"):
        compare_quantiles(a, other)
    with pytest.raises(ValueError):
        QuantileMoments(q=1.0, n=10, n_star=100, quantile=1.0, lower=0.0, upper=2.0)
    with pytest.raises(ValueError):
        quantile_summaries([1, 2], [1.0, 2.0], 0.5, kind="user")


def test_effect_fields_and_vectorised_equals_scalar():
    rng = np.random.default_rng(36)
    pairs = [_pair(rng) for _ in range(3)]
    a, b = _stack([p[0] for p in pairs]), _stack([p[1] for p in pairs])
    for relative in (False, True):
        vec = compare_quantiles(a, b, relative=relative)
        for j, (pa, pb) in enumerate(pairs):
            one = compare_quantiles(pa, pb, relative=relative)
            assert one.mean_a == pa.quantile and one.mean_b == pb.quantile
            assert one.n_a == pa.n_units and one.n_b == pb.n_units
            diff = pb.quantile - pa.quantile
            assert one.effect == pytest.approx(diff / pa.quantile if relative else diff)
            if not relative:
                assert one.se == pytest.approx(np.hypot(pa.standard_error, pb.standard_error))
            for name in ("effect", "se", "ci_low", "ci_high", "p_value", "df"):
                assert getattr(vec, name)[j] == pytest.approx(getattr(one, name), rel=1e-12)


def test_degenerate_inputs_give_nan():
    rng = np.random.default_rng(37)
    ok = quantile_summaries(np.arange(2000), rng.lognormal(size=2000), 0.99)
    few = quantile_summaries(np.arange(300), rng.lognormal(size=300), 0.99)  # n ≤ 380 at p99
    single = quantile_summaries(np.zeros(2000), rng.lognormal(size=2000), 0.99)  # one unit
    empty = quantile_summaries([], [], 0.99)
    tied = quantile_summaries(np.arange(2000), np.ones(2000), 0.99)  # L = U: variance 0
    assert all(np.isnan(m.variance) for m in (few, single, empty))
    assert tied.variance == 0.0 and ok.variance > 0
    for bad in (few, single, empty, tied):
        for r in (compare_quantiles(bad, ok), compare_quantiles(ok, bad, relative=False)):
            assert all(
                np.isnan(getattr(r, k)) for k in ("effect", "se", "ci_low", "ci_high", "p_value")
            )
    zero = quantile_summaries(np.arange(2000), np.r_[np.zeros(1999), 1.0], 0.5)
    assert np.isnan(compare_quantiles(zero, zero).effect)  # relative to a baseline of 0


def test_docstring_examples_run():
    result = doctest.testmod(quantile_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --- simulations: coverage, A/A, a planted shift -----------------------------------------------

ARMS = 1200  # simulated arms of 400 users (about 4,000 events each), q = 0.9


@pytest.fixture(scope="module")
def p90_arms() -> QuantileMoments:
    rng = np.random.default_rng(20261201)
    return _stack([quantile_summaries(*_clustered_arm(rng, 400), 0.9) for _ in range(ARMS)])


def test_clustered_interval_covers_and_the_naive_one_does_not(p90_arms):
    m, truth = p90_arms, _true_quantile(0.9)
    clustered = np.mean(np.abs(m.quantile - truth) <= Z * m.standard_error)
    naive = np.mean(np.abs(m.quantile - truth) <= Z * _unclustered(m).standard_error)
    calibration = np.std(m.quantile) / np.mean(m.standard_error)
    design_effect = np.mean(m.variance / m.iid_variance)
    lo, hi = _band(1 - ALPHA, ARMS)
    print(
        f"\np90 of clustered events, {ARMS} arms: clustered 95% interval covers {clustered:.4f} "
        f"(band {lo:.4f}–{hi:.4f}), i.i.d. interval {naive:.4f}; sd(Q̂)/mean(se) = "
        f"{calibration:.3f}; mean design effect {design_effect:.1f}"
    )
    assert lo <= clustered <= hi
    assert naive < 0.75  # under-covers badly: the events of a user are not independent
    assert 0.9 < calibration < 1.1


def test_aa_false_positive_rate(p90_arms):
    half = ARMS // 2
    a, b = _take(p90_arms, slice(0, half)), _take(p90_arms, slice(half, None))
    lo, hi = _band(ALPHA, half)
    for relative in (False, True):
        rate = np.mean(compare_quantiles(a, b, relative=relative, alpha=ALPHA).p_value < ALPHA)
        naive = np.mean(
            compare_quantiles(_unclustered(a), _unclustered(b), relative=relative).p_value < ALPHA
        )
        print(
            f"\nA/A p90, relative={relative}, {half} experiments: false-positive rate {rate:.4f} "
            f"(band {lo:.4f}–{hi:.4f}); i.i.d. variance {naive:.4f}"
        )
        assert lo <= rate <= hi
        assert naive > hi


def test_planted_p90_shift_is_recovered_and_p50_is_untouched():
    """Treatment multiplies values above the control's p75 by 1.5: p90 rises 50%, p50 not at all."""
    rng = np.random.default_rng(20261202)
    runs, users = 150, 1000
    cut = _true_quantile(0.75)
    arms = {0.5: ([], []), 0.9: ([], [])}
    for _ in range(runs):
        a, b = _clustered_arm(rng, users), _clustered_arm(rng, users, tail=(cut, 1.5))
        for q, (qa, qb) in arms.items():
            qa.append(quantile_summaries(*a, q))
            qb.append(quantile_summaries(*b, q))
    r90 = compare_quantiles(_stack(arms[0.9][0]), _stack(arms[0.9][1]), relative=True)
    r50 = compare_quantiles(_stack(arms[0.5][0]), _stack(arms[0.5][1]), relative=True)
    d90 = compare_quantiles(_stack(arms[0.9][0]), _stack(arms[0.9][1]), relative=False)
    true_abs = 0.5 * _true_quantile(0.9)  # a monotone map moves each quantile: Q_b = 1.5·Q_a
    cover90 = np.mean((r90.ci_low <= 0.5) & (0.5 <= r90.ci_high))
    cover_abs = np.mean((d90.ci_low <= true_abs) & (true_abs <= d90.ci_high))
    power90 = np.mean((r90.p_value < ALPHA) & (r90.effect > 0))
    reject50 = np.mean(r50.p_value < ALPHA)
    print(
        f"\nplanted +50% at p90 ({runs} experiments of {users} users/arm): absolute effect "
        f"{np.mean(d90.effect):.2f} (truth {true_abs:.2f}, sd {np.std(d90.effect):.2f}), relative "
        f"{np.mean(r90.effect):.4f}; intervals cover the truth in {cover_abs:.3f} (absolute) and "
        f"{cover90:.3f} (relative), significant in {power90:.3f}; p50 relative "
        f"{np.mean(r50.effect):.4f}, significant in {reject50:.3f}"
    )
    mc = 3 * np.std(d90.effect) / np.sqrt(runs)  # three Monte Carlo standard errors
    assert abs(np.mean(d90.effect) - true_abs) < mc
    lo, hi = _band(1 - ALPHA, runs)
    assert lo <= cover90 <= hi and lo <= cover_abs <= hi
    assert power90 > 0.95
    assert abs(np.mean(r50.effect)) < 3 * np.std(r50.effect) / np.sqrt(runs)
    assert reject50 <= _band(ALPHA, runs)[1]


# --- case by case against gbstats 0.8.0 ----------------------------------------------------------


def _peer_cases(rng):
    """40 data sets (20 event-level, 20 unit-level) × absolute and relative: 80 comparisons.

    Two more, too small for p99 (n ≤ 380), check that both sides refuse them.
    """
    out = []
    for i in range(42):
        q = float(rng.choice([0.1, 0.5, 0.75, 0.9, 0.95, 0.99])) if i < 40 else 0.99
        kind = "event" if i % 2 == 0 else "unit"
        users = int(rng.integers(150, 4000)) if i < 40 else 120
        mean_events = float(rng.uniform(1.5, 15.0)) if i < 40 else 1.5
        arms = []
        for lift in (1.0, rng.uniform(0.9, 1.15)):
            k = rng.geometric(1.0 / mean_events, users)
            ids = np.repeat(np.arange(users), k)
            log_y = np.repeat(rng.normal(0, rng.uniform(0.2, 1.2), users), k)
            y = 50.0 * lift * np.exp(log_y + rng.normal(0, rng.uniform(0.2, 1.0), k.sum()))
            arms.append(quantile_summaries(ids, y, q, kind=kind))
        for relative in (False, True):
            out.append((relative, *arms))
    return out


def _as_json(m: QuantileMoments) -> dict:
    return {f.name: getattr(m, f.name) for f in fields(QuantileMoments)}


@pytest.mark.slow
def test_compare_quantiles_agrees_with_gbstats_case_by_case():
    todo = _peer_cases(np.random.default_rng(20261203))
    payload = [{"relative": r, "a": _as_json(a), "b": _as_json(b)} for r, a, b in todo]
    script = Path(__file__).with_name("gbstats_quantile_peer.py")
    proc = subprocess.run(
        [peer_python(), script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout)
    worst, compared, degenerate = 0.0, 0, 0
    for (relative, a, b), peer in zip(todo, theirs, strict=True):
        ours = compare_quantiles(a, b, relative=relative)
        if peer["error"]:  # gbstats' uninformative output (too few values for the bounds)
            degenerate += 1
            assert np.isnan(ours.p_value) and np.isnan(ours.se), (relative, a, b, peer)
            continue
        compared += 1
        pairs = [(getattr(ours, k), peer[k]) for k in ("effect", "ci_low", "ci_high", "p_value")]
        pairs += [(a.variance, peer["variance_a"]), (b.variance, peer["variance_b"])]
        for mine, other in pairs:
            scale = max(abs(other), 1e-3)
            worst = max(worst, abs(mine - other) / scale)
            assert abs(mine - other) <= 1e-6 * scale, (relative, a, b, mine, other)
    print(
        f"\nquantiles vs gbstats: {compared} comparisons agree, worst relative difference "
        f"{worst:.2e}; {degenerate} degenerate on both sides"
    )
    assert compared == 80 and degenerate == 4
