"""The edge (``abp serve``): load on ``POST /assign`` and ``GET /config`` per worker count against
the GrowthBook JavaScript SDK behind a Node ``http`` server, and kill propagation to a streaming
SDK client in another process.

- Load: the edge serves the repository's registry (6 experiments: a layer, targeting, an
  override, partial allocations) published into a temporary home, with
  ``ABP_EDGE_EXPOSURES=none`` and the rate limit out of the way. ``benchmarks/edge_load.py`` drives
  it closed-loop with ``CONCURRENCY`` keep-alive connections for ``SECONDS`` after ``WARMUP``;
  ``/assign`` bodies cycle over ``USERS`` users (user id, anonymous id, country, platform). The
  peer, ``benchmarks/peer_growthbook_node/server.mjs``, evaluates the same experiments (converted
  from our signed payload) with ``GrowthBookClient.runInlineExperiment`` and serves the same
  config bytes, with as many ``node:cluster`` workers as the edge has uvicorn workers; the same
  generator, bodies and concurrency drive it, alternating with ours in each repetition. Any
  error fails the row.
- Kafka: the same ``/assign`` load with exposures going to an embedded broker (project only).
- Kill propagation: ``KILLS`` running experiments in a temporary registry; each kill (the
  library's ``kill``, what ``abp kill`` calls) is timed from its return to the moment a child
  process holding ``Client.from_url(url + "/config", stream=True)`` serves the baseline to a
  user who was not in it (``benchmarks/edge_follower.py``); after each kill a registry change
  (one experiment's allocation raised, re-approved) is published and its arrival timed the same
  way.
- In-process evaluation cost, for context: ``Client.evaluate`` (what ``/assign`` calls) and
  ``Client.assign`` against the JS SDK's ``runInlineExperiment`` in Node, same experiments.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from ab_pipelines.assignment import Client
from ab_pipelines.config.approvals import content_sha
from ab_pipelines.config.publish import kill, publish
from ab_pipelines.processes import dying_with_parent, stop_group
from ab_pipelines.settings import REPO_ROOT, Paths, paths
from benchmarks.clock import loop_seconds, percentile
from benchmarks.edge_load import LoadResult, Request, ceiling, run_load
from benchmarks.peers import HERE, PeerUnavailable, node_peer_dir
from benchmarks.report import Benchmark, Row

__all__ = ["KILLS", "run"]

CONCURRENCY = 32
SECONDS = 5.0
WARMUP = 1.0
USERS = 10_000
KAFKA_USERS = 100_000
WORKERS = (1, 2)
KILLS = 100
KILL_WORKERS = 2
TARGET_KILL_P99_MS = 1000.0
EVAL_USERS = 100_000
COUNTRIES = ("US", "DE", "FR", "BR", "IN")
PLATFORMS = ("web", "ios", "android")
EDGE_ENV = {
    "ABP_EDGE_EXPOSURES": "none",
    "ABP_EDGE_RATE_LIMIT": "1000000000",  # one client IP sends everything: not what is measured
}
ACTOR = "bench@example.com"


# ---- homes and registries -----------------------------------------------------------------------


def _home(folder: Path) -> Paths:
    home = paths(folder / "abp")
    home.home.mkdir(parents=True, exist_ok=True)
    return home


def _repo_registry(folder: Path) -> Path:
    root = folder / "registry"
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    return root


def _write_experiment(root: Path, exp_id: str, allocation: float = 1.0) -> None:
    """A running 50/50 experiment, approved by a reviewer for exactly this content."""
    data = {
        "id": exp_id,
        "name": f"Benchmark {exp_id}",
        "owner": ACTOR,
        "hypothesis": "Kill propagation benchmark.",
        "status": "running",
        "start_date": "2026-11-02",
        "end_date": "2026-11-29",
        "allocation": allocation,
        "variants": [{"id": "control", "weight": 0.5}, {"id": "treatment", "weight": 0.5}],
        "metrics": {"primary": ["conversion"]},
    }
    data["approvals"] = [
        {"by": "reviewer@example.com", "at": "2026-10-30T10:00:00Z", "sha": content_sha(data)}
    ]
    (root / "experiments" / f"{exp_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _kill_registry(folder: Path, kills: int) -> Path:
    root = folder / "registry"
    (root / "experiments").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    for i in range(kills):
        _write_experiment(root, f"kp_{i:03d}")
    _write_experiment(root, "kp_filler", allocation=0.5)
    return root


# ---- servers ------------------------------------------------------------------------------------


def _edge(home: Paths, workers: int, **env: str):
    """``abp serve --port 0 --workers N`` on ``home``, as the edge tests start it (a context
    manager yielding ``(url, proc)``; the process group is stopped on exit)."""
    from tests.edge import start_edge

    return start_edge(home, workers=workers, **env)


def _start_node(config: Path, workers: int, sdk_dir: Path) -> tuple[str, subprocess.Popen]:
    script = HERE / "peer_growthbook_node" / "server.mjs"
    proc = subprocess.Popen(
        dying_with_parent(["node", str(script), "serve", str(config), str(sdk_dir), str(workers)]),
        stdout=subprocess.PIPE,
        env={**os.environ, "NODE_ENV": "production"},
        start_new_session=True,
    )
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        stop_group(proc, grace=2)
        raise RuntimeError(f"the Node peer did not start (said {line!r})")
    return f"http://127.0.0.1:{int(line)}", proc


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


# ---- load ---------------------------------------------------------------------------------------


def _assign_requests(users: int = USERS, prefix: str = "") -> list[Request]:
    headers = {"Content-Type": "application/json"}
    out = []
    for i in range(users):
        body = {
            "user_id": f"{prefix}user-{i:07d}",
            "anonymous_id": f"{prefix}anon-{i:07d}",
            "attributes": {"country": COUNTRIES[i % 5], "platform": PLATFORMS[i % 3]},
        }
        out.append(("POST", "/assign", headers, json.dumps(body, separators=(",", ":"))))
    return out


CONFIG_REQUESTS: list[Request] = [("GET", "/config", {}, None)]


def _load(url: str, requests: list[Request]) -> LoadResult:
    return run_load(url, requests, CONCURRENCY, SECONDS, WARMUP)


def _median(runs: list[LoadResult]) -> dict:
    return {
        "per_s": statistics.median(r.per_s for r in runs),
        "p50": statistics.median(r.p50_ms for r in runs),
        "p99": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
        "samples": [s for r in runs for s in r.error_samples][:5],
        "cpu": statistics.median(r.generator_cpu for r in runs),
        "runs": [round(r.per_s) for r in runs],
    }


def _cell(m: dict | None) -> str:
    if m is None:
        return "skipped"
    text = f"{m['per_s']:,.0f} req/s, p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms"
    return text + (f", **{m['errors']} errors**" if m["errors"] else "")


def _exposure_counters(url: str) -> dict[str, float]:
    """The whole server's exposure producer counters (``/metrics`` aggregates the workers)."""
    from tests.edge import metric_value

    text = _get(url + "/metrics").decode()
    out = {
        what: metric_value(text, f"abp_producer_{what}_total", topic="exposures")
        for what in ("sent", "dropped", "failed")
    }
    out["queued"] = metric_value(text, "abp_producer_queued", topic="exposures")
    out["requests 200"] = metric_value(text, "abp_edge_requests_total", status="200")
    return out


