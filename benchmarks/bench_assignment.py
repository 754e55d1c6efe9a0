"""Assignment: ``Client.assign`` per second and per-call latency, against the GrowthBook Python SDK.

The project's client reads a payload compiled and signed the way ``abp publish`` does it
(``compile_experiments``: 2 variants, 50/50, no layer, no targeting); exposure logging is off and
there is no sticky store. The peer assigns an equivalent experiment (same users, 50/50, tracking
callback off) in its own venv. Throughput is one timer around a loop of single calls; latency is
``perf_counter_ns`` around each call, after a warm-up. The cost of buffered exposure logging is
measured apart (project only), with a fresh client per loop so that every call logs an exposure.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import hashlib
import io
import pstats
import statistics
import tempfile
from collections import Counter
from pathlib import Path

import mmh3

from ab_pipelines.assignment import Client, DumpExposureSink, ListExposureSink, bucket
from ab_pipelines.assignment.signing import canonical_json, sign_payload
from ab_pipelines.config.models import Experiment
from ab_pipelines.config.publish import PAYLOAD_SCHEMA, compile_experiments
from ab_pipelines.config.registry import Registry
from benchmarks.clock import latencies_ns, loop_seconds, percentile, timer_overhead_ns
from benchmarks.peers import run_peer
from benchmarks.report import Benchmark, Row

__all__ = ["USERS", "run"]

USERS = 100_000
WARMUP = 10_000
EXPERIMENT = "bench_checkout_cta"
VARIANTS = ("control", "treatment")
TARGET_THROUGHPUT = 25.0
TARGET_P99_US = 5.0


def signed_envelope() -> dict:
    """The edge config as ``publish`` serves it, for one running 50/50 experiment."""
    exp = Experiment(
        id=EXPERIMENT,
        name="Benchmark checkout CTA",
        owner="bench",
        status="running",
        start_date=dt.date(2026, 1, 1),
        variants=[{"id": v, "weight": 0.5} for v in VARIANTS],
    )
    experiments = compile_experiments(Registry(experiments={exp.id: exp}), killed=set())
    payload = {
        "schema": PAYLOAD_SCHEMA,
        "version": 1,
        "published_at": "2026-01-01T00:00:00Z",
        "content_sha": hashlib.sha256(canonical_json(experiments).encode()).hexdigest(),
        "experiments": experiments,
    }
    return sign_payload(payload)


def _latency_stats(ns: list[int]) -> tuple[float, float]:
    return percentile(ns, 50) / 1e3, percentile(ns, 99) / 1e3


def _measure(make_call, units: list[str], reps: int, peer=None) -> dict:
    """Medians over reps of throughput (per s), p50 and p99 (µs); ``peer`` alternates with us."""
    per_s, p50, p99, peer_runs = [], [], [], []
    for _ in range(reps):
        call = make_call()
        for u in units[:WARMUP]:
            call(u)
        call = make_call()  # a fresh one: with exposure logging, every timed call logs
        per_s.append(len(units) / loop_seconds(call, units))
        call = make_call()
        a, b = _latency_stats(latencies_ns(call, units))
        p50.append(a)
        p99.append(b)
        if peer is not None:
            peer_runs.append(peer())
    out = {
        "per_s": statistics.median(per_s),
        "p50": statistics.median(p50),
        "p99": statistics.median(p99),
    }
    if peer_runs:
        out["peer"] = peer_runs
    return out


def _components(client: Client, units: list[str]) -> list[tuple[str, float]]:
    """ns per call of the pieces of ``assign``, each as a loop of its own (no profiler)."""
    salt = client.config.experiments[EXPERIMENT].salt
    keys = [f"{salt}:{u}".encode() for u in units]

    def nothing(u):
        return None

    def hash_only(k):
        return mmh3.hash(k, 0, False)

    pieces = [
        ("an empty Python function call", nothing, units),
        ("mmh3.hash of prebuilt bytes", hash_only, keys),
        ("bucket(salt, unit): f-string, encode, hash, modulo", lambda u: bucket(salt, u), units),
        ("client.assign(unit, experiment)", lambda u: client.assign(u, EXPERIMENT), units),
    ]
    return [
        (name, statistics.median(loop_seconds(f, xs) for _ in range(5)) / len(xs) * 1e9)
        for name, f, xs in pieces
    ]


def _profile(client: Client, units: list[str], top: int = 8) -> str:
    """The ``top`` functions by own time over one ``assign`` per unit (cProfile)."""
    prof = cProfile.Profile()
    prof.enable()
    for u in units:
        client.assign(u, EXPERIMENT)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    start = text.find("ncalls")
    return text[start:].rstrip()


def run(reps: int = 5) -> Benchmark:
    envelope = signed_envelope()
    units = [f"user-{i:07d}" for i in range(USERS)]
    client = Client.from_payload(envelope)

    def peer_rep() -> dict:
        return run_peer(
            "growthbook",
            "peer_growthbook.py",
            {"units": units, "key": EXPERIMENT, "variations": list(VARIANTS), "warmup": WARMUP},
        )

    def plain():
        return lambda u: client.assign(u, EXPERIMENT)

    off = _measure(plain, units, reps, peer=peer_rep)
    peer_per_s = statistics.median(USERS / r["seconds"] for r in off["peer"])
    peer_p50 = statistics.median(_latency_stats(r["latencies_ns"])[0] for r in off["peer"])
    peer_p99 = statistics.median(_latency_stats(r["latencies_ns"])[1] for r in off["peer"])
    ours_counts = Counter(client.assign(u, EXPERIMENT) for u in units)
    peer_counts = off["peer"][-1]["counts"]
    for name, counts in (("project", ours_counts), ("growthbook", peer_counts)):
        shares = [counts.get(v, 0) / USERS for v in VARIANTS]
        if abs(sum(shares) - 1) > 1e-12 or not all(0.48 < s < 0.52 for s in shares):
            raise AssertionError(f"{name} does not split {USERS} users 50/50: {dict(counts)}")

    def with_list_sink():
        c = Client.from_payload(envelope, exposure_sink=ListExposureSink())
        return lambda u: c.assign(u, EXPERIMENT)

    with tempfile.TemporaryDirectory(prefix="abp-bench-") as tmp:
        sinks = []

        def with_dump_sink():
            sink = DumpExposureSink(Path(tmp) / f"raw{len(sinks)}", partition=0)
            sinks.append(sink)
            c = Client.from_payload(envelope, exposure_sink=sink)
            return lambda u: c.assign(u, EXPERIMENT)

        listed = _measure(with_list_sink, units, reps)
        dumped = _measure(with_dump_sink, units, reps)
        for s in sinks:
            s.flush()
        files = sum(1 for _ in Path(tmp).rglob("exposures+*.jsonl"))

    ratio = off["per_s"] / peer_per_s
    timer = timer_overhead_ns()
    components = _components(client, units)
    profile = _profile(client, units)
    by_name = dict(components)
    assign_ns = by_name["client.assign(unit, experiment)"]
    bucket_share = by_name["bucket(salt, unit): f-string, encode, hash, modulo"] / assign_ns
    hash_share = by_name["mmh3.hash of prebuilt bytes"] / assign_ns
    logged_profile = _profile(
        Client.from_payload(envelope, exposure_sink=ListExposureSink()), units, top=10
    )
    rows = [
        Row(
            "assignments per second",
            f"{off['per_s']:,.0f}",
            f"{peer_per_s:,.0f}",
            f"{ratio:.1f}x",
            f"≥ {TARGET_THROUGHPUT:.0f}x",
            ratio >= TARGET_THROUGHPUT,
        ),
        Row(
            "p50 latency per call (µs)",
            f"{off['p50']:.2f}",
            f"{peer_p50:.2f}",
            f"{peer_p50 / off['p50']:.1f}x lower",
            "",
            None,
        ),
        Row(
            "p99 latency per call (µs)",
            f"{off['p99']:.2f}",
            f"{peer_p99:.2f}",
            f"{peer_p99 / off['p99']:.1f}x lower",
            f"project < {TARGET_P99_US:g} µs",
            off["p99"] < TARGET_P99_US,
        ),
    ]
    for label, m in (
        ("ListExposureSink (in memory)", listed),
        ("DumpExposureSink (files, flush every 1000)", dumped),
    ):
        rows += [
            Row(
                f"with exposure logging, {label}: assignments per second",
                f"{m['per_s']:,.0f}",
                "—",
                f"{m['per_s'] / off['per_s']:.2f}x of logging off",
                "",
                None,
            ),
            Row(
                f"with exposure logging, {label}: p50 / p99 (µs)",
                f"{m['p50']:.2f} / {m['p99']:.2f}",
                "—",
                f"+{1e6 / m['per_s'] - 1e6 / off['per_s']:.2f} µs per call (mean)",
                "",
                None,
            ),
        ]
    shortfall = TARGET_THROUGHPUT / ratio
    notes = [
        f"{USERS:,} users (`user-0000000` ...), the same list on both sides, {reps} alternating "
        f"repetitions after {WARMUP:,} warm-up calls; throughput is one timer around the loop, "
        f"latency one `perf_counter_ns` pair per call (the pair alone costs {timer:.0f} ns here).",
        "Peer: growthbook "
        "`GrowthBook(attributes={})`, per user `set_attributes({'id': user})` then "
        "`run(Experiment(key, variations, weights=[0.5, 0.5]))`, no tracking callback, no sticky "
        "bucket service.",
        "Same split on both sides: project "
        + ", ".join(f"{v} {ours_counts[v]:,}" for v in VARIANTS)
        + "; growthbook "
        + ", ".join(f"{v} {peer_counts.get(v, 0):,}" for v in VARIANTS)
        + " (different hash functions, so different users, but the same shares).",
        f"Exposure logging: a fresh client per loop, so every timed call is a first exposure "
        f"and logs an event; the file sink wrote {files} dump files (fsync per flush) to a "
        "temporary folder.",
        f"Throughput is {ratio:.1f}x the SDK against a target of {TARGET_THROUGHPUT:.0f}x "
        + (
            "(met)."
            if ratio >= TARGET_THROUGHPUT
            else f"(missed by a factor of {shortfall:.1f}: assign would need to take "
            f"{1e6 / (peer_per_s * TARGET_THROUGHPUT):.2f} µs per call, it takes "
            f"{1e6 / off['per_s']:.2f} µs)."
        )
        + f" p99 is {off['p99']:.2f} µs against {TARGET_P99_US:g} µs "
        + ("(met)." if off["p99"] < TARGET_P99_US else "(missed).")
        + " Before the compiled closures (issue 8) assign took 1.08 µs here (925k/s, 10.4x the "
        "SDK); the closures bind the salt prefix, the overrides and a 10,000-entry "
        "bucket-to-variant table, so a call is one dict lookup, one encode, one mmh3 call and "
        "one tuple index.",
        "Where the time goes, ns per call, each piece in a loop of its own: "
        + "; ".join(f"{name} {ns:.0f}" for name, ns in components)
        + f". So the hash step is about {bucket_share:.0%} of assign (mmh3 itself about "
        f"{hash_share:.0%}); the rest is the method call, the refresh check and the dict lookup. "
        "With exposure logging on and no sticky store, assign stays on the compiled closures, "
        "which also log a first exposure; with a sticky store it takes the full path "
        "(`_evaluate`). The file sink builds the event on the caller's side; the Kafka sink "
        "only queues it (see the producer benchmark).",
    ]
    return Benchmark(
        title="Assignment: Client.assign against the GrowthBook Python SDK",
        rows=rows,
        notes=notes,
        blocks=[
            f"cProfile of {USERS:,} `assign` calls, logging off, by own time (the profiler "
            "inflates every call; read the shares, not the totals):\n\n" + _indent(profile),
            f"cProfile of {USERS:,} `assign` calls with a ListExposureSink, each a first "
            "exposure, by own time:\n\n" + _indent(logged_profile),
        ],
    )


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else "" for line in text.splitlines())
