"""Sufficient statistics of every metric of an experiment on analysis day D, computed in Spark SQL.

The SQL lives in ``dbt_like_sql/`` (in-window exposures, first exposures, unit members, analysed
units, segments, one template per metric kind, winsorized values, the sums); this module chooses
what goes in (the bronze rows that count on day D, the experiment's window, unit, overrides,
segments and metrics as vars) and writes what comes out to ``gold.sufficient_stats``. The rules
are CONTRACTS section 3 ("Semantics"):

- day D counts events with ``ts`` < D + 1 day that arrived by D + ``late_arrival_days``, so a
  re-run of D gives the same rows. Only the arrival partitions [start_date − lookback − 8 days,
  D + late_arrival_days] are read (see :func:`arrival_partitions`);
- the population: units whose first exposure lies in [start_date, min(D + 1, end_date + 1, kill
  time)), overridden units and crossovers (seen in more than one variant) excluded;
- values over [first exposure, D + 1 day), or with a window (``window_days`` = N,
  ``window_start_days`` = S) over [first exposure + S days, first exposure + S + N days);
  covariates over [first exposure − lookback days, first exposure); a unit without events has 0;
- maturity: a windowed metric counts a unit on day D only when its whole window has ended,
  first exposure + S + N days <= D + 1 day; the others are *maturing*: left out of n and the
  sums, counted in the ``maturing`` column. ``include_maturing: true`` counts them with the part
  of the window seen by D + 1 day (the window then ends at min(D + 1 day, first exposure + S +
  N days)).

Units (``Experiment.unit``). With ``unit: user_id`` (the default) a unit is a user_id. Otherwise
the unit of an exposure is ``get_json_object(attributes, '$.<unit>')`` (JSON text, e.g. ``T1``,
``17``); exposures without it (missing or JSON null) are ignored, and overrides are keyed by unit
value. Metric events carry only user_id, so a unit's events are those of every user_id that had an
in-window exposure under that unit value (the distinct (unit, user_id) pairs, model
``unit_members``); a user_id seen under two unit values counts towards both.

Winsorizing (``Metric.winsorize`` = p). An upper cap only, per metric, computed over the
analysed units of day D in segment "all" that count for the metric (not maturing), variants pooled: a ``mean`` or ``ratio`` metric's num is
capped at ``percentile(num, p)`` and its pre_num (the CUPED covariate) at ``percentile(pre_num,
p)``, each on its own values; denominators are never capped; for ``proportion`` (0/1 values) it
is a no-op. Spark's exact ``percentile`` interpolates linearly (numpy.percentile's default with
q = 100 p). Segment rows use the same capped values.

Quantile metrics (``kind: quantile``, ``quantile: ν``, ``level: event | unit``). A quantile
metric's row holds the moments of the mean of the same values (level unit: the per-unit sum as a
mean; level event: Σ values / Σ events as a ratio), so ``n`` and ``maturing`` mean what they mean
for every metric, and its :class:`~ab_pipelines.stats.QuantileMoments` in the ``q_*`` columns
(``QUANTILE_FIELDS``), computed in the same pass from the same join: the exact inverted-CDF
quantile Q̂ and bounds L, U of each arm and, at level event, the per-unit counts of values at or
below Q̂ (dbt_like_sql/README.md, "Quantile metrics"). No event leaves the engine.

Segments (``analysis.segments``, ``analysis.segment_top_n`` = N). A unit's value of attribute A is
``get_json_object(attributes, '$.A')`` of its first in-window exposure (earliest ts, ties by the
smaller event_id), ``(missing)`` when absent or JSON null. Per attribute, the N values with the
most analysed units on day D (ties: the smaller value first, by code point) keep their label
``A=<value>``; all other values are pooled into ``A=other``, present only when it has units. A
real value named ``other`` that makes the top N shares the label ``A=other`` with the pool (each
unit still counts once per attribute). Segment rows are exploratory; "all" is the analysis.

Output (:class:`ExperimentStats`). ``stats`` has one row for every segment present ("all" always,
a label when it has units) × every metric of the experiment × every configured variant (plus any
other variant an analysed unit has): n = 0 and all sums 0.0 where there are no units (or only
maturing ones); ``maturing`` counts the analysed units left out of n because the metric's window
had not ended by D + 1 day (n + maturing = the analysed units). Rows are ordered by segment
("all" first, then labels ascending), metric id, variant id. ``units`` counts
the analysed units by segment and variant with the same completeness; ``crossovers`` counts the
crossover units (segment "all").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.analysis.bandits import day_periods
from ab_pipelines.analysis.sql_models import (
    MODELS_DIR,
    load_models,
    models_reading,
    release,
    run_models,
)
from ab_pipelines.analysis.state import (
    ANALYSED_STATUSES,
    ExperimentState,
    analysis_window,
    kills,
    states_of_day,
    with_provenance,
)
from ab_pipelines.config.allocations import Period
from ab_pipelines.config.models import EventAgg, Experiment, Metric
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake, partition_value
from ab_pipelines.lake.engine import fetch_arrow
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    GOLD_SUFFICIENT_STATS,
)
from ab_pipelines.stats.quantile import N_STAR_GRID, bound_levels

__all__ = [
    "ANALYSED_STATUSES",
    "ARRIVAL_MARGIN_DAYS",
    "EXPERIMENT_SOURCES",
    "DayStats",
    "ExperimentInputs",
    "ExperimentStats",
    "arrival_partitions",
    "Partners",
    "day_experiment_stats",
    "experiment_first_exposures",
    "experiment_inputs",
    "experiment_models",
    "experiment_stats",
    "metric_vars",
    "model_vars",
    "write_day",
]

PERSISTED_MODELS = ("first_exposures", "unit_sides")
# What one experiment's models read: its bronze rows, and the arms of the experiments the day's
# interaction scan pairs it with (ab_pipelines.analysis.interactions; empty without a scan). The
# day-level model of the folder (regression_stats) reads what these runs leave behind.
EXPERIMENT_SOURCES = ("exposures", "events", "interaction_vectors")
# Called with (experiment id, its models' frames) while they are kept: what else the day needs of
# them. A persisted frame it pops from the mapping is not released on exit: it owns it then.
KeepModels = Callable[[str, Mapping[str, Any]], None]
ALL_SEGMENT = "all"


@dataclass(frozen=True)
class ExperimentInputs:
    """What one experiment's models read on a day (:func:`experiment_inputs`): its sources
    (exposures, events: frames over bronze, nothing read yet) and its vars, without the
    interaction scan's partners (added per run)."""

    sources: Mapping[str, Any]
    vars: Mapping[str, Any]


