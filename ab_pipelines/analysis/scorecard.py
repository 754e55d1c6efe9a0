"""The scorecard of one experiment on one day: ``abp results`` (CONTRACTS section 4).

Read from the gold tables (``gold.experiment_results``, ``gold.srm``, ``gold.sufficient_stats``),
never recomputed from raw data, into the typed :class:`~ab_pipelines.analysis.decision.Scorecard`
that the CLI (text and JSON), the dashboard and the alerts all render. Numbers that do not exist are
``None`` (JSON ``null``), never NaN.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.analysis import decision
from ab_pipelines.analysis.bandits import day_periods
from ab_pipelines.analysis.decision import (
    ALL_SEGMENT,
    AnalysisRule,
    AnytimeFdr,
    BanditAllocation,
    DifferentialImpact,
    Discovery,
    Interaction,
    Killed,
    MetricVerdict,
    PlanEntry,
    Provenance,
    Scorecard,
    SegmentScorecard,
    Srm,
)
from ab_pipelines.analysis.plan import PlanError, metric_moments
from ab_pipelines.analysis.state import registry_sha
from ab_pipelines.config.models import Experiment
from ab_pipelines.config.registry import Registry
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    GOLD_BANDIT_WEIGHTS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HETEROGENEITY,
    GOLD_INTERACTIONS,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_KILLS,
)
from ab_pipelines.settings import settings
from ab_pipelines.stats import days_needed, mde_for, monitor_discoveries, sample_size

__all__ = [
    "SCORECARD_TABLES",
    "Scorecard",
    "ScorecardError",
    "analysed_days",
    "anytime_fdr_text",
    "bandit_lines",
    "differential_text",
    "interaction_text",
    "pinned_versions",
    "read_scorecard",
    "render",
    "scorecard",
    "to_json",
]

_ROLE_ORDER = {"primary": 0, "secondary": 1, "guardrail": 2}


class ScorecardError(LookupError):
    """No scorecard for that experiment and day (not in the registry, or not analysed)."""


def analysed_days(
    lake: Lake, experiment_id: str, pinned: Mapping[str, int | None] | None = None
) -> list[dt.date]:
    """The days with results for an experiment, oldest first."""
    t = _read(
        lake,
        GOLD_EXPERIMENT_RESULTS,
        pinned,
        filter=pc.field("experiment_id") == experiment_id,
        columns=["day"],
    )
    return sorted(set(t.column("day").to_pylist()))


#: every table a scorecard reads (what a pinned read pins, and the dashboard's cache key)
SCORECARD_TABLES = (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    GOLD_HETEROGENEITY,
    GOLD_INTERACTIONS,
    GOLD_BANDIT_WEIGHTS,
    OPS_KILLS,
)


def pinned_versions(
    lake: Lake, version: int | None = None, at: dt.datetime | None = None
) -> dict[str, int | None] | None:
    """The versions of the tables a scorecard reads, as they were at a past point; None: now.

    ``version`` is a version of gold.experiment_results (the table an analysis writes last);
    the other tables are read as they were when it was committed. ``at`` is a time: every table
    as it was then. Versions are kept for ``ABP_TIME_TRAVEL_DAYS`` (default 30) days.
    """
    if version is None and at is None:
        return None
    if version is not None:
        history = lake.history(GOLD_EXPERIMENT_RESULTS)
        if version not in history:
            have = f"{min(history)}..{max(history)}" if history else "none"
            raise ScorecardError(
                f"gold.experiment_results has no version {version} (readable versions: {have}; "
                f"older ones are past the {settings().retention_days}-day retention)"
            )
        at = history[version]
    assert at is not None
    if at.tzinfo is None:
        raise ScorecardError(f"the time {at.isoformat()} has no zone (add Z or an offset)")
    pinned = {s.qualified: lake.version_at(s, at) for s in SCORECARD_TABLES}
    if pinned[GOLD_EXPERIMENT_RESULTS.qualified] is None:
        raise ScorecardError(f"nothing had been analysed yet at {at.isoformat()}")
    if version is not None:
        pinned[GOLD_EXPERIMENT_RESULTS.qualified] = version
    return pinned


def _kill_record(
    lake: Lake, experiment_id: str, pinned: Mapping[str, int | None] | None
) -> Killed | None:
    """The experiment's kill switch record (``ops.kills``: when, by whom, why) as known at the
    read (``pinned``: as it was then), whichever day the card is of. The card of a day before
    the kill still says the experiment has since been killed; whether the kill had taken effect
    on a day is the experiment state's (``ops.experiment_days``, ``Kill.by_end_of``)."""
    rows = _read(lake, OPS_KILLS, pinned, filter=pc.field("experiment_id") == experiment_id)
    if not rows.num_rows:
        return None
    r = rows.to_pylist()[0]
    return Killed(at=r["killed_at"], by=r["by"], reason=r["reason"])


