"""What is wrong on one analysis day: alert conditions read from the gold, ops and silver tables.

A condition is a fact about one day, not an alert: :func:`ab_pipelines.safety.alerts.reconcile`
turns the conditions of successive days into alert episodes. The kinds (a missing table reads as
empty, so it yields no condition):

| kind | severity | experiment_id | subject | holds when |
| --- | --- | --- | --- | --- |
| ``guardrail_breach`` | critical | the experiment | ``metric/variant`` | a segment-"all" verdict of gold.experiment_results (:class:`~ab_pipelines.analysis.decision.MetricVerdict`) has its guardrail breached |
| ``srm`` | critical | the experiment | ``""`` | gold.srm segment "all" is flagged |
| ``crossovers`` | warning | the experiment | ``""`` | gold.health check "crossovers" is flagged |
| ``dq_failed`` | critical | ``""`` | ``table.check`` | an ops.dq_results row of the day did not pass |
| ``no_exposures`` | warning | the experiment | ``""`` | a running experiment (``ExperimentState.running``) has no exposure with event_date = day in silver.exposure_counts |
| ``interaction`` | warning | experiment A of the pair | ``B/metric`` | a gold.interactions row is flagged (BH across every pair and metric of the day) and neither experiment is stopped or killed |

Experiments that are stopped or killed by ``day`` (:func:`stopped_experiments`) still get their
gold conditions here; ``reconcile`` ignores them and closes their alerts.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.analysis.decision import ALL_SEGMENT, MetricVerdict, Srm
from ab_pipelines.analysis.state import kills, states_of_day
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_INTERACTIONS,
    GOLD_SRM,
    SILVER_EXPOSURE_COUNTS,
)
from ab_pipelines.quality.results import failed_checks
from ab_pipelines.safety._util import json_safe, num

__all__ = [
    "CONDITION_KINDS",
    "CRITICAL",
    "Condition",
    "WARNING",
    "conditions_for_day",
    "stopped_experiments",
]

CRITICAL = "critical"
WARNING = "warning"
#: every kind conditions_for_day can produce: the default scope reconcile closes alerts in.
CONDITION_KINDS: tuple[str, ...] = (
    "guardrail_breach",
    "srm",
    "crossovers",
    "dq_failed",
    "no_exposures",
    "interaction",
)
_SAMPLE_CHARS = 500


@dataclass(frozen=True)
class Condition:
    """One alert condition holding on one day. Its identity is (kind, experiment_id, subject)."""

    kind: str
    severity: str
    experiment_id: str
    subject: str
    message: str
    effect: float | None = None
    bound: float | None = None
    margin: float | None = None
    detail: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.kind, self.experiment_id, self.subject)


def _on_day(day: dt.date, column: str = "day") -> pc.Expression:
    return pc.field(column) == pa.scalar(day, pa.date32())


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2%}"


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


# ---- experiment state ---------------------------------------------------------------------


def stopped_experiments(lake: Lake, registry: Registry, day: dt.date) -> set[str]:
    """Experiments whose alerts close on ``day``: status stopped, or killed before ``day`` ended
    (``analysis.state``'s kill rule).

    A kill of an experiment no longer in the registry counts too.
    """
    out = {e.id for e in registry.experiments.values() if e.status == "stopped"}
    out |= {exp_id for exp_id, kill in kills(lake).items() if kill.by_end_of(day)}
    return out


# ---- the kinds ----------------------------------------------------------------------------


def _guardrail_breaches(lake: Lake, day: dt.date) -> list[Condition]:
    """The breached guardrails of the day's scorecards (segment "all"), one condition each."""
    where = _on_day(day) & (pc.field("segment") == ALL_SEGMENT)
    out = []
    for r in lake.read_arrow(GOLD_EXPERIMENT_RESULTS, filter=where).to_pylist():
        v = MetricVerdict.from_gold(r)
        if not v.breached:
            continue
        assert v.guardrail is not None
        # The estimate the guardrail check reads every day (fixed horizon for a metric that has
        # no always-valid one).
        effect, bound, margin = (
            num(v.monitoring_relative.effect),
            num(v.guardrail.bound),
            num(v.guardrail.margin),
        )
        sign = "+" if bound is not None and bound > 0 else "-"
        limit = "n/a" if margin is None else f"{sign}{margin:.2%}"
        out.append(
            Condition(
                kind="guardrail_breach",
                severity=CRITICAL,
                experiment_id=r["experiment_id"],
                subject=f"{v.metric}/{v.variant}",
                effect=effect,
                bound=bound,
                margin=margin,
                message=(
                    f"{r['experiment_id']}: guardrail {v.metric} is breached by variant "
                    f"{v.variant} on {day}: relative change {_pct(effect)} vs {v.baseline}, "
                    f"its {'fixed-horizon' if v.fixed_horizon_only else 'always-valid'} bound {_pct(bound)} "
                    f"lies beyond the {limit} margin."
                ),
                detail=json_safe(
                    {
                        **v.arms(),
                        "seq_rel_ci_low": v.sequential_relative.ci_low,
                        "seq_rel_ci_high": v.sequential_relative.ci_high,
                        "decision": r["decision"],
                    }
                ),
            )
        )
    return out


def _srm(lake: Lake, day: dt.date) -> list[Condition]:
    where = _on_day(day) & (pc.field("segment") == ALL_SEGMENT)
    by_exp: dict[str, list[dict]] = defaultdict(list)
    for r in lake.read_arrow(GOLD_SRM, filter=where).to_pylist():
        by_exp[r["experiment_id"]].append(r)
    out = []
    for exp_id, rows in sorted(by_exp.items()):
        srm = Srm.from_gold(rows)
        if not srm.flagged:
            continue
        p = num(srm.p_value)
        shown = ", ".join(
            f"{r['variant']} {r['units']} (expected {r['expected']:.0f})" for r in rows
        )
        out.append(
            Condition(
                kind="srm",
                severity=CRITICAL,
                experiment_id=exp_id,
                subject="",
                message=(
                    f"{exp_id}: sample ratio mismatch on {day}: {shown}, chi-square p = {_g(p)}; "
                    "its results are not to be trusted."
                ),
                detail=json_safe(
                    {
                        "counts": dict(srm.counts),
                        "expected": {r["variant"]: r["expected"] for r in rows},
                        "weights": {r["variant"]: r["weight"] for r in rows},
                        "statistic": rows[0]["statistic"],
                        "p_value": p,
                    }
                ),
            )
        )
    return out


def _crossovers(lake: Lake, day: dt.date) -> list[Condition]:
    where = (
        _on_day(day)
        & (pc.field("check") == "crossovers")
        & (pc.field("flagged") == pa.scalar(True))
    )
    out = []
    for r in lake.read_arrow(GOLD_HEALTH, filter=where).to_pylist():
        out.append(
            Condition(
                kind="crossovers",
                severity=WARNING,
                experiment_id=r["experiment_id"],
                subject=r["subject"] or "",
                message=f"{r['experiment_id']}: too many crossovers on {day}: {r['detail']}.",
                detail=json_safe(
                    {"crossovers": r["value"], "p_value": r["p_value"], "text": r["detail"]}
                ),
            )
        )
    return out


def _dq_failed(lake: Lake, day: dt.date) -> list[Condition]:
    out = []
    for r in failed_checks(lake, day):
        sample = r["sample"] or ""
        out.append(
            Condition(
                kind="dq_failed",
                severity=CRITICAL,
                experiment_id="",
                subject=f"{r['table']}.{r['check']}",
                message=(
                    f"data-quality check {r['check']} failed on {r['table']} for {day}: "
                    f"observed {r['observed']}."
                ),
                detail={
                    "table": r["table"],
                    "check": r["check"],
                    "observed": r["observed"],
                    "description": r["description"],
                    "sample": sample[:_SAMPLE_CHARS],
                },
            )
        )
    return out


def _no_exposures(lake: Lake, registry: Registry, day: dt.date) -> list[Condition]:
    states = states_of_day(lake, registry, day)
    running = [registry.experiments[i] for i, s in sorted(states.items()) if s.running]
    if not running:
        return []
    counts = lake.read_arrow(
        SILVER_EXPOSURE_COUNTS,
        filter=_on_day(day, "event_date"),
        columns=["experiment_id", "exposures"],
    )
    seen: dict[str, int] = defaultdict(int)
    for r in counts.to_pylist():
        seen[r["experiment_id"]] += int(r["exposures"] or 0)
    return [
        Condition(
            kind="no_exposures",
            severity=WARNING,
            experiment_id=e.id,
            subject="",
            message=(
                f"{e.id}: no exposures on {day} although it is running (started {e.start_date}); "
                "check the SDK integration and the landing of exposure events."
            ),
            detail={"exposures": 0, "start_date": e.start_date.isoformat()},
        )
        for e in running
        if seen.get(e.id, 0) == 0
    ]


def _mean(x: float | None) -> str:
    """A cell mean: 4 significant digits, in plain notation (1668, 0.1234)."""
    return "n/a" if x is None else f"{x:.4g}" if abs(x) < 1e5 else f"{x:.0f}"


def _relative_to_baseline(row: dict, effect: float | None, b_arm: str) -> str:
    """A's effect within B's arm ``b_arm`` relative to A's baseline there (cell row 0)."""
    base = row["cell_mean"][row["variants_b"].index(b_arm)]
    return "n/a" if effect is None or not base else _pct(effect / base)


def _interactions(lake: Lake, registry: Registry, day: dt.date) -> list[Condition]:
    """The flagged interactions of the day's scan, one condition per (pair, metric)."""
    where = _on_day(day) & (pc.field("flagged") == pa.scalar(True))
    rows = lake.read_arrow(GOLD_INTERACTIONS, filter=where).to_pylist()
    if not rows:
        return []
    stopped = stopped_experiments(lake, registry, day)
    out = []
    for r in rows:
        a, b, metric = r["experiment_a"], r["experiment_b"], r["metric"]
        if a in stopped or b in stopped:
            continue  # a stopped or killed experiment's interaction is moot
        cells = [
            {"a": x, "b": y, "n": n, "mean": m}
            for x, y, n, m in zip(
                r["cell_a"], r["cell_b"], r["cell_n"], r["cell_mean"], strict=True
            )
        ]
        shown = "; ".join(f"{c['a']}/{c['b']} n={c['n']} mean={_mean(c['mean'])}" for c in cells)
        da, db, base_b = r["driver_a"], r["driver_b"], r["variants_b"][0]
        driver = ""
        if da is not None:
            in_base = _relative_to_baseline(r, r["effect_in_baseline"], base_b)
            in_driver = _relative_to_baseline(r, r["effect_in_driver"], db)
            driver = (
                f" The effect of {a} {da} (vs {r['variants_a'][0]}) is {in_base} when {b} is "
                f"{base_b} and {in_driver} when it is {db}."
            )
        out.append(
            Condition(
                kind="interaction",
                severity=WARNING,
                experiment_id=a,
                subject=f"{b}/{metric}",
                effect=num(r["interaction"]),
                message=(
                    f"{a} x {b}: the experiments interact on {metric} on {day} "
                    f"(BH-adjusted p = {_g(num(r['p_adjusted']))}, raw p = {_g(num(r['p_value']))})."
                    f"{driver} Cells ({a}/{b}): {shown}."
                ),
                detail=json_safe(
                    {
                        "experiment_a": a,
                        "experiment_b": b,
                        "metric": metric,
                        "values_from": r["values_from"],
                        "cells": cells,
                        "statistic": r["statistic"],
                        "df": r["df"],
                        "p_value": r["p_value"],
                        "p_adjusted": r["p_adjusted"],
                        "driver": [da, db],
                        "interaction": r["interaction"],
                        "interaction_se": r["interaction_se"],
                    }
                ),
            )
        )
    return out


def conditions_for_day(lake: Lake, registry: Registry, day: dt.date) -> list[Condition]:
    """Every alert condition holding on analysis day ``day``, sorted by identity."""
    found = [
        *_guardrail_breaches(lake, day),
        *_srm(lake, day),
        *_crossovers(lake, day),
        *_dq_failed(lake, day),
        *_no_exposures(lake, registry, day),
        *_interactions(lake, registry, day),
    ]
    return sorted(found, key=lambda c: c.identity)
