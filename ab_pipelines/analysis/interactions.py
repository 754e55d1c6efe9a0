"""The daily interaction scan: every pair of concurrent experiments, every decision metric.

Experiments in different layers overlap by design, so the effect of one may depend on the arm of
the other. Each analysis day, for every pair (A, B) of experiments analysed that day
(:func:`~ab_pipelines.analysis.state.states_of_day`) with the same unit, A before B by id, the
scan tests whether A's effect differs across B's arms
(:func:`~ab_pipelines.stats.interactions.interaction_test`: the Wald test of the A×B terms on the
k × m cell means, absolute scale), and corrects across all pairs and metrics of the day with
Benjamini–Hochberg at :data:`INTERACTION_FDR` (:func:`~ab_pipelines.stats.interactions.interaction_scan`).

Which metrics (the rule). A pair is tested on every *decision metric* of either experiment: the
primary metrics and guardrails A lists, then those B lists (secondary metrics are not decisions;
quantile metrics are left out: their row in metric_values is the companion mean, not the quantile
the experiment decides on). The per-unit values are those of the experiment that lists the metric
as a decision metric, A when both do (``values_from``): the values its own analysis sums, with its
metric window, maturity and winsorizing caps, so a cell mean is that experiment's metric. The
cells hold the units analysed in both experiments (non-crossover, non-override, in each window)
whose value counts that day (mature).

How (one grouping, not a query per pair). While :func:`~ab_pipelines.analysis.sufficient_stats.write_day`
runs each experiment's SQL models, :class:`InteractionInputs` keeps two of its persisted models
(local checkpoints, computed once for the analysis and kept until the scan has run: no extra
pass): ``metric_values``, read for the decision metrics and mature units, and
``first_exposures``, read for the analysed (non-crossover) units, each unit with its ``arm`` (the
variant's position, 0 the baseline). Once
every experiment has run, the day-level model ``dbt_like_sql/interaction_cells.sql`` turns the
arms into one row per unit (its assignment vector over the day's experiments), joins it 1:1 to
the value rows and groups them by (experiment, metric, arm) with conditional sums per other
experiment and arm: n and the sums of num, num², den, den² and num·den of every cell of every
pair, the :class:`~ab_pipelines.stats.moments.RatioMoments` fields (a mean or proportion is read
as :class:`~ab_pipelines.stats.moments.Moments` of num). This is the one-hot product of
:func:`~ab_pipelines.stats.interactions.interaction_cells` done where the data is: the rows grouped
are the experiments' own unit-metric rows, whatever the number of pairs (a first version joined
each value row to the unit's arm in every partner and grouped by pair: at 20 experiments it moved
~5x more rows and cost +235% over the analysis; see docs/analysis.md).

The result, ``gold.interactions``, replaces the day's partition (a re-run rewrites it exactly);
:mod:`ab_pipelines.safety.conditions` raises an ``interaction`` alert for each flagged row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.decision import decision_metrics
from ab_pipelines.analysis.sql_models import (
    MODELS_DIR,
    load_models,
    models_reading,
    release,
    run_models,
)
from ab_pipelines.analysis.state import ExperimentState, states_of_day
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import release_checkpoints
from ab_pipelines.lake.tables import GOLD_INTERACTIONS
from ab_pipelines.stats.interactions import interaction_scan
from ab_pipelines.stats.moments import Moments, RatioMoments

__all__ = [
    "CELLS_MODEL",
    "INTERACTION_FDR",
    "INTERACTION_SOURCES",
    "SOURCE_MODELS",
    "InteractionInputs",
    "ScanTest",
    "day_interaction_cells",
    "interaction_rows",
    "scan_tests",
    "write_interactions",
]

#: The false discovery rate of the day's scan (Benjamini–Hochberg over every pair and metric).
INTERACTION_FDR = 0.05
#: The sources of the day-level model, built from every experiment's models of the day.
INTERACTION_SOURCES = ("interaction_values", "interaction_arms")
#: The per-experiment model each source is cut from (the lineage of the Dagster assets).
SOURCE_MODELS = {"interaction_values": "metric_values", "interaction_arms": "analysed_units"}
CELLS_MODEL = "interaction_cells"
_SUMS = ("n", "num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "num_den_sum")


@dataclass(frozen=True)
class ScanTest:
    """One test of the day: the pair (A before B by id), the metric and whose values are summed."""

    experiment_a: str
    experiment_b: str
    metric: str
    values_from: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.experiment_a, self.experiment_b, self.metric)


def scan_tests(registry: Registry, experiment_ids: Iterable[str]) -> list[ScanTest]:
    """Every (pair, metric) test among ``experiment_ids`` (module doc, "Which metrics").

    Example:
        >>> from ab_pipelines.config import load_registry
        >>> tests = scan_tests(load_registry(), ["search_speed", "recs_ranking"])
        >>> [(t.metric, t.values_from) for t in tests]
        [('revenue', 'recs_ranking'), ('page_load_ms', 'search_speed')]
    """
    ids = sorted(set(experiment_ids))
    exps = registry.experiments
    decisions = {e: decision_metrics(exps[e], registry.metrics) for e in ids}
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            if exps[a].unit != exps[b].unit:
                continue  # different units share no unit
            for m in dict.fromkeys([*decisions[a], *decisions[b]]):
                out.append(ScanTest(a, b, m, a if m in decisions[a] else b))
    return out


class InteractionInputs:
    """What the scan needs of each experiment's models, kept while the day's analysis runs.

    Pass :meth:`keep` as ``write_day``'s ``keep``; then :meth:`cells` runs the day-level model
    on what was kept, and :meth:`release` frees it (also after a failure).
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.experiments: list[str] = []
        self._values: list[Any] = []
        self._arms: list[Any] = []
        self._held: list[Any] = []  # the persisted frames taken from the experiments' runs

    def keep(self, experiment_id: str, models: dict[str, Any]) -> None:
        """Take the experiment's persisted ``metric_values`` and ``first_exposures`` (popped from
        ``models``: they are kept, not recomputed, until :meth:`release`) and note the frames the
        day-level model reads of them: the mature per-unit values of its decision metrics and the
        arms of its analysed (non-crossover) units.

        Only the registry's experiments are scanned (a holdout analysed beside them is not), and
        only their configured variants (``arm``: the position, 0 the baseline).
        """
        from pyspark.sql import functions as F

        exp = self.registry.experiments.get(experiment_id)
        if exp is None:
            return
        wanted = decision_metrics(exp, self.registry.metrics)
        arm = F.lit(None).cast("int")
        for i, v in reversed(list(enumerate(exp.variant_ids))):
            arm = F.when(F.col("variant") == v, F.lit(i)).otherwise(arm)
        tag = F.lit(experiment_id).alias("experiment_id")
        values, firsts = models.pop("metric_values"), models.pop("first_exposures")
        self._held += [values, firsts]
        arms = firsts.where(~F.col("crossover")).select(tag, "unit", arm.alias("arm"))
        values = values.where(F.col("mature") & F.col("metric").isin(wanted)).select(
            tag, "metric", "unit", arm.alias("arm"), "num", "den"
        )
        self._arms.append(arms.where(F.col("arm").isNotNull()))
        self._values.append(values.where(F.col("arm").isNotNull()))
        self.experiments.append(experiment_id)

    def cells(self, spark) -> pa.Table:
        """The day's interaction cells: one row per test of :func:`scan_tests` and cell (A's
        variant, B's variant) with units, from the day-level model ``interaction_cells.sql``."""
        tests = scan_tests(self.registry, self.experiments)
        if not tests:
            return _empty_cells()
        exps = self.registry.experiments
        order = sorted(self.experiments)
        union = lambda frames: functools.reduce(lambda x, y: x.unionByName(y), frames)  # noqa: E731
        sources = {"interaction_values": union(self._values), "interaction_arms": union(self._arms)}
        vars = {
            "interaction_experiments": [{"id": e, "arms": len(exps[e].variant_ids)} for e in order]
        }
        models = models_reading(load_models(MODELS_DIR), INTERACTION_SOURCES)
        out = run_models(spark, models, vars, sources)
        try:
            wide = out[CELLS_MODEL].toArrow().to_pylist()
        finally:
            release(spark, out, list(models))
            for name in sources:
                spark.catalog.dropTempView(name)
        return _pair_cells(wide, tests, {e: i for i, e in enumerate(order)}, exps)

    def release(self) -> None:
        """Let the engine drop the kept frames."""
        self._values, self._arms = [], []
        release_checkpoints(self._held)
        self._held = []
        gc.collect()  # the client's release runs in the frames' finalizers


