"""What each dashboard page shows, as plain functions of the Lake and the registry (no Streamlit).

Every function that reads tables is marked with :func:`reads`, naming the tables it reads, so the
Streamlit side caches its answer keyed on those tables' Delta versions: a new materialization is
picked up on the next rerun, and nothing is read twice while the tables stay as they are. Tables are
read through the Lake (delta-rs and Arrow), with the columns each view needs; Spark is never started.

Numbers come from the gold tables and from :func:`ab_pipelines.analysis.scorecard.scorecard`, the
same typed scorecard ``abp results`` prints: nothing statistical is recomputed here, and which
estimate a decision reads is :mod:`ab_pipelines.analysis.decision`'s choice, not this module's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.analysis.decision import (
    ALL_SEGMENT,
    DECISION_TEXT,
    Estimate,
    MetricVerdict,
    PlanEntry,
    Scorecard,
    SegmentScorecard,
    Srm,
    view_estimate,
)
from ab_pipelines.analysis.scorecard import SCORECARD_TABLES, analysed_days, read_scorecard
from ab_pipelines.analysis.state import ExperimentState, states_of_day
from ab_pipelines.analysis.state import kills as kill_records
from ab_pipelines.config.approvals import content_sha
from ab_pipelines.config.models import Metric
from ab_pipelines.config.publish import current_payload
from ab_pipelines.config.registry import Registry
from ab_pipelines.contracts.approval import approval_of
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    BRONZE_QUARANTINE,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    OPS_ALERTS,
    OPS_AUDIT_LOG,
    OPS_DQ_RESULTS,
    OPS_KILLS,
    SILVER_EXPOSURE_COUNTS,
    TableSpec,
)
from ab_pipelines.quality.results import checks_of_day
from ab_pipelines.safety import open_alerts
from ab_pipelines.settings import Paths

__all__ = [
    "DECISION_TEXT",
    "VERDICTS",
    "alerts_open",
    "approvals",
    "audit_log",
    "decision_estimate",
    "dq_by_day",
    "dq_of_day",
    "dq_results",
    "effect_over_time",
    "experiment_days",
    "experiments_overview",
    "exposures_over_time",
    "health_checks",
    "interval_text",
    "kills",
    "pick_estimate",
    "plan_lines",
    "published_config",
    "quarantine_counts",
    "reads",
    "scorecard_card",
    "scorecard_rows",
    "segment_rows",
    "srm_over_time",
    "verdict",
]

F = TypeVar("F", bound=Callable[..., Any])

#: the colour classes of a lift: its interval against zero, read in the metric's desired direction.
VERDICTS = ("better", "worse", "inconclusive", "no data")
_STATUS_ORDER = {"running": 0, "approved": 1, "in_review": 2, "draft": 3, "killed": 4, "stopped": 5}


def reads(*specs: TableSpec, registry: bool = False) -> Callable[[F], F]:
    """Mark a view function with the tables it reads (its cache key) and whether it takes the registry.

    A marked function is called as ``fn(lake, *args)``, or ``fn(lake, registry, *args)`` when
    ``registry`` is true.
    """

    def mark(fn: F) -> F:
        fn.reads = specs  # type: ignore[attr-defined]
        fn.uses_registry = registry  # type: ignore[attr-defined]
        return fn

    return mark


def _frame(table: pa.Table | list[dict], columns: Sequence[str]) -> pd.DataFrame:
    rows = table.to_pylist() if isinstance(table, pa.Table) else table
    return pd.DataFrame(rows, columns=list(columns))


def _pct(x: float | None) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:+.1%}"


def interval_text(effect: float | None, low: float | None, high: float | None) -> str:
    """A relative lift with its interval, e.g. ``+1.2% [-0.5%, +2.9%]``."""
    if effect is None or pd.isna(effect):
        return "n/a"
    return f"{_pct(effect)} [{_pct(low)}, {_pct(high)}]"


def verdict(low: float | None, high: float | None, higher_is_better: bool) -> str:
    """``better`` / ``worse`` when the interval lies wholly on one side of 0, else ``inconclusive``.

    Example:
        >>> verdict(0.01, 0.05, True), verdict(0.01, 0.05, False), verdict(-0.01, 0.05, True)
        ('better', 'worse', 'inconclusive')
    """
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "no data"
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "inconclusive"


def decision_estimate(
    row: Mapping[str, Any], sequential: bool
) -> tuple[float | None, float | None, float | None]:
    """The relative lift and interval the decision reads from a gold.experiment_results row.

    :meth:`ab_pipelines.analysis.decision.MetricVerdict.decision_relative`: always-valid when the
    experiment is sequential; else fixed-horizon, CUPED where it applies.
    """
    est = MetricVerdict.from_gold(row).decision_relative(sequential)
    return est.effect, est.ci_low, est.ci_high


# ---- overview ----------------------------------------------------------------------------------


_OVERVIEW_COLUMNS = (
    "experiment",
    "name",
    "status",
    "owner",
    "start_date",
    "as_of",
    "days_running",
    "exposures",
    "units",
    "srm",
    "srm_p_value",
    "data_quality",
    "guardrails",
    "decision",
    "primary_metric",
    "lift",
    "ci_low",
    "ci_high",
    "primary_lift",
)


@reads(
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SRM,
    SILVER_EXPOSURE_COUNTS,
    OPS_DQ_RESULTS,
    OPS_KILLS,
    OPS_AUDIT_LOG,
    registry=True,
)
def experiments_overview(lake: Lake, registry: Registry) -> pd.DataFrame:
    """One row per experiment of the registry, as of its latest analysed day.

    Columns: status (``killed`` once in ops.kills), days running, exposures logged
    (silver.exposure_counts), analysed units, the SRM badge (``ok`` / ``flagged``), data quality
    (failed checks of ops.dq_results during the experiment), guardrails (``ok`` / ``breached``),
    the decision, and the first primary metric's lift with the interval the decision reads.
    """
    all_rows = pc.field("segment") == ALL_SEGMENT
    results = lake.read_arrow(GOLD_EXPERIMENT_RESULTS, filter=all_rows).to_pylist()
    latest: dict[str, dt.date] = {}
    for r in results:
        latest[r["experiment_id"]] = max(r["day"], latest.get(r["experiment_id"], r["day"]))
    srm = lake.read_arrow(
        GOLD_SRM,
        filter=all_rows,
        columns=["experiment_id", "variant", "units", "p_value", "flagged", "day"],
    ).to_pylist()
    exposed = (
        lake.read_arrow(SILVER_EXPOSURE_COUNTS, columns=["experiment_id", "exposures"])
        .group_by("experiment_id")
        .aggregate([("exposures", "sum")])
        .to_pylist()
    )
    exposures = {r["experiment_id"]: r["exposures_sum"] for r in exposed}
    dq = lake.read_arrow(OPS_DQ_RESULTS, columns=["day", "passed"]).to_pylist()
    states: dict[dt.date, dict[str, ExperimentState]] = {}  # as_of -> states_of_day, read once
    for as_of in set(latest.values()):
        states[as_of] = states_of_day(lake, registry, as_of)
    killed = kill_records(lake)

    rows = []
    for exp in registry.experiments.values():
        as_of = latest.get(exp.id)
        kill = killed.get(exp.id)
        state = states[as_of].get(exp.id) if as_of is not None else None
        mine = [r for r in results if r["experiment_id"] == exp.id and r["day"] == as_of]
        srm_now = Srm.from_gold(
            [r for r in srm if r["experiment_id"] == exp.id and r["day"] == as_of]
        )
        verdicts = [MetricVerdict.from_gold(r) for r in mine]
        guards = [v for v in verdicts if v.role == "guardrail"]
        primary = next(iter(exp.metrics.primary), None)
        lead = next((v for v in verdicts if v.metric == primary), None)
        est = lead.decision_relative(exp.analysis.sequential) if lead else None
        effect, low, high = (est.effect, est.ci_low, est.ci_high) if est else (None, None, None)
        failed_dq = (
            sum(1 for r in dq if not r["passed"] and exp.start_date <= r["day"] <= as_of)
            if as_of
            else None
        )
        rows.append(
            {
                "experiment": exp.id,
                "name": exp.name,
                "status": "killed" if kill else exp.status,
                "owner": exp.owner,
                "start_date": exp.start_date,
                "as_of": as_of,
                "days_running": state.days_running if state is not None else 0,
                "exposures": int(exposures.get(exp.id) or 0),
                "units": sum(srm_now.counts.values()) if srm_now.counts else None,
                "srm": "no data"
                if not srm_now.counts
                else ("flagged" if srm_now.flagged else "ok"),
                "srm_p_value": srm_now.p_value if srm_now.counts else None,
                "data_quality": "no data"
                if failed_dq is None
                else ("ok" if failed_dq == 0 else f"{failed_dq} failed"),
                "guardrails": "none"
                if not exp.metrics.guardrails
                else "no data"
                if not guards
                else ("breached" if any(v.breached for v in guards) else "ok"),
                "decision": mine[0]["decision"] if mine else None,
                "primary_metric": primary,
                "lift": effect,
                "ci_low": low,
                "ci_high": high,
                "primary_lift": interval_text(effect, low, high) if lead else "n/a",
            }
        )
    rows.sort(key=lambda r: (_STATUS_ORDER.get(r["status"], 9), r["experiment"]))
    return _frame(rows, _OVERVIEW_COLUMNS)


@reads(GOLD_EXPERIMENT_RESULTS)
def experiment_days(lake: Lake, experiment_id: str) -> list[dt.date]:
    """The days with results for an experiment, oldest first."""
    return analysed_days(lake, experiment_id)


# ---- scorecard ---------------------------------------------------------------------------------


@reads(*SCORECARD_TABLES, registry=True)
def scorecard_card(
    lake: Lake, registry: Registry, experiment_id: str, day: dt.date | None = None
) -> Scorecard:
    """The scorecard of ``abp results`` (CONTRACTS section 4); raises ScorecardError if there is none."""
    return read_scorecard(lake, registry, experiment_id, day)


def pick_estimate(entry: Mapping[str, Any], cuped: bool, sequential: bool) -> tuple[dict, str]:
    """The relative estimate of a scorecard metric entry (JSON face) for the chosen view, and its label.

    :func:`ab_pipelines.analysis.decision.view_estimate` on the entry's relative estimates (a
    quantile metric's ``sequential`` is null: fixed horizon only).
    """
    c, seq = entry.get("cuped"), entry.get("sequential")
    return view_estimate(
        entry["relative"],
        None if c is None else c["relative"],
        None if seq is None else seq["relative"],
        want_cuped=cuped,
        want_sequential=sequential,
        fixed_horizon_only=entry.get("kind") == "quantile",
    )


_SCORE_COLUMNS = (
    "metric",
    "role",
    "variant",
    "baseline",
    "n_baseline",
    "n_variant",
    "mean_baseline",
    "mean_variant",
    "statistic",
    "lift",
    "ci_low",
    "ci_high",
    "p_value",
    "p_value_adjusted",
    "significant",
    "desired",
    "verdict",
    "estimate",
    "variance_reduction",
    "margin",
    "bound",
    "breached",
    "chance_to_win",
    "risk_control",
    "risk_variant",
    "bayes_call",
    "maturing",
    "adj_lift",
    "adj_variance_reduction",
)


def _entry_row(
    v: MetricVerdict,
    metrics: Mapping[str, Metric],
    cuped: bool,
    sequential: bool,
    bayesian: bool = False,
) -> dict[str, Any]:
    est, label = v.view(cuped, sequential)
    b = v.bayesian
    if bayesian and b is not None:  # the posterior (on CUPED where it applies) and its interval
        est = Estimate(b.effect, b.ci_low, b.ci_high, None)
        label = "Bayesian posterior" + (", CUPED" if v.cuped is not None else ", raw")
    metric = metrics.get(v.metric)
    higher = metric.higher_is_better if metric is not None else True
    guard = v.shown_guardrail
    return {
        **v.arms(),
        "statistic": v.statistic,  # what mean_* hold: "mean", or e.g. "p90 of events"
        "role": v.role,
        "lift": est.effect,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
        "p_value": est.p_value,
        "p_value_adjusted": v.p_value_adjusted,
        "significant": v.significant,
        "desired": "higher" if higher else "lower",
        "verdict": verdict(est.ci_low, est.ci_high, higher),
        "estimate": label,
        "variance_reduction": None if v.cuped is None else v.cuped.variance_reduction,
        "margin": None if guard is None else guard.margin,
        "bound": None if guard is None else guard.bound,
        "breached": None if guard is None else guard.breached,
        "chance_to_win": None if b is None else b.chance_to_win,
        "risk_control": None if b is None else b.risk_control,
        "risk_variant": None if b is None else b.risk_variant,
        "bayes_call": None if b is None else b.call,
        "maturing": v.maturing,
        # regression adjustment on several covariates (analysis.covariates): reported beside
        # CUPED, never what decides
        "adj_lift": None if v.regression is None else v.regression.relative.effect,
        "adj_variance_reduction": None if v.regression is None else v.regression.variance_reduction,
    }


def _verdicts(card: Scorecard | Mapping[str, Any]) -> tuple[MetricVerdict, ...]:
    if isinstance(card, Scorecard):
        return card.metrics
    return tuple(MetricVerdict.from_json(e) for e in card.get("metrics") or ())


def _segments(card: Scorecard | Mapping[str, Any]) -> tuple[SegmentScorecard, ...]:
    if isinstance(card, Scorecard):
        return card.segments
    return tuple(SegmentScorecard.from_json(seg) for seg in card.get("segments") or ())


def _plan(card: Scorecard | Mapping[str, Any]) -> tuple[PlanEntry, ...]:
    if isinstance(card, Scorecard):
        return card.plan
    return tuple(PlanEntry(**p) for p in card.get("plan") or ())


def scorecard_rows(
    card: Scorecard | Mapping[str, Any],
    metrics: Mapping[str, Metric],
    cuped: bool,
    sequential: bool,
    bayesian: bool = False,
) -> pd.DataFrame:
    """One row per metric and variant of the scorecard (segment "all"), in the chosen view.

    ``lift``, ``ci_low``, ``ci_high`` and ``p_value`` are the relative estimate of the view
    (:meth:`MetricVerdict.view`); ``p_value_adjusted`` and ``significant`` are the decision's,
    whatever the view; ``verdict`` colours the lift by its interval and the metric's desired
    direction. ``bayesian``: the Bayesian posterior and credible interval instead (an experiment
    on the Bayesian engine); ``chance_to_win``, ``risk_control``, ``risk_variant`` and
    ``bayes_call`` are filled wherever the rows have them. ``card`` is the typed scorecard, or
    its JSON face.
    """
    rows = [_entry_row(v, metrics, cuped, sequential, bayesian) for v in _verdicts(card)]
    return _frame(rows, _SCORE_COLUMNS)


def segment_rows(
    card: Scorecard | Mapping[str, Any],
    metrics: Mapping[str, Metric],
    cuped: bool,
    sequential: bool,
    bayesian: bool = False,
) -> pd.DataFrame:
    """The exploratory segment rows of the scorecard, with each segment's SRM: never for decisions."""
    rows = []
    for seg in _segments(card):
        for v in seg.metrics:
            rows.append(
                {
                    "segment": seg.segment,
                    "segment_srm_p_value": None if seg.srm is None else seg.srm.p_value,
                    "segment_srm_flagged": None if seg.srm is None else seg.srm.flagged,
                    **_entry_row(v, metrics, cuped, sequential, bayesian),
                }
            )
    return _frame(rows, ("segment", "segment_srm_p_value", "segment_srm_flagged", *_SCORE_COLUMNS))


