"""Gold analysis assets: day D is computed once the arrivals of D + late_arrival_days have landed.

Two steps (``ab_pipelines.analysis.day``):

- ``analysis_sql`` (Spark, pool "spark"): one asset per SQL model of ``dbt_like_sql/``, whose
  dependencies come from its ``{{ ref() }}`` calls (as dagster-dbt does for dbt models), ending
  in ``gold/sufficient_stats``; the same pass writes ``gold/srm`` and ``gold/health``, and
  ``gold/interactions`` from the interaction cells each experiment's ``sufficient_stats`` sums
  beside its statistics (its values by the arms of the experiments it is paired with, read from
  their ``analysed_units``). The
  intermediate models are Spark views inside the run (not stored): their assets carry the SQL.
- ``gold/experiment_results`` (numpy, no Spark): estimates, adjusted p-values, guardrails and the
  decision, from the sufficient statistics and the SRM test; the same step writes the table
  ``ops.experiment_days``, the state each experiment was decided in.
"""

import datetime as dt

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    multi_asset,
)

import ab_pipelines.analysis.day
import ab_pipelines.analysis.interactions
import ab_pipelines.analysis.results
import ab_pipelines.analysis.sql_models
import ab_pipelines.analysis.sufficient_stats
from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.analysis.interactions import SOURCE_MODELS
from ab_pipelines.analysis.sql_models import (
    MODELS_DIR,
    load_models,
    models_reading,
    topological_order,
)
from ab_pipelines.analysis.sufficient_stats import EXPERIMENT_SOURCES
from ab_pipelines.config import RegistryError, load_registry
from ab_pipelines.lake import engine_tags
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_BANDIT_WEIGHTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_INTERACTIONS,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_EXPERIMENT_DAYS,
)
from assets.common import OWNER, SPARK_RETRY, asset_key, code_version
from assets.metadata import table_metadata
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["LATE_ARRIVAL_DAYS", "analysis_sql", "experiment_results"]


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
_MODELS = load_models(MODELS_DIR)
_EXPERIMENT_MODELS = models_reading(_MODELS, EXPERIMENT_SOURCES)
# Every experiment's models, then the day-level ones that read what those leave behind (the
# order the step yields them in: Dagster wants dependencies first).
_ORDER = [
    *_EXPERIMENT_MODELS,
    *(n for n in topological_order(_MODELS) if n not in _EXPERIMENT_MODELS),
]
_SQL_VERSION = "".join(p.read_text() for p in sorted(MODELS_DIR.glob("*.sql")))
# The sources the models read ({{ source() }}; filtered by the Python step) and their bronze tables.
_SOURCES = {"exposures": BRONZE_EXPOSURES, "events": BRONZE_METRIC_EVENTS}
_FINAL_MODEL = "sufficient_stats"
_CODE = code_version(
    ab_pipelines.analysis.sql_models,
    ab_pipelines.analysis.sufficient_stats,
    ab_pipelines.analysis.results,
    ab_pipelines.analysis.day,
    ab_pipelines.analysis.interactions,
    extra=_SQL_VERSION,
)


def _model_key(name: str) -> AssetKey:
    return asset_key(GOLD_SUFFICIENT_STATS) if name == _FINAL_MODEL else AssetKey(["sql", name])


def _model_spec(name: str) -> AssetSpec:
    model = _MODELS[name]
    deps = [AssetDep(_model_key(r)) for r in model.refs]
    deps += [
        AssetDep(asset_key(_SOURCES[s]), partition_mapping=_LATE)
        for s in model.sources
        if s in _SOURCES
    ]
    # A source cut from experiments' models (the partners' arms, read by sufficient_stats).
    deps += [AssetDep(_model_key(SOURCE_MODELS[s])) for s in model.sources if s in SOURCE_MODELS]
    first_line = model.template.strip().splitlines()[0].lstrip("-{# ").strip()
    final = name == _FINAL_MODEL
    return AssetSpec(
        _model_key(name),
        deps=deps,
        description=GOLD_SUFFICIENT_STATS.description
        if final
        else f"SQL model {model.path.name} (a Spark view inside the analysis run): {first_line}",
        group_name="gold" if final else "analysis_sql",
        owners=[OWNER],
        kinds={"spark", "delta"} if final else {"spark", "sql"},
        code_version=_CODE,
    )


