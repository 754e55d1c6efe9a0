"""The producer's queue without a broker: events queue flat (``2 + fields`` slots each) and come
out of the pump whole and in order, a first exposure leaves no object the garbage collector
tracks (so no collection pauses the caller of ``assign``), and rule 8's memory holds across
experiments with ``exposure_memory``."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("confluent_kafka")
pytest.importorskip("orjson")

from ab_pipelines.assignment import Client, KafkaExposureSink, ListExposureSink, Tracker  # noqa: E402
from ab_pipelines.events.kafka import KafkaSettings  # noqa: E402
from tests.assignment import experiment, payload  # noqa: E402

SETTINGS = KafkaSettings()


class FakeKafka:
    """Stands in for confluent_kafka.Producer inside the pump: records what is produced."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, str, int]] = []

    def produce(self, topic, value, key, timestamp):
        self.records.append((topic, value, key, timestamp))

    def __len__(self) -> int:
        return 0

    def poll(self, timeout=0) -> int:
        return 0

    def purge(self, **kw) -> None:
        pass


def _stopped(producer):
    """The producer with its thread stopped and a fake client: the test runs the pump."""
    producer._stop.set()
    producer._thread.join(5)
    assert not producer._thread.is_alive()
    producer._client = fake = FakeKafka()
    return fake


def _pump_all(producer) -> None:
    while producer._pump():
        pass
    producer._publish()


def test_queued_exposures_come_out_whole_and_in_order(tmp_path):
    import orjson

    sink = KafkaExposureSink(home=tmp_path, settings=SETTINGS)  # no broker: nothing leaves
    fake = _stopped(sink.producer)
    attrs = {"country": "US"}
    for i in range(1000):
        sink.log(
            unit=f"u{i}",
            user_id=f"user-{i}",
            experiment_id=f"e{i % 3}",
            variant="treatment" if i & 1 else "control",
            config_version=i,
            attributes=attrs if i % 4 == 0 else None,
        )
    attrs["country"] = "FR"  # copied when logged
    assert sink.stats()["queued"] == 1000
    assert len(sink.producer._pending) == 1000 * sink.producer.width == 7000
    _pump_all(sink.producer)
    assert len(fake.records) == 1000 and not sink.producer._pending
    for i, (topic, value, key, ts) in enumerate(fake.records):
        v = orjson.loads(value)
        assert topic == "exposures" and key == f"u{i}"
        assert (v["user_id"], v["experiment_id"], v["config_version"]) == (
            f"user-{i}",
            f"e{i % 3}",
            i,
        )
        assert v["variant"] == ("treatment" if i & 1 else "control")
        assert v["attributes"] == ({"country": "US"} if i % 4 == 0 else {})
        assert v["source"] == "sdk-python" and v["ts"].endswith(f".{ts % 1000:03d}Z")
    assert len({orjson.loads(r[1])["event_id"] for r in fake.records}) == 1000
    stats = sink.stats()
    assert (stats["accepted"], stats["sent"], stats["queued"]) == (1000, 1000, 0)
    sink.close(timeout=0)


def test_queued_metric_events_come_out_whole(tmp_path):
    import orjson

    tracker = Tracker(home=tmp_path, settings=SETTINGS)
    fake = _stopped(tracker.producer)
    for i in range(100):
        assert tracker.track(f"user-{i}", "purchase", i + 0.5, {"n": i} if i & 1 else None)
    assert len(tracker.producer._pending) == 100 * 6
    _pump_all(tracker.producer)
    got = [(key, orjson.loads(value)) for _, value, key, _ in fake.records]
    assert [k for k, _ in got] == [f"user-{i}" for i in range(100)]
    for i, (_, v) in enumerate(got):
        assert (v["user_id"], v["event"], v["value"]) == (f"user-{i}", "purchase", i + 0.5)
        assert v["properties"] == ({"n": i} if i & 1 else {})
    with pytest.raises(ValueError, match="4 fields"):
        tracker.producer.send("k", ("too", "few"))
    assert len(tracker.producer._pending) == 0  # refused whole: the queue stays aligned
    tracker.close(timeout=0)


def test_a_full_queue_keeps_whole_events(tmp_path):
    sink = KafkaExposureSink(home=tmp_path, settings=SETTINGS, max_queue=10)
    _stopped(sink.producer)
    for i in range(25):
        sink.log(unit=f"u{i}", user_id=f"u{i}", experiment_id="e", variant="a",
                 config_version=1, attributes=None)  # fmt: skip
    stats = sink.stats()
    assert (stats["accepted"], stats["queued"], stats["dropped"]) == (10, 10, 15)
    assert len(sink.producer._pending) == 10 * sink.producer.width
    assert sink.close(timeout=0) == 10
    assert sink.stats()["failed"] == 10 and not sink.producer._pending


def test_first_exposures_into_kafka_trigger_no_garbage_collection(tmp_path):
    """Each first exposure used to leave three tracked tuples (the memory's key, the fields and
    the queue entry): a gen-0 collection every few hundred calls, on the caller's time."""
    sink = KafkaExposureSink(home=tmp_path, settings=SETTINGS, max_queue=100_000)
    _stopped(sink.producer)  # nothing drains the queue: the worst case for the collector
    p = payload({"half": experiment("half-salt"), "third": experiment("third-salt")})
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    units = [f"user-{i}" for i in range(20_000)]
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        for u in units:
            client.assign(u, "half")
            client.assign(u, "third")
    finally:
        gc.callbacks.remove(count)
    assert sink.stats()["queued"] == 40_000
    assert len(client._exposed) == 40_000
    assert len(collections) <= 2, f"{len(collections)} collections during 40,000 exposures"
    sink.close(timeout=0)


def test_exposure_memory_counts_pairs_across_experiments():
    sink = ListExposureSink()
    p = payload({"a": experiment("salt-a"), "b": experiment("salt-b")})
    client = Client.from_payload(p, trusted=True, exposure_sink=sink, exposure_memory=7)
    for _ in range(2):
        for i in range(10):
            for exp_id in ("a", "b"):
                client.assign(f"u{i}", exp_id)
                assert len(client._exposed) <= 7
    pairs = {(e["user_id"], e["experiment_id"]) for e in sink.events}
    assert pairs == {(f"u{i}", e) for i in range(10) for e in ("a", "b")}
    assert 20 < len(sink.events) <= 40
    # without a bound, each pair once, and explain() knows it
    sink = ListExposureSink()
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    for _ in range(3):
        client.assign_all("u1")
    assert len(sink.events) == 2 and client._exposed == {("u1", "a"), ("u1", "b")}
    assert client.explain("u1", "a")["exposure_already_logged"]
    assert not client.explain("u2", "a")["exposure_already_logged"]