def interaction_frame(card: Scorecard) -> pd.DataFrame:
    """Every interaction test of the card's experiment that day (gold.interactions), flagged first."""
    rows = [
        {
            "pair": f"{i.experiment_a} x {i.experiment_b}",
            "metric": i.metric,
            "flagged": i.flagged,
            "p_adjusted": i.p_adjusted,
            "p_value": i.p_value,
            "cells (a/b: n, mean)": "; ".join(
                f"{a}/{b}: {n:,}, {'n/a' if m is None else f'{m:.4g}'}" for a, b, n, m in i.cells
            ),
        }
        for i in card.interactions
    ]
    return pd.DataFrame(rows)


def bandit_frames(card: Scorecard) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A bandit's weights over time: one row per allocation period and arm (``period`` its config
    version, ``from`` its start, ``weight``, the period's ``units``), and one row per analysis
    day's update step (the weights to publish next, P(best) per arm, whether updated and why)."""
    b = card.bandit
    if b is None:
        return pd.DataFrame(), pd.DataFrame()
    periods = pd.DataFrame(
        [
            {
                "period": f"v{p['version']}",
                "from": p["start"] or "start",
                "variant": v,
                "weight": w,
                "units": p["units"],
            }
            for p in b.periods
            for v, w in zip(b.variants, p["weights"], strict=True)
        ]
    )
    updates = pd.DataFrame(
        [
            {
                "day": u["day"],
                **{f"weight {v}": w for v, w in zip(b.variants, u["weights"], strict=True)},
                **{
                    f"P(best) {v}": x
                    for v, x in zip(b.variants, u["best_probability"], strict=True)
                },
                "updated": u["updated"],
                "reason": u["reason"],
            }
            for u in b.updates
        ]
    )
    return periods, updates


