"""Experiments overview: every experiment with its status, health badges, decision and lift."""

import streamlit as st

from streamlit_app import data, ui

st.title("Experiments")
ui.registry_warning()
frame = ui.view(data.experiments_overview)
alerts = ui.view(data.alerts_open)

if frame.empty:
    st.info("No experiments in the registry yet.")
    st.stop()

running = int((frame["status"] == "running").sum())
cols = st.columns(4)
cols[0].metric("Running", running, help="experiments with status running and not killed")
cols[1].metric("SRM flagged", int((frame["srm"] == "flagged").sum()))
cols[2].metric("Guardrails breached", int((frame["guardrails"] == "breached").sum()))
cols[3].metric("Open alerts", len(alerts))

metrics = ui.registry().metrics
shown = frame[
    [
        "name",
        "status",
        "decision",
        "primary_metric",
        "primary_lift",
        "srm",
        "guardrails",
        "data_quality",
        "days_running",
        "exposures",
        "units",
        "experiment",
        "owner",
        "as_of",
    ]
].copy()
shown["verdict"] = [
    data.verdict(lo, hi, metrics[m].higher_is_better) if m in metrics else "no data"
    for lo, hi, m in zip(frame["ci_low"], frame["ci_high"], frame["primary_metric"], strict=True)
]
st.dataframe(
    ui.style_rows(shown),
    hide_index=True,
    column_order=[c for c in shown.columns if c != "verdict"],
    column_config={
        "name": st.column_config.TextColumn("Experiment", pinned=True),
        "status": "Status",
        "decision": "Decision",
        "primary_metric": "Primary metric",
        "primary_lift": st.column_config.TextColumn(
            "Lift [interval]", help="relative lift and the interval the decision reads"
        ),
        "srm": st.column_config.TextColumn("SRM", help="sample ratio mismatch on the latest day"),
        "guardrails": "Guardrails",
        "data_quality": st.column_config.TextColumn("Data quality", help="failed checks so far"),
        "days_running": st.column_config.NumberColumn("Days", help="days analysed so far"),
        "exposures": st.column_config.NumberColumn("Exposures", help="exposure events logged"),
        "units": st.column_config.NumberColumn("Units", help="analysed units on the latest day"),
        "experiment": "Id",
        "owner": "Owner",
        "as_of": st.column_config.DateColumn("As of"),
    },
)
st.caption(
    "Lift: the first primary metric's relative change, with the interval the decision reads "
    "(always-valid for sequential experiments), green when it lies wholly on the good side, red "
    "on the bad side. Open an experiment on the Scorecard page (pick it in the sidebar)."
)

attention = frame[
    (frame["srm"] == "flagged")
    | (frame["guardrails"] == "breached")
    | frame["data_quality"].str.contains("failed")
    | (frame["status"] == "killed")
    | frame["decision"].isin(["rollback", "invalid"])
]
st.subheader("Needs attention")
if attention.empty:
    st.success("Nothing: no SRM, no breached guardrail, no failed data-quality check, no kill.")
for r in attention.itertuples():
    why = [
        "SRM flagged" if r.srm == "flagged" else "",
        "guardrail breached" if r.guardrails == "breached" else "",
        f"data quality: {r.data_quality}" if "failed" in r.data_quality else "",
        "killed" if r.status == "killed" else "",
    ]
    reasons = ", ".join(w for w in why if w)
    st.markdown(
        f"- **{r.name}** (`{r.experiment}`): decision **{r.decision or 'not analysed'}**"
        + (f"; {reasons}" if reasons else "")
    )
