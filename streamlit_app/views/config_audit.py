"""Config and audit: the published edge config, approvals, kills, the audit log, open alerts."""

import streamlit as st

from streamlit_app import data, ui

st.title("Config and audit")
st.caption(f"ABP_HOME: `{ui.home().home}` · registry: `{ui.registry_root()}`")

config, _ = ui.published()
st.subheader("Published edge config")
if config is None:
    st.info("Nothing published yet: `abp publish` compiles the registry into the edge config.")
else:
    st.metric("Version serving", config["version"])
    st.caption(
        f"Published at {config['published_at']} · content sha `{config['content_sha']}` · "
        "`$ABP_HOME/edge/config.json`"
    )
    st.dataframe(config["experiments"], hide_index=True)

st.subheader("Open alerts")
alerts = ui.view(data.alerts_open)
if alerts.empty:
    st.success("No open alert.")
else:
    for r in alerts.itertuples():
        (st.error if r.severity == "critical" else st.warning)(
            f"**{r.kind}** ({r.severity}) {r.experiment_id} {r.subject}: {r.message}"
        )
    with st.expander("As a table"):
        st.dataframe(alerts, hide_index=True)

st.subheader("Kills")
kills = ui.view(data.kills)
if kills.empty:
    st.caption("No experiment has been killed.")
else:
    for r in kills.itertuples():
        st.markdown(f"- **{r.experiment_id}** killed at {r.killed_at} by **{r.by}**: {r.reason}")

st.subheader("Approvals")
st.caption(
    "An approval counts when it is by someone other than the owner and its sha is the current "
    "content's; any edit of the content makes it stale."
)
st.dataframe(ui.style_rows(ui.view(data.approvals)), hide_index=True)

st.subheader("Audit log")
st.dataframe(ui.view(data.audit_log), hide_index=True)
