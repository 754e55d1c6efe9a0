"""The SDK's Kafka producer against the real embedded broker: what arrives, broker down at start,
a full queue, metric events. Records are read back with explicit partition assignment (a
consumer group on tansu takes about 20 s to form)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

from ab_pipelines.assignment import Client, KafkaExposureSink, ListExposureSink, Tracker
from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, ensure_topics
from tests.assignment import corpus

pytestmark = [pytest.mark.kafka]

SETTINGS = KafkaSettings()  # not the environment's: these tests pick their own broker
EXPOSURE_FIELDS = {
    "event_id",
    "user_id",
    "experiment_id",
    "variant",
    "ts",
    "config_version",
    "source",
    "attributes",
}
ATTRS = {"country": "US", "platform": "ios", "device_id": "d-1", "note": "ü😀"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with EmbeddedBroker(tmp_path_factory.mktemp("kafka"), record=False) as b:
        ensure_topics(b.bootstrap, SETTINGS)
        yield b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 20.0, prefix=None):
    """The records of ``topic`` from the start (those whose key starts with ``prefix``, if
    given), once ``expected`` of them arrived and 0.5 s more, to catch copies."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "test-producer",
            "enable.auto.commit": False,
            "log.connection.close": False,
        }
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, deadline, extra = [], time.monotonic() + timeout, None
        while time.monotonic() < (extra or deadline):
            for m in c.consume(1000, 0.2):
                assert m.error() is None, m.error()
                if prefix is None or m.key().decode().startswith(prefix):
                    out.append(m)
            if extra is None and len(out) >= expected:
                extra = time.monotonic() + 0.5
        return out
    finally:
        c.close()


def _assign_timed(client: Client, users, attrs=None) -> list[float]:
    """Seconds per assign_all call (each logs its first exposures)."""
    times = []
    for u in users:
        t0 = time.perf_counter()
        client.assign_all(u, attrs)
        times.append(time.perf_counter() - t0)
    return times


def test_exposures_arrive_with_key_value_and_counters(broker):
    sink = KafkaExposureSink(bootstrap=broker.bootstrap, settings=SETTINGS)
    payload = corpus()["payload"]
    client = Client.from_payload(payload, trusted=True, exposure_sink=sink)
    reference = ListExposureSink()
    twin = Client.from_payload(payload, trusted=True, exposure_sink=reference)
    for i in range(300):
        client.assign_all(f"user-{i}", ATTRS)
        twin.assign_all(f"user-{i}", ATTRS)
    # values JSON cannot hold as they are: a lone surrogate, an object, a non-string key
    sink.log(
        unit="odd\udc80",
        user_id="odd\udc80",
        experiment_id="homepage_hero",
        variant="control",
        config_version=1,
        attributes={"when": dt.date(2026, 1, 2), 7: "seven"},
    )
    t0 = time.time()
    assert sink.flush(20) == 0
    n = len(reference.events) + 1
    assert sink.stats() == {
        "accepted": n,
        "sent": n,
        "queued": 0,
        "retried": 0,
        "dropped": 0,
        "failed": 0,
    }
    records = _consume(broker.bootstrap, "exposures", n)
    assert len(records) == n
    values = [json.loads(m.value()) for m in records]
    assert all(set(v) == EXPOSURE_FIELDS for v in values)
    assert len({v["event_id"] for v in values}) == n
    odd = [v for v in values if v["user_id"] == "odd\udc80"]
    assert odd and odd[0]["attributes"] == {"when": "2026-01-02", "7": "seven"}
    by_pair = {
        (v["user_id"], v["experiment_id"]): (m, v) for m, v in zip(records, values, strict=True)
    }
    for ev in reference.events:
        m, v = by_pair[(ev["user_id"], ev["experiment_id"])]
        assert m.key().decode() == ev["unit"]  # the unit (device_id for device_theme)
        assert v["variant"] == ev["variant"] and v["config_version"] == 1
        assert v["source"] == "sdk-python" and v["attributes"] == ATTRS
        kind, ts_ms = m.timestamp()
        assert kind == TIMESTAMP_CREATE_TIME and abs(ts_ms / 1000 - t0) < 60
        when = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
        assert v["ts"] == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"
    assert sink.close() == 0


