"""Gold analysis assets: day D is computed once the arrivals of D + late_arrival_days have landed."""

import datetime as dt

from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

import ab_pipelines.analysis.sql_models
import ab_pipelines.analysis.sufficient_stats
from ab_pipelines.analysis.sql_models import MODELS_DIR
from ab_pipelines.analysis.sufficient_stats import write_day
from ab_pipelines.config import RegistryError, load_registry
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, GOLD_SUFFICIENT_STATS
from assets.common import OWNER, SPARK_RETRY, asset_key, code_version
from assets.metadata import table_metadata
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["LATE_ARRIVAL_DAYS", "sufficient_stats"]


def _late_arrival_days() -> int:
    """The longest late-arrival wait in the registry: day D reads arrivals up to D + this."""
    try:
        return max(
            (e.analysis.late_arrival_days for e in load_registry().experiments.values()), default=1
        )
    except RegistryError:
        return 1


LATE_ARRIVAL_DAYS = _late_arrival_days()
# Day D of gold depends on the bronze arrival days D .. D + late (and, cumulatively, all before).
_LATE = TimeWindowPartitionMapping(start_offset=0, end_offset=LATE_ARRIVAL_DAYS)
_SQL_VERSION = "".join(p.read_text() for p in sorted(MODELS_DIR.glob("*.sql")))


@asset(
    key=asset_key(GOLD_SUFFICIENT_STATS),
    deps=[
        AssetDep(asset_key(BRONZE_EXPOSURES), partition_mapping=_LATE),
        AssetDep(asset_key(BRONZE_METRIC_EVENTS), partition_mapping=_LATE),
    ],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="gold",
    owners=[OWNER],
    kinds={"spark", "delta"},
    pool="spark",
    retry_policy=SPARK_RETRY,
    code_version=code_version(
        ab_pipelines.analysis.sql_models, ab_pipelines.analysis.sufficient_stats, extra=_SQL_VERSION
    ),
    description=GOLD_SUFFICIENT_STATS.description,
)
def sufficient_stats(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    """Per analysis day: every started experiment's sufficient statistics, from the SQL models."""
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    spark, registry = lake.spark(), lake.registry()
    crossovers: dict[str, int] = {}
    for day in days:
        result = write_day(spark, lake.lake, registry, day)
        for e in result.experiments:
            crossovers[e.experiment_id] = e.crossovers
        context.log.info(f"{day}: {len(result.experiments)} experiment(s) analysed")
    meta = table_metadata(lake.lake, GOLD_SUFFICIENT_STATS, days)
    meta["crossovers_last_day"] = MetadataValue.json(crossovers)
    return MaterializeResult(metadata=meta)
