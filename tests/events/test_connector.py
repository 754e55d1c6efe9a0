"""The sink connector against the real embedded broker: exactly once into dump files through
SIGKILLs, a crash between rename and commit, a second member joining, rotation, poison records.

Each test has a broker of its own (tansu starts in ~0.1 s; memory storage), so no test sees
another's records. The group session is 1 s (the connector's default on the embedded broker):
a member killed without leaving is replaced in about 2 s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ab_pipelines.events.connector import ConnectorSettings, SinkConnector, highest_offsets
from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, client_conf, ensure_topics
from ab_pipelines.events.parse import parse_dump_file
from ab_pipelines.processes import dying_with_parent
from ab_pipelines.settings import REPO_ROOT

pytestmark = [pytest.mark.kafka]

KAFKA = KafkaSettings()  # not the environment's: each test has its own broker
TOPIC = "exposures"
EXPOSURES_ONLY = {"topics": (TOPIC,)}
NOW_MS = int(time.time() * 1000)


@pytest.fixture
def broker(tmp_path):
    with EmbeddedBroker(tmp_path / "kafka", record=False) as b:
        ensure_topics(b.bootstrap, KAFKA)
        yield b


@pytest.fixture
def children():
    """Processes a test starts, each in its own process group; killed by id at the end."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)