@dataclass(frozen=True)
class ExperimentStats:
    """One experiment on one day: its gold.sufficient_stats rows, unit counts and crossovers.

    ``stats``: GOLD_SUFFICIENT_STATS.schema, every segment ("all" first), metric and variant.
    ``units``: segment label -> variant id -> analysed units (non-crossover, non-override); "all"
    always, every configured variant listed (0 when none). ``crossovers``: segment "all".
    """

    experiment_id: str
    day: dt.date
    stats: pa.Table
    units: dict[str, dict[str, int]]
    crossovers: int
    #: With partners: the "all" rows' metric, variant, interaction_cells and
    #: interaction_den_cells (see Partners).
    cells: pa.Table | None = None


@dataclass(frozen=True)
class Partners:
    """The experiments whose arms an experiment's values are summed by (the interaction scan):
    ``partners`` (id, arms, column), ``sums`` the sums each cell holds, in parts and in order
    (names of RatioMoments fields: n, num_sum, num_sum_sq; then den_sum, den_sum_sq, num_den_sum
    when a ratio metric is tested), ``vectors`` the units' arms (unit, then a column per
    experiment). The "all" rows then carry ``interaction_cells`` (the first part for each
    partner in order and each arm of it) and ``interaction_den_cells`` (the second, on the rows
    of ratio metrics), see dbt_like_sql/sufficient_stats.sql."""

    partners: tuple[dict[str, Any], ...]
    sums: tuple[tuple[str, ...], ...]
    vectors: Any


