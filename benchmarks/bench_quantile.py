"""Statistics: event-level quantile metrics on 10,000 pairs, vectorized ``compare_quantiles`` vs gbstats.

Each arm is the :class:`~ab_pipelines.stats.QuantileMoments` of an event-level metric (p50, p90,
p95 or p99 of event values, events clustered in units), as the SQL models deliver them. They are
made directly, not from raw events (20,000 arms of up to 500,000 events would take minutes): the
quantile bounds are those of a log-normal event distribution at ``bound_levels``, and the per-unit
sums those of units whose count of events at or below Q̂ is ν·N_i plus a deviation with a design
effect of 1 to 4 (so the clustered variance is 1 to 4 times the i.i.d. one). Both sides get the
same fields; the project compares all pairs in one ``compare_quantiles`` call over arrays, gbstats
0.8.0 builds two QuantileClusteredStatistic and runs a relative TwoSidedTTest per pair. Timing and
the agreement check are the t-test benchmark's (``bench_statistics``).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from scipy import special

from ab_pipelines.stats import QuantileMoments, bound_levels, compare_quantiles, n_star_for
from benchmarks.bench_statistics import (
    CHECKED_PAIRS,
    PAIRS,
    arm_columns,
    check_agreement,
    speed_benchmark,
    time_against_gbstats,
)
from benchmarks.report import Benchmark

__all__ = ["run"]

TARGET_SPEEDUP = 100.0
TOLERANCE = 1e-9
# gbstats' p-value is 2(1 − F(|t|)), which keeps no digit below ~1e-16 (0 where ours is 1e-50), so
# values below this floor are compared absolutely.
SMALL = 1e-5
LEVELS = (0.5, 0.9, 0.95, 0.99)
FIELDS = ("effect", "ci_low", "ci_high", "p_value")
ARM_FIELDS = tuple(f.name for f in fields(QuantileMoments) if f.name != "q")


def clustered_arm(rng: np.random.Generator, q: np.ndarray, quantile: np.ndarray) -> QuantileMoments:
    """One event-level arm per element of ``q``: 2,000 to 50,000 units of 1.5 to 10 events each."""
    pairs = q.size
    units = rng.integers(2_000, 50_000, pairs)
    n = np.rint(units * rng.uniform(1.5, 10.0, pairs)).astype(np.int64)
    n_star = n_star_for(n)
    # The bounds: quantiles of a log-normal (log-sd 0.3 to 1.2) whose ν-quantile is Q̂.
    spread = rng.uniform(0.3, 1.2, pairs)
    lo, hi = bound_levels(q, n_star)
    z = special.ndtri(q)
    lower = quantile * np.exp(spread * (special.ndtri(lo) - z))
    upper = quantile * np.exp(spread * (special.ndtri(hi) - z))
    # Per unit: N_i events (sample variance λ(1 + λ), geometric-like), S_i = ν·N_i + e_i with
    # Σe_i = Σe_i·N_i = 0 and sample variance of e the i.i.d. λν(1 − ν) times a design effect.
    lam = n / units
    events_sum_sq = (units - 1) * lam * (1.0 + lam) + units * lam**2
    var_e = lam * q * (1.0 - q) * rng.uniform(1.0, 4.0, pairs)
    return QuantileMoments(
        q=q,
        n=n,
        n_star=n_star,
        quantile=quantile,
        lower=lower,
        upper=upper,
        n_units=units,
        below_sum=q * n,
        below_sum_sq=q**2 * events_sum_sq + (units - 1) * var_e,
        events_sum=n.astype(np.float64),
        events_sum_sq=events_sum_sq,
        below_events_sum=q * events_sum_sq,
    )


def quantile_arms(rng: np.random.Generator, pairs: int) -> tuple[QuantileMoments, QuantileMoments]:
    """Latency-like quantiles (median 55), the treatment's within a few percent of the baseline's."""
    q = rng.choice(LEVELS, pairs)
    base = rng.lognormal(4.0, 1.0, pairs)
    treated = base * (1.0 + rng.normal(0.0, 0.03, pairs))
    return clustered_arm(rng, q, base), clustered_arm(rng, q, treated)


def run(reps: int = 5, seed: int = 20261207) -> Benchmark:
    rng = np.random.default_rng(seed)
    a, b = quantile_arms(rng, PAIRS)
    check = sorted(int(i) for i in rng.choice(PAIRS, size=CHECKED_PAIRS, replace=False))
    payload = {
        "test": "quantile",
        "columns": {"q": a.q.tolist(), **arm_columns(a, b, ARM_FIELDS)},
        "check": check,
    }
    timing = time_against_gbstats(
        lambda: compare_quantiles(a, b, relative=True), payload, PAIRS, reps
    )
    worst = check_agreement(timing, FIELDS, TOLERANCE, floor=SMALL)
    return speed_benchmark(
        "Statistics: event-level quantile metrics, relative, 10,000 pairs",
        timing,
        TARGET_SPEEDUP,
        project=f"one `compare_quantiles(a, b, relative=True)` over arrays of {PAIRS:,} pairs of "
        "event-level `QuantileMoments` (p50, p90, p95, p99)",
        peer="gbstats 0.8.0 `TwoSidedTTest` (relative) with two `QuantileClusteredStatistic` "
        "per pair",
        agreement=f"Agreement on {len(check)} pairs (effect, CI bounds, p-value): worst relative "
        f"difference {worst:.1e} (tolerance {TOLERANCE:g}; values below {SMALL:g} compared "
        "absolutely: gbstats' p-value, 2(1 − F(|t|)), keeps no digit below about 1e-16).",
    )
