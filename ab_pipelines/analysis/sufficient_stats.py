"""Sufficient statistics of every metric of an experiment on analysis day D, computed in Spark SQL.

The SQL lives in ``dbt_like_sql/`` (first exposures, analysed units, one template per metric
kind, the sums); this module chooses what goes in (the bronze rows that count on day D, the
experiment's window, overrides and metrics as vars) and writes what comes out to
``gold.sufficient_stats``. The rules are CONTRACTS section 3 ("Semantics"):

- day D counts events with ``ts`` < D + 1 day that arrived by D + ``late_arrival_days``, so a
  re-run of D gives the same rows;
- the population: first exposure in [start_date, min(D + 1, end_date + 1, kill time)), overridden
  units and crossovers (seen in more than one variant) excluded;
- values over [first exposure, min(D + 1, first exposure + window_days)), covariates over
  [first exposure − lookback days, first exposure); a unit without events has 0.

Winsorizing (``Metric.winsorize``) and segments other than "all" are not applied here yet.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ab_pipelines.analysis.sql_models import MODELS_DIR, load_models, run_models
from ab_pipelines.config.models import EventAgg, Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_SUFFICIENT_STATS,
    OPS_KILLS,
)

__all__ = [
    "ANALYSED_STATUSES",
    "DayStats",
    "ExperimentStats",
    "experiment_stats",
    "metric_vars",
    "write_day",
]

ANALYSED_STATUSES = ("running", "stopped")
ALL_SEGMENT = "all"


@dataclass(frozen=True)
class ExperimentStats:
    """One experiment on one day: its gold.sufficient_stats rows and its crossover count."""

    experiment_id: str
    day: dt.date
    stats: pa.Table  # GOLD_SUFFICIENT_STATS.schema, segment "all"
    crossovers: int


@dataclass(frozen=True)
class DayStats:
    """What :func:`write_day` wrote: the per-experiment results and the table version."""

    day: dt.date
    experiments: tuple[ExperimentStats, ...]
    version: int


def _ts_literal(t: dt.datetime) -> str:
    """A UTC instant as the text of a Spark TIMESTAMP literal (the session runs in UTC)."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t.isoformat(sep=" ", timespec="microseconds")


def _midnight(d: dt.date) -> dt.datetime:
    return dt.datetime(d.year, d.month, d.day)


def _json_text(value: Any) -> str:
    """A `where` value as get_json_object returns it: strings as-is, others as JSON (true, 5)."""
    return value if isinstance(value, str) else json.dumps(value)


def _side(event: str, agg: str, where: Mapping[str, Any]) -> dict:
    return {"event": event, "agg": agg, "where": {k: _json_text(v) for k, v in where.items()}}


def metric_vars(metrics: Iterable[Metric]) -> dict[str, list[dict]]:
    """The template vars of a set of metrics: ``mean_metrics``, ``proportion_metrics``, ``ratio_metrics``.

    A ratio side filters on the metric's ``where`` and its own (the side's keys win).
    """
    out: dict[str, list[dict]] = {"mean_metrics": [], "proportion_metrics": [], "ratio_metrics": []}
    for m in metrics:
        entry: dict[str, Any] = {"id": m.id, "window_days": m.window_days}
        if m.kind == "ratio":
            parts: dict[str, EventAgg] = {"num": m.numerator, "den": m.denominator}
            for key, part in parts.items():
                entry[key] = _side(part.event, part.agg, {**m.where, **part.where})
        else:
            entry.update(_side(m.event, m.agg or "any", m.where))
        out[f"{m.kind}_metrics"].append(entry)
    return out


def _metrics_of(registry: Registry, exp: Experiment) -> list[Metric]:
    return [registry.metrics[mid] for mid in dict.fromkeys(exp.metric_ids())]


def experiment_stats(
    spark,
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date,
    killed_at: dt.datetime | None = None,
) -> ExperimentStats:
    """The sufficient statistics of every metric of one experiment on ``day`` (segment "all")."""
    from pyspark.sql import functions as F

    exp = registry.experiments[experiment_id]
    metrics = _metrics_of(registry, exp)
    day_end = _midnight(day + dt.timedelta(days=1))
    last_arrival = day + dt.timedelta(days=exp.analysis.late_arrival_days)
    cutoff = day_end
    if exp.end_date is not None:
        cutoff = min(cutoff, _midnight(exp.end_date + dt.timedelta(days=1)))
    if killed_at is not None:
        cutoff = min(cutoff, killed_at.astimezone(dt.UTC).replace(tzinfo=None))

    # What day D may see: arrived by D + late days, happened before D + 1 day.
    def counted(df):
        return df.where(
            (F.col("arrival_date") <= F.lit(last_arrival))
            & (F.col("ts") < F.lit(_ts_literal(day_end)).cast("timestamp"))
        )

    exposures = counted(lake.read_spark(spark, BRONZE_EXPOSURES)).where(
        F.col("experiment_id") == experiment_id
    )
    events_read = sorted(set().union(*(m.events() for m in metrics)))
    events = counted(lake.read_spark(spark, BRONZE_METRIC_EVENTS)).where(
        F.col("event").isin(events_read)
    )
    vars_ = {
        "start_ts": _ts_literal(_midnight(exp.start_date)),
        "cutoff_ts": _ts_literal(cutoff),
        "day_end_ts": _ts_literal(day_end),
        "lookback_days": exp.analysis.cuped_lookback_days,
        "overrides": sorted(exp.overrides),
        **metric_vars(metrics),
    }
    out = run_models(
        spark,
        load_models(MODELS_DIR),
        vars_,
        sources={
            "exposures": exposures.select("user_id", "variant", "ts"),
            "events": events.select("user_id", "event", "value", "ts", "properties"),
        },
    )
    crossovers = out["first_exposures"].where("crossover").count()
    sums = out["sufficient_stats"].orderBy("metric", "variant").toArrow()
    n = sums.num_rows
    stats = sums.append_column("experiment_id", pa.array([experiment_id] * n, pa.string()))
    stats = stats.append_column("segment", pa.array([ALL_SEGMENT] * n, pa.string()))
    stats = stats.append_column("day", pa.array([day] * n, pa.date32()))
    stats = stats.select(GOLD_SUFFICIENT_STATS.schema.names).cast(GOLD_SUFFICIENT_STATS.schema)
    return ExperimentStats(experiment_id, day, stats, int(crossovers))


def kill_times(lake: Lake) -> dict[str, dt.datetime]:
    """experiment id -> when it was killed (ops.kills)."""
    rows = lake.read_arrow(OPS_KILLS, columns=["experiment_id", "killed_at"]).to_pylist()
    return {r["experiment_id"]: r["killed_at"] for r in rows}


def write_day(spark, lake: Lake, registry: Registry, day: dt.date) -> DayStats:
    """Compute every running or stopped experiment started by ``day``; replace partition ``day``.

    A re-run replaces the partition with the same rows (the inputs of a day are fixed).
    """
    kills = kill_times(lake)
    results = tuple(
        experiment_stats(spark, lake, registry, e.id, day, killed_at=kills.get(e.id))
        for e in sorted(registry.experiments.values(), key=lambda e: e.id)
        if e.status in ANALYSED_STATUSES and e.start_date <= day
    )
    table = pa.concat_tables(
        [GOLD_SUFFICIENT_STATS.schema.empty_table(), *(r.stats for r in results)]
    )
    version = lake.write_arrow(GOLD_SUFFICIENT_STATS, table, replace=[{"day": day.isoformat()}])
    return DayStats(day, results, version)
