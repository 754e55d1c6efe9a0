"""Scorecard of one experiment: metrics, guardrails, segments, decision and how much longer."""

import streamlit as st

from ab_pipelines.analysis.scorecard import (
    ScorecardError,
    anytime_fdr_text,
    differential_text,
    interaction_text,
)
from streamlit_app import data, ui

reg = ui.registry()
exp = ui.pick_experiment(reg, holdouts=True)
if exp is None:
    st.stop()
st.title(exp.name)
if exp.id in reg.holdouts:
    held = reg.holdouts[exp.id]
    st.info(
        f"Holdout: {held.share:.0%} of units kept out of every experiment in "
        f"{', '.join(held.layers)}. The scorecard compares as many units that see them "
        "(`general`) with the held-out ones (`holdout`): the cumulative effect of everything "
        "running or shipped in those layers."
    )
st.caption(f"`{exp.id}` · owner {exp.owner} · {exp.hypothesis}")

days = ui.view(data.experiment_days, exp.id)
if not days:
    st.info(f"{exp.id} has not been analysed yet (status {exp.status}, starts {exp.start_date}).")
    st.stop()
day = st.sidebar.selectbox("As of", list(reversed(days)), key=f"as_of:{exp.id}")
try:
    card = ui.view(data.scorecard_card, exp.id, day)
except ScorecardError as exc:
    st.error(str(exc))
    st.stop()

decision = card.decision
banner = {"ship": st.success, "keep_running": st.info, "inconclusive": st.info}.get(
    decision, st.error
)
status = "killed" if card.killed else card.status
banner(
    f"**Decision: {decision}** as of {card.as_of.isoformat()} (status {status}). "
    f"{data.DECISION_TEXT.get(decision, '')}"
)
srm = card.srm
counts = " · ".join(f"{v} {n:,}" for v, n in srm.counts.items())
p = "n/a" if srm.p_value is None else f"{srm.p_value:.3g}"
if srm.flagged:
    st.error(f"**SRM flagged** (p = {p}): {counts}. The split does not match the weights.")
else:
    st.markdown(f"**SRM ok** (p = {p}): {counts}")
if card.killed:
    k = card.killed
    st.warning(f"**Killed** at {k.at.isoformat()} by {k.by}: {k.reason}")
prov = card.provenance
if prov is not None and prov.registry_sha is not None:
    plan_line = (
        f"Computed under registry sha `{prov.registry_sha[:12]}` and config version "
        f"{prov.config_version}."
    )
    if prov.changed_since:
        st.warning(
            f"{plan_line} **The plan has changed since** (the experiment's definition is now "
            f"`{prov.current_registry_sha[:12]}`): these numbers follow the plan of that day."
        )
    else:
        st.caption(plan_line)

left, right = st.columns(2)
estimate = left.radio(
    "Estimate",
    ["CUPED", "raw"],
    horizontal=True,
    key="estimate",
    help="CUPED adjusts for each unit's pre-exposure value of the metric (less variance).",
)
rule = card.analysis
views = ["always-valid (sequential)", "fixed-horizon"]
if rule.bayesian:
    views.insert(0, "Bayesian (credible)")
intervals = right.radio(
    "Intervals",
    views,
    index=0 if rule.bayesian or exp.analysis.sequential else 1,
    horizontal=True,
    key="intervals",
    help="Always-valid intervals may be looked at every day; fixed-horizon ones only at the "
    "planned end; the Bayesian posterior's credible interval is what a Bayesian experiment "
    "decides on.",
)
cuped, sequential = estimate == "CUPED", intervals.startswith("always")
bayesian = intervals.startswith("Bayesian")
if rule.bayesian:
    st.caption(
        f"Bayesian engine: a metric decides when its chance to win exceeds "
        f"{rule.chance_to_win_threshold:.0%} (loses below {1 - rule.chance_to_win_threshold:.0%}) "
        f"and the risk (expected loss relative to the baseline mean) of the arm chosen is at most "
        f"{rule.risk_threshold:.2%}; flat prior unless the metric sets one; no multiple-testing "
        "adjustment. Guardrails keep the always-valid check. Colours: the interval shown lies "
        "wholly on the metric's good side (green), bad side (red), or spans 0 (grey)."
    )