def _load_rows(reps: int, notes: list[str], skip: str | None, sdk_dir: Path | None) -> list[Row]:
    from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, ensure_topics

    assign = _assign_requests()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="abp-bench-edge-") as tmp:
        folder = Path(tmp)
        home = _home(folder)
        publish(home, _repo_registry(folder), actor=ACTOR)
        config = home.edge / "config.json"
        size = config.stat().st_size
        n_exps = len(json.loads(json.loads(config.read_text())["payload"])["experiments"])
        measured: dict[tuple[str, int], dict] = {}
        for workers in WORKERS:
            ours_runs: dict[str, list[LoadResult]] = {"assign": [], "config": []}
            peer_runs: dict[str, list[LoadResult]] = {"assign": [], "config": []}
            with _edge(home, workers, **EDGE_ENV) as (url, _):
                peer = _start_node(config, workers, sdk_dir) if sdk_dir else None
                try:
                    if peer and _get(peer[0] + "/config") != _get(url + "/config"):
                        raise AssertionError("the Node peer does not serve the edge's config")
                    for _ in range(reps):
                        for route, requests in (("assign", assign), ("config", CONFIG_REQUESTS)):
                            ours_runs[route].append(_load(url, requests))
                            if peer:
                                peer_runs[route].append(_load(peer[0], requests))
                finally:
                    if peer:
                        stop_group(peer[1], grace=2)
            for route in ("assign", "config"):
                ours = _median(ours_runs[route])
                theirs = _median(peer_runs[route]) if peer else None
                measured[(route, workers)] = ours
                label = (
                    f"POST /assign ({n_exps} experiments)"
                    if route == "assign"
                    else f"GET /config ({size:,} B)"
                )
                plural = "worker" if workers == 1 else "workers"
                rows.append(
                    Row(
                        f"{label}, {workers} {plural}",
                        _cell(ours),
                        _cell(theirs),
                        f"{ours['per_s'] / theirs['per_s']:.2f}x the peer's req/s"
                        if theirs
                        else "—",
                        "0 errors",
                        ours["errors"] == 0,
                    )
                )
                notes.append(
                    f"{label}, {workers} {plural}: req/s per repetition, ours {ours['runs']}"
                    + (f", peer {theirs['runs']}" if theirs else "")
                    + f"; generator CPU {ours['cpu']:.2f}"
                    + (f" / {theirs['cpu']:.2f}" if theirs else "")
                    + " core"
                    + (f"; our errors: {ours['samples']}" if ours["errors"] else "")
                    + (f"; peer errors: {theirs['samples']}" if theirs and theirs["errors"] else "")
                    + "."
                )
        # /assign with exposures produced to Kafka (embedded broker), project only.
        with EmbeddedBroker(folder / "broker", record=False) as broker:
            ensure_topics(broker.bootstrap, KafkaSettings())
            workers = max(WORKERS)
            env = {
                **EDGE_ENV,
                "ABP_EDGE_EXPOSURES": "kafka",
                "ABP_KAFKA_BOOTSTRAP": broker.bootstrap,
            }
            with _edge(home, workers, **env) as (url, _):
                # Every request a user not seen before, so each logs its exposures (the edge
                # logs a user's first exposure to an experiment once).
                runs = [_load(url, _assign_requests(KAFKA_USERS, f"k{i}-")) for i in range(reps)]
                deadline = time.monotonic() + 30  # the producers' linger and acknowledgements
                while (counters := _exposure_counters(url))[
                    "queued"
                ] and time.monotonic() < deadline:
                    time.sleep(0.5)
        kafka = _median(runs)
        off = measured[("assign", workers)]
        rows.append(
            Row(
                f"POST /assign, {workers} workers, exposures to Kafka (embedded broker), "
                "every request a new user",
                _cell(kafka),
                "—",
                f"{kafka['per_s'] / off['per_s']:.2f}x of exposures off",
                "0 errors, 0 exposures dropped or failed",
                kafka["errors"] == 0
                and counters["sent"] > 0
                and not counters["dropped"]
                and not counters["failed"],
            )
        )
        notes.append(
            f"Kafka row: req/s per repetition {kafka['runs']}; the edge's counters after the "
            "runs (`/metrics`, all workers): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in counters.items())
            + f"; every body a user not seen before ({KAFKA_USERS:,} per repetition), so each "
            "request logs the exposures of the experiments it has a variant in; same broker "
            "settings as the producer benchmark."
        )
    if skip:
        notes.append(f"Node peer skipped: {skip}.")
    return rows


