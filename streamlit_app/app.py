"""The analysts' dashboard: ``streamlit run streamlit_app/app.py`` (``make dashboard``).

One page per script under ``views/``, registered with ``st.navigation``. Pages read the lake through
:mod:`streamlit_app.data` (delta-rs and Arrow, cached by table version) and never start Spark.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:  # `streamlit run` puts this folder, not the repo root, on sys.path
    import streamlit_app  # noqa: F401
except ImportError:  # not installed (`pip install -e .`): run from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [
    st.Page(
        VIEWS / "overview.py",
        title="Experiments",
        icon=":material/science:",
        url_path="overview",
        default=True,
    ),
    st.Page(
        VIEWS / "scorecard.py", title="Scorecard", icon=":material/analytics:", url_path="scorecard"
    ),
    st.Page(
        VIEWS / "over_time.py", title="Over time", icon=":material/timeline:", url_path="over_time"
    ),
    st.Page(
        VIEWS / "health.py", title="Health", icon=":material/monitor_heart:", url_path="health"
    ),
    st.Page(
        VIEWS / "config_audit.py",
        title="Config and audit",
        icon=":material/admin_panel_settings:",
        url_path="config",
    ),
    st.Page(
        VIEWS / "authoring.py", title="Authoring", icon=":material/edit_note:", url_path="authoring"
    ),
]

st.set_page_config(page_title="ab-pipelines", page_icon=":material/science:", layout="wide")
page = st.navigation(PAGES)
page.run()
