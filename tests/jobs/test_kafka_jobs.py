"""Kafka in Dagster: the connector as a run, its lag as a check on raw/<topic> (jobs/kafka.py)."""

import gzip
import time

import orjson
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from ab_pipelines.events.kafka import EmbeddedBroker, KafkaSettings, ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.dagster]


@pytest.fixture()
def kafka_home(tmp_path, monkeypatch):
    """An ABP_HOME with its embedded broker (recorded, as `abp broker` does) and 30 exposures
    produced two minutes ago."""
    from confluent_kafka import Producer

    monkeypatch.setenv("ABP_HOME", str(tmp_path))
    monkeypatch.delenv("ABP_KAFKA_BOOTSTRAP", raising=False)
    with EmbeddedBroker(tmp_path) as broker:
        ensure_topics(broker.bootstrap, KafkaSettings())
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        then = int((time.time() - 120) * 1000)
        for i in range(30):
            value = {
                "event_id": f"e{i}",
                "user_id": f"u{i}",
                "experiment_id": "x",
                "variant": "a",
                "ts": "2026-11-02T00:00:00Z",
            }
            producer.produce("exposures", key=f"u{i}", value=orjson.dumps(value), timestamp=then)
        assert producer.flush(10) == 0
        yield tmp_path


def _evaluations(monkeypatch, limit: str) -> dict:
    from jobs.kafka import kafka_lag_sensor

    monkeypatch.setenv("ABP_CONNECTOR_LAG_SECONDS", limit)
    result = kafka_lag_sensor(build_sensor_context())
    return {ev.asset_key: ev for ev in result.asset_events}


def test_the_sensor_reports_the_lag_as_check_evaluations(kafka_home, monkeypatch):
    found = _evaluations(monkeypatch, "60")
    exposures, metrics = (
        found[AssetKey(["raw", "exposures"])],
        found[AssetKey(["raw", "metric_events"])],
    )
    assert not exposures.passed  # 30 records unwritten for two minutes > 60 s
    assert exposures.metadata["records_behind"].value == 30
    assert exposures.metadata["seconds_behind"].value > 100
    assert metrics.passed and metrics.metadata["records_behind"].value == 0
    assert _evaluations(monkeypatch, "3600")[AssetKey(["raw", "exposures"])].passed


def test_the_sensor_skips_without_kafka(tmp_path, monkeypatch):
    from jobs.kafka import kafka_lag_sensor

    monkeypatch.setenv("ABP_HOME", str(tmp_path))
    monkeypatch.delenv("ABP_KAFKA_BOOTSTRAP", raising=False)
    result = kafka_lag_sensor(build_sensor_context())
    assert "no Kafka configured" in str(result.skip_message)


def test_the_connector_job_drains_into_dumps_and_the_check_passes_after(kafka_home, monkeypatch):
    from jobs.definitions import defs

    instance = DagsterInstance.ephemeral()
    result = defs.get_job_def("kafka_connector").execute_in_process(instance=instance)
    assert result.success
    files = sorted((kafka_home / "raw" / "exposures").glob("date=*/exposures+*.jsonl.gz"))
    lines = [
        orjson.loads(line) for f in files for line in gzip.decompress(f.read_bytes()).splitlines()
    ]
    assert sorted(line["value"]["event_id"] for line in lines) == sorted(f"e{i}" for i in range(30))
    assert all(
        f.parent.name == f"date={time.strftime('%Y-%m-%d', time.gmtime(time.time() - 120))}"
        for f in files
    )
    found = _evaluations(monkeypatch, "60")
    assert all(ev.passed for ev in found.values())
    assert found[AssetKey(["raw", "exposures"])].metadata["records_behind"].value == 0