def test_metric_events_arrive(broker):
    tracker = Tracker(bootstrap=broker.bootstrap, settings=SETTINGS)
    when = dt.datetime(2026, 11, 24, 23, 59, 1, 250000, tzinfo=dt.UTC)
    assert tracker.track("user-1", "purchase", 19.99, {"currency": "EUR"}, ts=when)
    assert tracker.track("user-2", "page_view")
    assert tracker.track(42, "purchase", 3, ts=when.timestamp())
    assert tracker.flush(20) == 0 and tracker.stats()["sent"] == 3
    records = _consume(broker.bootstrap, "metric_events", 3)
    got = {m.key().decode(): (m.timestamp()[1], json.loads(m.value())) for m in records}
    assert set(got) == {"user-1", "user-2", "42"}
    ts_ms, v = got["user-1"]
    assert ts_ms == round(when.timestamp() * 1000)
    assert v["ts"] == "2026-11-24T23:59:01.250Z"
    assert {k: v[k] for k in ("user_id", "event", "value", "properties")} == {
        "user_id": "user-1",
        "event": "purchase",
        "value": 19.99,
        "properties": {"currency": "EUR"},
    }
    assert got["user-2"][1]["value"] == 1 and got["user-2"][1]["properties"] == {}
    assert got["42"][1]["user_id"] == "42" and got["42"][1]["value"] == 3
    tracker.close()


def test_delivered_at_interpreter_exit(broker):
    code = (
        "import sys\n"
        "from ab_pipelines.assignment import KafkaExposureSink\n"
        "from ab_pipelines.events.kafka import KafkaSettings\n"
        "s = KafkaExposureSink(bootstrap=sys.argv[1], settings=KafkaSettings())\n"
        "for i in range(20):\n"
        "    s.log(unit=f'exit-{i}', user_id=f'exit-{i}', experiment_id='e', variant='a',"
        " config_version=1, attributes=None)\n"
    )
    subprocess.run([sys.executable, "-c", code, broker.bootstrap], check=True, timeout=60)
    records = _consume(broker.bootstrap, "exposures", 20, prefix="exit-")
    assert sorted(m.key().decode() for m in records) == sorted(f"exit-{i}" for i in range(20))


def test_a_forked_child_delivers_its_own_events_and_not_the_parents(broker):
    sink = KafkaExposureSink(bootstrap=broker.bootstrap, settings=SETTINGS)

    def log(unit):
        sink.log(
            unit=unit,
            user_id=unit,
            experiment_id="e",
            variant="a",
            config_version=1,
            attributes=None,
        )

    for i in range(5):
        log(f"fork-parent-{i}")
    pid = os.fork()
    if pid == 0:  # the child: its own queue, client and id prefix
        code = 1
        try:
            for i in range(5):
                log(f"fork-child-{i}")
            code = 0 if sink.close(15) == 0 and sink.stats()["sent"] == 5 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sink.flush(15) == 0 and sink.stats()["sent"] == 5
    records = _consume(broker.bootstrap, "exposures", 10, prefix="fork-")
    assert sorted(m.key().decode() for m in records) == sorted(
        [f"fork-parent-{i}" for i in range(5)] + [f"fork-child-{i}" for i in range(5)]
    )
    assert len({json.loads(m.value())["event_id"] for m in records}) == 10
    sink.close()


def test_broker_down_when_the_sdk_starts(tmp_path):
    port = _free_port()
    sink = KafkaExposureSink(bootstrap=f"127.0.0.1:{port}", settings=SETTINGS)
    payload = corpus()["payload"]
    client = Client.from_payload(payload, trusted=True, exposure_sink=sink)
    reference = ListExposureSink()
    twin = Client.from_payload(payload, trusted=True, exposure_sink=reference)
    times = []
    for batch in range(4):  # about 1.5 s with nobody listening
        users = [f"user-{batch}-{i}" for i in range(200)]
        times += _assign_timed(client, users, ATTRS)
        for u in users:
            twin.assign_all(u, ATTRS)
        time.sleep(0.4)
    assert sink.stats()["sent"] == 0 and sink.stats()["queued"] == len(reference.events)
    with EmbeddedBroker(tmp_path, port=port, record=False) as b:
        ensure_topics(b.bootstrap, SETTINGS)
        users = [f"user-late-{i}" for i in range(200)]
        times += _assign_timed(client, users, ATTRS)
        for u in users:
            twin.assign_all(u, ATTRS)
        assert sink.flush(25) == 0
        n = len(reference.events)
        stats = sink.stats()
        assert (stats["accepted"], stats["sent"], stats["queued"]) == (n, n, 0)
        assert stats["dropped"] == stats["failed"] == 0
        records = _consume(b.bootstrap, "exposures", n)
        values = [json.loads(m.value()) for m in records]
        assert {(v["user_id"], v["experiment_id"]) for v in values} == {
            (e["user_id"], e["experiment_id"]) for e in reference.events
        }
        assert len({v["event_id"] for v in values}) == len(values) == n
        assert sink.close() == 0
    # Never blocked on the broker: a blocked call would wait for a connection (seconds). The
    # bound is loose because one call can meet a GIL switch or a collection on a loaded machine
    # (54.7 ms once in a full run); speed itself is measured in the producer benchmark.
    assert max(times) < 0.25, f"an assign_all call took {max(times) * 1000:.1f} ms"