else:
    st.caption(
        f"Decisions read the {rule.decision_p_value} p-value, adjusted by "
        f"{rule.correction} over primary and secondary metrics (α = "
        f"{rule.alpha}). Colours: the interval shown lies wholly on the metric's "
        "good side (green), bad side (red), or spans 0 (grey)."
    )
if any(m.fixed_horizon_only for m in card.metrics):
    st.caption(
        "Quantile metrics (estimate *fixed horizon only*) have no always-valid interval: their "
        "lift, interval and decision are fixed-horizon, valid at the planned end; the two means "
        "are the arms' quantiles, and a quantile guardrail is checked on its fixed-horizon bound."
    )


def labelled(frame):
    """Rows with a chart label and the interval as text."""
    out = frame.copy()
    out["row"] = out["metric"] + " · " + out["variant"]
    out["interval"] = [
        f"[{lo:+.2%}, {hi:+.2%}]" if lo == lo and hi == hi else "n/a"  # NaN != NaN
        for lo, hi in zip(out["ci_low"].astype(float), out["ci_high"].astype(float), strict=True)
    ]
    return out


rows = labelled(data.scorecard_rows(card, reg.metrics, cuped, sequential, bayesian))
decides = (
    ["chance_to_win", "risk_control", "risk_variant", "bayes_call"]
    if rule.bayesian
    else ["p_value", "p_value_adjusted"]
)
table_cols = [
    "metric",
    "variant",
    "lift",
    "interval",
    "verdict",
    *decides,
    "significant",
    "mean_baseline",
    "mean_variant",
    "statistic",
    "desired",
    "role",
    "estimate",
    "variance_reduction",
    *(["adj_lift", "adj_variance_reduction"] if rows["adj_lift"].notna().any() else []),
    "n_baseline",
    "n_variant",
    "maturing",
]
config = {
    "lift": st.column_config.TextColumn("lift", help="relative change vs the baseline"),
    "interval": st.column_config.TextColumn("interval", help="the interval of the view chosen"),
    "p_value": st.column_config.TextColumn("p", help="p-value of the estimate shown"),
    "p_value_adjusted": st.column_config.TextColumn("adjusted p", help="the decision's p-value"),
    "significant": st.column_config.CheckboxColumn(
        "significant", help="adjusted p < α (Bayesian: the engine's call is ship or rollback)"
    ),
    "chance_to_win": st.column_config.NumberColumn(
        "chance to win", format="percent", help="P(variant better), in the metric's good direction"
    ),
    "risk_control": st.column_config.NumberColumn(
        "risk: keep baseline", format="percent", help="expected loss, relative to the baseline"
    ),
    "risk_variant": st.column_config.NumberColumn(
        "risk: ship variant", format="percent", help="expected loss, relative to the baseline"
    ),
    "bayes_call": st.column_config.TextColumn("call", help="the Bayesian engine's rule"),
    "maturing": st.column_config.NumberColumn(
        "maturing",
        help="units of both arms not counted yet: the metric's window (window_days after "
        "first exposure) had not ended by this day",
    ),
    "mean_baseline": "baseline mean",
    "mean_variant": "variant mean",
    "statistic": st.column_config.TextColumn(
        "of", help="what the two means are: the mean, or a quantile metric's quantile (p90 ...)"
    ),
    "desired": st.column_config.TextColumn("good if", help="the metric's desired direction"),
    "variance_reduction": st.column_config.TextColumn("CUPED var. cut"),
    "adj_lift": st.column_config.TextColumn(
        "multi-covariate lift",
        help="fixed-horizon lift adjusted on analysis.covariates (reported; decisions read CUPED)",
    ),
    "adj_variance_reduction": st.column_config.TextColumn(
        "multi-covariate var. cut", help="variance cut of that lift against the raw estimate"
    ),
    "margin": st.column_config.TextColumn("margin", help="harm allowed (relative change)"),
    "bound": st.column_config.TextColumn("bound", help="the always-valid harm-side bound"),
}


