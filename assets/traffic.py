"""Silver traffic assets, downstream of the blocking bronze checks."""

import datetime as dt

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

import ab_pipelines.events.traffic
from ab_pipelines.events.traffic import count_exposures
from ab_pipelines.lake import engine_tags
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, SILVER_EXPOSURE_COUNTS
from ab_pipelines.quality import record_outcomes, run_checks
from assets.common import OWNER, SPARK_RETRY, asset_key, check_results, check_specs, code_version
from assets.metadata import table_metadata
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["exposure_counts"]


@asset(
    key=asset_key(SILVER_EXPOSURE_COUNTS),
    deps=[asset_key(BRONZE_EXPOSURES)],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="silver",
    owners=[OWNER],
    kinds={"spark", "delta"},
    pool="spark",
    retry_policy=SPARK_RETRY,
    code_version=code_version(ab_pipelines.events.traffic),
    check_specs=check_specs(SILVER_EXPOSURE_COUNTS),
    description=SILVER_EXPOSURE_COUNTS.description,
)
def exposure_counts(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    """Exposures and distinct users per event day, experiment and variant, for each arrival day."""
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    spark = lake.spark(context)
    rows = sum(count_exposures(spark, lake.lake, day) for day in days)
    context.log.info(f"{rows} exposure-count rows for {len(days)} arrival day(s)")
    outcomes = [o for day in days for o in run_checks(lake.lake, SILVER_EXPOSURE_COUNTS, day, {})]
    record_outcomes(lake.lake, outcomes)
    meta = table_metadata(lake.lake, SILVER_EXPOSURE_COUNTS, days)
    meta["spark_engine"] = MetadataValue.text(engine_tags(spark)["abp/spark_engine"])
    return MaterializeResult(
        metadata=meta,
        check_results=check_results(outcomes),
    )
