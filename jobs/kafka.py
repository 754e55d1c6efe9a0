"""Kafka in Dagster: the sink connector as a run, and its lag as a check on ``raw/<topic>``.

- ``kafka_connector`` (a job): the sink connector in a Dagster run. By default it drains (writes
  what the topics hold now into dump files, then ends: a run a schedule or a user can start
  before landing); with ``drain: false`` it runs until the run is terminated (SIGTERM: its open
  files are written and committed first).
- ``connector_lag`` (an asset check on ``raw/exposures`` and ``raw/metric_events``): the
  connector's consumer group is at most ``ABP_CONNECTOR_LAG_SECONDS`` (default 300) behind, the
  age of the oldest record it has not written yet. The ``kafka_lag`` sensor evaluates it every
  minute without starting a run (the UI shows each evaluation); it skips while no Kafka is
  configured (no ``ABP_KAFKA_BOOTSTRAP`` and no embedded broker running for ``ABP_HOME``).
"""

import os

from dagster import (
    AssetCheckEvaluation,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Config,
    DefaultSensorStatus,
    MetadataValue,
    OpExecutionContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    multi_asset_check,
    op,
    sensor,
)

from ab_pipelines.events.kafka import (
    CONNECTOR_GROUP,
    TOPIC_NAMES,
    KafkaSettings,
    KafkaSetupError,
    find_bootstrap,
    group_lag,
)
from ab_pipelines.settings import env_number, paths
from assets.resources import LakeResource

__all__ = ["connector_lag", "kafka_connector", "kafka_lag_sensor"]

CHECK = "connector_lag"


def lag_limit_seconds() -> float:
    return env_number(os.environ, "ABP_CONNECTOR_LAG_SECONDS", 300.0, float, least=0.001)


def lag_evaluations(home, group: str = CONNECTOR_GROUP) -> list[dict] | None:
    """One evaluation per raw topic (asset key, passed, metadata), or None without Kafka."""
    settings = KafkaSettings.from_env()
    bootstrap = find_bootstrap(home, settings)
    if bootstrap is None:
        return None
    limit = lag_limit_seconds()
    try:
        lag = group_lag(bootstrap, settings, group)
    except KafkaSetupError as exc:
        return [
            {
                "asset_key": AssetKey(["raw", t]),
                "passed": False,
                "metadata": {"error": MetadataValue.text(str(exc))},
            }
            for t in TOPIC_NAMES
        ]
    out = []
    for topic in TOPIC_NAMES:
        parts = {p: n for (t, p), n in lag.records.items() if t == topic}
        records = sum(parts.values())
        # The age is the group's oldest unwritten record (over both topics): a topic that is
        # caught up is not late, whatever the other one does.
        seconds = lag.seconds if records else 0.0
        out.append(
            {
                "asset_key": AssetKey(["raw", topic]),
                "passed": seconds <= limit,
                "metadata": {
                    "records_behind": MetadataValue.int(records),
                    "seconds_behind": MetadataValue.float(round(seconds, 1)),
                    "limit_seconds": MetadataValue.float(limit),
                    "per_partition": MetadataValue.json({str(p): n for p, n in parts.items()}),
                    "bootstrap": MetadataValue.text(bootstrap),
                    "group": MetadataValue.text(group),
                },
            }
        )
    return out


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            CHECK,
            asset=AssetKey(["raw", t]),
            description="The sink connector is at most ABP_CONNECTOR_LAG_SECONDS behind the topic.",
        )
        for t in TOPIC_NAMES
    ],
)
def connector_lag(lake: LakeResource):
    found = lag_evaluations(lake.paths.home)
    for topic in TOPIC_NAMES:
        ev = (
            next(e for e in found if e["asset_key"] == AssetKey(["raw", topic]))
            if found
            else {
                "asset_key": AssetKey(["raw", topic]),
                "passed": True,
                "metadata": {"kafka": MetadataValue.text("no Kafka configured: nothing to lag")},
            }
        )
        yield AssetCheckResult(check_name=CHECK, severity=AssetCheckSeverity.WARN, **ev)


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every minute: the sink connector's lag, as an evaluation of the connector_lag check.",
)
def kafka_lag_sensor(context: SensorEvaluationContext):
    found = lag_evaluations(paths().home)
    if found is None:
        return SkipReason("no Kafka configured (ABP_KAFKA_BOOTSTRAP unset, no embedded broker)")
    return SensorResult(
        asset_events=[
            AssetCheckEvaluation(check_name=CHECK, severity=AssetCheckSeverity.WARN, **ev)
            for ev in found
        ]
    )


class ConnectorConfig(Config):
    """drain: write what the topics hold now, then end; false: run until the run is terminated."""

    drain: bool = True
    group: str = CONNECTOR_GROUP


@op(description="The Kafka sink connector: topics -> dump files, exactly once.")
def sink_connector(context: OpExecutionContext, config: ConnectorConfig, lake: LakeResource):
    from ab_pipelines.events.connector import run_in_dagster

    report = run_in_dagster(lake.paths.home, drain=config.drain, group=config.group)
    context.log.info(str(report))
    context.add_output_metadata({"connector": MetadataValue.json(report)})


@job(description="Run the Kafka sink connector (drain by default; see jobs/kafka.py).")
def kafka_connector():
    sink_connector()