def _pair_cells(
    wide: Sequence[dict], tests: Sequence[ScanTest], index: Mapping[str, int], exps
) -> pa.Table:
    """The tests' cells, one row per (pair, metric, A's variant, B's variant) with units, from
    the model's rows (per experiment whose values are summed, metric and arm; a column group per
    other experiment and arm)."""
    rows = {(r["experiment_id"], r["metric"], r["arm"]): r for r in wide}
    out = []
    for t in tests:
        other = t.experiment_b if t.values_from == t.experiment_a else t.experiment_a
        f = index[other]
        own_variants = exps[t.values_from].variant_ids
        for i, own in enumerate(own_variants):
            r = rows.get((t.values_from, t.metric, i))
            if r is None:
                continue
            for j, theirs in enumerate(exps[other].variant_ids):
                if not r[f"n_{f}_{j}"]:
                    continue
                a, b = (own, theirs) if t.values_from == t.experiment_a else (theirs, own)
                cell = {"experiment_a": t.experiment_a, "experiment_b": t.experiment_b}
                cell.update(metric=t.metric, variant_a=a, variant_b=b)
                cell["n"] = int(r[f"n_{f}_{j}"])
                cell.update({s: float(r[f"{s}_{f}_{j}"] or 0.0) for s in _SUMS[1:]})
                out.append(cell)
    out.sort(key=lambda c: (c["experiment_a"], c["experiment_b"], c["metric"], c["variant_a"],
                            c["variant_b"]))  # fmt: skip
    return pa.Table.from_pylist(out, schema=_empty_cells().schema)