def test_no_broker_known_yet_then_the_embedded_one(tmp_path):
    home = tmp_path / "home"
    sink = KafkaExposureSink(home=home, settings=SETTINGS)  # nothing runs for this home yet
    for i in range(50):
        sink.log(
            unit=f"u{i}",
            user_id=f"u{i}",
            experiment_id="e",
            variant="a",
            config_version=3,
            attributes=None,
        )
    time.sleep(0.3)
    assert sink.producer.bootstrap is None and sink.stats()["queued"] == 50
    with EmbeddedBroker(home, record=True) as b:  # writes kafka/broker.json, found within 1 s
        ensure_topics(b.bootstrap, SETTINGS)
        assert sink.flush(20) == 0
        assert sink.producer.bootstrap == b.bootstrap
        records = _consume(b.bootstrap, "exposures", 50)
        assert sorted(m.key().decode() for m in records) == sorted(f"u{i}" for i in range(50))
        assert sink.stats()["sent"] == 50
        sink.close()


def test_a_full_queue_drops_and_counts_and_never_blocks(tmp_path, caplog):
    sink = KafkaExposureSink(home=tmp_path, settings=SETTINGS, max_queue=100)  # no broker
    times = []
    with caplog.at_level(logging.WARNING, logger="ab_pipelines.sdk"):
        for i in range(1000):
            t0 = time.perf_counter()
            sink.log(
                unit=f"u{i}",
                user_id=f"u{i}",
                experiment_id="e",
                variant="a",
                config_version=1,
                attributes={"i": i},
            )
            times.append(time.perf_counter() - t0)
        stats = sink.stats()
        assert stats["accepted"] == 100 and stats["dropped"] == 900 and stats["queued"] == 100
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not any(
            "dropped" in r.message for r in caplog.records
        ):
            time.sleep(0.05)
    drops = [r for r in caplog.records if "dropped" in r.message]
    assert len(drops) == 1 and "events dropped so far" in drops[0].message  # once a minute
    assert max(times) < 0.05 and sum(times) / len(times) < 50e-6
    # close gives up at once with no broker: what was queued is counted failed, never lost
    assert sink.close(timeout=0.2) == 100
    stats = sink.stats()
    assert (stats["queued"], stats["failed"], stats["sent"]) == (0, 100, 0)
    sink.log(unit="late", user_id="late", experiment_id="e", variant="a", config_version=1,
             attributes=None)  # fmt: skip
    assert sink.stats()["dropped"] == 901


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("u", "purchase", True), "value must be a finite number"),
        (("u", "purchase", math.nan), "value must be a finite number"),
        (("u", "purchase", math.inf), "value must be a finite number"),
        (("u", "purchase", "3"), "value must be a finite number"),
        (("u", "purchase", None), "value must be a finite number"),
        (("u", "purchase", Decimal("1.5")), "value must be a finite number"),
        (("", "purchase"), "user_id must not be empty"),
        ((None, "purchase"), "user_id must be a string"),
        (("u", ""), "event must be a non-empty string"),
        (("u", "purchase", 1, ["a"]), "properties must be a mapping"),
        (("u", "purchase", 1, None, dt.datetime(2026, 1, 1)), "ts must be timezone-aware"),
        (("u", "purchase", 1, None, "yesterday"), "ts must be epoch seconds"),
    ],
)
def test_track_rejects_a_bad_call(tmp_path, args, message):
    tracker = Tracker(home=tmp_path, settings=SETTINGS)
    with pytest.raises(ValueError, match=message):
        tracker.track(*args)
    assert tracker.track("u", "purchase", 2.5) and tracker.stats()["accepted"] == 1
    tracker.close(timeout=0)


def test_bad_settings_fail_at_construction(tmp_path):
    from ab_pipelines.events.kafka import KafkaSetupError

    with pytest.raises(KafkaSetupError, match="refuses its settings"):
        KafkaExposureSink(home=tmp_path, settings=SETTINGS, conf={"no.such.setting": 1})