_SPECS = [
    *(_model_spec(n) for n in _ORDER),
    AssetSpec(
        asset_key(GOLD_SRM),
        deps=[AssetDep(_model_key("analysed_units"))],
        description=GOLD_SRM.description,
        group_name="gold",
        owners=[OWNER],
        kinds={"delta"},
        code_version=_CODE,
    ),
    AssetSpec(
        asset_key(GOLD_INTERACTIONS),
        deps=[AssetDep(_model_key(_FINAL_MODEL))],
        description=GOLD_INTERACTIONS.description,
        group_name="gold",
        owners=[OWNER],
        kinds={"numpy", "delta"},
        code_version=_CODE,
    ),
    AssetSpec(
        asset_key(GOLD_HEALTH),
        deps=[AssetDep(_model_key("first_exposures")), AssetDep(asset_key(GOLD_SUFFICIENT_STATS))],
        description=GOLD_HEALTH.description,
        group_name="gold",
        owners=[OWNER],
        kinds={"delta"},
        code_version=_CODE,
    ),
]


@multi_asset(
    name="analysis_sql",
    specs=_SPECS,
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool="spark",
    retry_policy=SPARK_RETRY,
    can_subset=False,
    description="The dbt_like_sql models in Spark SQL, per analysis day and experiment.",
)
def analysis_sql(context: AssetExecutionContext, lake: LakeResource):
    """Per analysis day: every started experiment's sufficient statistics, SRM and health."""
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    spark, registry = lake.spark(context), lake.registry()
    summaries = []
    for day in days:
        s = stats_day(spark, lake.lake, registry, day)
        summaries.append(s)
        context.log.info(
            f"{day}: {s.rows} (SRM flagged: {', '.join(s.srm_flagged) or 'none'}; "
            f"health flags: {len(s.health_flagged)}; "
            f"interactions flagged: {', '.join(s.interactions_flagged) or 'none'})"
        )
    for name in _ORDER:
        if name == _FINAL_MODEL:
            continue
        yield MaterializeResult(
            asset_key=_model_key(name),
            metadata={
                "path": MetadataValue.path(str(_MODELS[name].path)),
                "sql": MetadataValue.md(f"```sql\n{_MODELS[name].template}\n```"),
            },
        )
    stats_meta = table_metadata(lake.lake, GOLD_SUFFICIENT_STATS, days)
    stats_meta["spark_engine"] = MetadataValue.text(engine_tags(spark)["abp/spark_engine"])
    yield MaterializeResult(asset_key=asset_key(GOLD_SUFFICIENT_STATS), metadata=stats_meta)
    last = summaries[-1]
    srm_meta = table_metadata(lake.lake, GOLD_SRM, days)
    srm_meta["flagged_last_day"] = MetadataValue.json(list(last.srm_flagged))
    yield MaterializeResult(asset_key=asset_key(GOLD_SRM), metadata=srm_meta)
    health_meta = table_metadata(lake.lake, GOLD_HEALTH, days)
    health_meta["flagged_last_day"] = MetadataValue.json(list(last.health_flagged))
    yield MaterializeResult(asset_key=asset_key(GOLD_HEALTH), metadata=health_meta)
    interactions_meta = table_metadata(lake.lake, GOLD_INTERACTIONS, days)
    interactions_meta["flagged_last_day"] = MetadataValue.json(list(last.interactions_flagged))
    yield MaterializeResult(asset_key=asset_key(GOLD_INTERACTIONS), metadata=interactions_meta)


@asset(
    key=asset_key(GOLD_EXPERIMENT_RESULTS),
    deps=[asset_key(GOLD_SUFFICIENT_STATS), asset_key(GOLD_SRM)],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="gold",
    owners=[OWNER],
    kinds={"numpy", "delta"},
    code_version=_CODE,
    description=GOLD_EXPERIMENT_RESULTS.description,
)
def experiment_results(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    """Per analysis day: estimates, adjusted p-values, guardrails and each experiment's decision,
    and the state each experiment was decided in (ops/experiment_days)."""
    days = [dt.date.fromisoformat(k) for k in context.partition_keys]
    registry = lake.registry()
    decisions: dict[str, str] = {}
    for day in days:
        s = results_day(lake.lake, registry, day)
        decisions = s.decisions
        context.log.info(f"{day}: decisions {s.decisions}")
    meta = table_metadata(lake.lake, GOLD_EXPERIMENT_RESULTS, days)
    meta["decisions_last_day"] = MetadataValue.json(decisions)
    # ops.experiment_days is written by the same step (one table beside the results, not an
    # asset of its own: a data engineer can still re-materialize gold/experiment_results alone)
    meta["experiment_days_path"] = MetadataValue.path(str(lake.lake.path(OPS_EXPERIMENT_DAYS)))
    # so is gold.bandit_weights (a bandit's weights to publish next; the registry_changed sensor
    # sees its new version and publishes them)
    meta["bandit_weights_path"] = MetadataValue.path(str(lake.lake.path(GOLD_BANDIT_WEIGHTS)))
    return MaterializeResult(metadata=meta)