def _empty_cells() -> pa.Table:
    keys = [(k, pa.string()) for k in ("experiment_a", "experiment_b", "metric")]
    variants = [("variant_a", pa.string()), ("variant_b", pa.string())]
    sums = [("n", pa.int64())] + [(s, pa.float64()) for s in _SUMS[1:]]
    return pa.schema([*keys, *variants, *sums]).empty_table()


@contextlib.contextmanager
def kept_inputs(registry: Registry) -> Iterator[InteractionInputs]:
    """An :class:`InteractionInputs` released on exit."""
    inputs = InteractionInputs(registry)
    try:
        yield inputs
    finally:
        inputs.release()


def day_interaction_cells(spark, lake: Lake, registry: Registry, day: dt.date) -> pa.Table:
    """The cells of ``day`` alone: every analysed experiment's models, then the day-level model
    (what :func:`~ab_pipelines.analysis.day.stats_day` computes beside the sufficient statistics;
    for tests and the engines' parity check)."""
    from ab_pipelines.analysis.sufficient_stats import experiment_models

    with kept_inputs(registry) as inputs:
        for s in states_of_day(lake, registry, day).values():
            if s.analysed:
                with experiment_models(
                    spark, lake, registry, s.experiment_id, day, s.killed_at, ["metric_values"]
                ) as out:
                    inputs.keep(s.experiment_id, out)
        return inputs.cells(spark)


def _moments(rows: Sequence[dict | None], k: int, m: int, ratio: bool) -> Moments | RatioMoments:
    """k × m cells from cell rows (row-major; None: no unit in the cell)."""
    cols = {
        f: np.array([r[f] if r else 0.0 for r in rows], np.float64).reshape(k, m) for f in _SUMS
    }
    if ratio:
        return RatioMoments(**cols)
    return Moments(n=cols["n"], sum=cols["num_sum"], sum_sq=cols["num_sum_sq"])


