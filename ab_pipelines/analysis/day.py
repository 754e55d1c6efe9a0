"""One analysis day, end to end: Spark sums, then SRM, health, results and decisions in numpy.

Two steps, so the Dagster graph shows them as two assets and results can be recomputed (a new
correction method, a fixed formula) without Spark:

1. :func:`stats_day` (Spark): ``gold.sufficient_stats`` (a quantile metric's statistics in its
   ``q_*`` columns, from the same models and the same commit), and from the same pass
   ``gold.srm`` and ``gold.health`` (they need the unit counts and crossovers the Spark pass sees)
   and ``gold.interactions`` (the interaction scan of every pair of the day's experiments, from
   cells that one grouping over the per-unit values of every experiment's models gives:
   :mod:`ab_pipelines.analysis.interactions`);
2. :func:`results_day` (numpy): ``gold.experiment_results`` from ``gold.sufficient_stats`` and
   ``gold.srm``, ``gold.heterogeneity`` (differential impact across segments, from the segment
   rows) and ``ops.experiment_days`` (each experiment's state that day).

Which experiments a day analyses, their kill cut and their provenance come from one place,
:func:`ab_pipelines.analysis.state.states_of_day`.

Each replaces its day's partition, so a re-run of a day rewrites it exactly.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.analysis.bandits import bandit_weight_rows, day_periods
from ab_pipelines.analysis.differential import heterogeneity_rows
from ab_pipelines.analysis.interactions import interaction_pass, write_interactions
from ab_pipelines.analysis.regression_stats import RegressionInputs
from ab_pipelines.analysis.results import (
    ended,
    experiment_results,
    health_rows,
    srm_flagged,
    srm_rows,
)
from ab_pipelines.analysis.state import states_of_day, with_provenance, write_states
from ab_pipelines.analysis.sufficient_stats import write_day
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_BANDIT_WEIGHTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_HETEROGENEITY,
    GOLD_INTERACTIONS,
    GOLD_REGRESSION_STATS,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_EXPERIMENT_DAYS,
    TableSpec,
)

__all__ = ["DaySummary", "results_day", "stats_day"]


@dataclass(frozen=True)
class DaySummary:
    """What a step wrote for a day: rows per table and, for results, each experiment's decision."""

    day: dt.date
    rows: dict[str, int]
    decisions: dict[str, str]
    srm_flagged: tuple[str, ...] = ()
    health_flagged: tuple[str, ...] = ()
    interactions_flagged: tuple[str, ...] = ()


def _concat(spec: TableSpec, parts: list[pa.Table]) -> pa.Table:
    return pa.concat_tables([spec.schema.empty_table(), *(p.cast(spec.schema) for p in parts)])


def stats_day(spark, lake: Lake, registry: Registry, day: dt.date) -> DaySummary:
    """Spark pass for ``day``: gold.sufficient_stats, gold.srm, gold.health, gold.interactions
    and gold.regression_stats (replacing the day)."""
    regression = RegressionInputs(spark, registry, day)
    with interaction_pass(registry) as scan:
        written = write_day(spark, lake, registry, day, keep=regression.keep, scan=scan)
        cells = scan.cells()
    interactions = write_interactions(lake, registry, day, cells, written.states)
    regression_t = regression.write(lake, written.states)
    srm, health = [], []
    for e in written.experiments:
        exp = registry.analysed_experiments[e.experiment_id]
        srm.append(srm_rows(exp, day, e.units, day_periods(lake, exp, day)))
        health.append(
            health_rows(exp, registry.metrics, day, e.stats, e.units.get("all", {}), e.crossovers)
        )
    srm_t, health_t = _concat(GOLD_SRM, srm), _concat(GOLD_HEALTH, health)
    replace = [{"day": day.isoformat()}]
    lake.write_arrow(GOLD_SRM, srm_t, replace=replace)
    lake.write_arrow(GOLD_HEALTH, health_t, replace=replace)
    flagged_srm = sorted(
        {r["experiment_id"] for r in srm_t.to_pylist() if r["flagged"] and r["segment"] == "all"}
    )
    flagged_health = sorted(
        f"{r['experiment_id']}:{r['check']}:{r['subject']}"
        for r in health_t.to_pylist()
        if r["flagged"]
    )
    return DaySummary(
        day,
        rows={
            GOLD_SUFFICIENT_STATS.qualified: sum(e.stats.num_rows for e in written.experiments),
            GOLD_SRM.qualified: srm_t.num_rows,
            GOLD_HEALTH.qualified: health_t.num_rows,
            GOLD_INTERACTIONS.qualified: interactions.num_rows,
            GOLD_REGRESSION_STATS.qualified: regression_t.num_rows,
        },
        decisions={},
        srm_flagged=tuple(flagged_srm),
        health_flagged=tuple(flagged_health),
        interactions_flagged=tuple(
            f"{r['experiment_a']} x {r['experiment_b']}/{r['metric']}"
            for r in interactions.to_pylist()
            if r["flagged"]
        ),
    )


