"""Timing loops shared by the project's side and the peers' scripts; standard library only.

The peers' scripts run in their own venvs, where ``benchmarks`` is not installed: they import this
file as ``clock`` (their folder is on ``sys.path``), so both sides are timed by the same code.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

__all__ = ["latencies_ns", "loop_seconds", "percentile", "timer_overhead_ns"]


def loop_seconds(call: Callable[[str], object], units: Sequence[str]) -> float:
    """Wall time of ``call(u)`` for every unit, one timer around the whole loop (throughput)."""
    start = time.perf_counter_ns()
    for u in units:
        call(u)
    return (time.perf_counter_ns() - start) / 1e9


def latencies_ns(call: Callable[[str], object], units: Sequence[str]) -> list[int]:
    """One ``perf_counter_ns`` pair around each single call (includes the timer's own cost)."""
    out = [0] * len(units)
    clock = time.perf_counter_ns
    for i, u in enumerate(units):
        t0 = clock()
        call(u)
        out[i] = clock() - t0
    return out


def timer_overhead_ns(samples: int = 100_000) -> float:
    """Median of back-to-back ``perf_counter_ns`` pairs: the floor under every latency."""
    clock = time.perf_counter_ns
    out = []
    for _ in range(samples):
        t0 = clock()
        out.append(clock() - t0)
    return statistics.median(out)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])