def _read(lake: Lake, spec, pinned: Mapping[str, int | None] | None, **kw) -> pa.Table:
    if pinned is None:
        return lake.read_arrow(spec, **kw)
    version = pinned[spec.qualified]
    if version is None:  # the table did not exist yet then
        empty = spec.schema.empty_table()
        return empty.select(list(kw["columns"])) if kw.get("columns") else empty
    return lake.read_arrow(spec, version=version, **kw)


def _order(exp: Experiment):
    listed = {m: i for i, m in enumerate(dict.fromkeys(exp.metric_ids()))}
    variants = {v: i for i, v in enumerate(exp.variant_ids)}
    return lambda v: (
        _ROLE_ORDER.get(v.role, 9),
        listed.get(v.metric, 99),
        variants.get(v.variant, 99),
    )


def _plan(exp: Experiment, stats: list[dict], day: dt.date) -> list[PlanEntry]:
    """How far each primary metric is from the experiment's MDE: users and days still needed.

    Fixed-horizon normal-approximation power (80%, the experiment's α) with the baseline arm's
    per-unit variance (a ratio's linearised variance) and the traffic so far (analysed units per
    day since the start). With sequential testing the always-valid bounds need more units than
    this; the numbers are a floor. A quantile metric gets no plan: its rows' moments are those of
    the mean of its values, not of its quantile.
    """
    out = []
    elapsed = max((day - exp.start_date).days + 1, 1)
    for mid in exp.metrics.primary:
        base = next((r for r in stats if r["metric"] == mid and r["variant"] == exp.baseline), None)
        if base is None or base.get("q_level") is not None:
            continue
        arm_n = [r["n"] for r in stats if r["metric"] == mid]
        try:
            ratio, variance, _ = metric_moments([base])
        except PlanError:
            continue
        alpha = exp.analysis.alpha
        per_arm_now = min(arm_n)
        needed = more = None
        if exp.analysis.mde is not None:
            need = sample_size(ratio, variance, exp.analysis.mde, alpha=alpha)
            rate = per_arm_now / elapsed
            needed = None if need < 0 else int(need)
            if need >= 0:
                days = days_needed(rate, need, n_so_far=per_arm_now)
                more = None if days < 0 else int(days)
        out.append(
            PlanEntry(
                metric=mid,
                units_per_arm=int(per_arm_now),
                mde_now=_clean(mde_for(per_arm_now, ratio, variance, alpha=alpha)),
                mde_target=exp.analysis.mde,
                units_per_arm_needed=needed,
                days_more=more,
            )
        )
    return out


