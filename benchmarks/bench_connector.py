"""Sink connector: records per second from Kafka into dump files, and the end-to-end latency
from the SDK's ``assign`` to the exposure being in a dump file on disk.

Both run against the embedded broker (tansu, on loopback, memory storage).

- Throughput: ``RECORDS`` exposures (the SDK's value, about 230 bytes) already in the topic's 4
  partitions; one connector (``SinkConnector.drain``, a fresh raw folder and consumer group per
  repetition) writes them all, exactly once: envelope lines, gzip, fsync, rename, commit. Timed
  from the group's assignment to the end of the drain (the group's forming, about 1 s on tansu,
  is reported apart). The peer column is the floor: a bare ``confluent_kafka`` consumer (no
  group, partitions assigned) writing each value as a line into one gzip stream per partition,
  with no envelope, no fsync, no commit.
- Latency: ``LATENCY_USERS`` users through ``Client.assign`` with a ``KafkaExposureSink`` at
  ``LATENCY_RATE`` calls a second; ``abp connect``'s process (``python -m
  ab_pipelines.events.connector``) with files rotated every ``ROTATE_SECONDS``; a watcher lists
  the day's folder every 5 ms and reads each new file once. Latency = the time a user's line is
  seen in a renamed file − the time its ``assign`` returned (one clock, one machine).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

from ab_pipelines.assignment import Client, KafkaExposureSink
from ab_pipelines.events.connector import ConnectorSettings, SinkConnector
from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, client_conf, ensure_topics
from ab_pipelines.processes import dying_with_parent
from ab_pipelines.settings import REPO_ROOT
from benchmarks.bench_assignment import EXPERIMENT, signed_envelope
from benchmarks.clock import percentile
from benchmarks.report import Benchmark, Row

__all__ = ["RECORDS", "run"]

RECORDS = 500_000
LATENCY_USERS = 20_000
LATENCY_RATE = 2_000  # assign calls per second
ROTATE_SECONDS = 0.2
TOPIC = "exposures"
SETTINGS = KafkaSettings()  # the embedded broker below, whatever the environment says


def _fill(bootstrap: str, records: int) -> None:
    """``records`` exposures in the topic, values shaped like the SDK's."""
    from confluent_kafka import Producer

    producer = Producer(
        client_conf(
            bootstrap,
            SETTINGS,
            **{"enable.idempotence": True, "linger.ms": 20, "queue.buffering.max.messages": 10**6},
        )
    )
    ts = int(time.time() * 1000)
    for i in range(records):
        uid = f"user-{i:07d}"
        value = json.dumps(
            {
                "event_id": f"{i:016x}-1",
                "user_id": uid,
                "experiment_id": EXPERIMENT,
                "variant": "control" if i & 1 else "treatment",
                "ts": "2026-12-01T10:00:00.000Z",
                "config_version": 1,
                "source": "sdk-python",
                "attributes": {"country": "US", "platform": "ios"},
            },
            separators=(",", ":"),
        ).encode()
        producer.produce(TOPIC, value, uid.encode(), timestamp=ts)
        if i % 50_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise AssertionError("records were not all delivered to the benchmark's broker")


def _connector_drain(home: Path, bootstrap: str, group: str) -> tuple[float, float, int]:
    """(seconds to form the group, seconds from assignment to drained, records written)."""
    settings = ConnectorSettings(group_id=group, topics=(TOPIC,))
    t0 = time.perf_counter()
    with SinkConnector(home, bootstrap, settings, SETTINGS) as connector:
        while not connector.assignment:
            connector.step(max_wait=0.01)
        t1 = time.perf_counter()
        counts = connector.drain(600)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, counts.records_out