def differential_frame(card: Scorecard) -> pd.DataFrame:
    """Every differential-impact test on the card (gold.heterogeneity): flagged ones first."""
    rows = [
        {
            "metric": d.metric,
            "variant": d.variant,
            "attribute": d.attribute,
            "flagged": d.flagged,
            "p_adjusted": d.p_adjusted,
            "p_value": d.p_value,
            "i2": d.i2,
            "pooled_lift": d.pooled_effect,
            "lift_by_level": ", ".join(
                f"{s.partition('=')[2]} {'n/a' if e is None else f'{e:+.1%}'}"
                for s, e in zip(d.levels, d.level_effects, strict=True)
            ),
            "drivers": ", ".join(d.drivers),
        }
        for d in card.differential_impact
    ]
    return pd.DataFrame(rows)


def plan_lines(card: Scorecard | Mapping[str, Any]) -> list[str]:
    """How much longer, per primary metric, from the scorecard's ``plan`` (fixed-horizon floor)."""
    out = []
    for p in _plan(card):
        if p.days_more is not None:
            out.append(
                f"{p.metric}: {p.units_per_arm_needed:,} units per arm are needed for the "
                f"{p.mde_target:.1%} MDE; {p.units_per_arm:,} so far, about "
                f"{p.days_more} more day(s) at the traffic so far."
            )
        elif p.mde_now is not None:
            target = f" (target {p.mde_target:.1%})" if p.mde_target is not None else ""
            out.append(
                f"{p.metric}: with {p.units_per_arm:,} units per arm it can detect a "
                f"{p.mde_now:.1%} relative change now (80% power, fixed horizon){target}."
            )
    return out