def _spawn(children, args, log: Path, **env) -> subprocess.Popen:
    with open(log, "ab") as out:
        p = subprocess.Popen(
            dying_with_parent([sys.executable, *args]),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    children.append(p)
    return p


def _connector_process(children, home: Path, bootstrap: str, log: Path, **env):
    """``python -m ab_pipelines.events.connector`` for ``home``, exposures only."""
    env = {"ABP_CONNECT_TOPICS": TOPIC, "ABP_CONNECT_SESSION_TIMEOUT_MS": "1000", **env}
    args = ["-m", "ab_pipelines.events.connector", "--home", str(home), "--bootstrap", bootstrap]
    return _spawn(children, args, log, **env)


def _producer(bootstrap: str) -> Producer:
    return Producer(client_conf(bootstrap, KAFKA, **{"enable.idempotence": True}))


def _exposure(uid: str, ts_ms: int = NOW_MS) -> bytes:
    ts = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    return orjson.dumps(
        {
            "event_id": f"e-{uid}",
            "user_id": uid,
            "experiment_id": "exp",
            "variant": "a",
            "ts": ts.replace("+00:00", "Z"),
        }
    )


def _dump_lines(raw: Path, topic: str = TOPIC) -> list[dict]:
    """Every line of every dump file (gzip must decompress fully), checking each file's name
    and day against its lines; no temporary file may be left."""
    out = []
    folder = raw / topic
    temps = [p.name for p in folder.rglob(".*")] if folder.exists() else []
    assert not temps, f"temporary files left: {temps}"
    for path in sorted(folder.rglob("*.jsonl.gz")):
        lines = [orjson.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
        assert lines, path
        first = lines[0]
        assert path.name == f"{topic}+{first['partition']}+{first['offset']}.jsonl.gz"
        days = {dt.datetime.fromtimestamp(x["timestamp"] / 1000, dt.UTC).date() for x in lines}
        assert [f"date={d}" for d in days] == [path.parent.name], path
        out += lines
    return out


def _assert_exactly_once(lines: list[dict]) -> None:
    """Each partition's offsets in files are exactly 0 .. n-1, once each."""
    per = Counter((x["partition"], x["offset"]) for x in lines)
    dup = [k for k, n in per.items() if n > 1]
    assert not dup, f"{len(dup)} (partition, offset) written twice, e.g. {dup[:3]}"
    for p in range(KAFKA.partitions):
        offsets = sorted(o for q, o in per if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p} has a gap"


def _committed(bootstrap: str, group: str, topic: str = TOPIC) -> dict[int, int]:
    c = Consumer(client_conf(bootstrap, KAFKA, **{"group.id": group}))
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(KAFKA.partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def _wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def _missing(bootstrap: str, lines: list[dict], group: str) -> str:
    """What the broker holds that the files do not, per partition (offset ranges), to tell a
    record the connector skipped from one the broker never kept."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError

    c = Consumer(
        client_conf(bootstrap, KAFKA, **{"group.id": "diagnose", "enable.partition.eof": True})
    )
    held: dict[int, list[int]] = {p: [] for p in range(KAFKA.partitions)}
    try:
        c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(KAFKA.partitions)])
        eof: set[int] = set()
        deadline = time.monotonic() + 30
        while len(eof) < KAFKA.partitions and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    held[m.partition()].append(m.offset())
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
        marks = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), cached=True) for p in held}
    finally:
        c.close()
    in_files: dict[int, set[int]] = {p: set() for p in held}
    for x in lines:
        in_files[x["partition"]].add(x["offset"])
    out = []
    for p, offsets in held.items():
        gone = sorted(set(offsets) - in_files[p])
        out.append(
            f"partition {p}: broker holds {len(offsets)} (watermarks {marks[p]}, highest "
            f"{max(offsets, default=None)}), files {len(in_files[p])}, missing "
            f"{len(gone)} {gone[:3]}..{gone[-3:]}"
        )
    committed = _committed(bootstrap, group)
    return "; ".join(out) + f"; committed {committed}"


PRODUCER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from ab_pipelines.assignment import KafkaExposureSink

    bootstrap, name, n, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    sink = KafkaExposureSink(bootstrap=bootstrap)
    chunk, start = 500, time.monotonic()
    for i in range(0, n, chunk):
        for k in range(i, min(n, i + chunk)):
            sink.log(unit=f"{name}-{k}", user_id=f"{name}-{k}", experiment_id="exp",
                     variant="a", config_version=1, attributes=None)
        time.sleep(max(0.0, start + seconds * (i + chunk) / n - time.monotonic()))
    failed = sink.close(60)
    print(json.dumps({**sink.stats(), "failed_at_close": failed}), flush=True)
    """
)


@pytest.mark.slow
def test_exactly_once_through_sigkills(broker, home, children, tmp_path):
    """100,000 exposures from 4 SDK processes; the connector, a separate process, SIGKILLed at
    random moments 6 times while they produce and restarted; then drained: every exposure in
    exactly one dump line, every file whole, no temporary file left."""
    rng = random.Random(22)
    script = tmp_path / "produce.py"
    script.write_text(PRODUCER_SCRIPT)
    per, names = 25_000, [f"p{k}" for k in range(4)]
    producers = [
        _spawn(children, [str(script), broker.bootstrap, n, str(per), "12"], tmp_path / f"{n}.log")
        for n in names
    ]
    env = {"ABP_CONNECT_MAX_RECORDS": "2000", "ABP_CONNECT_MAX_SECONDS": "0.3"}
    kills, resumed = 0, []
    while kills < 6:
        log = tmp_path / f"connector-{kills}.log"
        started = time.monotonic()
        proc = _connector_process(children, home.home, broker.bootstrap, log, **env)
        # kill at a random moment once it works (has partitions), not while it starts
        _wait_for(lambda: b"assigned" in log.read_bytes(), 30, "an assignment")  # noqa: B023
        resumed.append(time.monotonic() - started)
        time.sleep(rng.uniform(0.05, 1.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        kills += 1
    for p in producers:
        assert p.wait(60) == 0
    stats = [json.loads((tmp_path / f"{n}.log").read_text().splitlines()[-1]) for n in names]
    assert all(s["sent"] == per and s["failed"] == 0 for s in stats), stats
    t0 = time.monotonic()
    settings = ConnectorSettings(max_records=2000, max_seconds=0.3, **EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as connector:
        connector.drain(60)
    drained = time.monotonic() - t0
    print(f"\nstart-to-assignment after SIGKILL (s): {[round(x, 1) for x in resumed]}")
    print(f"final drain (s): {drained:.1f}")

    lines = _dump_lines(home.raw)
    users = [x["value"]["user_id"] for x in lines]
    assert len(lines) == 4 * per, _missing(broker.bootstrap, lines, settings.group_id)
    assert set(users) == {f"{n}-{k}" for n in names for k in range(per)}
    assert len({x["value"]["event_id"] for x in lines}) == 4 * per
    _assert_exactly_once(lines)
    ends = Counter(x["partition"] for x in lines)
    assert _committed(broker.bootstrap, settings.group_id) == dict(ends)


@pytest.mark.parametrize("point", ["after_rename", "before_rename"])
def test_crash_between_rename_and_commit(broker, home, children, tmp_path, point):
    """Killed right after a file's rename (before its commit), or before it (a temporary file
    left): the restarted connector neither duplicates nor loses a record, and repairs the
    committed offset."""
    p = _producer(broker.bootstrap)
    for i in range(4000):
        p.produce(TOPIC, _exposure(f"u{i}"), f"u{i}".encode(), partition=i % 2)
    p.flush()
    log = tmp_path / "crash.log"
    env = {"ABP_CONNECT_MAX_RECORDS": "500", "ABP_CONNECT_CRASH_AT": f"{point}:3"}
    proc = _connector_process(children, home.home, broker.bootstrap, log, **env)
    assert proc.wait(60) == 86, log.read_text()
    files = sorted((home.raw / TOPIC).rglob("*.jsonl.gz*"))
    visible = [f for f in files if not f.name.startswith(".")]
    if point == "after_rename":
        assert len(visible) == 3  # (and open files of the other partition, as temporary files)
        # the third file is on disk, its offsets are not committed
        on_disk = highest_offsets(home.raw, TOPIC)
        committed = _committed(broker.bootstrap, "abp-connect")
        assert any(committed.get(q, -1) < off + 1 for q, off in on_disk.items())
    else:
        assert len(visible) == 2 and len(files) > 2  # the third is a temporary file
    settings = ConnectorSettings(max_records=500, **EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as connector:
        counts = connector.drain(60)
    lines = _dump_lines(home.raw)
    assert len(lines) == 4000 and counts.records_out == 4000 - 500 * (2 + (point == "after_rename"))
    assert {x["key"] for x in lines} == {f"u{i}" for i in range(4000)}
    _assert_exactly_once(lines)
    committed = _committed(broker.bootstrap, "abp-connect")
    assert (committed[0], committed[1]) == (2000, 2000)


class _LostInsideTheLastCall:
    """The connector's consumer, except that in one step the first (non-waiting) call finds
    nothing, and the step's last call serves "partitions lost, then assigned again" before it
    returns, as librdkafka does when the group session timed out under load."""

    def __init__(self, connector: SinkConnector) -> None:
        self.connector, self.real, self.armed = connector, connector._consumer, False

    def __getattr__(self, name):
        return getattr(self.real, name)

    def consume(self, n: int, timeout: float):
        if self.armed and timeout == 0 and n > 1 and not hasattr(self, "_first_done"):
            self._first_done = True
            return []
        if self.armed and getattr(self, "_first_done", False) and n > 1 and timeout == 0:
            self.armed = False
            parts = [TopicPartition(t, q) for t, q in sorted(self.connector.assignment)]
            self.connector._on_lost(self.real, parts)
            self.connector._on_assign(self.real, parts)
        return self.real.consume(n, timeout)


def test_a_record_got_before_a_lost_partition_came_back_is_not_taken_first(broker, home):
    """Partitions lost (session timeout) and assigned again between two consume calls of one
    step: the record the first call got is stale. Taken first, it would move the partition past
    the unwritten records read again from the files' end, and lose them (seen once in CI: 127
    records of 100,000 missing after SIGKILLs on a loaded machine)."""
    p = _producer(broker.bootstrap)
    for i in range(300):
        p.produce(TOPIC, _exposure(f"u{i}"), f"u{i}".encode(), partition=0)
    p.flush()
    settings = ConnectorSettings(max_records=100_000, max_seconds=600, **EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as connector:
        deadline = time.monotonic() + 60
        while connector.counts().records_in < 300:  # in an open file, not written yet
            assert time.monotonic() < deadline, connector.counts()
            connector.step(0.2)
        wrapped = connector._consumer = _LostInsideTheLastCall(connector)
        p.produce(TOPIC, _exposure("u300"), b"u300", partition=0)
        p.flush()
        time.sleep(0.3)  # fetched by the consumer: the waiting call returns it at once
        wrapped.armed = True
        connector.step(2.0)
        assert not wrapped.armed, "the lost-and-assigned-again step did not happen"
        while connector.counts().records_in < 300 + 301:  # everything read again
            assert time.monotonic() < deadline, connector.counts()
            connector.step(0.2)
        connector.write_all()
        connector._consumer = wrapped.real
    lines = _dump_lines(home.raw)
    _assert_exactly_once(lines)
    assert len(lines) == 301


def test_second_connector_joins(broker, home):
    """A second member joins while records flow: partitions are handed over (files written
    and committed on revoke), and every record is still in exactly one line."""
    settings = ConnectorSettings(max_records=1000, max_seconds=0.2, **EXPOSURES_ONLY)
    produced, stop_producing = [0], threading.Event()

    def produce():
        p = _producer(broker.bootstrap)
        while not stop_producing.is_set():
            for _ in range(200):
                uid = f"u{produced[0]}"
                p.produce(TOPIC, _exposure(uid), uid.encode())
                produced[0] += 1
            p.poll(0)
            time.sleep(0.02)
        p.flush()

    stops = [threading.Event(), threading.Event()]
    members: list[SinkConnector] = []
    threads = [threading.Thread(target=produce)]
    try:
        threads[0].start()
        t0 = time.monotonic()
        members.append(SinkConnector(home.home, broker.bootstrap, settings, KAFKA))
        threads.append(threading.Thread(target=members[0].run, args=(stops[0],)))
        threads[-1].start()
        _wait_for(lambda: len(members[0].assignment) == 4, 30, "the first member's partitions")
        first_join = time.monotonic() - t0
        time.sleep(1.0)
        t0 = time.monotonic()
        members.append(SinkConnector(home.home, broker.bootstrap, settings, KAFKA))
        threads.append(threading.Thread(target=members[1].run, args=(stops[1],)))
        threads[-1].start()
        _wait_for(
            lambda: (
                members[1].assignment and len(members[0].assignment | members[1].assignment) == 4
            ),
            30,
            "the partitions shared by both members",
        )
        handover = time.monotonic() - t0
        assert not members[0].assignment & members[1].assignment
        time.sleep(1.5)  # both write for a while
        stop_producing.set()
        threads[0].join(30)
        stops[0].set()  # the first member leaves: its partitions go to the second
        threads[1].join(30)
        members[0].close()
        t0 = time.monotonic()
        _wait_for(lambda: len(members[1].assignment) == 4, 30, "every partition to the second")
        leave = time.monotonic() - t0
        stops[1].set()
        threads[2].join(30)
        members[1].drain(30)
    finally:
        stop_producing.set()
        for stop in stops:
            stop.set()
        for t in threads[1:]:
            t.join(30)
        for m in members:
            m.close()
    print(
        f"\njoin {first_join:.1f} s, second member sharing {handover:.1f} s, after a leave {leave:.1f} s"
    )
    a, b = members[0].counts(), members[1].counts()
    assert a.files and b.files
    lines = _dump_lines(home.raw)
    assert len(lines) == produced[0] == a.records_out + b.records_out
    _assert_exactly_once(lines)


def _day_ms(day: dt.date, seconds: int = 3600) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000) + seconds * 1000


def test_rotation_by_records_bytes_seconds_and_day(broker, home):
    """Files are cut at max_records, at max_bytes, after max_seconds without a drain, and when
    the records' day changes; each is named by its first offset in its day's folder."""
    d1, d2 = dt.date(2026, 5, 1), dt.date(2026, 5, 2)
    p = _producer(broker.bootstrap)
    for i in range(7):  # partition 0: 4 records on day 1, then 3 on day 2
        ts = _day_ms(d1 if i < 4 else d2, i)
        p.produce(TOPIC, _exposure(f"a{i}", ts), b"a", partition=0, timestamp=ts)
    for i in range(3):  # partition 1: one file per record by bytes
        p.produce(TOPIC, _exposure(f"b{i}", _day_ms(d1)), b"b", partition=1, timestamp=_day_ms(d1))
    p.flush()
    settings = ConnectorSettings(max_records=3, max_bytes=10_000, **EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as connector:
        connector.drain(30)
    names = sorted(str(f.relative_to(home.raw)) for f in home.raw.rglob("*.jsonl.gz"))
    assert names == sorted(
        [
            f"exposures/date={d1}/exposures+0+0.jsonl.gz",  # 3 records: max_records
            f"exposures/date={d1}/exposures+0+3.jsonl.gz",  # 1 record: the day changed
            f"exposures/date={d2}/exposures+0+4.jsonl.gz",  # 3 records
            f"exposures/date={d1}/exposures+1+0.jsonl.gz",  # 3 records (bytes not reached)
        ]
    )
    tiny = ConnectorSettings(max_bytes=1, group_id="bytes", **EXPOSURES_ONLY)
    for i in range(3):
        p.produce(TOPIC, _exposure(f"c{i}", _day_ms(d2)), b"c", partition=2, timestamp=_day_ms(d2))
    p.flush()
    with SinkConnector(home.home, broker.bootstrap, tiny, KAFKA) as connector:
        connector.drain(30)
    assert sorted(f.name for f in (home.raw / TOPIC / f"date={d2}").glob("*+2+*")) == [
        f"exposures+2+{i}.jsonl.gz"
        for i in range(3)  # one record each: max_bytes
    ]
    # max_seconds: a file is written while the connector runs, no drain, no more records
    timed = ConnectorSettings(max_seconds=0.3, group_id="timed", **EXPOSURES_ONLY)
    stop = threading.Event()
    with SinkConnector(home.home, broker.bootstrap, timed, KAFKA) as connector:
        runner = threading.Thread(target=connector.run, args=(stop,))
        runner.start()
        try:
            _wait_for(lambda: len(connector.assignment) == 4, 30, "the assignment")
            p.produce(TOPIC, _exposure("t", _day_ms(d2)), b"t", partition=3, timestamp=_day_ms(d2))
            p.flush()
            target = home.raw / TOPIC / f"date={d2}" / "exposures+3+0.jsonl.gz"
            waited = _wait_for(target.exists, 10, "the file written by max_seconds")
        finally:
            stop.set()
            runner.join(30)
    assert waited < 3.0
    assert json.loads(gzip.decompress(target.read_bytes()))["value"]["user_id"] == "t"


def test_poison_records_are_written_and_quarantined(broker, home):
    """Values that are not JSON objects are written as they came, as strings, and the
    project's parser quarantines each with a reason; the good record lands."""
    p = _producer(broker.bootstrap)
    values = [
        _exposure("good"),
        b"not json {",
        b"\xff\xfe{bad utf-8",
        # JSON but for one byte: repaired with U+FFFD it would land with a wrong user id
        _exposure("user-BADBYTE").replace(b"BADBYTE", b"\xc3\x28"),
        b"[1, 2]",
        None,  # a tombstone
        json.dumps(orjson.loads(_exposure("pretty")), indent=2).encode(),
    ]
    for v in values:
        p.produce(TOPIC, v, b"k", partition=0, timestamp=NOW_MS)
    p.flush()
    with SinkConnector(
        home.home, broker.bootstrap, ConnectorSettings(**EXPOSURES_ONLY), KAFKA
    ) as c:
        counts = c.drain(30)
    assert counts.records_out == 7 and counts.non_json == 5
    (path,) = (home.raw / TOPIC).rglob("*.jsonl.gz")
    raw_lines = gzip.decompress(path.read_bytes()).splitlines()
    assert b'"\xff\xfe{bad utf-8"' in raw_lines[2]  # the bytes as they came
    assert b"\xc3\x28" in raw_lines[3]
    lines = [orjson.loads(x.decode("utf-8", "replace")) for x in raw_lines]
    assert [type(x["value"]).__name__ for x in lines] == [
        "dict",
        "str",
        "str",
        "str",
        "str",
        "NoneType",
        "dict",
    ]
    assert lines[1]["value"] == "not json {"
    day = dt.date.fromisoformat(path.parent.name.removeprefix("date="))
    rows = [
        row
        for batch in parse_dump_file(
            path.read_bytes(),
            str(path.relative_to(home.raw)),
            TOPIC,
            day,
            {"exp": frozenset({"a", "b"})},
        )
        for row in batch.to_pylist()
    ]
    assert [(r["source_line"], r["status"], r["reason"]) for r in rows] == [
        (1, "ok", None),
        (2, "quarantined", "bad_json"),
        (3, "quarantined", "bad_encoding"),
        (4, "quarantined", "bad_encoding"),
        (5, "quarantined", "bad_envelope"),
        (6, "quarantined", "bad_envelope"),
        (7, "ok", None),
    ]


def test_new_cluster_seals_old_files(broker, home, tmp_path):
    """A restarted embedded broker is a new cluster whose offsets begin at 0 again: the old
    files no longer set the resume point, so the new cluster's records are all written, and
    their dump offsets continue after the old ones (the same day too): no file name and no
    (topic, partition, offset) that landing's dedupe has seen is used again."""
    p = _producer(broker.bootstrap)
    for i in range(10):
        old = _day_ms(dt.date(2026, 5, 1))
        p.produce(TOPIC, _exposure(f"old{i}", old), partition=0, timestamp=old)
    p.flush()
    settings = ConnectorSettings(**EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as c:
        c.drain(30)
    with EmbeddedBroker(tmp_path / "kafka2", record=False) as second:
        ensure_topics(second.bootstrap, KAFKA)
        p = _producer(second.bootstrap)
        for i in range(3):
            p.produce(TOPIC, _exposure(f"new{i}"), partition=0, timestamp=NOW_MS)
        same_day = _day_ms(dt.date(2026, 5, 1)) + 1000
        p.produce(TOPIC, _exposure("new-same-day", same_day), partition=0, timestamp=same_day)
        p.flush()
        with SinkConnector(home.home, second.bootstrap, settings, KAFKA) as c:
            assert c.drain(30).records_out == 4
        del p  # tansu waits for open connections before it stops
    state = orjson.loads((home.raw / ".connect" / "cluster.json").read_bytes())
    assert state["sealed"] == {TOPIC: ["date=2026-05-01/exposures+0+0.jsonl.gz"]}
    assert state["shifts"] == {TOPIC: {"0": 10}}
    lines = _dump_lines(home.raw)
    assert len(lines) == 14
    offsets = sorted((line["partition"], line["offset"]) for line in lines)
    assert offsets == [(0, n) for n in range(14)]  # continued, none used twice
    names = sorted(f.name for f in (home.raw / TOPIC).glob("date=2026-05-01/*"))
    assert names == ["exposures+0+0.jsonl.gz", "exposures+0+13.jsonl.gz"]


def test_files_written_by_others_are_passed_over_not_resumed_from(broker, home):
    """Dump files already in raw/ when the connector first starts (the simulator's direct
    dumps, a file sink) are not its own: their offsets must not become its resume point (it
    would skip the topic's records); its offsets continue after theirs."""
    from ab_pipelines.events.dumps import envelope, write_dump

    day = dt.date(2026, 5, 2)
    foreign = [
        envelope(TOPIC, 0, 25_000_000_000 + i, _day_ms(day), "k", {"n": i}) for i in range(3)
    ]
    write_dump(home.raw, TOPIC, day, 0, 25_000_000_000, foreign, gzipped=True)
    p = _producer(broker.bootstrap)
    for i in range(5):
        p.produce(TOPIC, _exposure(f"mine{i}"), partition=0, timestamp=NOW_MS)
    p.flush()
    with SinkConnector(
        home.home, broker.bootstrap, ConnectorSettings(**EXPOSURES_ONLY), KAFKA
    ) as c:
        assert c.drain(30).records_out == 5
    mine = [
        x for x in _dump_lines(home.raw) if isinstance(x["value"], dict) and "n" not in x["value"]
    ]
    assert sorted(x["offset"] for x in mine) == [25_000_000_003 + i for i in range(5)]


def test_sigterm_writes_commits_and_serves_metrics(broker, home, children, tmp_path):
    """``abp connect``'s process serves Prometheus metrics; SIGTERM writes its open files,
    commits and leaves the group (a new member gets the partitions at once)."""
    port = _free_port()
    log = tmp_path / "connector.log"
    env = {"ABP_CONNECT_METRICS_PORT": str(port), "ABP_CONNECT_MAX_SECONDS": "3600"}
    proc = _connector_process(children, home.home, broker.bootstrap, log, **env)
    p = _producer(broker.bootstrap)
    for i in range(100):
        p.produce(TOPIC, _exposure(f"u{i}"), f"u{i}".encode())
    p.produce(TOPIC, b"not json", b"x")
    p.flush()

    def metrics() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""

    def total(name: str) -> float | None:  # the sum over a metric's labels; None if absent
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics().splitlines()
            if line.startswith(name + "{")
        ]
        return sum(values) if values else None

    _wait_for(lambda: total("abp_connector_records_in_total") == 101, 30, "records in metrics")
    _wait_for(lambda: total("abp_connector_lag") == 0, 5, "the lag gauges")
    assert total("abp_connector_non_json_records_total") == 1
    assert total("abp_connector_files_written_total") is None
    assert not list((home.raw / TOPIC).rglob("*.jsonl.gz"))  # open files only, for an hour
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()
    stopped = time.monotonic() - t0
    counts = json.loads(log.read_text().splitlines()[-1])
    assert counts["records_out"] == 101 and counts["non_json"] == 1
    lines = _dump_lines(home.raw)
    assert len(lines) == 101
    ends = Counter(x["partition"] for x in lines)
    assert {q: n for q, n in _committed(broker.bootstrap, "abp-connect").items() if n >= 0} == ends
    t0 = time.monotonic()
    settings = ConnectorSettings(**EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as c:
        _wait_for(lambda: c.step(0.05) is not None and len(c.assignment) == 4, 30, "the group")
    print(
        f"\nSIGTERM to exit {stopped:.1f} s; a new member's assignment {time.monotonic() - t0:.1f} s"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stale:
    """A record as consume() returns it, fetched before its partition was lost and assigned
    again (what _take must not put after the files' end)."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def error(self):
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, NOW_MS)

    def key(self) -> bytes:
        return b"stale"

    def value(self) -> bytes:
        return _exposure(f"stale-{self._offset}")


def test_a_first_record_past_the_files_end_after_an_assignment_is_read_again(broker, home, caplog):
    """A lost partition's unwritten file is dropped and the partition assigned again from its
    files' end, inside one consume call that also returns records fetched before the loss: the
    first of them lies past the files' end. Taking it would leave the dropped records out of every
    file; the connector skips it and reads the partition again from the files' end."""
    p = _producer(broker.bootstrap)
    for i in range(300):
        p.produce(TOPIC, _exposure(f"u{i}"), f"u{i}".encode(), partition=0)
    p.flush()
    settings = ConnectorSettings(max_records=200, max_seconds=30, **EXPOSURES_ONLY)
    with SinkConnector(home.home, broker.bootstrap, settings, KAFKA) as connector:
        deadline = time.monotonic() + 30
        while (TOPIC, 0) not in connector.assignment and time.monotonic() < deadline:
            connector.step(0.2)
        owned = connector._owned[(TOPIC, 0)]
        while owned.next_offset < 300 and time.monotonic() < deadline:
            connector.step(0.2)
        assert owned.next_offset == 300
        # 0..199 are in a file; as after a loss, the open file of 200..299 is dropped and the
        # partition is fresh from 200
        assert owned.file is not None and owned.file.records == 100
        owned.file.discard()
        owned.file = None
        owned.next_offset, owned.fresh = 200, True
        assert connector._take([_Stale(0, 250), _Stale(0, 251)]) == 0
        assert owned.next_offset == 200 and owned.reseeks == 1
        assert "reading it again from there" in caplog.text
        while owned.next_offset < 300 and time.monotonic() < deadline:
            connector.step(0.2)
        assert owned.next_offset == 300 and not owned.fresh  # 200..299 taken again, in order
        connector.write_all()
    lines = _dump_lines(home.raw)
    assert sorted(x["offset"] for x in lines) == list(range(300))
    assert not any(x["value"]["user_id"].startswith("stale") for x in lines)
