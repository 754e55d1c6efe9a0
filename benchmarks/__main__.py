"""``python -m benchmarks [--reps N] [--only NAME ...] [--out PATH]``: run and write the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT
from benchmarks import (
    bench_analysis,
    bench_assignment,
    bench_bayesian,
    bench_connector,
    bench_dashboard,
    bench_edge,
    bench_interactions,
    bench_landing,
    bench_producer,
    bench_quantile,
    bench_scaling,
    bench_statistics,
)
from benchmarks.peers import peer_versions
from benchmarks.report import render

# name -> (module, its peer)
BENCHMARKS = {
    "landing": (bench_landing, "duckdb"),
    "analysis": (bench_analysis, "duckdb"),
    "interactions": (bench_interactions, None),
    "statistics": (bench_statistics, "gbstats"),
    "bayesian": (bench_bayesian, "gbstats"),
    "quantile": (bench_quantile, "gbstats"),
    "assignment": (bench_assignment, "growthbook"),
    "scaling": (bench_scaling, "duckdb"),
    "producer": (bench_producer, "growthbook"),
    # The connector's peer is a floor measured in the project's venv: a bare consumer that
    # writes the values to gzip files (no envelope, fsync or commit).
    "connector": (bench_connector, None),
    # The edge's peer: the GrowthBook JavaScript SDK in a Node http server (skipped, with the
    # reason in the report, where node or npm is missing).
    "edge": (bench_edge, "growthbook-node"),
    # The dashboard's peer is a floor: a rerun of the app's landing page in the same AppTest.
    "dashboard": (bench_dashboard, None),
}

NOT_YET_MEASURED: list[str] = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions per side (median)")
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="a subset to run")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    start = time.monotonic()
    results, peers = [], {}
    for name in args.only or BENCHMARKS:
        module, peer = BENCHMARKS[name]
        print(f"benchmark {name} against {peer or 'its floor'} ...", file=sys.stderr, flush=True)
        if peer is not None:
            peers[peer] = peer_versions(peer)
        t0 = time.monotonic()
        results.append((name, module.run(reps=args.reps)))
        print(f"  done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        for row in results[-1][1].rows:
            met = "" if row.met is None else (" (met)" if row.met else " (MISSED)")
            print(
                f"  {row.measure}: {row.project} vs {row.peer}, {row.ratio}{met}", file=sys.stderr
            )
    # A run of some benchmarks keeps the others' sections of the report it rewrites.
    previous = args.out.read_text() if args.only and args.out.exists() else None
    text = render(results, peers, time.monotonic() - start, NOT_YET_MEASURED, previous)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