# ---- over time ---------------------------------------------------------------------------------

_OVER_TIME_COLUMNS = (
    "day",
    "metric",
    "role",
    "variant",
    "n",
    "effect",
    "ci_low",
    "ci_high",
    "fixed_effect",
    "fixed_ci_low",
    "fixed_ci_high",
    "significant",
    "decision",
)


@reads(GOLD_EXPERIMENT_RESULTS)
def effect_over_time(lake: Lake, experiment_id: str, segment: str = ALL_SEGMENT) -> pd.DataFrame:
    """The cumulative relative effect per analysis day with its always-valid bounds.

    ``effect``/``ci_low``/``ci_high`` are the confidence sequence (valid at every look, so the band
    may be read each day); ``fixed_*`` the fixed-horizon estimate (CUPED where it applies).
    """
    where = (pc.field("experiment_id") == experiment_id) & (pc.field("segment") == segment)
    rows = []
    for r in lake.read_arrow(GOLD_EXPERIMENT_RESULTS, filter=where).to_pylist():
        v = MetricVerdict.from_gold(r)
        fixed = v.fixed_relative
        rows.append(
            {
                "day": r["day"],
                "metric": r["metric"],
                "role": r["role"],
                "variant": r["variant"],
                "n": (r["n_baseline"] or 0) + (r["n_variant"] or 0),
                "effect": v.sequential_relative.effect,
                "ci_low": v.sequential_relative.ci_low,
                "ci_high": v.sequential_relative.ci_high,
                "fixed_effect": fixed.effect,
                "fixed_ci_low": fixed.ci_low,
                "fixed_ci_high": fixed.ci_high,
                "significant": v.significant,
                "decision": r["decision"],
            }
        )
    rows.sort(key=lambda r: (r["metric"], r["variant"], r["day"]))
    return _frame(rows, _OVER_TIME_COLUMNS)