def interaction_rows(
    cells: pa.Table,
    registry: Registry,
    day: dt.date,
    states: Mapping[str, ExperimentState] | None = None,
    alpha: float = INTERACTION_FDR,
) -> pa.Table:
    """gold.interactions rows of ``day`` from the cells of :meth:`InteractionInputs.cells`.

    One row per (pair, metric) with cells; the tests are scanned together
    (:func:`~ab_pipelines.stats.interactions.interaction_scan`). Each experiment's arms are its
    configured variants, the baseline first, then any other variant a unit has.
    """
    groups: dict[tuple[str, str, str], dict[tuple[str, str], dict]] = defaultdict(dict)
    for r in cells.to_pylist():
        groups[(r["experiment_a"], r["experiment_b"], r["metric"])][
            (r["variant_a"], r["variant_b"])
        ] = r
    exps, metrics = registry.experiments, registry.metrics

    def arms(exp_id: str, seen: Iterable[str]) -> list[str]:
        configured = exps[exp_id].variant_ids
        return [*configured, *sorted(set(seen) - set(configured))]

    layout, tests = {}, {}
    for key, found in sorted(groups.items()):
        a, b, metric = key
        va, vb = arms(a, (x for x, _ in found)), arms(b, (y for _, y in found))
        rows = [found.get((x, y)) for x in va for y in vb]
        layout[key] = (va, vb, rows)
        tests[key] = _moments(rows, len(va), len(vb), metrics[metric].kind == "ratio")
    scan = interaction_scan(tests, alpha=alpha) if tests else None
    by_test = {t.key: t for t in scan_tests(registry, {k for key in groups for k in key[:2]})}
    out = []
    for i, key in enumerate(scan.keys if scan else ()):
        a, b, metric = key
        va, vb, rows = layout[key]
        t = scan.results[i]
        p_adj = float(scan.p_adjusted[i])
        da, db = t.driver
        found = da >= 1
        state_a, state_b = (states or {}).get(a), (states or {}).get(b)
        out.append(
            {
                "experiment_a": a,
                "experiment_b": b,
                "metric": metric,
                "values_from": by_test[key].values_from if key in by_test else None,
                "variants_a": va,
                "variants_b": vb,
                "cell_a": [x for x in va for _ in vb],
                "cell_b": [y for _ in va for y in vb],
                "cell_n": [int(r["n"]) if r else 0 for r in rows],
                "cell_mean": _finite(np.ravel(t.cell_mean)),
                "units": int(sum(r["n"] for r in rows if r)),
                "statistic": _num(t.statistic),
                "df": int(t.df),
                "p_value": _num(t.p_value),
                "p_adjusted": _num(p_adj),
                "flagged": bool(np.isfinite(p_adj) and p_adj <= alpha),
                "driver_a": va[da] if found else None,
                "driver_b": vb[db] if found else None,
                "interaction": _num(t.contrast[da - 1, db - 1]) if found else None,
                "interaction_se": _num(t.contrast_se[da - 1, db - 1]) if found else None,
                "effect_in_baseline": _num(t.effect[da - 1, 0]) if found else None,
                "effect_in_driver": _num(t.effect[da - 1, db]) if found else None,
                "traffic_p_value": _num(t.traffic_p_value),
                "registry_sha_a": state_a.registry_sha if state_a else None,
                "registry_sha_b": state_b.registry_sha if state_b else None,
                "config_version": state_a.config_version if state_a else None,
                "day": day,
            }
        )
    return pa.Table.from_pylist(out, schema=GOLD_INTERACTIONS.schema)


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _finite(xs: Iterable[Any]) -> list[float | None]:
    return [_num(x) for x in xs]


def write_interactions(
    lake: Lake,
    registry: Registry,
    day: dt.date,
    cells: pa.Table,
    states: Mapping[str, ExperimentState] | None = None,
) -> pa.Table:
    """Scan the cells and replace ``day``'s partition of gold.interactions; the rows written."""
    table = interaction_rows(cells, registry, day, states)
    lake.write_arrow(GOLD_INTERACTIONS, table, replace=[{"day": day.isoformat()}])
    return table