@dataclass(frozen=True)
class DayStats:
    """What :func:`write_day` wrote: the per-experiment results, the table version, and the
    state of every experiment started by the day (:mod:`ab_pipelines.analysis.state`)."""

    day: dt.date
    experiments: tuple[ExperimentStats, ...]
    version: int
    states: Mapping[str, ExperimentState] = field(default_factory=dict)


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


def metric_vars(metrics: Iterable[Metric]) -> dict[str, list[dict]]:
    """The template vars of a set of metrics: ``sides``, ``mean_metrics``, ``proportion_metrics``,
    ``ratio_metrics``, ``quantile_metrics`` and ``winsorize``.

    ``sides`` lists the distinct (event, where, agg, window_start_days, window_days) the metrics
    read, each computed once per unit by unit_sides, with ``filter``: sides with the same (event,
    where) share a number, which names their event filter (``m<filter>`` in unit_sides). A metric
    entry is its ``id``, its side(s) by index (``side``, or ``num_side`` and ``den_side`` for a
    ratio) and ``mature_sides``: the sides whose window must have ended for a unit to count
    (empty: every unit counts, no window or ``include_maturing``; a ratio waits for both). A ratio
    side filters on the metric's ``where`` and its own (the side's keys win). ``winsorize`` lists
    ``{id, p}`` of the mean and ratio metrics with a cap (a proportion is 0/1: never capped).

    A quantile metric is listed twice. Its companion moments, the mean of the same values, go
    with the means (level unit: the per-unit sum) or the ratios (level event: the sum over the
    count of its events), so its gold.sufficient_stats row has n, maturing and sums like any
    metric. Its ``quantile_metrics`` entry is ``{id, q, level, side, mature_sides, bounds}``:
    ``side`` numbers the unit_sides column of its values (level event: a side of agg ``values``,
    the unit's event values as an array) or of its per-unit sum (level unit), and ``bounds`` the
    levels of the order-statistic bounds at every n* of ``N_STAR_GRID``
    (:func:`~ab_pipelines.stats.quantile.bound_levels`), ``[{n_star, lower, upper}]``.

    Example:
        >>> v = metric_vars([Metric(id="retained_d7", kind="proportion", event="page_view",
        ...                         window_start_days=7, window_days=1)])
        >>> v["sides"][0]["window_start_days"], v["sides"][0]["window_days"]
        (7, 1)
        >>> v["proportion_metrics"]
        [{'id': 'retained_d7', 'side': 0, 'mature_sides': [0]}]
        >>> v = metric_vars([Metric(id="load_p90", kind="quantile", event="page_view",
        ...                         quantile=0.9, level="event")])
        >>> [s["agg"] for s in v["sides"]], v["ratio_metrics"][0]["num_side"]
        (['sum', 'count', 'values'], 0)
        >>> q = v["quantile_metrics"][0]
        >>> q["side"], q["bounds"][0]["n_star"], round(q["bounds"][0]["lower"], 4)
        (2, 100, 0.8412)
    """
    out: dict[str, list[dict]] = {
        "sides": [],
        "mean_metrics": [],
        "proportion_metrics": [],
        "ratio_metrics": [],
        "quantile_metrics": [],
        "winsorize": [],
    }
    index: dict[str, int] = {}
    filters: dict[str, int] = {}

    def side_of(event: str, agg: str, where: Mapping[str, Any], m: Metric) -> int:
        side = {
            "event": event,
            "agg": agg,
            "where": {k: _json_text(v) for k, v in where.items()},
            "window_start_days": m.window_start_days,
            "window_days": m.window_days,
        }
        key = json.dumps(side, sort_keys=True)
        if key not in index:
            # Sides reading the same events share one event filter (see unit_sides.sql).
            which = json.dumps([side["event"], side["where"]], sort_keys=True)
            side["filter"] = filters.setdefault(which, len(filters))
            index[key] = len(out["sides"])
            out["sides"].append(side)
        return index[key]

    def waits_for(m: Metric, sides: list[int]) -> list[int]:
        return sides if m.maturity_days is not None else []

    for m in metrics:
        entry: dict[str, Any] = {"id": m.id}
        kind = m.kind
        if m.kind == "ratio":
            parts: dict[str, EventAgg] = {"num": m.numerator, "den": m.denominator}
            for key, part in parts.items():
                where = {**m.where, **part.where}
                entry[f"{key}_side"] = side_of(part.event, part.agg, where, m)
            sides = [entry["num_side"], entry["den_side"]]
        elif m.kind == "quantile" and m.level == "event":
            kind = "ratio"  # the companion: Σ values / Σ events, the mean event value
            entry["num_side"] = side_of(m.event, "sum", m.where, m)
            entry["den_side"] = side_of(m.event, "count", m.where, m)
            sides = [entry["num_side"], entry["den_side"]]
            values = side_of(m.event, "values", m.where, m)
        else:
            if m.kind == "quantile":
                kind = "mean"  # the companion: the per-unit sum as a mean
            entry["side"] = side_of(
                m.event, m.agg or ("sum" if kind == "mean" else "any"), m.where, m
            )
            sides = [entry["side"]]
            values = entry["side"]
        entry["mature_sides"] = waits_for(m, sides)
        out[f"{kind}_metrics"].append(entry)
        if m.kind == "quantile":
            lower, upper = bound_levels(m.quantile, N_STAR_GRID)
            out["quantile_metrics"].append(
                {
                    "id": m.id,
                    "q": m.quantile,
                    "level": m.level,
                    "side": values,
                    "mature_sides": waits_for(m, [values]),
                    "bounds": [
                        {"n_star": n, "lower": float(lo), "upper": float(hi)}
                        for n, lo, hi in zip(N_STAR_GRID, lower, upper, strict=True)
                    ],
                }
            )
        if m.winsorize is not None and m.kind != "proportion":
            out["winsorize"].append({"id": m.id, "p": m.winsorize})
    return out


