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

How (in the experiments' own passes, not a query per pair). :class:`InteractionPass` is given
to :func:`~ab_pipelines.analysis.sufficient_stats.day_experiment_stats`. Told the day's
experiments, it plans which experiment's values are summed by which partners' arms (the tests'
``values_from`` and ``other``). The experiments whose arms are needed run their
``first_exposures`` model first (kept, and given to their own run later, so it is computed once);
their analysed (non-crossover) units become one row per unit with its arm in each of them
(:meth:`InteractionPass.join_arms`, one grouping, kept for the day). Then each experiment's run
passes its partners to ``dbt_like_sql/sufficient_stats.sql`` (var ``interaction_partners``),
which joins those rows to its ``metric_values`` and adds, in the grouping that sums the
statistics of segment "all", the cells: per partner and arm of it, n and the sums of num and
num² by metric and variant, and for a ratio metric (when one is tested) den, den² and num·den from
a second pass of its rows through the same sums. The per-unit values are read once, by the pass
that reads them anyway; the work per experiment grows with the number of its partners × arms.
Earlier versions kept every experiment's ``metric_values`` (a persisted copy) and grouped them
all once at the end of the day against every other experiment, and before that joined each value
row to the unit's arm in every partner; their cost against this one: docs/analysis.md.

The result, ``gold.interactions``, replaces the day's partition (a re-run rewrites it exactly);
:mod:`ab_pipelines.safety.conditions` raises an ``interaction`` alert for each flagged row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ab_pipelines.analysis.decision import decision_metrics
from ab_pipelines.analysis.state import ExperimentState
from ab_pipelines.analysis.sufficient_stats import Partners
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.engine import release_checkpoints
from ab_pipelines.lake.tables import GOLD_INTERACTIONS
from ab_pipelines.stats.interactions import interaction_scan
from ab_pipelines.stats.moments import Moments, RatioMoments

__all__ = [
    "INTERACTION_FDR",
    "SOURCE_MODELS",
    "InteractionPass",
    "ScanTest",
    "day_interaction_cells",
    "interaction_pass",
    "interaction_rows",
    "scan_tests",
    "write_interactions",
]

#: The false discovery rate of the day's scan (Benjamini–Hochberg over every pair and metric).
INTERACTION_FDR = 0.05
#: The model each source of the scan is cut from (the lineage of the Dagster assets): the
#: partners' arms, which sufficient_stats reads, are their analysed units.
SOURCE_MODELS = {"interaction_vectors": "analysed_units"}
_SUMS = ("n", "num_sum", "num_sum_sq", "den_sum", "den_sum_sq", "num_den_sum")
# The sums of a cell as the model lays them out: every metric's row has the first part
# (interaction_cells), a ratio metric's row the second too (interaction_den_cells) when the
# experiment has a ratio metric tested.
_PARTS = (_SUMS[:3], _SUMS[3:])


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

    @property
    def other(self) -> str:
        """The experiment whose arms ``values_from``'s values are summed by."""
        return self.experiment_b if self.values_from == self.experiment_a else self.experiment_a


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


class InteractionPass:
    """The scan's part of the day's experiment runs (:func:`~ab_pipelines.analysis.sufficient_stats.day_experiment_stats`):
    which experiment's values are summed by which partners' arms, the partners' arms, and the
    cells each run returns. :meth:`release` frees the arms kept (also after a failure).
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.experiments: list[str] = []
        self.tests: list[ScanTest] = []
        self._partners: dict[str, list[str]] = {}
        self._parts: dict[str, tuple[tuple[str, ...], ...]] = {}  # each run's cell layout
        self._needed: set[str] = set()
        self._arms: dict[str, Any] = {}
        self._columns: dict[str, str] = {}
        self._vectors: Any = None
        self._held: list[Any] = []  # the frames kept for the day
        # (experiment, metric, variant) -> (interaction_cells, interaction_den_cells)
        self._rows: dict[tuple[str, str, str], tuple[list | None, list | None]] = {}

    def plan(self, experiment_ids: Iterable[str]) -> None:
        """The day's analysed experiments: only the registry's are scanned (not a holdout)."""
        self.experiments = sorted(e for e in experiment_ids if e in self.registry.experiments)
        self.tests = scan_tests(self.registry, self.experiments)
        partners: dict[str, set[str]] = defaultdict(set)
        ratio: dict[str, bool] = defaultdict(bool)
        for t in self.tests:
            partners[t.values_from].add(t.other)
            ratio[t.values_from] |= self.registry.metrics[t.metric].kind == "ratio"
        self._partners = {e: sorted(p) for e, p in partners.items()}
        # den, den² and num·den only when a ratio metric is tested
        self._parts = {e: _PARTS if ratio[e] else _PARTS[:1] for e in self._partners}
        self._needed = set().union(*partners.values())

    def needs_arms(self, experiment_id: str) -> bool:
        return experiment_id in self._needed

    def keep_arms(self, experiment_id: str, first_exposures: Any) -> None:
        """Keep the experiment's analysed units with their ``arm`` (the variant's position in its
        configured variants, 0 the baseline; other variants are not scanned) from its
        ``first_exposures`` (non-crossover), held until :meth:`release`."""
        from pyspark.sql import functions as F

        exp = self.registry.experiments[experiment_id]
        arm = F.lit(None).cast("int")
        for i, v in reversed(list(enumerate(exp.variant_ids))):
            arm = F.when(F.col("variant") == v, F.lit(i)).otherwise(arm)
        self._held.append(first_exposures)
        arms = first_exposures.where(~F.col("crossover")).select(
            F.lit(experiment_id).alias("experiment_id"), "unit", arm.alias("arm")
        )
        self._arms[experiment_id] = arms.where(F.col("arm").isNotNull())

    def join_arms(self, spark) -> None:
        """One row per unit kept by :meth:`keep_arms` with its arm in each of those experiments
        (``a<i>``, NULL where it is not analysed), computed once for the day and kept."""
        from ab_pipelines.lake.engine import checkpoint

        if not self._arms:
            return
        from pyspark.sql import functions as F

        self._columns = {e: f"a{i}" for i, e in enumerate(sorted(self._arms))}
        arms = functools.reduce(lambda x, y: x.unionByName(y), self._arms.values())
        columns = [
            F.max(F.when(F.col("experiment_id") == e, F.col("arm"))).alias(c)
            for e, c in self._columns.items()
        ]
        self._vectors = checkpoint(arms.groupBy("unit").agg(*columns))
        self._held.append(self._vectors)

    def partners_of(self, experiment_id: str) -> Partners | None:
        """The partners whose arms the experiment's values are summed by, or None."""
        ids = self._partners.get(experiment_id)
        if not ids:
            return None
        exps = self.registry.experiments
        listed = tuple(
            {"id": p, "arms": len(exps[p].variant_ids), "column": self._columns[p]} for p in ids
        )
        return Partners(listed, self._parts[experiment_id], self._vectors)

    def take(self, experiment_id: str, cells: pa.Table | None) -> None:
        """The ``interaction_cells`` and ``interaction_den_cells`` of the experiment's "all" rows,
        by metric and variant (NULL where the variant has no unit: the model's grid has the row,
        the sums do not)."""
        if cells is None:
            return
        for r in cells.to_pylist():
            both = (r["interaction_cells"], r["interaction_den_cells"])
            self._rows[(experiment_id, r["metric"], r["variant"])] = both

    def _offsets(self, experiment_id: str) -> tuple[dict[tuple[str, int], int], int]:
        """Where each (partner, arm)'s cell starts in each part of the experiment's cells, and
        the length of each part."""
        width = len(_PARTS[0])
        out, at = {}, 0
        for p in self._partners[experiment_id]:
            for j in range(len(self.registry.experiments[p].variant_ids)):
                out[(p, j)] = at
                at += width
        return out, at

    def cells(self) -> pa.Table:
        """The day's interaction cells: one row per test of :func:`scan_tests` and cell (A's
        variant, B's variant) with units. den_sum, den_sum_sq and num_den_sum are NULL for a metric
        that is not a ratio (not summed)."""
        exps, metrics = self.registry.experiments, self.registry.metrics
        layouts = {e: self._offsets(e) for e in self._partners}
        out = []
        for t in self.tests:
            ratio = metrics[t.metric].kind == "ratio"
            offsets, length = layouts[t.values_from]
            for own in exps[t.values_from].variant_ids:
                key = (t.values_from, t.metric, own)
                if key not in self._rows:
                    raise RuntimeError(
                        f"interaction scan: no cells of {'/'.join(key)} "
                        "(the experiment's run did not return its row)"
                    )
                r, den = self._rows[key]
                if r is None:
                    continue  # no unit of the variant has a value of the metric: no cell
                if ratio and den is None:
                    raise RuntimeError(
                        f"interaction scan: no den cells of the ratio metric {'/'.join(key)}"
                    )
                if len(r) != length or (ratio and len(den) != length):
                    raise RuntimeError(
                        f"interaction scan: the cells of {'/'.join(key)} are not laid out as "
                        f"planned ({len(r)} sums, {length} expected)"
                    )
                for j, theirs in enumerate(exps[t.other].variant_ids):
                    at = offsets[(t.other, j)]
                    n = int(r[at] or 0)
                    if not n:
                        continue
                    a, b = (own, theirs) if t.values_from == t.experiment_a else (theirs, own)
                    cell = {"experiment_a": t.experiment_a, "experiment_b": t.experiment_b}
                    cell.update(metric=t.metric, variant_a=a, variant_b=b, n=n)
                    cell.update(dict.fromkeys(_SUMS[1:]))
                    for i, f in enumerate(_PARTS[0][1:], start=at + 1):
                        cell[f] = float(r[i] or 0.0)
                    if ratio:
                        for i, f in enumerate(_PARTS[1], start=at):
                            cell[f] = float(den[i] or 0.0)
                    out.append(cell)
        out.sort(key=lambda c: (c["experiment_a"], c["experiment_b"], c["metric"], c["variant_a"],
                                c["variant_b"]))  # fmt: skip
        return pa.Table.from_pylist(out, schema=_empty_cells().schema)

    def release(self) -> None:
        """Let the engine drop the kept frames."""
        self._arms, self._vectors = {}, None
        release_checkpoints(self._held)


def _empty_cells() -> pa.Table:
    keys = [(k, pa.string()) for k in ("experiment_a", "experiment_b", "metric")]
    variants = [("variant_a", pa.string()), ("variant_b", pa.string())]
    sums = [("n", pa.int64())] + [(s, pa.float64()) for s in _SUMS[1:]]
    return pa.schema([*keys, *variants, *sums]).empty_table()


@contextlib.contextmanager
def interaction_pass(registry: Registry) -> Iterator[InteractionPass]:
    """An :class:`InteractionPass` released on exit."""
    scan = InteractionPass(registry)
    try:
        yield scan
    finally:
        scan.release()


def day_interaction_cells(spark, lake: Lake, registry: Registry, day: dt.date) -> pa.Table:
    """The cells of ``day`` alone: every analysed experiment's run with the scan's partners, as
    :func:`~ab_pipelines.analysis.day.stats_day` does, nothing written (tests, the engines'
    parity check)."""
    from ab_pipelines.analysis.sufficient_stats import day_experiment_stats

    with interaction_pass(registry) as scan:
        day_experiment_stats(spark, lake, registry, day, scan=scan)
        return scan.cells()


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
    """gold.interactions rows of ``day`` from the cells of :meth:`InteractionPass.cells`.

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