@reads(SILVER_EXPOSURE_COUNTS)
def exposures_over_time(lake: Lake, experiment_id: str) -> pd.DataFrame:
    """Exposure events per event day and variant (summed over the days they arrived)."""
    t = (
        lake.read_arrow(
            SILVER_EXPOSURE_COUNTS,
            filter=pc.field("experiment_id") == experiment_id,
            columns=["event_date", "variant", "exposures"],
        )
        .group_by(["event_date", "variant"])
        .aggregate([("exposures", "sum")])
        .rename_columns(["event_date", "variant", "exposures"])
        .sort_by([("event_date", "ascending"), ("variant", "ascending")])
    )
    return _frame(t, ("event_date", "variant", "exposures"))


# ---- health ------------------------------------------------------------------------------------


@reads(GOLD_SRM)
def srm_over_time(lake: Lake, experiment_id: str, segment: str = ALL_SEGMENT) -> pd.DataFrame:
    """Analysed units per variant and day against the counts the weights expect, with the p-value."""
    where = (pc.field("experiment_id") == experiment_id) & (pc.field("segment") == segment)
    cols = ("day", "variant", "units", "expected", "weight", "p_value", "flagged")
    t = lake.read_arrow(GOLD_SRM, filter=where, columns=list(cols))
    return _frame(t.sort_by([("day", "ascending"), ("variant", "ascending")]), cols)


