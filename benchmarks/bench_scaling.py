"""Scaling: analysis time and peak memory at 0.25x, 0.5x and 1x of 20 million metric events.

The same measurement as the analysis benchmark (``bench_analysis.measure``: warm Spark, the
project's ``write_day`` against DuckDB on the same files, sums checked), at three scales of the
synthetic data; the 1x point is the analysis benchmark's own run when both run in one process.
"Near-linear" is read as: from 0.25x to 1x (4 times the data) the time grows at most 4.4 times.
"""

from __future__ import annotations

import math

from benchmarks.bench_analysis import measure
from benchmarks.report import Benchmark, Row

__all__ = ["SCALES", "run"]

SCALES = (0.25, 0.5, 1.0)
MAX_GROWTH = 4.4  # 4x the data, 10% slack


def run(reps: int = 3) -> Benchmark:
    reps = max(1, min(reps, 3))
    points = {s: measure(s, reps) for s in SCALES}
    rows = []
    for s, m in points.items():
        rows.append(
            Row(
                f"{s:g}x: {m.data.events / 1e6:g}M events, {m.data.users / 1e6:g}M users: seconds "
                "/ peak MB",
                f"{m.seconds:.1f} s / {m.peak_mb:,.0f} MB",
                f"{m.peer_seconds:.1f} s / {m.peer_peak_mb:,.0f} MB",
                f"{m.seconds / m.peer_seconds:.1f}x DuckDB's time",
                "",
                None,
            )
        )
    lo, hi = points[SCALES[0]], points[SCALES[-1]]
    growth = hi.seconds / lo.seconds
    peer_growth = hi.peer_seconds / lo.peer_seconds
    exponent = math.log(growth) / math.log(hi.data.events / lo.data.events)
    rows.append(
        Row(
            f"time growth from {SCALES[0]:g}x to {SCALES[-1]:g}x (4x the data)",
            f"{growth:.2f}x (exponent {exponent:.2f})",
            f"{peer_growth:.2f}x",
            "",
            f"≤ {MAX_GROWTH:g}x (near-linear)",
            growth <= MAX_GROWTH,
        )
    )
    notes = [
        "Each scale is its own data set (`benchmarks/data.py`, same generator and seed), so the "
        "users grow with the events (200,000 users per 2 million events). Memory: the project's "
        "is the benchmark process with its embedded engine, DuckDB's its process's peak RSS.",
        "Exponent: log(time ratio) / log(data ratio); 1 is linear. Below 1 means fixed costs "
        "(planning, the Delta log, small files) still weigh at the small end.",
    ]
    return Benchmark(
        title="Scaling: analysis at 0.25x, 0.5x and 1x of 20M events", rows=rows, notes=notes
    )
