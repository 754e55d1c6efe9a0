"""Authoring: draft a new experiment, validate it with `abp validate`'s rules, write its YAML.

The file is written with status draft for review in git; nothing is ever published from here.
"""

import datetime as dt

import pandas as pd
import streamlit as st

from ab_pipelines.settings import registry_root
from streamlit_app import authoring, ui

st.title("Draft a new experiment")
st.caption(
    "Validated with the same rules as `abp validate` (against the last published config), then "
    f"written to `experiments/<id>.yaml` under `{registry_root()}` with `status: draft`. Review it "
    "in a pull request; it is never published from here."
)
reg = ui.registry()
metric_ids = sorted(reg.metrics)

with st.form("draft"):
    left, right = st.columns(2)
    exp_id = left.text_input("Id", key="draft_id", help="letters, digits, _ and -; names the file")
    name = right.text_input("Name", key="draft_name")
    owner = left.text_input("Owner (email)", key="draft_owner")
    unit = right.text_input("Randomization unit", value="user_id", key="draft_unit")
    hypothesis = st.text_area("Hypothesis", key="draft_hypothesis", height=80)
    left, right = st.columns(2)
    start = left.date_input(
        "Start date", value=dt.date.today() + dt.timedelta(days=7), key="draft_start"
    )
    end = right.date_input("End date (optional)", value=None, key="draft_end")

    st.markdown("**Variants** (the first is the baseline; weights sum to 1)")
    variants = st.data_editor(
        pd.DataFrame({"id": ["control", "treatment"], "weight": [0.5, 0.5]}),
        num_rows="dynamic",
        key="draft_variants",
        hide_index=True,
        column_config={
            "id": st.column_config.TextColumn("variant id", required=True),
            "weight": st.column_config.NumberColumn(
                "weight", min_value=0.0, max_value=1.0, step=0.05
            ),
        },
    )

    st.markdown("**Traffic**: a share of all users, or a range of a mutual-exclusion layer")
    left, right = st.columns(2)
    allocation = left.number_input(
        "Allocation (outside a layer)",
        min_value=0.01,
        max_value=1.0,
        value=1.0,
        step=0.05,
        key="draft_allocation",
    )
    layer = right.text_input("Layer (optional)", key="draft_layer")
    layer_range = st.slider(
        "Layer range [lo, hi) (with a layer)",
        0.0,
        1.0,
        (0.0, 0.5),
        step=0.05,
        key="draft_layer_range",
    )

    st.markdown("**Metrics**")
    left, right = st.columns(2)
    primary = left.multiselect("Primary", metric_ids, key="draft_primary")
    secondary = right.multiselect("Secondary", metric_ids, key="draft_secondary")
    st.markdown("**Guardrails**: a metric and the largest relative harm allowed (0.05 = 5%)")
    guardrails = st.data_editor(
        pd.DataFrame(
            {
                "metric": pd.Series([], dtype="object"),
                "max_relative_change": pd.Series([], dtype="float"),
            }
        ),
        num_rows="dynamic",
        key="draft_guardrails",
        hide_index=True,
        column_config={
            "metric": st.column_config.SelectboxColumn("guardrail metric", options=metric_ids),
            "max_relative_change": st.column_config.NumberColumn(
                "max relative harm", min_value=0.001, max_value=1.0, step=0.01, format="%.3f"
            ),
        },
    )

    st.markdown("**Analysis**")
    cols = st.columns(4)
    alpha = cols[0].number_input(
        "α", min_value=0.001, max_value=0.2, value=0.05, step=0.01, key="draft_alpha"
    )
    mde = cols[1].number_input(
        "MDE (relative, 0 = none)",
        min_value=0.0,
        max_value=1.0,
        value=0.0,
        step=0.01,
        key="draft_mde",
    )
    correction = cols[2].selectbox("Correction", ["holm", "bh", "none"], key="draft_correction")
    sequential = cols[3].checkbox("Sequential (always-valid)", value=True, key="draft_sequential")

    left, right, _ = st.columns([1, 2, 3])
    check_clicked = left.form_submit_button("Validate")
    write_clicked = right.form_submit_button("Validate and write the draft", type="primary")

if check_clicked or write_clicked:
    draft = authoring.draft_experiment(
        id=exp_id,
        name=name,
        owner=owner,
        hypothesis=hypothesis,
        start_date=start,
        end_date=end,
        unit=unit,
        allocation=allocation,
        layer=layer or None,
        layer_range=tuple(layer_range),
        variants=variants.dropna(subset=["id"]).to_dict("records"),
        primary=primary,
        secondary=secondary,
        guardrails=guardrails.dropna().to_dict("records"),
        analysis={
            "alpha": alpha,
            "sequential": sequential,
            "correction": correction,
            "mde": mde or None,
        },
    )
    _, state = ui.published()
    check = authoring.check_draft(draft, registry_root(), state)
    if not check.ok:
        st.error(f"{len(check.problems)} problem(s); nothing was written:")
        for p in check.problems:
            st.markdown(f"- {p}")
    elif write_clicked:
        try:
            path = authoring.write_draft(draft, registry_root(), state)
        except (authoring.DraftRefused, FileExistsError) as exc:
            st.error(f"Not written: {exc}")
        else:
            st.success(
                f"Wrote `{path}`. Commit it on a branch, set `status: in_review` and open a "
                "pull request; a reviewer approves it with `abp approve`."
            )
    else:
        st.success(f"`{check.file}` is valid. Press 'Validate and write the draft' to write it.")
    if check.registry_problems:
        st.warning(
            f"The registry already has {len(check.registry_problems)} problem(s) elsewhere "
            "(not caused by this draft): " + "; ".join(check.registry_problems[:3])
        )
    st.code(authoring.draft_yaml(draft), language="yaml")
