"""Kafka settings, the embedded broker's life, topics and a group's lag (ab_pipelines.events.kafka)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ab_pipelines.events.kafka import (
    EmbeddedBroker,
    KafkaSettings,
    KafkaSetupError,
    broker_file,
    ensure_topics,
    group_lag,
    resolve_bootstrap,
    running_broker,
)
from ab_pipelines.processes import alive

ABP = os.path.join(os.path.dirname(sys.executable), "abp")


# ---- settings (no broker) -------------------------------------------------------------------
def test_settings_default_to_the_embedded_broker():
    s = KafkaSettings.from_env({})
    assert s.embedded and s.partitions == 4 and s.retention_hours == 168 and dict(s.conf) == {}


def test_settings_read_bootstrap_and_client_conf():
    s = KafkaSettings.from_env(
        {
            "ABP_KAFKA_BOOTSTRAP": "k1:9092,k2:9093",
            "ABP_KAFKA_CONF": "security.protocol=SASL_SSL; sasl.mechanism=PLAIN;",
            "ABP_KAFKA_PARTITIONS": "12",
        }
    )
    assert s.bootstrap == "k1:9092,k2:9093" and not s.embedded
    assert dict(s.conf) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert s.partitions == 12


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ABP_KAFKA_BOOTSTRAP": "kafka"}, "ABP_KAFKA_BOOTSTRAP"),
        ({"ABP_KAFKA_BOOTSTRAP": "kafka:x"}, "ABP_KAFKA_BOOTSTRAP"),
        ({"ABP_KAFKA_CONF": "security.protocol"}, "ABP_KAFKA_CONF"),
        ({"ABP_KAFKA_CONF": "bootstrap.servers=x:1"}, "ABP_KAFKA_CONF"),
        ({"ABP_KAFKA_PARTITIONS": "0"}, "ABP_KAFKA_PARTITIONS"),
        ({"ABP_KAFKA_RETENTION_HOURS": "a week"}, "ABP_KAFKA_RETENTION_HOURS"),
    ],
)
def test_a_malformed_setting_is_one_sentence_naming_it(env, named):
    with pytest.raises(KafkaSetupError) as err:
        KafkaSettings.from_env(env)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_no_broker_running_says_how_to_get_one(tmp_path):
    with pytest.raises(KafkaSetupError, match="abp broker"):
        resolve_bootstrap(tmp_path, KafkaSettings())
    assert resolve_bootstrap(tmp_path, KafkaSettings(bootstrap="k:1")) == "k:1"


# ---- the broker -----------------------------------------------------------------------------
needs_broker = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as b:
        ensure_topics(b.bootstrap, KafkaSettings())
        yield b


@needs_broker
def test_the_broker_is_recorded_while_it_runs_and_gone_after(tmp_path):
    b = EmbeddedBroker(tmp_path).start()
    pid = b.pid
    try:
        assert running_broker(tmp_path) == b.bootstrap
        assert os.getpgid(pid) == pid  # a process group of its own
    finally:
        b.stop()
    assert not alive(pid)
    assert running_broker(tmp_path) is None and not broker_file(tmp_path).exists()


@needs_broker
def test_the_broker_stops_without_waiting_for_a_connected_client(tmp_path):
    """tansu waits on SIGTERM for connected clients to go; the embedded broker (memory storage:
    nothing to flush) is killed after a short grace instead. Every demo waited 5 s here."""
    from confluent_kafka import Producer

    b = EmbeddedBroker(tmp_path).start()
    pid = b.pid
    ensure_topics(b.bootstrap, KafkaSettings())
    producer = Producer({"bootstrap.servers": b.bootstrap, "log_level": 0})
    producer.produce("exposures", b"{}")
    assert producer.flush(10) == 0  # connected, and left open
    t0 = time.monotonic()
    b.stop()
    assert time.monotonic() - t0 < 3  # the old 5 s grace ran out before tansu let go
    assert not alive(pid)
    del producer


@needs_broker
def test_the_broker_dies_with_a_killed_parent(tmp_path):
    """A parent SIGKILLed (no cleanup runs) still takes its broker with it."""
    code = (
        "import sys, time; from pathlib import Path;"
        "from ab_pipelines.events.kafka import EmbeddedBroker;"
        f"b = EmbeddedBroker(Path({str(tmp_path)!r})).start(); print(b.pid, flush=True);"
        "time.sleep(600)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(parent.stdout.readline())
        assert alive(child)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the broker outlived its killed parent"
    assert running_broker(tmp_path) is None  # the record names a dead process


@needs_broker
def test_topics_are_created_once_and_a_wrong_partition_count_is_refused(broker):
    ensure_topics(broker.bootstrap, KafkaSettings())  # again: nothing to do
    with pytest.raises(KafkaSetupError) as err:
        ensure_topics(broker.bootstrap, KafkaSettings(partitions=3))
    msg = str(err.value)
    assert "exposures has 4 partitions" in msg and "ABP_KAFKA_PARTITIONS says 3" in msg


@needs_broker
def test_an_unreachable_broker_and_an_unknown_client_setting_are_named():
    with pytest.raises(KafkaSetupError, match="unreachable.*ABP_KAFKA_BOOTSTRAP"):
        ensure_topics("127.0.0.1:1", KafkaSettings(bootstrap="127.0.0.1:1"), timeout=2)
    with pytest.raises(KafkaSetupError, match="ABP_KAFKA_CONF.*no.such.setting"):
        ensure_topics("127.0.0.1:1", KafkaSettings(conf={"no.such.setting": "1"}), timeout=2)


@needs_broker
def test_group_lag_counts_records_and_age_past_the_committed_offsets(broker):
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = "lag_probe"
    ensure_topics(broker.bootstrap, KafkaSettings(partitions=2), topics=(topic,))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    then = int((time.time() - 60) * 1000)
    for _batch in range(3):  # several batches: tansu's "latest offset" answer is short of them
        for i in range(100):
            producer.produce(topic, key=f"u{i}", value=b"{}", partition=i % 2, timestamp=then)
        producer.flush()
    lag = group_lag(broker.bootstrap, KafkaSettings(), "g1", topics=(topic,))
    assert lag.total == 300 and lag.records == {(topic, 0): 150, (topic, 1): 150}
    assert 55 < lag.seconds < 600
    committer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g1"})
    committer.commit(
        offsets=[TopicPartition(topic, 0, 150), TopicPartition(topic, 1, 40)], asynchronous=False
    )
    committer.close()
    lag = group_lag(broker.bootstrap, KafkaSettings(), "g1", topics=(topic,))
    assert lag.records == {(topic, 0): 0, (topic, 1): 110}
    assert lag.committed == {(topic, 0): 150, (topic, 1): 40}


@needs_broker
def test_abp_broker_runs_until_sigterm_and_simulate_produces_into_it(tmp_path):
    env = {**os.environ, "ABP_HOME": str(tmp_path), "ABP_KAFKA_BOOTSTRAP": ""}
    proc = subprocess.Popen(
        [ABP, "broker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        first = proc.stdout.readline()
        assert "Kafka broker (tansu, embedded) on 127.0.0.1:" in first, first
        record = json.loads(broker_file(tmp_path).read_text())
        out = subprocess.run(
            [ABP, "simulate", "--start", "2026-11-02", "--users", "300", "--to-kafka"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert (
            f"to Kafka at {record['bootstrap']}" in out.stdout and "all acknowledged" in out.stdout
        )
        # Nothing was written as dumps: the connector's job.
        assert not list((tmp_path / "raw").glob("*/date=*/*.jsonl*"))
        lag = group_lag(record["bootstrap"], KafkaSettings(), "nobody")
        produced = re.search(r"exposures: (\d+), metric_events: (\d+)", out.stdout)
        assert lag.total == int(produced[1]) + int(produced[2]) > 0
        again = subprocess.run([ABP, "broker"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "already runs" in again.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0 and "broker stopped" in rest
    assert not alive(record["pid"]) and not broker_file(tmp_path).exists()


def test_simulate_to_kafka_without_a_broker_is_one_sentence(tmp_path):
    env = {**os.environ, "ABP_HOME": str(tmp_path), "ABP_KAFKA_BOOTSTRAP": ""}
    out = subprocess.run(
        [ABP, "simulate", "--start", "2026-11-02", "--users", "300", "--to-kafka"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no Kafka broker is running" in out.stderr
    assert "Traceback" not in out.stderr