def _metrics_of(registry: Registry, exp: Experiment) -> list[Metric]:
    return [registry.metrics[mid] for mid in dict.fromkeys(exp.metric_ids())]


# Partition pruning. The ingest keeps a row only if its ts lies in [arrival day − 7 days, arrival
# day + 2 days) (ab_pipelines.events.schema: TS_MAX_BEFORE_DAYS, TS_MAX_AFTER_DAYS); anything else
# is quarantined. So a row's arrival day is in [ts day − 1, ts day + 7]. The earliest ts any window
# of day D reads is start_date − lookback (a covariate window starts at first exposure − lookback,
# and a first exposure is ≥ start_date), so rows of arrival days before start_date − lookback − 1
# cannot matter. We read from start_date − lookback − 8 days: a margin that stays safe even if the
# ingest window were the other way round (ts up to 7 days after arrival), for a few more small
# partitions. Lake prunes by exact partition values, so the days are listed.
ARRIVAL_MARGIN_DAYS = 8


def arrival_partitions(exp: Experiment, day: dt.date) -> list[dict[str, str]]:
    """The bronze arrival_date partitions day D of ``exp`` may need, one dict per day.

    [start_date − cuped_lookback_days − 8 days, D + late_arrival_days], listed day by day (Lake
    prunes by exact partition values, formatted YYYY-MM-DD).

    Example:
        >>> exp = Experiment(id="e", name="e", owner="o", start_date=dt.date(2026, 3, 10),
        ...                  variants=[{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}],
        ...                  analysis={"cuped_lookback_days": 0, "late_arrival_days": 1})
        >>> p = arrival_partitions(exp, dt.date(2026, 3, 10))
        >>> p[0], p[-1], len(p)
        ({'arrival_date': '2026-03-02'}, {'arrival_date': '2026-03-11'}, 10)
    """
    first = exp.start_date - dt.timedelta(
        days=exp.analysis.cuped_lookback_days + ARRIVAL_MARGIN_DAYS
    )
    last = day + dt.timedelta(days=exp.analysis.late_arrival_days)
    days = (first + dt.timedelta(days=i) for i in range((last - first).days + 1))
    return [{"arrival_date": partition_value(d)} for d in days]