_DQ_COLUMNS = ("day", "table", "check", "passed", "observed", "description", "checked_at")


@reads(OPS_DQ_RESULTS)
def dq_results(
    lake: Lake, start: dt.date | None = None, end: dt.date | None = None
) -> pd.DataFrame:
    """Data-quality results of ops.dq_results (newest day first, failures first); no sample rows."""
    where = None
    if start is not None:
        where = pc.field("day") >= start
    if end is not None:
        where = (pc.field("day") <= end) if where is None else where & (pc.field("day") <= end)
    rows = lake.read_arrow(OPS_DQ_RESULTS, filter=where, columns=list(_DQ_COLUMNS)).to_pylist()
    rows.sort(key=lambda r: (-r["day"].toordinal(), r["passed"], r["table"], r["check"]))
    return _frame(rows, _DQ_COLUMNS)


@reads(OPS_DQ_RESULTS)
def dq_of_day(lake: Lake, day: dt.date) -> pd.DataFrame:
    """The checks that ran on partition day ``day`` (failures first); no sample rows."""
    return _frame(checks_of_day(lake, day, columns=_DQ_COLUMNS), _DQ_COLUMNS)


def dq_by_day(results: pd.DataFrame) -> pd.DataFrame:
    """Checks run and failed per day, from :func:`dq_results`."""
    if results.empty:
        return pd.DataFrame(columns=["day", "checks", "failed"])
    out = (
        results.assign(failed=~results["passed"].astype(bool))
        .groupby("day", as_index=False)
        .agg(checks=("check", "size"), failed=("failed", "sum"))
        .sort_values("day")
    )
    out["failed"] = out["failed"].astype(int)
    return out.reset_index(drop=True)


@reads(BRONZE_QUARANTINE)
def quarantine_counts(lake: Lake) -> pd.DataFrame:
    """Quarantined lines per arrival day, topic and reason.

    Reads three small columns only: the raw text of the lines is never loaded here.
    """
    t = (
        lake.read_arrow(BRONZE_QUARANTINE, columns=["arrival_date", "topic", "reason"])
        .group_by(["arrival_date", "topic", "reason"])
        .aggregate([("reason", "count")])
        .rename_columns(["arrival_date", "topic", "reason", "lines"])
        .sort_by([("arrival_date", "ascending"), ("topic", "ascending"), ("reason", "ascending")])
    )
    return _frame(t, ("arrival_date", "topic", "reason", "lines"))


