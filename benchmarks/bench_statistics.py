"""Statistics: the relative Welch t-test for 10,000 pairs of arms, vectorized ``compare`` vs gbstats.

Both sides get the same sufficient statistics (n, Σy, Σy²). The project compares all pairs in one
call over arrays; gbstats 0.8.0 (in its own venv, a subprocess timing itself) builds two
SampleMeanStatistic and runs a relative TwoSidedTTest per pair. Repetitions alternate between the
two sides; a few pairs are checked to agree to a relative 1e-9, so both sides do the same work.

The machinery (alternating timing, the agreement check, the table) is shared with the Bayesian
engine's and the quantile metrics' benchmarks (``bench_bayesian``, ``bench_quantile``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ab_pipelines.stats import Moments, compare
from benchmarks.peers import run_peer
from benchmarks.report import Benchmark, Row

__all__ = [
    "PAIRS",
    "Timing",
    "arm_columns",
    "check_agreement",
    "mean_arms",
    "run",
    "speed_benchmark",
    "time_against_gbstats",
]

PAIRS = 10_000
TARGET_SPEEDUP = 200.0
TOLERANCE = 1e-9
CALLS_PER_REP = 21
CHECKED_PAIRS = 20
PEER_WARMUP = 200  # pairs the peer runs untimed first
FIELDS = ("effect", "ci_low", "ci_high", "p_value")


@dataclass(frozen=True)
class Timing:
    """Alternating repetitions of the project's call and the gbstats peer's loop over all pairs."""

    ours_s: list[float]  # per repetition: the median of CALLS_PER_REP calls
    theirs_s: list[float]  # per repetition: the peer's loop over all pairs
    result: Any  # the project's result (arrays over the pairs)
    peer_results: dict[str, list[float]]  # pair index -> the peer's fields, for the checked pairs
    pairs: int

    @property
    def ours_us(self) -> float:
        return statistics.median(self.ours_s) / self.pairs * 1e6

    @property
    def theirs_us(self) -> float:
        return statistics.median(self.theirs_s) / self.pairs * 1e6

    @property
    def speedup(self) -> float:
        return self.theirs_us / self.ours_us


def arm_columns(a: Any, b: Any, names: Sequence[str]) -> dict[str, list[float]]:
    """The payload's columns ``<name>_a`` and ``<name>_b``: the arms' array fields as lists."""
    return {
        f"{name}_{side}": np.asarray(getattr(arm, name), dtype=np.float64).tolist()
        for side, arm in (("a", a), ("b", b))
        for name in names
    }


def time_against_gbstats(
    ours: Callable[[], Any], payload: dict[str, Any], pairs: int, reps: int
) -> Timing:
    """Alternate ``reps`` repetitions of ``ours()`` and of ``benchmarks/peer_gbstats.py``."""
    ours()  # warm-up
    ours_s, theirs_s, result, peer_results = [], [], None, {}
    for _ in range(reps):
        # One call takes milliseconds, the peer's loop seconds: a repetition of ours is the median
        # of CALLS_PER_REP calls, so one scheduler hiccup does not decide it.
        calls = []
        for _ in range(CALLS_PER_REP):
            start = time.perf_counter_ns()
            result = ours()
            calls.append((time.perf_counter_ns() - start) / 1e9)
        ours_s.append(statistics.median(calls))
        peer = run_peer("gbstats", "peer_gbstats.py", {"warmup": PEER_WARMUP, **payload})
        theirs_s.append(peer["seconds"])
        peer_results = peer["results"]
    return Timing(ours_s, theirs_s, result, peer_results, pairs)


def check_agreement(
    timing: Timing, fields: Sequence[str], tolerance: float, floor: float = 1e-300
) -> float:
    """The worst |ours − gbstats| / max(|gbstats|, floor) over the checked pairs and ``fields``.

    Raises AssertionError above ``tolerance``: the benchmark would not measure the same work.
    """
    worst = 0.0
    for i, theirs in timing.peer_results.items():
        for field, other in zip(fields, theirs, strict=True):
            mine = float(getattr(timing.result, field)[int(i)])
            worst = max(worst, abs(mine - other) / max(abs(other), floor))
    if not worst <= tolerance:
        raise AssertionError(
            f"the project and gbstats disagree on {', '.join(fields)} by a relative {worst:.2e} "
            f"(> {tolerance:g}): the benchmark would not measure the same work"
        )
    return worst


def speed_benchmark(
    title: str, timing: Timing, target: float, project: str, peer: str, agreement: str
) -> Benchmark:
    """One row, µs per comparison on both sides and the speedup, and the notes under it."""
    return Benchmark(
        title=title,
        rows=[
            Row(
                "µs per comparison",
                f"{timing.ours_us:.3f}",
                f"{timing.theirs_us:.1f}",
                f"{timing.speedup:,.0f}x faster",
                f"≥ {target:.0f}x faster",
                timing.speedup >= target,
            )
        ],
        notes=[
            f"Project: {project}; peer: {peer}, one by one, timed inside its own venv (start-up "
            "and JSON exchange not counted).",
            f"Medians of {len(timing.ours_s)} alternating repetitions (one of the project's is the "
            f"median of {CALLS_PER_REP} calls; one of gbstats' is a loop over all pairs): project "
            + ", ".join(f"{s * 1e3:.2f}" for s in timing.ours_s)
            + " ms; gbstats "
            + ", ".join(f"{s:.2f}" for s in timing.theirs_s)
            + " s.",
            agreement,
        ],
    )


def mean_arms(rng: np.random.Generator, pairs: int) -> tuple[Moments, Moments]:
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
    a, b = mean_arms(rng, PAIRS)
    check = sorted(int(i) for i in rng.choice(PAIRS, size=CHECKED_PAIRS, replace=False))
    payload = {"test": "ttest", "columns": arm_columns(a, b, ("n", "sum", "sum_sq"))}
    timing = time_against_gbstats(
        lambda: compare(a, b, relative=True), {**payload, "check": check}, PAIRS, reps
    )
    worst = check_agreement(timing, FIELDS, TOLERANCE)
    return speed_benchmark(
        "Statistics: relative Welch t-test, 10,000 pairs",
        timing,
        TARGET_SPEEDUP,
        project=f"one `compare(a, b, relative=True)` over arrays of {PAIRS:,} pairs",
        peer="gbstats 0.8.0 `TwoSidedTTest` with two `SampleMeanStatistic` per pair",
        agreement=f"Agreement on {len(check)} pairs (effect, CI bounds, p-value): worst relative "
        f"difference {worst:.1e} (tolerance {TOLERANCE:g}).",
    )