def model_vars(
    exp: Experiment,
    metrics: Iterable[Metric],
    day: dt.date,
    killed_at: dt.datetime | None = None,
    periods: Sequence[Period] = (),
) -> dict[str, Any]:
    """Every var of the SQL models for ``exp`` on ``day`` (see dbt_like_sql/README.md);
    ``periods``: a bandit's allocation periods (:func:`~ab_pipelines.config.allocations.allocation_periods`)."""
    metrics = list(metrics)
    day_end = _midnight(day + dt.timedelta(days=1))
    window = analysis_window(exp, day, killed_at)  # the population rule, written once there
    return {
        "unit": exp.unit,
        "start_ts": _ts_literal(window.start),
        "cutoff_ts": _ts_literal(window.cutoff),
        "day_end_ts": _ts_literal(day_end),
        "lookback_days": exp.analysis.cuped_lookback_days,
        "overrides": sorted(exp.overrides),
        "segments": list(dict.fromkeys(exp.analysis.segments)),
        "segment_top_n": exp.analysis.segment_top_n,
        "variants": exp.variant_ids,
        "metric_ids": [m.id for m in metrics],
        "bandit_periods": [
            {"label": p.label, "start": None if p.start is None else _ts_literal(p.start)}
            for p in periods
        ],
        "interaction_partners": [],
        "interaction_sums": [],
        **metric_vars(metrics),
    }


def experiment_inputs(
    spark,
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date,
    killed_at: dt.datetime | None = None,
) -> ExperimentInputs:
    """The sources and vars of one experiment's models on ``day`` (the Delta logs are read here:
    a day that runs an experiment's models twice, the scan's ``first_exposures`` first, reads
    them once)."""
    from pyspark.sql import functions as F

    exp = registry.analysed_experiments[experiment_id]
    metrics = _metrics_of(registry, exp)
    day_end = _midnight(day + dt.timedelta(days=1))
    partitions = arrival_partitions(exp, day)  # the last is D + late_arrival_days

    # What day D may see: arrived by D + late days (the last partition read), happened before
    # D + 1 day. read_spark refuses a read the engine cut short (EngineReadError), so an input
    # read as empty while the Delta log lists files for it stops the day before anything is
    # written. No partition column is asked for, so each table is one scan of its files.
    def counted(spec, columns):
        return lake.read_spark(spark, spec, partitions=partitions, columns=columns).where(
            F.col("ts") < F.lit(_ts_literal(day_end)).cast("timestamp")
        )

    exposure_columns = ["event_id", "user_id", "variant", "ts", "attributes"]
    exposures = (
        counted(BRONZE_EXPOSURES, ["experiment_id", *exposure_columns])
        .where(F.col("experiment_id") == experiment_id)
        .select(*exposure_columns)
    )
    events_read = sorted(set().union(*(m.events() for m in metrics)))
    event_columns = ["user_id", "event", "value", "ts", "properties"]
    events = counted(BRONZE_METRIC_EVENTS, event_columns).where(F.col("event").isin(events_read))
    vars = model_vars(exp, metrics, day, killed_at, day_periods(lake, exp, day))
    return ExperimentInputs({"exposures": exposures, "events": events}, vars)


