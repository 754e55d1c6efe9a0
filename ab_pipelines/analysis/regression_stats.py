"""Regression adjustment in the pipeline: gold.regression_stats, the sums of several covariates.

An experiment that sets ``analysis.covariates`` (docs/analysis.md, "Regression adjustment (several
covariates) and post-stratification", "In the pipeline") gets, per analysis day, non-quantile
metric and variant (segment "all"), the :class:`~ab_pipelines.stats.RegressionMoments` of
Z = the metric's response(s), its own pre-period value(s), then the covariates: n, Σ Z and Z'Z.

Which columns (the rule). A mean or proportion metric's Z starts [num, pre_num], a ratio's
[num, den, pre_num, pre_den] (the CUPED covariates, which the guard of
:func:`~ab_pipelines.stats.compare_adjusted` falls back to). Then, in the YAML's order, each
covariate metric's pre-period value (its winsorized ``pre_num`` of ``metric_values``, and
``pre_den`` for a ratio), the metric itself left out, and each attribute's 0/1 dummies: one for
each of its ``segment_top_n`` most frequent values among the day's analysed units (the values of
the unit's first in-window exposure, ranked as segments are); the other values are the reference.
A dummy of a rank the attribute does not reach (fewer values) is left out.

How. While an experiment's SQL models are kept (``write_day``'s ``keep`` callback,
:class:`RegressionInputs`), the model ``dbt_like_sql/regression_stats.sql`` runs on sources cut
from them (:data:`SOURCE_MODELS`): one pivot of the covariate metrics' pre-period values per
unit, one grouping of the mature (metric, unit) values joined to it, every product of the
generic columns [num, den, pre_num, pre_den, x_1 .. x_K] in that grouping. Python keeps each
metric's own columns (:func:`regression_rows`). Experiments without covariates run nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.sql_models import MODELS_DIR, load_models, release, run_models
from ab_pipelines.analysis.state import ExperimentState, states_of_day, with_provenance
from ab_pipelines.config.models import Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import fetch_arrow
from ab_pipelines.lake.tables import GOLD_REGRESSION_STATS
from ab_pipelines.stats.regression import RegressionMoments

__all__ = [
    "REGRESSION_MODEL",
    "REGRESSION_SOURCES",
    "SOURCE_MODELS",
    "Design",
    "RegressionInputs",
    "experiment_regression_sums",
    "regression_day",
    "regression_design",
    "regression_rows",
    "regression_vars",
    "write_regression_stats",
]

REGRESSION_MODEL = "regression_stats"
#: The sources of the model, each cut from one of the experiment's models (the Dagster lineage).
SOURCE_MODELS = {
    "regression_values": "metric_values",
    "regression_units": "analysed_units",
    "regression_exposures": "in_window_exposures",
}
REGRESSION_SOURCES = tuple(SOURCE_MODELS)
_GENERIC = ("num", "den", "pre_num", "pre_den")
_SEGMENT = "all"


def _two_part(m: Metric) -> bool:
    """Whether the metric's per-unit values are a ratio's num and den (an event-level quantile's
    companion moments are the ratio of its values' sum over their count)."""
    return m.kind == "ratio" or (m.kind == "quantile" and m.level == "event")


@dataclass(frozen=True)
class Design:
    """The covariate columns of one experiment's Z: what the SQL computes and how to name them.

    ``metrics``: the metrics that get rows (non-quantile, in the experiment's order);
    ``covariate_metrics``: (metric id, x column of pre_num, x column of pre_den or None);
    ``dummies``: (attribute, rank from 1, x column); ``columns``: every x column, in Z's order.
    """

    metrics: tuple[Metric, ...]
    covariate_metrics: tuple[tuple[str, str, str | None], ...]
    attributes: tuple[str, ...]
    dummies: tuple[tuple[str, int, str], ...]
    columns: tuple[str, ...]
    attributes_on_units: bool

    def responses(self, m: Metric) -> int:
        return 2 if m.kind == "ratio" else 1

    def own(self, m: Metric) -> tuple[list[str], list[str]]:
        """The metric's own columns of Z (responses, then its pre-period value(s)) and names."""
        if m.kind == "ratio":
            return ["num", "den", "pre_num", "pre_den"], [f"pre_{m.id}_num", f"pre_{m.id}_den"]
        return ["num", "pre_num"], [f"pre_{m.id}"]

    def columns_of(
        self, m: Metric, levels: Mapping[str, str | None]
    ) -> tuple[list[str], list[str]]:
        """Z's columns for metric ``m`` (generic SQL names) and the names of its covariates.

        ``levels``: x column -> the attribute value its dummy stands for (None: not reached).
        """
        cols, names = self.own(m)
        for mid, num, den in self.covariate_metrics:
            if mid == m.id:
                continue
            cols.append(num)
            names.append(f"pre_{mid}_num" if den else f"pre_{mid}")
            if den:
                cols.append(den)
                names.append(f"pre_{mid}_den")
        for attribute, _, column in self.dummies:
            level = levels.get(column)
            if level is not None:
                cols.append(column)
                names.append(f"{attribute}={level}")
        return cols, names


def regression_design(
    exp: Experiment, metrics: Mapping[str, Metric], has_segments: bool | None = None
) -> Design | None:
    """The design of ``exp``'s Z, or None when it sets no covariates (or has no metric to adjust).

    Example:
        >>> from ab_pipelines.config import load_registry
        >>> reg = load_registry()
        >>> exp = reg.experiments["search_speed"].model_copy(deep=True)
        >>> exp = exp.model_copy(update={"analysis": exp.analysis.model_copy(
        ...     update={"covariates": ["conversion", "attribute:platform"]})})
        >>> d = regression_design(exp, reg.metrics)
        >>> [m.id for m in d.metrics], d.columns, d.dummies[0]
        (['page_load_ms', 'conversion'], ('x1', 'x2', 'x3', 'x4'), ('platform', 1, 'x2'))
    """
    a = exp.analysis
    if not a.covariates:
        return None
    ids = list(dict.fromkeys(exp.metric_ids()))
    targets = tuple(metrics[m] for m in ids if m in metrics and metrics[m].kind != "quantile")
    if not targets:
        return None
    columns: list[str] = []

    def new() -> str:
        columns.append(f"x{len(columns) + 1}")
        return columns[-1]

    covs = []
    for mid in dict.fromkeys(a.covariate_metrics):
        m = metrics[mid]  # validated: a metric of the experiment
        covs.append((mid, new(), new() if _two_part(m) else None))
    attributes = tuple(dict.fromkeys(a.covariate_attributes))
    dummies = tuple(
        (attr, rank, new()) for attr in attributes for rank in range(1, a.segment_top_n + 1)
    )
    on_units = bool(a.segments) if has_segments is None else has_segments
    return Design(targets, tuple(covs), attributes, dummies, tuple(columns), on_units)


def regression_vars(exp: Experiment, design: Design) -> dict[str, Any]:
    """The vars of ``regression_stats.sql`` for ``exp`` (see the model's header)."""
    index = {a: i for i, a in enumerate(design.attributes, start=1)}
    return {
        "regression_metrics": [m.id for m in design.metrics],
        "variants": exp.variant_ids,
        "covariate_metrics": [
            {"id": mid, "num": num, "den": den} for mid, num, den in design.covariate_metrics
        ],
        "covariate_attributes": [{"name": a} for a in design.attributes],
        "attribute_dummies": [
            {"attribute": index[a], "rank": r, "column": c} for a, r, c in design.dummies
        ],
        "attributes_on_units": design.attributes_on_units,
        "covariate_columns": list(design.columns),
    }


def experiment_regression_sums(
    spark, exp: Experiment, design: Design, models: Mapping[str, Any]
) -> pa.Table:
    """The model's rows for one experiment, from its kept model frames (name -> DataFrame)."""
    model = load_models(MODELS_DIR)[REGRESSION_MODEL]
    sources = {name: models[source] for name, source in SOURCE_MODELS.items()}
    out = run_models(spark, {REGRESSION_MODEL: model}, regression_vars(exp, design), sources)
    try:
        return fetch_arrow(out[REGRESSION_MODEL])
    finally:
        release(spark, out, [REGRESSION_MODEL])
        for name in sources:
            spark.catalog.dropTempView(name)


def regression_rows(exp: Experiment, design: Design, day: dt.date, sums: pa.Table) -> pa.Table:
    """gold.regression_stats rows (provenance null) from the model's rows of one experiment."""
    rows = sums.to_pylist()
    levels = {c: rows[0][f"{c}_level"] if rows else None for _, _, c in design.dummies}
    by_metric = {m.id: m for m in design.metrics}
    out = []
    for r in rows:
        m = by_metric[r["metric"]]
        cols, names = design.columns_of(m, levels)
        z = RegressionMoments.from_columns(r, cols, responses=design.responses(m))
        out.append(
            {
                "experiment_id": exp.id,
                "metric": m.id,
                "variant": r["variant"],
                "segment": _SEGMENT,
                "covariates": names,
                "responses": z.responses,
                "n": int(r["n"]),
                "sums": [float(x) for x in np.ravel(z.sums)],
                "cross": [float(x) for x in np.ravel(z.cross)],
                "registry_sha": None,
                "config_version": None,
                "day": day,
            }
        )
    return pa.Table.from_pylist(out, schema=GOLD_REGRESSION_STATS.schema)


class RegressionInputs:
    """gold.regression_stats rows computed while the day's analysis runs.

    Pass :meth:`keep` as (part of) ``write_day``'s ``keep``: for each experiment with covariates
    it runs the model on the experiment's kept frames, in the same session; :meth:`write` then
    replaces the day's partition.
    """

    def __init__(self, spark, registry: Registry, day: dt.date) -> None:
        self.spark, self.registry, self.day = spark, registry, day
        self.tables: dict[str, pa.Table] = {}

    def keep(self, experiment_id: str, models: Mapping[str, Any]) -> None:
        exp = self.registry.analysed_experiments.get(experiment_id)
        design = None if exp is None else regression_design(exp, self.registry.metrics)
        if design is None:
            return  # no covariates: nothing runs
        sums = experiment_regression_sums(self.spark, exp, design, models)
        self.tables[experiment_id] = regression_rows(exp, design, self.day, sums)

    def write(self, lake: Lake, states: Mapping[str, ExperimentState] | None = None) -> pa.Table:
        return write_regression_stats(lake, self.day, self.tables.values(), states)


def regression_day(spark, lake: Lake, registry: Registry, day: dt.date) -> dict[str, pa.Table]:
    """The rows of ``day`` alone, experiment id -> table: each analysed experiment with
    covariates runs its models again (tests, backfills; the daily pass uses
    :class:`RegressionInputs` and costs no second run)."""
    from ab_pipelines.analysis.sufficient_stats import experiment_models

    inputs = RegressionInputs(spark, registry, day)
    for s in states_of_day(lake, registry, day, holdouts=True).values():
        exp = registry.analysed_experiments[s.experiment_id]
        if s.analysed and exp.analysis.covariates:
            with experiment_models(spark, lake, registry, s.experiment_id, day, s.killed_at) as out:
                inputs.keep(s.experiment_id, out)
    return inputs.tables


def write_regression_stats(
    lake: Lake,
    day: dt.date,
    tables: Iterable[pa.Table],
    states: Mapping[str, ExperimentState] | None = None,
) -> pa.Table:
    """Replace ``day``'s partition of gold.regression_stats with ``tables`` (provenance from
    ``states``, by experiment id); the rows written."""
    parts = [GOLD_REGRESSION_STATS.schema.empty_table()]
    for t in tables:
        if t.num_rows:
            state = (states or {}).get(t.column("experiment_id")[0].as_py())
            parts.append(with_provenance(t, state).select(GOLD_REGRESSION_STATS.schema.names))
    table = pa.concat_tables(parts).cast(GOLD_REGRESSION_STATS.schema)
    lake.write_arrow(GOLD_REGRESSION_STATS, table, replace=[{"day": day.isoformat()}])
    return table