# ---- kill propagation ---------------------------------------------------------------------------


class _Follower:
    """The child process holding the streaming client (benchmarks/edge_follower.py)."""

    def __init__(self, config_url: str):
        self.proc = subprocess.Popen(
            dying_with_parent([sys.executable, "-m", "benchmarks.edge_follower", config_url]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        self.ready = self.read()

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the streaming client process ended")
        return line.strip()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_group(self.proc, grace=2)


def _served_ms(answer: str, since: float, wall: bool = False) -> float:
    """Milliseconds from ``since`` to the child's ``served <monotonic> <wall>``, by its monotonic
    clock (or its wall clock); inf on a timeout."""
    words = answer.split()
    if words[0] != "served":
        return float("inf")
    return (float(words[2 if wall else 1]) - since) * 1e3


def _not_baseline_user(envelope: dict, exp_id: str, start: int) -> str:
    client = Client.from_payload(envelope)
    baseline = client.config.experiments[exp_id].baseline
    for j in range(start, start + 1000):
        user = f"kill-user-{j}"
        if client.assign(user, exp_id) not in (None, baseline):
            return user
    raise AssertionError(f"no user outside the baseline of {exp_id}")


def _kill_propagation(kills: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="abp-bench-kill-") as tmp:
        folder = Path(tmp)
        root = _kill_registry(folder, kills)
        home = _home(folder)
        version = publish(home, root, actor=ACTOR).version
        config = home.edge / "config.json"
        size = config.stat().st_size
        kill_ms, republish_ms, kill_s, publish_s, failures = [], [], [], [], []
        written_ms = []  # from config.json's mtime (wall clock) to served
        event_ms = []  # from config.json's mtime to the event at a raw subscriber (the edge)
        with contextlib.ExitStack() as stack:
            url, _ = stack.enter_context(_edge(home, KILL_WORKERS, **EDGE_ENV))
            follower = _Follower(url + "/config")
            stack.callback(follower.close)
            for i in range(kills):
                exp_id = f"kp_{i:03d}"
                user = _not_baseline_user(json.loads(config.read_text()), exp_id, i * 1000)
                armed = follower.ask(f"arm {exp_id} {user} {version}")
                if not armed.startswith("armed"):
                    failures.append(f"{exp_id}: {armed}")
                    continue
                t0 = time.monotonic()
                result = kill(home, exp_id, "benchmark", ACTOR, registry_root=root)
                t_end = time.monotonic()
                kill_s.append(t_end - t0)
                answer = follower.read()
                kill_ms.append(_served_ms(answer, t_end))
                mtime = config.stat().st_mtime_ns / 1e9
                written_ms.append(_served_ms(answer, mtime, wall=True))
                if answer.split()[0] == "served":
                    event_ms.append((float(answer.split()[4]) - mtime) * 1e3)
                if answer.split()[0] != "served":
                    failures.append(f"kill {exp_id}: {answer}")
                version = result.version
                # A republish: raise the filler's allocation (re-approved), a new version.
                _write_experiment(root, "kp_filler", allocation=round(0.5 + (i + 1) * 0.005, 3))
                t0 = time.monotonic()
                result = publish(home, root, actor=ACTOR)
                t_end = time.monotonic()
                publish_s.append(t_end - t0)
                if not result.changed:
                    raise AssertionError("the republish did not make a new version")
                answer = follower.ask(f"version {result.version}")
                republish_ms.append(_served_ms(answer, t_end))
                if answer.split()[0] != "served":
                    failures.append(f"republish v{result.version}: {answer}")
                version = result.version
    return {
        "kill_ms": kill_ms,
        "republish_ms": republish_ms,
        "written_ms": written_ms,
        "event_ms": [v for v in event_ms if v == v],  # without NaN (no event seen)
        "kill_s": kill_s,
        "publish_s": publish_s,
        "failures": failures,
        "size": size,
        "final_version": version,
    }


def _ms_stats(values: list[float]) -> tuple[float, float, float]:
    clamped = [max(0.0, v) for v in values]
    return percentile(clamped, 50), percentile(clamped, 99), max(clamped)


def _kill_rows(notes: list[str]) -> list[Row]:
    k = _kill_propagation(KILLS)
    rows = []
    met = False
    client = "to a streaming SDK client in another process"
    measures = (
        ("kill", f"kill {client}, from the return of `kill`", k["kill_ms"]),
        ("kill", f"kill {client}, from config.json's mtime", k["written_ms"]),
        (
            "",
            "the kill's SSE event at a raw subscriber (either worker), from config.json's mtime",
            k["event_ms"],
        ),
        ("republish", f"republish {client}, from the return of `publish`", k["republish_ms"]),
    )
    for name, label, values in measures:
        if not values:
            continue
        p50, p99, worst = _ms_stats(values)
        early = sum(v < 0 for v in values)
        is_kill = "from the return of `kill`" in label
        if is_kill:
            met = p99 <= TARGET_KILL_P99_MS and len(values) == KILLS and not k["failures"]
        rows.append(
            Row(
                f"{label}, {len(values)} times: p50 / p99 / max (ms)",
                f"{p50:.1f} / {p99:.1f} / {worst:.1f}",
                "not measured: the JS SDK updates by `pollingInterval`, by `refreshFeatures()` "
                "(its cache is stale after 60 s) or by SSE from the GrowthBook Proxy"
                if is_kill
                else "—",
                "",
                f"p99 ≤ {TARGET_KILL_P99_MS:,.0f} ms" if is_kill else "",
                met if is_kill else None,
            )
        )
        if early and "from the return" in label:
            notes.append(
                f"{early} of the {len(values)} {name}s reached the client before the "
                f"{name} function returned (counted as 0 ms): the edge picks up config.json as "
                "soon as it is replaced, and the function still writes the Delta audit log "
                "after; the rows from config.json's mtime time the push itself (the file's "
                "mtime is the kernel's coarse clock, a few ms of resolution)."
            )
    notes.append(
        f"Kill propagation: {KILLS} running experiments (50/50) plus one whose allocation each "
        f"republish raises by 0.005 (re-approved), {k['size']:,} B of signed config, the edge "
        f"with {KILL_WORKERS} workers (`ABP_EDGE_WATCH_SECONDS` 0.05 s), the client in a child "
        "process polling `assign` every 0.5 ms; times from the return of `kill` (the function "
        "`abp kill` calls, without the CLI's start-up) or `publish` to the child's "
        "`time.monotonic()` when it serves the baseline (or the new version). The edge's share "
        "is the wall time a raw `/config/stream` subscriber in the same child saw the kill's "
        "event (it may hold a connection to the other worker than the client's). "
        f"The library calls took: kill median {statistics.median(k['kill_s']) * 1e3:.0f} ms, "
        f"publish median {statistics.median(k['publish_s']) * 1e3:.0f} ms (validation of "
        f"{KILLS + 1} experiments, signing, the Delta audit log)."
        + (f" Failures: {k['failures'][:5]}." if k["failures"] else "")
    )
    notes.append(
        "GrowthBook's side of propagation is described, not measured (it needs a GrowthBook "
        "server, or its Proxy fed by the server's webhook): in the installed JS SDK "
        "(`@growthbook/growthbook` 1.8.0, `dist/esm/feature-repository.mjs`) a cached payload "
        "is stale after `staleTTL` = 60 s, and the next `init` or `refreshFeatures()` serves it "
        "and refetches in the background (stale-while-revalidate); a long-lived client "
        "changes only by `pollingInterval` (a timer), by the application calling "
        "`refreshFeatures()`, or by SSE, opened (`<streamingHost>/sub/<key>`) "
        "only when the host answers `x-sse-support: enabled` (the GrowthBook Proxy) and, "
        "in Node, only with an `eventsource` polyfill; its events carry the new payload or "
        "make the SDK refetch it. The Proxy learns of a change by a webhook from the "
        "GrowthBook server (docs.growthbook.io/self-host/proxy)."
    )
    return rows


# ---- in-process evaluation ---------------------------------------------------------------------


def _eval_rows(reps: int, notes: list[str], sdk_dir: Path | None) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="abp-bench-eval-") as tmp:
        folder = Path(tmp)
        home = _home(folder)
        publish(home, _repo_registry(folder), actor=ACTOR)
        config = home.edge / "config.json"
        envelope = json.loads(config.read_text())
        client = Client.from_payload(envelope)
        n_exps = len(client.experiment_ids)
        users = [f"user-{i:07d}" for i in range(EVAL_USERS)]
        attrs = {"country": "US", "platform": "ios"}
        single = "homepage_aa"

        def evaluate(u):
            return client.evaluate(u, {**attrs, "anonymous_id": u, "user_id": u})

        def assign(u):
            return client.assign(u, single, attrs)

        for u in users[:10_000]:
            evaluate(u)
        ours_all, ours_one, peer = [], [], []
        for _ in range(reps):
            ours_all.append(min(loop_seconds(evaluate, users) for _ in range(3)))
            ours_one.append(min(loop_seconds(assign, users) for _ in range(3)))
            if sdk_dir:
                script = HERE / "peer_growthbook_node" / "server.mjs"
                out = subprocess.run(
                    ["node", str(script), "bench", str(config), str(sdk_dir), str(EVAL_USERS)],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "NODE_ENV": "production"},
                    timeout=600,
                    check=True,
                )
                peer.append(json.loads(out.stdout))
    us_all = statistics.median(ours_all) / EVAL_USERS / n_exps * 1e6
    us_one = statistics.median(ours_one) / EVAL_USERS * 1e6
    p_all = p_one = None
    if peer:
        p_all = statistics.median(min(r["all_seconds"]) for r in peer)
        p_all = p_all / EVAL_USERS / peer[0]["experiments"] * 1e6
        p_one = statistics.median(min(r["single_seconds"]) for r in peer) / EVAL_USERS * 1e6
        if peer[0]["single_experiment"] != single:
            notes.append(f"The JS side timed {peer[0]['single_experiment']} alone, not {single}.")
    rows = [
        Row(
            f"in-process: every experiment for a user ({n_exps}), µs per experiment",
            f"{us_all:.2f}",
            f"{p_all:.2f}" if p_all else "skipped",
            f"ours {us_all / p_all:.2f}x the peer's time" if p_all else "—",
            "",
            None,
        ),
        Row(
            f"in-process: one experiment ({single}), µs per call",
            f"{us_one:.2f}",
            f"{p_one:.2f}" if p_one else "skipped",
            f"ours {us_one / p_one:.2f}x the peer's time" if p_one else "—",
            "",
            None,
        ),
    ]
    notes.append(
        f"In-process rows: ours `Client.evaluate(user, attributes)` (what `/assign` runs, reasons "
        f"included) and `Client.assign(user, '{single}', attributes)`, {EVAL_USERS:,} users, one "
        "timer around the loop, the best of 3 loops per repetition, median of the repetitions; "
        "the JS SDK's `runInlineExperiment` "
        "for each converted experiment (plus the override lookup and reason) and for one, in "
        "Node with NODE_ENV=production, timed the same way after 10,000 warm-up users."
    )
    return rows


