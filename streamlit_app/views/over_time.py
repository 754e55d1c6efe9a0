"""Over time: the cumulative effect per day with its always-valid band; exposures per variant."""

import streamlit as st

from streamlit_app import data, ui

reg = ui.registry()
exp = ui.pick_experiment(reg)
if exp is None:
    st.stop()
st.title(f"Over time: {exp.name}")
st.caption(
    "Each day's estimate covers every unit exposed since the start (cumulative). The band is the "
    "always-valid confidence sequence: it holds at every look, so reading it daily is safe."
)

effects = ui.view(data.effect_over_time, exp.id)
metric_ids = list(dict.fromkeys(exp.metric_ids()))
if effects.empty:
    st.info(f"{exp.id} has no analysed days yet.")
else:
    metric = st.selectbox(
        "Metric",
        metric_ids,
        key=f"over_time_metric:{exp.id}",
        format_func=lambda m: (
            f"{m} ({'higher' if reg.metrics[m].higher_is_better else 'lower'} is better)"
            if m in reg.metrics
            else m
        ),
    )
    mine = effects[effects["metric"] == metric]
    if mine.empty:
        st.info(f"No results for {metric} yet.")
    else:
        st.altair_chart(ui.band_chart(mine), width="stretch")
        latest = mine[mine["day"] == mine["day"].max()]
        for r in latest.itertuples():
            st.markdown(
                f"Latest ({r.day}), **{r.variant}**: "
                f"{data.interval_text(r.effect, r.ci_low, r.ci_high)} always-valid; "
                f"{data.interval_text(r.fixed_effect, r.fixed_ci_low, r.fixed_ci_high)} fixed-horizon."
            )
        with st.expander("Numbers per day"):
            st.dataframe(
                ui.style_rows(mine.drop(columns=["metric", "role"])),
                hide_index=True,
            )

st.subheader("Exposures per variant per day")
exposures = ui.view(data.exposures_over_time, exp.id)
if exposures.empty:
    st.info("No exposures in silver.exposure_counts for this experiment.")
else:
    st.altair_chart(
        ui.lines_chart(exposures, "event_date", "exposures", "variant", "exposure events"),
        width="stretch",
    )
    st.caption("Exposure events by the day they happened (late arrivals included).")
