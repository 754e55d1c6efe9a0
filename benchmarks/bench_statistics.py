"""Statistics: the relative Welch t-test for 10,000 pairs of arms, vectorized ``compare`` vs gbstats.

Both sides get the same sufficient statistics (n, Σy, Σy²). The project compares all pairs in one
call over arrays; gbstats 0.8.0 (in its own venv, a subprocess timing itself) builds two
SampleMeanStatistic and runs a relative TwoSidedTTest per pair. Repetitions alternate between the
two sides; a few pairs are checked to agree to a relative 1e-9, so both sides do the same work.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ab_pipelines.stats import Moments, compare
from benchmarks.peers import run_peer
from benchmarks.report import Benchmark, Row

__all__ = ["PAIRS", "run"]

PAIRS = 10_000
TARGET_SPEEDUP = 200.0
TOLERANCE = 1e-9
CALLS_PER_REP = 21
FIELDS = ("effect", "ci_low", "ci_high", "p_value")


def arms(rng: np.random.Generator, pairs: int) -> tuple[Moments, Moments]:
    """Random but realistic arms: revenue-like means, lifts within a few percent."""

    def arm(n, mean, sd):
        return Moments(n=n, sum=n * mean, sum_sq=(n - 1) * sd**2 + n * mean**2)

    n_a, n_b = rng.integers(1_000, 50_000, size=(2, pairs)).astype(np.float64)
    mean_a = rng.gamma(2.0, 5.0, pairs)
    mean_b = mean_a * (1.0 + rng.normal(0.0, 0.03, pairs))
    sd = mean_a * rng.uniform(0.5, 3.0, pairs)
    return arm(n_a, mean_a, sd), arm(n_b, mean_b, sd * rng.uniform(0.9, 1.1, pairs))


def run(reps: int = 5, seed: int = 20260808) -> Benchmark:
    rng = np.random.default_rng(seed)
    a, b = arms(rng, PAIRS)
    check = sorted(int(i) for i in rng.choice(PAIRS, size=20, replace=False))
    payload = {
        "n_a": a.n.tolist(),
        "sum_a": a.sum.tolist(),
        "sum_sq_a": a.sum_sq.tolist(),
        "n_b": b.n.tolist(),
        "sum_b": b.sum.tolist(),
        "sum_sq_b": b.sum_sq.tolist(),
        "check": check,
        "warmup": 200,
    }
    compare(a, b, relative=True)  # warm-up
    ours_s, theirs_s, peer_results = [], [], {}
    for _ in range(reps):
        # One call takes milliseconds, the peer's loop a second or more: a repetition of ours is
        # the median of CALLS_PER_REP calls, so one scheduler hiccup does not decide it.
        calls = []
        for _ in range(CALLS_PER_REP):
            start = time.perf_counter_ns()
            ours = compare(a, b, relative=True)
            calls.append((time.perf_counter_ns() - start) / 1e9)
        ours_s.append(statistics.median(calls))
        peer = run_peer("gbstats", "peer_gbstats.py", payload)
        theirs_s.append(peer["seconds"])
        peer_results = peer["results"]
    worst = 0.0
    for i in check:
        for field, other in zip(FIELDS, peer_results[str(i)], strict=True):
            mine = float(getattr(ours, field)[i])
            worst = max(worst, abs(mine - other) / max(abs(other), 1e-300))
    if worst > TOLERANCE:
        raise AssertionError(
            f"compare and gbstats disagree by a relative {worst:.2e} (> {TOLERANCE:g}): "
            "the benchmark would not measure the same work"
        )
    ours_us = statistics.median(ours_s) / PAIRS * 1e6
    theirs_us = statistics.median(theirs_s) / PAIRS * 1e6
    speedup = theirs_us / ours_us
    return Benchmark(
        title="Statistics: relative Welch t-test, 10,000 pairs",
        rows=[
            Row(
                "µs per comparison",
                f"{ours_us:.3f}",
                f"{theirs_us:.1f}",
                f"{speedup:,.0f}x faster",
                f"≥ {TARGET_SPEEDUP:.0f}x faster",
                speedup >= TARGET_SPEEDUP,
            )
        ],
        notes=[
            f"Project: one `compare(a, b, relative=True)` over arrays of {PAIRS:,} pairs; peer: "
            "gbstats 0.8.0 `TwoSidedTTest` with two `SampleMeanStatistic` per pair, one by one, "
            "timed inside its own venv (start-up and JSON exchange not counted).",
            f"Medians of {reps} alternating repetitions (one of the project's is the median of "
            f"{CALLS_PER_REP} calls; one of gbstats' is a loop over all pairs): project "
            + ", ".join(f"{s * 1e3:.2f}" for s in ours_s)
            + " ms; gbstats "
            + ", ".join(f"{s:.2f}" for s in theirs_s)
            + " s.",
            f"Agreement on {len(check)} pairs (effect, CI bounds, p-value): worst relative "
            f"difference {worst:.1e} (tolerance {TOLERANCE:g}).",
        ],
    )
