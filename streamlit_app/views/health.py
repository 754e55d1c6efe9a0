"""Health: SRM over time, crossovers and other checks, data quality, quarantined lines."""

import streamlit as st

from streamlit_app import data, ui

reg = ui.registry()
exp = ui.pick_experiment(reg)
if exp is None:
    st.stop()
st.title(f"Health: {exp.name}")

st.subheader("Sample ratio mismatch")
srm = ui.view(data.srm_over_time, exp.id)
if srm.empty:
    st.info(f"{exp.id} has no SRM results yet.")
else:
    latest = srm[srm["day"] == srm["day"].max()]
    flagged = bool(latest["flagged"].any())
    p = latest["p_value"].iloc[0]
    counts = " · ".join(
        f"{r.variant} {r.units:,} (expected {r.expected:,.0f})" for r in latest.itertuples()
    )
    text = f"as of {latest['day'].iloc[0]}, p = {p:.3g}: {counts}"
    if flagged:
        st.error(f"**SRM flagged** {text}. The results are not to be trusted.")
    else:
        st.success(f"**SRM ok** {text}")
    left, right = st.columns(2)
    left.altair_chart(
        ui.lines_chart(
            srm, "day", "units", "variant", "analysed units (dashed: expected)", dash="expected"
        ),
        width="stretch",
    )
    right.altair_chart(ui.p_value_chart(srm), width="stretch")
    st.caption("Flagged at p < 0.001 once every variant expects at least 100 units (red line).")
    with st.expander("SRM per day"):
        st.dataframe(ui.style_rows(srm), hide_index=True)

st.subheader("Crossovers and other checks")
checks = ui.view(data.health_checks, exp.id)
if checks.empty:
    st.info("No health checks yet (gold.health).")
else:
    cross = checks[checks["check"] == "crossovers"]
    if not cross.empty:
        last = cross.iloc[-1]
        (st.error if last["flagged"] else st.markdown)(
            f"**Crossovers** ({last['day']}): {last['detail']}"
        )
        st.altair_chart(
            ui.lines_chart(
                cross.assign(check="crossovers"),
                "day",
                "value",
                "check",
                "units in more than one variant",
            ),
            width="stretch",
        )
    flagged_checks = checks[checks["flagged"] == True]  # noqa: E712
    if flagged_checks.empty:
        st.markdown(
            "No health check flagged (crossovers, metrics without data, pre-period imbalance)."
        )
    else:
        st.warning(f"{len(flagged_checks)} flagged check result(s):")
        st.dataframe(ui.style_rows(flagged_checks), hide_index=True)
    with st.expander("All checks of the latest day"):
        st.dataframe(ui.style_rows(checks[checks["day"] == checks["day"].max()]), hide_index=True)

st.subheader("Data quality")
dq = ui.view(data.dq_results, exp.start_date, None)
if dq.empty:
    st.info("No data-quality results since the experiment started (ops.dq_results).")
else:
    per_day = data.dq_by_day(dq)
    failed = dq[dq["passed"] == False]  # noqa: E712
    if failed.empty:
        st.success(f"All {len(dq)} data-quality checks passed since {exp.start_date}.")
    else:
        st.error(f"{len(failed)} data-quality check(s) failed since {exp.start_date}:")
        st.dataframe(ui.style_rows(failed), hide_index=True)
    st.altair_chart(ui.dq_chart(per_day), width="stretch")
    day = st.selectbox(
        "Checks of day", sorted(per_day["day"], reverse=True), key=f"dq_day:{exp.id}"
    )
    of_day = ui.view(data.dq_of_day, day)
    failed_of_day = of_day[of_day["passed"] == False]  # noqa: E712
    if failed_of_day.empty:
        st.markdown(f"All {len(of_day)} checks of {day} passed.")
    else:
        st.error(f"{len(failed_of_day)} of {len(of_day)} check(s) failed on {day}.")
    st.dataframe(ui.style_rows(of_day), hide_index=True)
    with st.expander("Every check"):
        st.dataframe(ui.style_rows(dq), hide_index=True)

st.subheader("Quarantined lines")
quarantine = ui.view(data.quarantine_counts)
if quarantine.empty:
    st.success("No quarantined line (bronze.quarantine is empty).")
else:
    by_reason = (
        quarantine.groupby("reason", as_index=False)["lines"]
        .sum()
        .sort_values("lines", ascending=False)
    )
    st.markdown(f"**{int(by_reason['lines'].sum()):,}** lines quarantined, by reason code:")
    left, right = st.columns([1, 2])
    left.dataframe(by_reason, hide_index=True)
    right.bar_chart(by_reason, x="reason", y="lines", horizontal=True, sort="-lines", height=260)
    with st.expander("By arrival day and topic"):
        st.dataframe(quarantine, hide_index=True)