def show(frame, columns):
    chart = ui.ci_chart(frame)
    if chart is not None:
        st.altair_chart(chart, width="stretch")
    st.dataframe(ui.style_rows(frame[columns]), hide_index=True, column_config=config)


st.subheader("Metrics")
show(rows[rows["role"] != "guardrail"], table_cols)

if card.anytime_fdr is not None:
    st.caption(
        anytime_fdr_text(card.anytime_fdr)
        + ". e-BH on the always-valid e-values of every metric and variant, every day so far: "
        "these discoveries keep the false discovery rate under continuous monitoring."
    )

if card.bandit is not None:
    st.subheader("Bandit: weights over time")
    periods, updates = data.bandit_frames(card)
    st.caption(
        f"Thompson sampling on {card.bandit.metric}: after each analysis day the weights go out "
        "as a new config version; units keep the arm they first got, only new units see new "
        "weights. The results above are weighted by period (each arm's mean per allocation "
        "period, averaged with the periods' shares of units), which keeps them unbiased while "
        "the weights change."
    )
    if not periods.empty:
        st.altair_chart(ui.weights_chart(periods), width="stretch")
        st.dataframe(periods, hide_index=True)
    if not updates.empty:
        st.dataframe(updates, hide_index=True)

st.subheader("Guardrails")
guards = rows[rows["role"] == "guardrail"]
if guards.empty:
    st.caption("No guardrails configured.")
else:
    breached = guards[guards["breached"] == True]  # noqa: E712
    if breached.empty:
        st.markdown("Guardrails **ok**: no always-valid bound lies beyond its margin.")
    else:
        st.error("Guardrail breached: " + ", ".join(breached["row"]))
    st.caption("Red ticks: where harm beyond the margin starts.")
    tail = ["mean_baseline", "mean_variant", "statistic", "desired", "role", "estimate"]
    show(guards, [*table_cols[:5], "margin", "bound", "breached", *tail])

st.subheader("Interactions with concurrent experiments")
if not card.interactions:
    st.caption("No concurrent experiment shares units with this one on this day.")
else:
    for i in card.interactions:
        if i.flagged:
            st.warning(interaction_text(i))
    st.caption(
        "The daily scan tests, for every pair of experiments that share units and every decision "
        "metric, whether one experiment's effect depends on the other's arm (Wald test of the "
        "A x B terms on the cell means; Benjamini-Hochberg across every pair and metric of the day)."
    )
    st.dataframe(data.interaction_frame(card), hide_index=True)

st.subheader("How much longer")
lines = data.plan_lines(card)
if exp.analysis.mde is None:
    lines.append("Set `analysis.mde` in the experiment's YAML to get the days still needed.")
for line in lines:
    st.markdown(f"- {line}")

st.subheader("Segments (exploratory)")
segs = data.segment_rows(card, reg.metrics, cuped, sequential, bayesian)
if segs.empty:
    st.caption("No segments: set `analysis.segments` (e.g. `[platform, country]`) to cut results.")
else:
    st.caption(
        "Exploratory: not adjusted for multiple testing and never part of the decision. "
        "A segment with its own SRM flag points at a split broken for that segment."
    )
    srm_by_segment = segs.drop_duplicates("segment")[
        ["segment", "segment_srm_p_value", "segment_srm_flagged"]
    ]
    flagged = srm_by_segment[srm_by_segment["segment_srm_flagged"] == True]  # noqa: E712
    if not flagged.empty:
        st.warning("SRM flagged in segment(s): " + ", ".join(flagged["segment"]))
    for d in card.differential_impact:
        if d.flagged:
            st.warning(differential_text(d))
    if card.differential_impact:
        st.caption(
            "Differential impact: Cochran's Q of each decision metric's lift across the levels "
            "of an attribute, Benjamini-Hochberg across the experiment's tests."
        )
        st.dataframe(data.differential_frame(card), hide_index=True)
    chosen = st.selectbox("Segment", list(srm_by_segment["segment"]), key=f"segment:{exp.id}")
    show(labelled(segs[segs["segment"] == chosen]), table_cols)