def _with_partners(
    spark, inputs: ExperimentInputs, partners: Partners | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sources and vars of a run: ``inputs`` and the interaction partners' (none: empty)."""
    sources, vars = dict(inputs.sources), dict(inputs.vars)
    if partners is not None and partners.partners:
        vars["interaction_partners"] = list(partners.partners)
        vars["interaction_sums"] = [list(part) for part in partners.sums]
        sources["interaction_vectors"] = partners.vectors
    else:
        sources["interaction_vectors"] = spark.createDataFrame([], "unit STRING")
    return sources, vars


def experiment_first_exposures(
    spark,
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date,
    killed_at: dt.datetime | None = None,
    inputs: ExperimentInputs | None = None,
) -> Any:
    """The ``first_exposures`` model of one experiment on ``day`` alone, kept by the engine (a local
    checkpoint: the caller releases it, and may give it to :func:`experiment_models` so the
    experiment's run does not compute it again). The interaction scan reads the arms of every
    experiment from it before any experiment's values are summed. ``inputs``: the experiment's
    (:func:`experiment_inputs`), read here if not given."""
    if inputs is None:
        inputs = experiment_inputs(spark, lake, registry, experiment_id, day, killed_at)
    sources, vars = _with_partners(spark, inputs, None)
    models = models_reading(load_models(MODELS_DIR), EXPERIMENT_SOURCES)
    needed, todo = set(), ["first_exposures"]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += models[name].refs
    subset = {n: models[n] for n in needed}
    read = {s for m in subset.values() for s in m.sources}  # only those become views
    sources = {name: df for name, df in sources.items() if name in read}
    out = run_models(spark, subset, vars, sources, persist=["first_exposures"])
    # The other frames are views over the sources, nothing kept: the next run replaces them (a
    # release would cost a garbage collection per experiment).
    return out["first_exposures"]


@contextlib.contextmanager
def experiment_models(
    spark,
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date,
    killed_at: dt.datetime | None = None,
    persist: Iterable[str] = (),
    given: Mapping[str, Any] | None = None,
    partners: Partners | None = None,
    inputs: ExperimentInputs | None = None,
) -> Iterator[dict[str, Any]]:
    """The SQL models of one experiment on ``day``, run in ``spark``: model name -> DataFrame.

    Inside the block the persisted models (``PERSISTED_MODELS`` and ``persist``) are kept by the
    engine; they are released on exit. ``given``: models computed earlier for the same experiment
    and day (:func:`experiment_first_exposures`), used instead of running them; the caller's to
    release. ``partners``: the interaction cells ``sufficient_stats`` adds (dbt_like_sql/
    sufficient_stats.sql). ``inputs``: the experiment's (:func:`experiment_inputs`), read here
    if not given.
    """
    given = dict(given or {})
    if inputs is None:
        inputs = experiment_inputs(spark, lake, registry, experiment_id, day, killed_at)
    sources, vars = _with_partners(spark, inputs, partners)
    kept = tuple(n for n in dict.fromkeys([*PERSISTED_MODELS, *persist]) if n not in given)
    out = run_models(
        spark,
        models_reading(load_models(MODELS_DIR), EXPERIMENT_SOURCES),
        vars,
        sources=sources,
        # Read by several models and by the three actions below: computed once each (the
        # exposures scan and the one join to the metric events), not once per reader.
        persist=kept,
        given=given,
    )
    try:
        yield out
    finally:
        release(spark, out, kept)


def experiment_stats(
    spark,
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date,
    killed_at: dt.datetime | None = None,
    keep: KeepModels | None = None,
    given: Mapping[str, Any] | None = None,
    partners: Partners | None = None,
    inputs: ExperimentInputs | None = None,
) -> ExperimentStats:
    """The sufficient statistics of every metric of one experiment on ``day``, every segment.

    ``keep`` is called with the experiment's model frames before they are released (the
    regression sums run on them there). ``given``, ``partners`` and ``inputs``: see
    :func:`experiment_models`; with partners, ``cells`` holds the interaction cell columns of the
    "all" rows.
    """
    exp = registry.analysed_experiments[experiment_id]
    # The regression sums read the per-unit values too: computed once for both.
    persist = ("metric_values",) if keep is not None and exp.analysis.covariates else ()
    with experiment_models(
        spark, lake, registry, experiment_id, day, killed_at, persist, given, partners, inputs
    ) as out:
        crossovers = out["first_exposures"].where("crossover").count()
        counts = out["unit_segments"].groupBy("segment", "variant").count().collect()
        sums = fetch_arrow(out["sufficient_stats"])  # ordered by the model
        if keep is not None:
            keep(experiment_id, out)
    cells = None
    if partners is not None and partners.partners:
        everyone = sums.filter(pc.equal(sums.column("segment"), ALL_SEGMENT))
        cells = everyone.select(["metric", "variant", "interaction_cells", "interaction_den_cells"])
    n = sums.num_rows
    stats = sums.append_column("experiment_id", pa.array([experiment_id] * n, pa.string()))
    stats = stats.append_column("day", pa.array([day] * n, pa.date32()))
    stats = with_provenance(stats, None)  # set by write_day, which knows the day's state
    stats = stats.select(GOLD_SUFFICIENT_STATS.schema.names).cast(GOLD_SUFFICIENT_STATS.schema)
    return ExperimentStats(
        experiment_id, day, stats, _unit_counts(exp, counts), int(crossovers), cells
    )


def _unit_counts(exp: Experiment, rows: Iterable[Any]) -> dict[str, dict[str, int]]:
    """segment -> variant -> units: "all" first, then labels ascending; every configured variant."""
    found = {(r["segment"], r["variant"]): int(r["count"]) for r in rows}
    segments = sorted({s for s, _ in found} - {ALL_SEGMENT})
    variants = list(dict.fromkeys([*exp.variant_ids, *sorted({v for _, v in found})]))
    return {s: {v: found.get((s, v), 0) for v in variants} for s in [ALL_SEGMENT, *segments]}


def kill_times(lake: Lake) -> dict[str, dt.datetime]:
    """experiment id -> when it was killed (ops.kills, through :func:`~.state.kills`)."""
    return {exp_id: k.at for exp_id, k in kills(lake).items()}


def day_experiment_stats(
    spark,
    lake: Lake,
    registry: Registry,
    day: dt.date,
    keep: KeepModels | None = None,
    scan: Any = None,
) -> tuple[dict[str, ExperimentState], list[ExperimentStats]]:
    """The day's states and the statistics of every experiment analysed on ``day``, with its
    provenance (not written).

    ``scan`` (an :class:`~ab_pipelines.analysis.interactions.InteractionPass`): the interaction
    cells are summed in the same passes. It is told the day's experiments first; the experiments
    whose arms it needs run their ``first_exposures`` before any experiment's values are summed
    (kept by the scan and given to the experiment's own run, so computed once), and the scan
    turns their arms into one row per unit (its arm in each of them); then each
    experiment's run sums its values by the arms of its partners, and the scan takes the cells.
    """
    states = states_of_day(lake, registry, day, holdouts=True)
    analysed = [s for s in states.values() if s.analysed]
    given: dict[str, dict[str, Any]] = {}
    inputs: dict[str, ExperimentInputs] = {}  # read once for both runs of a partner
    if scan is not None:
        scan.plan([s.experiment_id for s in analysed])
        for s in analysed:
            e = s.experiment_id
            if scan.needs_arms(e):
                inputs[e] = experiment_inputs(spark, lake, registry, e, day, s.killed_at)
                firsts = experiment_first_exposures(
                    spark, lake, registry, e, day, s.killed_at, inputs[e]
                )
                scan.keep_arms(e, firsts)
                given[e] = {"first_exposures": firsts}
        scan.join_arms(spark)
    results = []
    for s in analysed:
        e = s.experiment_id
        partners = scan.partners_of(e) if scan is not None else None
        r = experiment_stats(
            spark, lake, registry, e, day, s.killed_at, keep, given.get(e), partners, inputs.get(e)
        )
        if scan is not None:
            scan.take(e, r.cells)
        results.append(replace(r, stats=with_provenance(r.stats, s)))
    return states, results


def write_day(
    spark,
    lake: Lake,
    registry: Registry,
    day: dt.date,
    keep: KeepModels | None = None,
    scan: Any = None,
) -> DayStats:
    """Compute every experiment analysed on ``day`` (running or stopped, started by then, see
    :func:`~.state.states_of_day`); replace partition ``day``.

    Each row carries the registry sha and config version of the experiment's state that day. A
    re-run replaces the partition with the same rows (the inputs of a day are fixed). ``keep``:
    see :func:`experiment_stats`; ``scan``: see :func:`day_experiment_stats`.
    """
    states, results = day_experiment_stats(spark, lake, registry, day, keep, scan)
    table = pa.concat_tables(
        [GOLD_SUFFICIENT_STATS.schema.empty_table(), *(r.stats for r in results)]
    )
    version = lake.write_arrow(GOLD_SUFFICIENT_STATS, table, replace=[{"day": day.isoformat()}])
    return DayStats(day, tuple(results), version, states)
