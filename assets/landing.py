"""Landing assets: raw Kafka dumps -> bronze Delta tables, one partition per arrival day."""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from ab_pipelines.events.landing import LandingReport, land_day
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
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


def _landing_table(reports: list[LandingReport]) -> str:
    lines = [
        "| arrival day | files | read | landed | quarantined | duplicates |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        t = r.totals
        lines.append(
            f"| {r.day} | {len(r.files)} | {t['read']} | {t['landed']} | {t['quarantined']} | {t['duplicates']} |"
        )
    return "\n".join(lines)


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
    reports = []
    for day in days:
        report = land_day(spark, lake.lake, lake.paths.raw, day, registry.known_variants())
        t = report.totals
        context.log.info(f"landed {day}: {t} quarantined by reason {report.by_reason}")
        reports.append(report)
    totals = {
        k: sum(r.totals[k] for r in reports)
        for k in ("read", "landed", "quarantined", "duplicates")
    }
    if totals["read"] != totals["landed"] + totals["quarantined"] + totals["duplicates"]:
        raise RuntimeError(f"read != landed + quarantined + duplicates: {totals}")
    by_reason: dict[str, int] = {}
    for r in reports:
        for k, v in r.by_reason.items():
            by_reason[k] = by_reason.get(k, 0) + v
    common = {
        **{k: MetadataValue.int(v) for k, v in totals.items()},
        "days": MetadataValue.md(_landing_table(reports)),
        "quarantined_by_reason": MetadataValue.json(by_reason),
        "spark_master": MetadataValue.text(spark.sparkContext.master),
    }
    for spec, _ in _LANDED:
        meta = dict(common)
        meta["path"] = MetadataValue.path(str(lake.lake.path(spec)))
        version = lake.lake.version(spec)
        if version is not None:
            meta["delta_version"] = MetadataValue.int(version)
        yield MaterializeResult(asset_key=_key(spec.qualified), metadata=meta)