# ---- the benchmark ------------------------------------------------------------------------------


def run(reps: int = 3) -> Benchmark:
    notes: list[str] = []
    skip = None
    try:
        sdk_dir = node_peer_dir()
    except PeerUnavailable as exc:
        sdk_dir, skip = None, str(exc)
    assign = _assign_requests()
    ceil_assign = ceiling(assign, CONCURRENCY, SECONDS, WARMUP)
    ceil_config = ceiling(CONFIG_REQUESTS, CONCURRENCY, SECONDS, WARMUP)
    rows = _load_rows(reps, notes, skip, sdk_dir)
    rows += _kill_rows(notes)
    rows += _eval_rows(reps, notes, sdk_dir)
    head = [
        f"Load: {CONCURRENCY} keep-alive connections, closed loop, {SECONDS:g} s after "
        f"{WARMUP:g} s of warm-up, {reps} repetitions alternating ours and the peer (medians); "
        f"`/assign` bodies cycle over {USERS:,} users (user id, anonymous id, country, "
        "platform); the edge with `ABP_EDGE_EXPOSURES=none` and no rate limit. Generator, "
        "server and peer share the machine's 2 cores with each other (and with whatever else "
        "runs on it): read the ratios.",
        f"The generator's own ceiling here (the same generator against a trivial asyncio "
        f"server answering a fixed 11-byte JSON): {ceil_assign.per_s:,.0f} req/s with the "
        f"`/assign` bodies (it used {ceil_assign.generator_cpu:.2f} core), "
        f"{ceil_config.per_s:,.0f} req/s for GET (it used {ceil_config.generator_cpu:.2f} "
        "core), both while the trivial server took the other core.",
        "Peer: the GrowthBook JavaScript SDK (`GrowthBookClient.runInlineExperiment`) in a Node "
        "`http` server (`benchmarks/peer_growthbook_node/server.mjs`, NODE_ENV=production, "
        "`node:cluster` workers as many as ours), evaluating our signed payload's experiments "
        "converted to GrowthBook's (variant ranges, layer as namespace, targeting as `$in` "
        "conditions, salt as seed, overrides as forced variations). GrowthBook hashes with "
        "fnv32a, we hash with mmh3: the shares match, the users in each variant do not; the "
        "comparison is the cost of remote evaluation. It does not verify a signature, log "
        "exposures, set cookies, rate-limit or keep metrics.",
    ]
    return Benchmark(
        title="Edge: abp serve under load, and kill propagation, against GrowthBook in Node",
        rows=rows,
        notes=head + notes,
    )