@reads(GOLD_HEALTH)
def health_checks(lake: Lake, experiment_id: str) -> pd.DataFrame:
    """gold.health of one experiment: crossovers, metrics without data, pre-period imbalance."""
    cols = ("day", "check", "subject", "value", "p_value", "flagged", "detail")
    t = lake.read_arrow(
        GOLD_HEALTH, filter=pc.field("experiment_id") == experiment_id, columns=list(cols)
    )
    return _frame(t.sort_by([("day", "ascending"), ("check", "ascending")]), cols)


# ---- config and audit --------------------------------------------------------------------------


def published_config(home: Paths) -> dict[str, Any] | None:
    """The edge config serving now (version, time, content sha, and each experiment), or None."""
    payload = current_payload(home)
    if payload is None:
        return None
    rows = [
        {
            "experiment": eid,
            "status": e.get("status"),
            "serve_variant": e.get("serve_variant"),
            "variants": ", ".join(e.get("variants") or []),
            "layer": e.get("layer"),
            "layer_buckets": None
            if e.get("layer_buckets") is None
            else f"[{e['layer_buckets'][0]}, {e['layer_buckets'][1]})",
        }
        for eid, e in sorted(payload.get("experiments", {}).items())
    ]
    return {
        "version": payload.get("version"),
        "published_at": payload.get("published_at"),
        "content_sha": payload.get("content_sha"),
        "experiments": pd.DataFrame(
            rows,
            columns=["experiment", "status", "serve_variant", "variants", "layer", "layer_buckets"],
        ),
    }


_APPROVAL_COLUMNS = ("experiment", "status", "owner", "by", "at", "sha", "state")


@reads(registry=True)
def approvals(lake: Lake, registry: Registry) -> pd.DataFrame:
    """Every approval in the registry, and whether it still counts.

    ``state``: ``current`` (sha of the current content, by someone other than the owner),
    ``stale`` (the content changed since), ``by the owner`` (never counts), or ``none`` for an
    experiment without any approval.
    """
    rows = []
    for exp in sorted(registry.experiments.values(), key=lambda e: e.id):
        try:
            sha_now = content_sha(registry.file_of("experiments", exp.id))
        except (KeyError, OSError, ValueError):
            sha_now = None
        base = {"experiment": exp.id, "status": exp.status, "owner": exp.owner}
        if not exp.approvals:
            rows.append({**base, "by": None, "at": None, "sha": None, "state": "none"})
        for a in exp.approvals:
            state = approval_of(a.by, a.sha, exp.owner, sha_now)
            rows.append({**base, "by": a.by, "at": a.at, "sha": a.sha[:12], "state": state})
    return _frame(rows, _APPROVAL_COLUMNS)


@reads(OPS_KILLS)
def kills(lake: Lake) -> pd.DataFrame:
    """ops.kills: who killed which experiment, when and why (newest first)."""
    rows = sorted(
        lake.read_arrow(OPS_KILLS).to_pylist(), key=lambda r: r["killed_at"], reverse=True
    )
    return _frame(rows, ("experiment_id", "killed_at", "by", "reason"))


@reads(OPS_AUDIT_LOG)
def audit_log(lake: Lake, limit: int = 500) -> pd.DataFrame:
    """The newest ``limit`` entries of ops.audit_log (publishes and kills)."""
    rows = sorted(lake.read_arrow(OPS_AUDIT_LOG).to_pylist(), key=lambda r: r["at"], reverse=True)
    return _frame(rows[:limit], ("at", "actor", "action", "experiment_id", "detail"))


_ALERT_COLUMNS = (
    "severity",
    "kind",
    "experiment_id",
    "subject",
    "opened_day",
    "last_seen_day",
    "message",
    "alert_id",
)


@reads(OPS_ALERTS)
def alerts_open(lake: Lake) -> pd.DataFrame:
    """The open alerts of ops.alerts, critical first, then the most recently seen."""
    rows = [{c: getattr(a, c) for c in _ALERT_COLUMNS} for a in open_alerts(lake)]
    return _frame(rows, _ALERT_COLUMNS)