def _floor_drain(bootstrap: str, out: Path, records: int) -> float:
    """Seconds for a bare consumer to write every value as a line, gzip, one file a partition."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    out.mkdir(parents=True, exist_ok=True)
    consumer = Consumer(client_conf(bootstrap, SETTINGS, **{"group.id": "floor"}))
    parts = range(SETTINGS.partitions)
    files = {p: open(out / f"{p}.jsonl.gz", "wb") for p in parts}  # noqa: SIM115
    zips = {p: zlib.compressobj(1, zlib.DEFLATED, 31) for p in parts}
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in parts])
        seen = 0
        while seen < records:
            batch: dict[int, list[bytes]] = {p: [] for p in parts}
            for m in consumer.consume(10_000, 1.0):
                if m.error() is None:
                    batch[m.partition()].append(m.value())
                    seen += 1
            for p, values in batch.items():
                if values:
                    files[p].write(zips[p].compress(b"\n".join(values) + b"\n"))
        for p in parts:
            files[p].write(zips[p].flush())
            files[p].close()
        return time.perf_counter() - start
    finally:
        consumer.close()
        for f in files.values():
            f.close()


class _Watcher:
    """Lists the topic's folders every 5 ms; the time each user's line is first seen."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen, self.done = folder, {}, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.005):
            if not self.folder.is_dir():
                continue
            for day in self.folder.iterdir():
                for f in day.iterdir():
                    if f.name.startswith(".") or f in self.done:
                        continue
                    at = time.time()
                    self.done.add(f)
                    for line in gzip.decompress(f.read_bytes()).splitlines():
                        self.seen[json.loads(line)["value"]["user_id"]] = at

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _latency(home: Path, bootstrap: str) -> tuple[list[float], float]:
    """Latencies (s) from assign to the line in a dump file, and the connector's start (s)."""
    env = {
        **os.environ,
        "ABP_CONNECT_TOPICS": TOPIC,
        "ABP_CONNECT_MAX_SECONDS": str(ROTATE_SECONDS),
        "ABP_CONNECT_GROUP": "latency",
    }
    env.pop("ABP_KAFKA_BOOTSTRAP", None)  # embedded: the short group session
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "connector.log", "wb")  # noqa: SIM115
    args = ["-m", "ab_pipelines.events.connector", "--home", str(home), "--bootstrap", bootstrap]
    proc = subprocess.Popen(
        dying_with_parent([sys.executable, *args]),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    watcher = _Watcher(home / "raw" / TOPIC)
    sink = KafkaExposureSink(bootstrap=bootstrap, settings=SETTINGS)
    try:
        t0 = time.monotonic()
        while b"assigned" not in (home / "connector.log").read_bytes():
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise RuntimeError(f"the connector did not start: see {home / 'connector.log'}")
            time.sleep(0.01)
        started = time.monotonic() - t0
        client = Client.from_payload(signed_envelope(), exposure_sink=sink)
        assigned: dict[str, float] = {}
        t0 = time.monotonic()
        for i in range(LATENCY_USERS):
            u = f"lat-{i:07d}"
            client.assign(u, EXPERIMENT)
            assigned[u] = time.time()
            time.sleep(max(0.0, t0 + (i + 1) / LATENCY_RATE - time.monotonic()))
        sink.flush(60)
        deadline = time.monotonic() + 60
        while len(watcher.seen) < LATENCY_USERS and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sink.close()
        watcher.stop()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
    missing = set(assigned) - set(watcher.seen)
    if missing:
        raise AssertionError(f"{len(missing)} exposures never reached a dump file")
    return [watcher.seen[u] - at for u, at in assigned.items()], started


def run(reps: int = 3, records: int = RECORDS) -> Benchmark:
    reps = max(1, min(reps, 3))
    with tempfile.TemporaryDirectory(prefix="abp-bench-connector-") as tmp:
        root = Path(tmp)
        with EmbeddedBroker(root / "kafka", record=False) as broker:
            ensure_topics(broker.bootstrap, SETTINGS)
            t = time.perf_counter()
            _fill(broker.bootstrap, records)
            fill_s = time.perf_counter() - t
            joins, ours, floor = [], [], []
            for rep in range(reps):
                join, seconds, written = _connector_drain(
                    root / f"home-{rep}", broker.bootstrap, f"bench-{rep}"
                )
                if written != records:
                    raise AssertionError(f"the connector wrote {written} of {records} records")
                joins.append(join)
                ours.append(seconds)
                floor.append(_floor_drain(broker.bootstrap, root / f"floor-{rep}", records))
            size_mb = (
                sum(f.stat().st_size for f in (root / "home-0" / "raw" / TOPIC).rglob("*.gz"))
                / 2**20
            )
        with EmbeddedBroker(root / "kafka-latency", record=False) as broker:  # an empty topic
            ensure_topics(broker.bootstrap, SETTINGS)
            latencies, started = _latency(root / "latency", broker.bootstrap)
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    p50, p99 = percentile(latencies, 50) * 1e3, percentile(latencies, 99) * 1e3
    rows = [
        Row(
            f"{records / 1e3:,.0f}k records into dump files, records/s",
            f"{records / ours_s:,.0f}",
            f"{records / floor_s:,.0f}",
            f"{floor_s / ours_s:.2f}x of the floor's rate",
            "",
            None,
        ),
        Row(
            f"assign → line in a dump file, p50 / p99 (ms), files every {ROTATE_SECONDS:g} s",
            f"{p50:,.0f} / {p99:,.0f}",
            "",
            "",
            "",
            None,
        ),
    ]
    notes = [
        f"Drain runs (s, from the assignment): {', '.join(f'{s:.2f}' for s in ours)}; the group "
        f"formed in {', '.join(f'{s:.1f}' for s in joins)} s before each (tansu); floor runs "
        f"{', '.join(f'{s:.2f}' for s in floor)}. {size_mb:.0f} MB of gzip (level 1) per run; "
        f"filling the topic took {fill_s:.1f} s.",
        "Exactly once costs little here: per file one fsync, one rename, one folder fsync and "
        "a synchronous commit (files of 100,000 records). The connector's time is Python per "
        "record (about 6 µs of CPU on this machine): the check that the value is a JSON object "
        "(orjson), the envelope line, the bookkeeping; gzip level 1 is about a tenth. The floor "
        "is bound by the broker's fetches, which share the 2 cores with the consumer.",
        f"Latency: {LATENCY_USERS:,} assign calls at {LATENCY_RATE:,}/s, the connector a "
        f"separate process (its group formed {started:.1f} s after its start). The rotation "
        f"dominates: a line waits for its file to close ({ROTATE_SECONDS:g} s after the file's "
        f"first record, {ROTATE_SECONDS / 2:g} s on average); then the consumer's fetch (tansu "
        "holds an empty fetch for its whole wait, so the connector asks for 50 ms on the "
        "embedded broker; with librdkafka's default 500 ms p50 was 370 ms), the SDK producer's "
        "linger (10 ms) and its thread's idle poll (20 ms).",
    ]
    return Benchmark("Sink connector (Kafka → dump files)", rows, notes)


if __name__ == "__main__":
    from benchmarks.report import render

    print(render([run(reps=int(sys.argv[1]) if len(sys.argv) > 1 else 3)], {}, 0, []))