def _clean(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def scorecard(
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date | None = None,
    pinned: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """The JSON face of :func:`read_scorecard`: the object of CONTRACTS section 4, as a dict."""
    return read_scorecard(lake, registry, experiment_id, day, pinned).as_json()


def read_scorecard(
    lake: Lake,
    registry: Registry,
    experiment_id: str,
    day: dt.date | None = None,
    pinned: Mapping[str, int | None] | None = None,
) -> Scorecard:
    """The typed scorecard as of ``day`` (default: the latest analysed day).

    ``pinned`` (from :func:`pinned_versions`) reads the tables as they were at a past point, so
    a scorecard can be shown again exactly as it was computed then.
    """
    exp = registry.analysed_experiments.get(experiment_id)
    if exp is None:
        known = ", ".join(sorted(registry.analysed_experiments)) or "none"
        raise ScorecardError(f"no experiment {experiment_id!r} in the registry (known: {known})")
    days = analysed_days(lake, experiment_id, pinned)
    if not days:
        raise ScorecardError(
            f"{experiment_id} has not been analysed yet: land and analyse its days with "
            f"'abp run --from {exp.start_date} --to <day>' (a day is analysed once the next "
            f"{exp.analysis.late_arrival_days} day(s) of arrivals have landed)"
        )
    if day is None:
        day = days[-1]
    elif day not in days:
        raise ScorecardError(
            f"{experiment_id} has no results for {day}; analysed days: {days[0]} .. {days[-1]}"
        )
    where = (pc.field("experiment_id") == experiment_id) & (pc.field("day") == day)
    rows = _read(lake, GOLD_EXPERIMENT_RESULTS, pinned, filter=where).to_pylist()
    srm = _read(lake, GOLD_SRM, pinned, filter=where).to_pylist()
    stats = [
        r
        for r in _read(lake, GOLD_SUFFICIENT_STATS, pinned, filter=where).to_pylist()
        if r["segment"] == ALL_SEGMENT
    ]
    killed = _kill_record(lake, experiment_id, pinned)
    hetero = _read(lake, GOLD_HETEROGENEITY, pinned, filter=where).to_pylist()
    hetero.sort(key=_flagged_first)
    pairs = (pc.field("experiment_a") == experiment_id) | (
        pc.field("experiment_b") == experiment_id
    )
    inter = _read(lake, GOLD_INTERACTIONS, pinned, filter=pairs & (pc.field("day") == day))
    inter = sorted(inter.to_pylist(), key=_flagged_first)

    order = _order(exp)
    verdicts = sorted((MetricVerdict.from_gold(r) for r in rows), key=order)
    main = tuple(v for v in verdicts if v.segment == ALL_SEGMENT)
    srm_by_segment: dict[str, list[dict]] = {}
    for r in srm:
        srm_by_segment.setdefault(r["segment"], []).append(r)
    srm_all = Srm.from_gold(srm_by_segment.get(ALL_SEGMENT, []))
    # The decision is the one stored with the rows; with no rows nothing was judged but the SRM.
    verdict = (
        _stored_decision(rows)
        if main
        else decision.decide(exp, (), srm_all.flagged, has_ended=False)
    )
    segments = sorted({v.segment for v in verdicts} - {ALL_SEGMENT})
    return Scorecard(
        experiment_id=experiment_id,
        as_of=day,
        status=exp.status,
        decision=verdict,
        srm=srm_all,
        metrics=main,
        analysis=AnalysisRule.of(exp),
        killed=killed,
        plan=tuple(_plan(exp, stats, day)),
        segments=tuple(
            SegmentScorecard(
                segment=s,
                srm=Srm.from_gold(srm_by_segment[s]) if s in srm_by_segment else None,
                metrics=tuple(v for v in verdicts if v.segment == s),
            )
            for s in segments
        ),
        read_at_versions=None if pinned is None else dict(pinned),
        provenance=_provenance(registry, exp, rows or stats),
        differential_impact=tuple(DifferentialImpact.from_gold(r) for r in hetero),
        interactions=tuple(Interaction.from_gold(r) for r in inter),
        anytime_fdr=_anytime_fdr(
            lake, exp, day, [v for v in main if not v.fixed_horizon_only], pinned
        ),
        bandit=_bandit(lake, exp, day, srm_by_segment, pinned),
    )


def _bandit(
    lake: Lake,
    exp: Experiment,
    day: dt.date,
    srm_by_segment: Mapping[str, list[dict]],
    pinned: Mapping[str, int | None] | None,
) -> BanditAllocation | None:
    """A bandit's weights over time as of ``day``: its allocation periods (those begun by the
    day's end; ops.bandit_allocations is append-only, so this is the view of then) with their
    analysed units (the period segments of gold.srm), and every analysis day's update step."""
    if not exp.is_bandit or exp.bandit is None:
        return None
    periods = []
    for p in day_periods(lake, exp, day):
        rows = srm_by_segment.get(p.label, [])
        periods.append(
            {
                "version": p.version,
                "start": None if p.start is None else p.start.isoformat(),
                "weights": list(p.weights),
                "units": sum(r["units"] for r in rows),
            }
        )
    where = (pc.field("experiment_id") == exp.id) & (pc.field("day") <= day)
    steps: dict[dt.date, dict[str, dict]] = {}
    for r in _read(lake, GOLD_BANDIT_WEIGHTS, pinned, filter=where).to_pylist():
        steps.setdefault(r["day"], {})[r["variant"]] = r
    updates = []
    for d in sorted(steps):
        arms = [steps[d].get(v) for v in exp.variant_ids]
        if any(a is None for a in arms):
            continue
        updates.append(
            {
                "day": d.isoformat(),
                "weights": [a["weight"] for a in arms],
                "best_probability": [a["best_probability"] for a in arms],
                "updated": bool(arms[0]["updated"]),
                "reason": arms[0]["reason"],
            }
        )
    return BanditAllocation(
        exp.bandit.metric, tuple(exp.variant_ids), tuple(periods), tuple(updates)
    )


def _flagged_first(row: Mapping[str, Any]) -> tuple:
    """Order of a scan's rows on the card: flagged first, then by adjusted p (none last)."""
    return (not row["flagged"], row["p_adjusted"] is None, row["p_adjusted"] or 0)


def _anytime_fdr(
    lake: Lake,
    exp: Experiment,
    day: dt.date,
    family: list[MetricVerdict],
    pinned: Mapping[str, int | None] | None,
) -> AnytimeFdr | None:
    """e-BH under continuous monitoring (:func:`ab_pipelines.stats.monitor_discoveries`) over
    the stored e-values of ``family`` (the card's metrics and variants that have an always-valid
    estimate) on every analysed day up to ``day``: each hypothesis' e-process is frozen at its
    first rejection, so the false discovery rate holds at ``alpha`` across all of them whenever
    the scorecard is read. None when no stored row has an e-value (days analysed before
    ``e_value`` existed)."""
    if not family:
        return None
    keys = [(v.metric, v.variant) for v in family]
    where = (
        (pc.field("experiment_id") == exp.id)
        & (pc.field("day") <= day)
        & (pc.field("segment") == ALL_SEGMENT)
    )
    rows = _read(
        lake,
        GOLD_EXPERIMENT_RESULTS,
        pinned,
        filter=where,
        columns=["day", "metric", "variant", "e_value"],
    ).to_pylist()
    days = sorted({r["day"] for r in rows})
    index = {k: j for j, k in enumerate(keys)}
    looks = {d: i for i, d in enumerate(days)}
    e = np.full((len(days), len(keys)), np.nan)
    for r in rows:
        j = index.get((r["metric"], r["variant"]))
        if j is not None and r["e_value"] is not None:
            e[looks[r["day"]], j] = r["e_value"]
    if np.isnan(e).all():
        return None
    found = monitor_discoveries(e, alpha=exp.analysis.alpha)
    discoveries = [
        Discovery(
            metric=keys[j][0],
            variant=keys[j][1],
            since=days[int(found.first_look[j])],
            e_value=_clean(found.stopped_e[j]),
        )
        for j in np.flatnonzero(found.final)
    ]
    discoveries.sort(key=lambda d: (d.since, d.metric, d.variant))
    return AnytimeFdr(exp.analysis.alpha, len(keys), len(days), tuple(discoveries))


def _provenance(registry: Registry, exp: Experiment, rows: list[dict]) -> Provenance | None:
    """The registry sha and config version the day's rows were computed under (one value per
    experiment and day), beside today's registry sha; None without rows."""
    if not rows:
        return None
    first = rows[0]
    try:
        now = registry_sha(registry, exp)
    except (KeyError, OSError, ValueError):
        now = None
    return Provenance(first.get("registry_sha"), first.get("config_version"), now)


def _stored_decision(rows: list[dict]) -> str:
    """The decision stored on an experiment's gold.experiment_results rows of a day (one value)."""
    return next(r["decision"] for r in rows if r["segment"] == ALL_SEGMENT)


def to_json(card: Scorecard | Mapping[str, Any]) -> str:
    """The scorecard as JSON; NaN can never appear (``allow_nan=False`` guards it)."""
    face = card.as_json() if isinstance(card, Scorecard) else card
    return json.dumps(face, indent=2, allow_nan=False, default=str)


# ---- text --------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:+.1%}"


def _share(x: float | None, digits: int) -> str:
    return "n/a" if x is None else f"{x:.{digits}%}"


def _p(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.2g}" if x >= 0.001 else f"{x:.0e}"


def render(card: Scorecard | Mapping[str, Any]) -> str:
    """A terminal scorecard: SRM, decision, one line per metric and variant.

    The lift shown is the one decisions read: CUPED where it applies, with the always-valid 95%
    interval; the fixed-horizon p-value is labelled "fixed p" and is not for peeking. With
    ``analysis.covariates``, "| adj" adds the multi-covariate fixed-horizon lift, its variance
    reduction against raw and how many covariates the guard kept (report only). A quantile
    metric has no always-valid interval: its line shows the fixed-horizon lift and interval, says
    "fixed horizon only" and gives each arm's quantile. ``card`` is the typed scorecard or its
    JSON face.
    """
    if not isinstance(card, Scorecard):
        card = Scorecard.from_json(card)
    srm = card.srm
    counts = "/".join(str(v) for v in srm.counts.values()) or "0"
    flag = "SRM FLAGGED" if srm.flagged else "no SRM"
    killed = card.killed
    lines = [
        f"{card.experiment_id}  as of {card.as_of.isoformat()}  status {card.status}  "
        f"decision: {card.decision.upper()}",
        f"  units {counts}  {flag} (p={_p(srm.p_value)})"
        + (f"  KILLED {killed.at.isoformat()[:16]} by {killed.by}" if killed else ""),
        f"  {'metric':<18}{'role':<10}{'variant':<11}{'lift':>7}  {'always-valid CI':<17}"
        f"{'adj p':>7} {'fixed p':>8}  cuped",
    ]
    if card.read_at_versions:
        pins = ", ".join(f"{t} v{v}" for t, v in card.read_at_versions.items() if v is not None)
        lines.insert(2, f"  as computed then: {pins}")
    prov = card.provenance
    if prov is not None and prov.registry_sha is not None:
        line = (
            f"  plan: registry sha {prov.registry_sha[:12]}, config version {prov.config_version}"
        )
        if prov.changed_since:
            line += f"; the plan has changed since (now {prov.current_registry_sha[:12]})"
        lines.insert(2, line)
    if card.analysis.bayesian:
        lines[-1:] = _bayesian_lines(card)  # the frequentist header is the last line so far
        return _render_tail(card, lines)
    for m in card.metrics:
        seq = m.monitoring_relative  # a quantile metric's is its fixed-horizon one
        ci = f"[{_pct(seq.ci_low)}, {_pct(seq.ci_high)}]"
        tail = _quantile_note(m)
        if m.cuped is not None and m.cuped.variance_reduction is not None:
            tail = f"  -{m.cuped.variance_reduction:.0%} var"
        r = m.regression
        if r is not None and r.variance_reduction is not None:  # report only: never decides
            tail += (
                f"  | adj {_pct(r.relative.effect).strip()} -{r.variance_reduction:.0%} var "
                f"({len(r.covariates)} cov)"
            )
        ps = m.poststratified
        if ps is not None:  # report only: never decides
            tail += f"  | ps {_pct(ps.relative.effect).strip()} by {ps.attribute}"
        g = m.shown_guardrail
        if g is not None:
            tail += f"  guardrail ±{g.margin:.0%}: {'BREACHED' if g.breached else 'ok'}"
        star = " *" if m.significant else ""
        lines.append(
            f"  {m.metric:<18}{m.role:<10}{m.variant:<11}{_pct(seq.effect):>7}  "
            f"{ci:<17}{_p(m.p_value_adjusted):>7} {_p(m.fixed_relative.p_value):>8}{tail}{star}"
        )
    return _render_tail(card, lines)


def _number(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _quantile_note(m: MetricVerdict) -> str:
    """What a quantile metric's line adds: fixed horizon only, and the quantile in each arm."""
    if not m.fixed_horizon_only:
        return ""
    return (
        f"  fixed horizon only; {m.statistic}: {_number(m.mean_baseline)} -> "
        f"{_number(m.mean_variant)}"
    )


def _bayesian_lines(card: Scorecard) -> list[str]:
    """The metric lines of a Bayesian scorecard: posterior lift, credible interval, chance to win
    and the risk of each choice (relative to the baseline mean)."""
    rule = card.analysis
    level = 1 - rule.alpha
    lines = [
        f"  engine: Bayesian (ship when chance to win > {rule.chance_to_win_threshold:.0%} and "
        f"risk <= {rule.risk_threshold:.2%}; flat prior unless the metric sets one)",
        f"  {'metric':<18}{'role':<10}{'variant':<11}{'lift':>7}  {f'{level:.0%} credible':<17}"
        f"{'win':>7} {'risk A/B':>15}  call",
    ]
    for m in card.metrics:
        b = m.bayesian
        if b is None and m.fixed_horizon_only:  # a quantile row stored without its posterior
            fixed = m.relative
            ci = f"[{_pct(fixed.ci_low)}, {_pct(fixed.ci_high)}]"
            g = m.shown_guardrail
            guard = "" if g is None else f"  guardrail ±{g.margin:.0%}: "
            guard += "" if g is None else ("BREACHED" if g.breached else "ok")
            lines.append(
                f"  {m.metric:<18}{m.role:<10}{m.variant:<11}{_pct(fixed.effect):>7}  {ci:<17}"
                f"  p={_p(fixed.p_value)}, no posterior (never decides){_quantile_note(m)}{guard}"
            )
            continue
        if b is None:
            lines.append(f"  {m.metric:<18}{m.role:<10}{m.variant:<11}  (no Bayesian columns)")
            continue
        ci = f"[{_pct(b.ci_low)}, {_pct(b.ci_high)}]"
        risk = f"{_share(b.risk_control, 2)}/{_share(b.risk_variant, 2)}"
        tail = ""
        g = m.shown_guardrail
        if g is not None:
            tail = f"  guardrail ±{g.margin:.0%}: {'BREACHED' if g.breached else 'ok'}"
        star = " *" if m.significant else ""
        lines.append(
            f"  {m.metric:<18}{m.role:<10}{m.variant:<11}{_pct(b.effect):>7}  "
            f"{ci:<17}{_share(b.chance_to_win, 1):>7} {risk:>15}  {b.call}{tail}{star}"
        )
    return lines


def _render_tail(card: Scorecard, lines: list[str]) -> str:
    """The maturing, plan and segment lines every scorecard ends with."""
    for m in card.metrics:
        if m.maturing:
            lines.append(
                f"  maturing: {m.metric} ({m.variant}) leaves out {m.maturing_baseline or 0}/"
                f"{m.maturing_variant or 0} units whose window has not ended yet (not counted)"
            )
    for plan in card.plan:
        if plan.days_more is not None:
            lines.append(
                f"  plan: {plan.metric} needs {plan.units_per_arm_needed} units per arm for a "
                f"{plan.mde_target:.1%} MDE: about {plan.days_more} more day(s)"
            )
        elif plan.mde_now is not None:
            lines.append(
                f"  plan: {plan.metric} can detect {plan.mde_now:.1%} now "
                f"({plan.units_per_arm} units per arm, fixed horizon, 80% power)"
            )
    if card.segments:
        names = ", ".join(s.segment for s in card.segments)
        lines.append(f"  exploratory segments (not for decisions): {names}")
    for d in card.differential_impact:
        if d.flagged:
            lines.append(f"  {differential_text(d)}")
    for i in card.interactions:
        if i.flagged:
            lines.append(f"  {interaction_text(i)}")
    if card.anytime_fdr is not None:
        lines.append(f"  {anytime_fdr_text(card.anytime_fdr)}")
    if card.bandit is not None:
        lines += bandit_lines(card.bandit)
    return "\n".join(lines)


def bandit_lines(b: BanditAllocation) -> list[str]:
    """A bandit's block (text scorecard): what its numbers are, and its weights over time."""
    arms = "".join(f"{v[:13]:>14}" for v in b.variants)
    lines = [
        f"  BANDIT: Thompson sampling on {b.metric}; results weighted by period (each arm's "
        "mean per allocation period, averaged with the periods' shares of units: unbiased when "
        "the weights change)",
        f"    {'weights served':<26}{arms}     units",
    ]
    for p in b.periods:
        since = "since the start" if p["start"] is None else f"from {p['start'][:16]}"
        ws = "".join(f"{w:>14.1%}" for w in p["weights"])
        lines.append(f"    v{p['version']:<4}{since:<21}{ws}  {p['units']:>8}")
    if b.updates:
        u = b.updates[-1]
        ws = "".join(f"{w:>14.1%}" for w in u["weights"])
        lines.append(f"    {'next (after ' + u['day'] + ')':<26}{ws}  {u['reason']}")
        best = "".join(
            f"{'n/a' if x is None else format(x, '.1%'):>14}" for x in u["best_probability"]
        )
        lines.append(f"    {'P(best) ' + u['day']:<26}{best}")
    return lines


def interaction_text(i: Interaction) -> str:
    """One flagged interaction (text and dashboard): the pair, the metric, the adjusted p and
    how the first experiment's effect changes with the second's arm."""
    how = ""
    if i.cells and i.effect_in_baseline is not None and i.effect_in_driver is not None:
        means = {(a, b): m for a, b, _, m in i.cells}
        base_a, base_b = i.cells[0][0], i.cells[0][1]  # the cells are row-major, baselines first

        def lift(effect: float, b_arm: str | None) -> str:
            m = means.get((base_a, b_arm))
            return "n/a" if not m else f"{effect / m:+.1%}"

        how = (
            f"; {i.experiment_a}'s effect is {lift(i.effect_in_baseline, base_b)} when "
            f"{i.experiment_b} is {base_b} and {lift(i.effect_in_driver, i.driver_b)} when it is "
            f"{i.driver_b}"
        )
    return (
        f"INTERACTION: {i.experiment_a} x {i.experiment_b} on {i.metric} "
        f"(BH p={_p(i.p_adjusted)}){how}"
    )


def anytime_fdr_text(fdr: AnytimeFdr) -> str:
    """The e-BH line of a scorecard (text and dashboard): its family and the discoveries."""
    found = ", ".join(
        f"{d.metric} ({d.variant}) since {d.since.isoformat()}" for d in fdr.discoveries
    )
    return (
        f"anytime-valid FDR (e-BH at {fdr.alpha:.0%} over {fdr.hypotheses} metric x variant "
        f"tests and {fdr.looks} look(s)): " + (found or "no discoveries")
    )


def differential_text(d: DifferentialImpact) -> str:
    """One flagged differential impact (text and dashboard): the attribute, the adjusted p, the
    driving levels with their lift."""
    effects = dict(zip(d.levels, d.level_effects, strict=True))
    drivers = ", ".join(f"{s} {_pct(effects.get(s)).strip()}" for s in d.drivers)
    return (
        f"DIFFERENTIAL IMPACT: {d.metric} ({d.variant}) differs by {d.attribute} "
        f"(BH p={_p(d.p_adjusted)}, pooled {_pct(d.pooled_effect).strip()})"
        + (f"; driven by {drivers}" if drivers else "")
    )
