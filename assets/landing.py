"""Landing assets: raw Kafka dumps -> bronze Delta tables, one partition per arrival day.

The landing step also runs the bronze tables' Great Expectations checks on what it committed; they
are blocking, so a failed check stops every asset downstream of bronze in the same run.
"""

import datetime as dt
from collections import Counter

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

import ab_pipelines.events.dumps
import ab_pipelines.events.landing
import ab_pipelines.events.parse
import ab_pipelines.events.schema
from ab_pipelines.config import RegistryError
from ab_pipelines.events.landing import LandingError, format_summary, land_day, ledger_summary
from ab_pipelines.lake import engine_tags
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
from ab_pipelines.quality import record_outcomes, run_checks
from assets.common import OWNER, SPARK_RETRY, asset_key, check_results, check_specs, code_version
from assets.metadata import table_metadata
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["LandingConfig", "land_raw_dumps", "raw_topics"]

RAW_TOPICS = ("exposures", "metric_events")

raw_topics = [
    AssetSpec(
        AssetKey(["raw", topic]),
        description=f"Kafka sink dumps of topic '{topic}': "
        f"$ABP_HOME/raw/{topic}/date=YYYY-MM-DD/<topic>+<partition>+<offset>.jsonl[.gz]",
        group_name="raw",
        owners=[OWNER],
        kinds={"kafka", "json"},
    )
    for topic in RAW_TOPICS
]

_ALL_RAW = [AssetKey(["raw", t]) for t in RAW_TOPICS]
# Each landed table and the raw topics it reads.
_LANDED = [
    (BRONZE_EXPOSURES, [AssetKey(["raw", "exposures"])]),
    (BRONZE_METRIC_EVENTS, [AssetKey(["raw", "metric_events"])]),
    (BRONZE_QUARANTINE, _ALL_RAW),
    (OPS_LANDED_FILES, _ALL_RAW),
]
_CHECKED = (BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS)


class LandingConfig(Config):
    """new_files_only: land only files not yet in ops.landed_files (the streaming path)."""

    new_files_only: bool = False


@multi_asset(
    specs=[
        AssetSpec(
            asset_key(spec),
            deps=deps,
            group_name=spec.tier,
            owners=[OWNER],
            kinds={"spark", "delta"},
            description=spec.description,
        )
        for spec, deps in _LANDED
    ],
    check_specs=[c for spec in _CHECKED for c in check_specs(spec)],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool="spark",
    retry_policy=SPARK_RETRY,
    code_version=code_version(
        ab_pipelines.events.parse,
        ab_pipelines.events.schema,
        ab_pipelines.events.dumps,
        ab_pipelines.events.landing,
    ),
)
def land_raw_dumps(context: AssetExecutionContext, config: LandingConfig, lake: LakeResource):
    """Land each arrival day of the run's partitions, in day order, exactly once per record.

    One run covers a whole range (single-run backfill): one Spark session, days in order.
    """
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    try:
        known = lake.registry().known_variants()
    except RegistryError as exc:
        raise Failure(f"the registry has problems: {exc}", allow_retries=False) from None
    spark = lake.spark(context)
    the_lake = lake.lake
    reports, outcomes = [], []
    for day in days:
        try:
            report = land_day(
                spark, the_lake, lake.paths.raw, day, known, new_files_only=config.new_files_only
            )
        except LandingError as exc:
            raise Failure(str(exc), allow_retries=False) from None
        context.log.info(
            f"landed {day} ({report.mode}): {report.totals}; quarantined {report.by_reason}"
        )
        if report.rewritten_days:
            context.log.warning(
                f"landing {day} replaced later copies of its records on {report.rewritten_days}: "
                "re-materialize the analysis of those days"
            )
        reports.append(report)
        for spec in _CHECKED:
            outcomes.extend(run_checks(the_lake, spec, day, known))
    record_outcomes(the_lake, outcomes)

    files = [f for r in reports for f in r.files]
    by_reason = Counter()
    for r in reports:
        by_reason.update(r.by_reason)
    per_table = {
        BRONZE_EXPOSURES: {"landed": sum(f.landed for f in files if f.topic == "exposures")},
        BRONZE_METRIC_EVENTS: {
            "landed": sum(f.landed for f in files if f.topic == "metric_events")
        },
        BRONZE_QUARANTINE: {"quarantined": sum(f.quarantined for f in files)},
        OPS_LANDED_FILES: {
            "files": len(files),
            **{
                k: sum(getattr(f, k) for f in files)
                for k in ("read", "landed", "quarantined", "duplicates")
            },
        },
    }
    for spec, _ in _LANDED:
        meta = table_metadata(the_lake, spec, days)
        meta.update({k: MetadataValue.int(v) for k, v in per_table[spec].items()})
        meta["spark_engine"] = MetadataValue.text(engine_tags(spark)["abp/spark_engine"])
        meta["mode"] = MetadataValue.text(", ".join(sorted({r.mode for r in reports})))
        if spec is BRONZE_QUARANTINE:
            meta["quarantined_by_reason"] = MetadataValue.json(dict(sorted(by_reason.items())))
        if spec is OPS_LANDED_FILES:
            meta["days"] = MetadataValue.md(
                format_summary(ledger_summary(the_lake, days), markdown=True)
            )
            meta["rewritten_days"] = MetadataValue.json(
                sorted({d.isoformat() for r in reports for d in r.rewritten_days})
            )
        yield MaterializeResult(asset_key=asset_key(spec), metadata=meta)
    yield from check_results(outcomes)
