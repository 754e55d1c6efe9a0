"""The Definitions object `dagster dev` loads (workspace.yaml): assets, jobs, schedules, sensors."""

import datetime as dt
import os
import warnings

from dagster import (
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    asset_sensor,
    build_last_update_freshness_checks,
    build_schedule_from_partitioned_job,
    build_sensor_for_freshness_checks,
    define_asset_job,
    schedule,
)

from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_EXPERIMENT_RESULTS,
    OPS_ALERTS,
)
from assets.analysis import LATE_ARRIVAL_DAYS, analysis_sql, experiment_results
from assets.common import asset_key
from assets.config_plane import edge_config
from assets.landing import land_raw_dumps, raw_topics
from assets.partitions import daily_partitions
from assets.resources import LakeResource
from assets.safety import alerts, deliver_alerts, run_failure_alerts
from assets.traffic import exposure_counts
from jobs.kafka import connector_lag, kafka_connector, kafka_lag_sensor
from jobs.maintenance import maintain_tables, maintenance_schedule
from jobs.recovery import dead_runs
from jobs.sensors import new_dump_files, registry_changed

__all__ = ["analyze_job", "daily_job", "defs", "land_stream_job", "publish_config_job"]

# Everything the platform materializes for a day; later stages join this selection.
daily_job = define_asset_job(
    "daily",
    selection=AssetSelection.assets(land_raw_dumps, exposure_counts),
    partitions_def=daily_partitions,
    description="Land, check and analyze one day (or a range, in one run).",
)

# The streaming path: only the landing step (and its checks), only files not landed yet.
land_stream_job = define_asset_job(
    "land_stream",
    selection=AssetSelection.assets(land_raw_dumps),
    partitions_def=daily_partitions,
    config={"ops": {"land_raw_dumps": {"config": {"new_files_only": True}}}},
    description="Land the new dump files of one arrival day (requested by the new_dump_files sensor).",
)

# Analysis of day D, once the arrivals of D + late_arrival_days are landed (gold day D depends on
# bronze D .. D + late through a partition mapping, which the UI shows).
analyze_job = define_asset_job(
    "analyze",
    selection=AssetSelection.assets(analysis_sql, experiment_results, alerts),
    partitions_def=daily_partitions,
    description="Analyse days whose late window closed: the SQL models, sufficient statistics, SRM, "
    "health, results and decisions; then alerts, notifications and automatic kills.",
)


@schedule(job=analyze_job, cron_schedule="0 1 * * *", execution_timezone="UTC")
def analyze_schedule(context: ScheduleEvaluationContext):
    """At 01:00 UTC, after the 00:30 landing of yesterday: analyse the day whose late window closed."""
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    day = now.date() - dt.timedelta(days=1 + LATE_ARRIVAL_DAYS)
    return RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())


# The safety pass alone, for results materialized outside the analyze job (e.g. recomputed by hand).
alerts_job = define_asset_job(
    "alerts",
    selection=AssetSelection.assets(alerts),
    partitions_def=daily_partitions,
    description="Alerts, notifications and automatic kills for an analysis day.",
)


@asset_sensor(
    asset_key=asset_key(GOLD_EXPERIMENT_RESULTS),
    job=alerts_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="New results of a day that the same run did not check for alerts: run the safety "
    "pass for that day.",
)
def alerts_on_new_results(context, asset_event):
    event = asset_event.dagster_event
    run = context.instance.get_run_by_id(asset_event.run_id)
    checked = run is not None and (
        run.job_name == analyze_job.name
        or (run.asset_selection is not None and asset_key(OPS_ALERTS) in run.asset_selection)
    )
    if checked or event is None or event.partition is None:
        return SkipReason("the run that wrote these results also ran the safety pass")
    run_key = f"alerts:{asset_event.run_id}:{event.partition}"
    return RunRequest(run_key=run_key, partition_key=event.partition)


# The config plane: compile, sign and serve the edge config (requested by registry_changed).
publish_config_job = define_asset_job(
    "publish_config",
    selection=AssetSelection.assets(edge_config),
    description="Validate the registry and publish the signed edge config (a new version only on change).",
)

# At 00:30 UTC, the day that just ended (its dumps are complete).
daily_schedule = build_schedule_from_partitioned_job(daily_job, hour_of_day=0, minute_of_hour=30)

# No new dumps (raw) or no new landing (bronze) for this long is a failed check.
# (Freshness checks are "superseded" by FreshnessPolicy, which is still a preview that OSS must
# enable by hand; checks show pass/fail in the UI today.)
FRESHNESS_HOURS = float(os.environ.get("ABP_FRESHNESS_HOURS", "26"))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    freshness_checks = build_last_update_freshness_checks(
        assets=[
            *(s.key for s in raw_topics),
            asset_key(BRONZE_EXPOSURES),
            asset_key(BRONZE_METRIC_EVENTS),
        ],
        lower_bound_delta=dt.timedelta(hours=FRESHNESS_HOURS),
    )
    # Results come a day later than landing (the late-arrival wait), so they get a day more.
    freshness_checks += build_last_update_freshness_checks(
        assets=[asset_key(GOLD_EXPERIMENT_RESULTS)],
        lower_bound_delta=dt.timedelta(hours=FRESHNESS_HOURS + 24),
    )
    freshness_sensor = build_sensor_for_freshness_checks(freshness_checks=freshness_checks)

defs = Definitions(
    assets=[
        *raw_topics,
        land_raw_dumps,
        exposure_counts,
        analysis_sql,
        experiment_results,
        alerts,
        edge_config,
    ],
    asset_checks=[*freshness_checks, connector_lag],
    jobs=[
        daily_job,
        land_stream_job,
        analyze_job,
        alerts_job,
        publish_config_job,
        maintain_tables,
        kafka_connector,
    ],
    schedules=[daily_schedule, analyze_schedule, maintenance_schedule],
    sensors=[
        new_dump_files,
        registry_changed,
        freshness_sensor,
        deliver_alerts,
        run_failure_alerts,
        alerts_on_new_results,
        dead_runs,
        kafka_lag_sensor,
    ],
    resources={"lake": LakeResource()},
)