def results_day(lake: Lake, registry: Registry, day: dt.date) -> DaySummary:
    """gold.experiment_results for ``day`` from that day's gold.sufficient_stats and gold.srm, and
    ops.experiment_days: the state each experiment was decided in (both replacing the day).

    Every results row carries the registry sha and config version of its experiment's state.
    """
    on_day = pc.field("day") == day
    stats = lake.read_arrow(GOLD_SUFFICIENT_STATS, filter=on_day)
    srm = lake.read_arrow(GOLD_SRM, filter=on_day)
    regression = lake.read_arrow(GOLD_REGRESSION_STATS, filter=on_day)
    states = states_of_day(lake, registry, day, holdouts=True)
    parts, hetero, weights, decisions = [], [], [], {}
    for exp_id, state in states.items():
        if not state.analysed:
            continue
        exp = registry.analysed_experiments[exp_id]
        mine = pc.field("experiment_id") == exp.id
        exp_stats = stats.filter(mine)
        exp_srm = srm.filter(mine)
        if exp_stats.num_rows == 0 and exp_srm.num_rows == 0:
            continue  # not analysed by the Spark pass this day (e.g. added to the registry since)
        t = experiment_results(
            exp,
            registry.metrics,
            day,
            exp_stats,
            srm_flagged(exp_srm),
            killed_at=state.killed_at,
            regression=regression.filter(mine),
        )
        parts.append(with_provenance(t, state))
        if exp.is_bandit:  # the weights to publish next; its period rows are no breakdown
            assert exp.bandit is not None
            w = bandit_weight_rows(
                exp,
                registry.metrics[exp.bandit.metric],
                day,
                {(r["metric"], r["variant"], r["segment"]): r for r in exp_stats.to_pylist()},
                day_periods(lake, exp, day),
                ended(exp, day, state.killed_at),
            )
            weights.append(with_provenance(w, state))
        else:
            hetero.append(
                with_provenance(heterogeneity_rows(exp, registry.metrics, day, exp_stats), state)
            )
        decisions[exp.id] = t.column("decision")[0].as_py() if t.num_rows else "keep_running"
    table = _concat(GOLD_EXPERIMENT_RESULTS, parts)
    lake.write_arrow(GOLD_EXPERIMENT_RESULTS, table, replace=[{"day": day.isoformat()}])
    hetero_t = _concat(GOLD_HETEROGENEITY, hetero)
    lake.write_arrow(GOLD_HETEROGENEITY, hetero_t, replace=[{"day": day.isoformat()}])
    weights_t = _concat(GOLD_BANDIT_WEIGHTS, weights)
    lake.write_arrow(GOLD_BANDIT_WEIGHTS, weights_t, replace=[{"day": day.isoformat()}])
    state_rows = write_states(lake, day, states)
    return DaySummary(
        day,
        rows={
            GOLD_EXPERIMENT_RESULTS.qualified: table.num_rows,
            GOLD_HETEROGENEITY.qualified: hetero_t.num_rows,
            GOLD_BANDIT_WEIGHTS.qualified: weights_t.num_rows,
            OPS_EXPERIMENT_DAYS.qualified: state_rows,
        },
        decisions=decisions,
    )
