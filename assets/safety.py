"""The safety plane in Dagster: the ops/alerts asset, and sensors that deliver and catch failures.

- ``ops/alerts`` (per analysis day, after ``gold/experiment_results``): alert episodes, the
  notification outbox, automatic kills (``ab_pipelines.safety.day``). In the analyze job, so every
  analysed day is checked in the same run.
- ``deliver_alerts`` sensor (every 60 s): retries pending notifications (a webhook that was down
  gets its alerts when it is back).
- ``run_failure_alerts`` sensor: a failed Dagster run opens a ``run_failed`` alert.
"""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SkipReason,
    asset,
    run_failure_sensor,
    sensor,
)

import ab_pipelines.safety.alerts
import ab_pipelines.safety.conditions
import ab_pipelines.safety.day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    OPS_ALERTS,
)
from ab_pipelines.safety import deliver_pending, notifiers_from_env, open_alerts
from ab_pipelines.safety.day import alert_run_failure, safety_day
from ab_pipelines.settings import paths
from assets.clock import run_clock
from assets.common import OWNER, asset_key, code_version
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["alerts", "deliver_alerts", "run_failure_alerts"]

DELIVERY_INTERVAL_SECONDS = 60


@asset(
    key=asset_key(OPS_ALERTS),
    deps=[asset_key(GOLD_EXPERIMENT_RESULTS), asset_key(GOLD_SRM), asset_key(GOLD_HEALTH)],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="safety",
    owners=[OWNER],
    kinds={"delta"},
    code_version=code_version(
        ab_pipelines.safety.alerts, ab_pipelines.safety.conditions, ab_pipelines.safety.day
    ),
    description=OPS_ALERTS.description
    + " Also queues notifications and kills auto_kill experiments whose guardrail breach is "
    "confirmed on their latest look.",
)
def alerts(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    """Per analysis day: open/extend/close alerts, notify, and kill on a confirmed breach."""
    days = sorted(dt.date.fromisoformat(k) for k in context.partition_keys)
    registry, notifiers = lake.registry(), notifiers_from_env(lake.paths, context.log)
    now = run_clock(context)  # the demo's simulated time, else None: the settings' clock
    opened, closed, kills = [], [], []
    for day in days:
        s = safety_day(
            lake.paths,
            lake.lake,
            registry,
            day,
            notifiers,
            now=now,
            registry_root=lake.registry_root or None,
        )
        opened += [a.alert_id for a in s.reconciled.opened]
        closed += [a.alert_id for a in s.reconciled.closed]
        for k in s.kills:
            kills.append({"experiment_id": k.experiment_id, "reason": k.reason})
            context.log.warning(
                f"AUTO-KILL {k.experiment_id}: {k.reason} (edge config v{k.config_version})"
            )
        if s.delivery.failed:
            context.log.warning(
                f"{day}: {len(s.delivery.failed)} notification(s) failed; they will be retried"
            )
    now_open = open_alerts(lake.lake)
    return MaterializeResult(
        metadata={
            "opened": MetadataValue.json(opened),
            "closed": MetadataValue.json(closed),
            "auto_kills": MetadataValue.json(kills),
            "open_alerts": MetadataValue.int(len(now_open)),
            "open": MetadataValue.md(
                "\n".join(
                    f"- **{a.kind}** {a.experiment_id} {a.subject}: {a.message}" for a in now_open
                )
                or "(none)"
            ),
        }
    )


@sensor(
    minimum_interval_seconds=DELIVERY_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Retry pending alert notifications (webhook, file, log) with backoff.",
)
def deliver_alerts(context: SensorEvaluationContext):
    home = paths()
    lake = Lake(home)
    result = deliver_pending(lake, notifiers_from_env(home, context.log))
    return SkipReason(
        f"delivered {len(result.delivered)}, failed {len(result.failed)}, "
        f"waiting {len(result.waiting)}"
    )


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="A failed run opens a run_failed alert (and notifies).",
)
def run_failure_alerts(context: RunFailureSensorContext):
    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    alert_run_failure(paths(), run.run_id, run.job_name, message, context.log)
