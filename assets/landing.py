"""Landing assets: raw Kafka dumps -> bronze Delta tables, one partition per arrival day."""

import datetime as dt
from collections import Counter

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from ab_pipelines.events.landing import format_summary, land_day, ledger_summary
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
from assets.metadata import table_metadata
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["land_raw_dumps", "raw_topics"]

OWNER = "team:data-platform"

raw_topics = [
    AssetSpec(
        AssetKey(["raw", topic]),
        description=f"Kafka sink dumps of topic '{topic}': $ABP_HOME/raw/{topic}/date=YYYY-MM-DD/*.jsonl[.gz]",
        group_name="raw",
        owners=[OWNER],
        kinds={"kafka", "json"},
    )
    for topic in ("exposures", "metric_events")
]

_RAW = ["raw/exposures", "raw/metric_events"]
# Each landed table and the raw topics it reads.
_LANDED = [
    (BRONZE_EXPOSURES, ["raw/exposures"]),
    (BRONZE_METRIC_EVENTS, ["raw/metric_events"]),
    (BRONZE_QUARANTINE, _RAW),
    (OPS_LANDED_FILES, _RAW),
]


def _key(qualified: str) -> AssetKey:
    return AssetKey(qualified.split("."))


@multi_asset(
    specs=[
        AssetSpec(
            _key(spec.qualified),
            deps=[AssetKey(d.split("/")) for d in deps],
            group_name=spec.tier,
            owners=[OWNER],
            kinds={"spark", "delta"},
            description=spec.description,
        )
        for spec, deps in _LANDED
    ],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool="spark",
    code_version="landing-1",
)
def land_raw_dumps(context: AssetExecutionContext, lake: LakeResource):
    """Land each arrival day of the run's partitions, in day order, exactly once per record.

    One run covers a whole range (single-run backfill): one Spark session, days in order.
    """
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    registry = lake.registry()
    spark = lake.spark()
    the_lake = lake.lake
    reports = []
    for day in days:
        report = land_day(spark, the_lake, lake.paths.raw, day, registry.known_variants())
        context.log.info(f"landed {day}: {report.totals}; quarantined by reason {report.by_reason}")
        if report.rewritten_days:
            context.log.warning(
                f"landing {day} replaced later copies of its records on {report.rewritten_days}: "
                "re-materialize the analysis of those days"
            )
        reports.append(report)

    files = [f for r in reports for f in r.files]
    by_reason = Counter()
    for r in reports:
        by_reason.update(r.by_reason)
    rewritten = sorted({d.isoformat() for r in reports for d in r.rewritten_days})
    per_table = {
        BRONZE_EXPOSURES: {"landed": sum(f.landed for f in files if f.topic == "exposures")},
        BRONZE_METRIC_EVENTS: {
            "landed": sum(f.landed for f in files if f.topic == "metric_events")
        },
        BRONZE_QUARANTINE: {"quarantined": sum(f.quarantined for f in files)},
        OPS_LANDED_FILES: {
            "files": len(files),
            **{
                k: sum(r.totals[k] for r in reports)
                for k in ("read", "landed", "quarantined", "duplicates")
            },
        },
    }
    for spec, _ in _LANDED:
        meta = table_metadata(the_lake, spec, days)
        meta.update({k: MetadataValue.int(v) for k, v in per_table[spec].items()})
        meta["spark_master"] = MetadataValue.text(spark.sparkContext.master)
        if spec is BRONZE_QUARANTINE:
            meta["quarantined_by_reason"] = MetadataValue.json(dict(sorted(by_reason.items())))
        if spec is OPS_LANDED_FILES:
            meta["days"] = MetadataValue.md(
                format_summary(ledger_summary(the_lake, days), markdown=True)
            )
            meta["rewritten_days"] = MetadataValue.json(rewritten)
        yield MaterializeResult(asset_key=_key(spec.qualified), metadata=meta)
