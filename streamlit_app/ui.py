"""The Streamlit side shared by the pages: cached loading, the experiment picker, styles and charts.

:func:`view` runs a :mod:`streamlit_app.data` function through ``st.cache_data`` keyed on the
Delta versions of the tables it reads (and on the registry files), so a warm page reads nothing
and a new materialization is picked up on the next rerun.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from ab_pipelines.config.models import Experiment
from ab_pipelines.config.publish import published_state
from ab_pipelines.config.registry import Registry, read_registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.settings import Paths, paths
from ab_pipelines.settings import registry_root as settings_registry_root
from streamlit_app import data

__all__ = [
    "VERDICT_COLOURS",
    "ci_chart",
    "home",
    "pick_experiment",
    "published",
    "registry",
    "registry_warning",
    "style_rows",
    "view",
]

VERDICT_COLOURS = {
    "better": "#1a7f37",
    "worse": "#cf222e",
    "inconclusive": "#6e7781",
    "no data": "#afb8c1",
}
DECISION_COLOURS = {
    "ship": "#1a7f37",
    "keep_running": "#0969da",
    "inconclusive": "#6e7781",
    "rollback": "#cf222e",
    "invalid": "#cf222e",
}
BAD_BADGES = {"flagged", "breached", "killed", "stale"}


def home() -> Paths:
    return paths()


def registry_root() -> Path:
    return settings_registry_root()


# ---- the registry ------------------------------------------------------------------------------


def _fingerprint(root: Path) -> tuple:
    """Names, sizes and modification times of the registry files: its cache key."""
    files = sorted(
        [*root.glob("experiments/*.y*ml"), *root.glob("metrics/*.y*ml"), *root.glob("units.yaml")]
    )
    out = []
    for f in files:
        try:
            st_ = f.stat()
        except OSError:
            continue
        out.append((f.relative_to(root).as_posix(), st_.st_mtime_ns, st_.st_size))
    return tuple(out)


@st.cache_resource(show_spinner=False, max_entries=8)
def _registry(root: str, fingerprint: tuple) -> tuple[Registry, tuple[str, ...]]:
    # read_registry keeps what loads: one broken file must not take the dashboard down.
    reg, problems = read_registry(Path(root))
    return reg, tuple(str(p) for p in problems)


def _registry_key() -> tuple[str, tuple]:
    root = settings_registry_root()
    return str(root), _fingerprint(root)


def registry() -> Registry:
    return _registry(*_registry_key())[0]


def registry_warning() -> None:
    """Say so when some registry files did not load (they are missing from every page)."""
    problems = _registry(*_registry_key())[1]
    if problems:
        st.warning(
            f"{len(problems)} registry problem(s); run `abp validate`. First: {problems[0]}",
            icon=":material/warning:",
        )


# ---- cached views ------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=512)
def _view(
    name: str, home_dir: str, versions: tuple, registry_key: tuple | None, args: tuple
) -> Any:
    fn = getattr(data, name)
    lake = Lake(paths(home_dir))
    if fn.uses_registry:
        return fn(lake, _registry(*registry_key)[0], *args)
    return fn(lake, *args)


def view(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(lake, [registry,] *args)`` of :mod:`streamlit_app.data`, cached by table versions."""
    h = home()
    lake = Lake(h)
    versions = tuple(lake.version(spec) for spec in fn.reads)
    key = _registry_key() if fn.uses_registry else None
    return _view(fn.__name__, str(h.home), versions, key, args)


@st.cache_data(show_spinner=False, max_entries=8)
def _published(home_dir: str, stamp: tuple) -> tuple[dict | None, dict | None]:
    h = paths(home_dir)
    return data.published_config(h), published_state(h)


def published() -> tuple[dict | None, dict | None]:
    """(the edge config serving now, the last published registry state), cached by file times."""
    h = home()
    stamp = tuple(
        (f.stat().st_mtime_ns if f.exists() else None)
        for f in (h.edge / "config.json", h.edge / "registry_state.json")
    )
    return _published(str(h.home), stamp)


# ---- the experiment picker ---------------------------------------------------------------------

_PICKER = "experiment_picker"
_CHOSEN = "_experiment"  # not a widget key: survives page switches, where widget state does not


def _remember_choice() -> None:
    st.session_state[_CHOSEN] = st.session_state[_PICKER]


def pick_experiment(reg: Registry, holdouts: bool = False) -> Experiment | None:
    """The experiment chosen in the sidebar; remembered across pages and kept in the URL. With
    ``holdouts``, the holdouts are offered too (their scorecard: general against holdout)."""
    subjects = reg.analysed_experiments if holdouts else reg.experiments
    ids = sorted(subjects)
    if not ids:
        st.info("The registry has no experiments yet: add experiments/<id>.yaml (see Authoring).")
        return None
    if st.session_state.get(_CHOSEN) not in ids:
        linked = st.query_params.get("experiment")  # a shared link opens on its experiment
        st.session_state[_CHOSEN] = linked if linked in ids else ids[0]
    st.session_state[_PICKER] = st.session_state[_CHOSEN]
    choice = st.sidebar.selectbox(
        "Experiment",
        ids,
        key=_PICKER,
        on_change=_remember_choice,
        format_func=lambda i: f"{subjects[i].name} ({i}{', holdout' if i in reg.holdouts else ''})",
    )
    if st.query_params.get("experiment") != choice:
        st.query_params["experiment"] = choice
    return subjects[choice]


# ---- styles ------------------------------------------------------------------------------------


def _pct(x: Any) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:+.2%}"


def _p(x: Any) -> str:
    if x is None or pd.isna(x):
        return "n/a"
    return f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _num(x: Any) -> str:
    return "n/a" if x is None or pd.isna(x) else f"{x:,.4g}"


def style_rows(frame: pd.DataFrame) -> Any:
    """A Styler: lifts as signed percentages coloured by verdict; decisions and bad badges coloured."""

    def colours(row: pd.Series) -> list[str]:
        out = []
        for col in row.index:
            css = ""
            if col in ("lift", "verdict", "primary_lift") and "verdict" in row.index:
                css = f"color: {VERDICT_COLOURS.get(row['verdict'], '')}; font-weight: 600"
            elif col == "decision" and row[col] in DECISION_COLOURS:
                css = f"color: {DECISION_COLOURS[row[col]]}; font-weight: 600"
            elif isinstance(row[col], str) and (row[col] in BAD_BADGES or "failed" in row[col]):
                css = "color: #cf222e; font-weight: 600"
            elif col in ("breached", "flagged", "segment_srm_flagged") and row[col] is True:
                css = "color: #cf222e; font-weight: 600"
            elif col == "passed" and row[col] is False:
                css = "color: #cf222e; font-weight: 600"
            out.append(css)
        return out

    pct_cols = [
        c
        for c in ("lift", "ci_low", "ci_high", "margin", "bound", "effect", "adj_lift")
        if c in frame
    ]
    p_cols = [
        c
        for c in ("p_value", "p_value_adjusted", "srm_p_value", "segment_srm_p_value")
        if c in frame
    ]
    num_cols = [c for c in ("mean_baseline", "mean_variant") if c in frame]
    fmt = {
        **{c: _pct for c in pct_cols},
        **{c: _p for c in p_cols},
        **{c: _num for c in num_cols},
    }
    for col in ("variance_reduction", "adj_variance_reduction"):
        if col in frame:
            fmt[col] = lambda x: "n/a" if pd.isna(x) else f"{x:.0%}"
    if "chance_to_win" in frame:
        fmt["chance_to_win"] = lambda x: "n/a" if pd.isna(x) else f"{x:.1%}"
    for col in ("risk_control", "risk_variant"):
        if col in frame:
            fmt[col] = lambda x: "n/a" if pd.isna(x) else f"{x:.2%}"
    return frame.style.apply(colours, axis=1).format(fmt)


# ---- charts ------------------------------------------------------------------------------------

_DAY_AXIS = alt.Axis(format="%b %d", tickCount="day")  # one tick per day, never hours
_VERDICT_SCALE = alt.Scale(domain=list(VERDICT_COLOURS), range=list(VERDICT_COLOURS.values()))


def weights_chart(periods: pd.DataFrame) -> alt.Chart:
    """A bandit's weights per allocation period (stacked bars, periods in order): ``periods`` has
    :func:`streamlit_app.data.bandit_frames`' first frame's columns."""
    order = list(dict.fromkeys(periods["period"]))
    return (
        alt.Chart(periods)
        .mark_bar()
        .encode(
            x=alt.X("period:N", sort=order, title="allocation period (config version)"),
            y=alt.Y("weight:Q", stack="normalize", title="weight", axis=alt.Axis(format="%")),
            color=alt.Color("variant:N", legend=alt.Legend(orient="bottom")),
            tooltip=[
                alt.Tooltip("period:N"),
                alt.Tooltip("from:N"),
                alt.Tooltip("variant:N"),
                alt.Tooltip("weight:Q", format=".1%"),
                alt.Tooltip("units:Q", format=","),
            ],
        )
    )


def ci_chart(frame: pd.DataFrame, label: str = "row") -> alt.Chart | None:
    """A forest plot: each row's relative lift (point) and interval (bar), coloured by verdict.

    ``frame`` has the :func:`streamlit_app.data.scorecard_rows` columns and a ``label`` column;
    guardrail rows with a margin also get a red tick where harm starts.
    """
    df = frame.dropna(subset=["ci_low", "ci_high"]).copy()
    if df.empty:
        return None
    y = alt.Y(f"{label}:N", sort=None, title=None, axis=alt.Axis(labelLimit=260))
    colour = alt.Color(
        "verdict:N", scale=_VERDICT_SCALE, legend=alt.Legend(title="interval", orient="bottom")
    )
    tips = [
        alt.Tooltip(f"{label}:N"),
        alt.Tooltip("lift:Q", format="+.2%"),
        alt.Tooltip("ci_low:Q", format="+.2%"),
        alt.Tooltip("ci_high:Q", format="+.2%"),
        alt.Tooltip("estimate:N"),
    ]
    base = alt.Chart(df).encode(y=y, tooltip=tips)
    bars = base.mark_rule(strokeWidth=4).encode(
        x=alt.X("ci_low:Q", title="relative lift", axis=alt.Axis(format="+%")),
        x2="ci_high:Q",
        color=colour,
    )
    points = base.mark_point(filled=True, size=80, opacity=1).encode(x="lift:Q", color=colour)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#57606a", strokeDash=[4, 4])
    layers = [zero.encode(x="x:Q"), bars, points]
    if "margin" in df and df["margin"].notna().any():
        harm = df.dropna(subset=["margin"]).copy()
        harm["harm_at"] = harm["margin"].where(harm["desired"] == "lower", -harm["margin"])
        layers.append(
            alt.Chart(harm)
            .mark_tick(color="#cf222e", thickness=2, size=22)
            .encode(x="harm_at:Q", y=y, tooltip=[alt.Tooltip("harm_at:Q", format="+.1%")])
        )
    # A fixed pixel height squeezes the rows of a layered chart together; a step per row does not.
    return alt.layer(*layers).properties(height=alt.Step(34))


def band_chart(frame: pd.DataFrame) -> alt.Chart:
    """The cumulative effect per day (line) with its always-valid band, one colour per variant."""
    df = frame.assign(day=pd.to_datetime(frame["day"]))
    x = alt.X("day:T", title="analysis day", axis=_DAY_AXIS)
    colour = alt.Color("variant:N", title="variant")
    band = (
        alt.Chart(df)
        .mark_area(opacity=0.2)
        .encode(
            x=x,
            y=alt.Y("ci_low:Q", title="relative lift", axis=alt.Axis(format="+%")),
            y2="ci_high:Q",
            color=colour,
        )
    )
    line = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=x,
            y="effect:Q",
            color=colour,
            tooltip=[
                alt.Tooltip("day:T"),
                alt.Tooltip("variant:N"),
                alt.Tooltip("effect:Q", format="+.2%"),
                alt.Tooltip("ci_low:Q", format="+.2%"),
                alt.Tooltip("ci_high:Q", format="+.2%"),
                alt.Tooltip("n:Q", format=","),
            ],
        )
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#57606a", strokeDash=[4, 4])
    return alt.layer(band, line, zero.encode(y="y:Q")).properties(height=320)


def lines_chart(
    frame: pd.DataFrame, x: str, y: str, colour: str, title: str, dash: str | None = None
) -> alt.Chart:
    """A line per ``colour`` over the days in ``x``; ``dash`` adds the same as dashed lines."""
    df = frame.assign(**{x: pd.to_datetime(frame[x])})
    xs = alt.X(f"{x}:T", title=None, axis=_DAY_AXIS)
    solid = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=xs,
            y=alt.Y(f"{y}:Q", title=title, axis=alt.Axis(format=",.0f")),
            color=f"{colour}:N",
            tooltip=[x, colour, y],
        )
    )
    if dash is None:
        return solid.properties(height=260)
    dashed = (
        alt.Chart(df)
        .mark_line(strokeDash=[5, 4])
        .encode(x=xs, y=f"{dash}:Q", color=f"{colour}:N", tooltip=[x, colour, dash])
    )
    return alt.layer(solid, dashed).properties(height=260)


def dq_chart(per_day: pd.DataFrame) -> alt.Chart:
    """Data-quality checks per day: passed (grey) and failed (red), stacked."""
    wide = pd.DataFrame(
        {
            "day": pd.to_datetime(per_day["day"]),
            "passed": per_day["checks"] - per_day["failed"],
            "failed": per_day["failed"],
        }
    )
    long = wide.melt(id_vars="day", var_name="result", value_name="count")
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("day:T", title=None, axis=_DAY_AXIS, timeUnit="yearmonthdate"),
            y=alt.Y("count:Q", title="checks", axis=alt.Axis(format=",.0f")),
            color=alt.Color(
                "result:N",
                scale=alt.Scale(domain=["passed", "failed"], range=["#afb8c1", "#cf222e"]),
            ),
            tooltip=["day:T", "result:N", "count:Q"],
        )
        .properties(height=160)
    )


def p_value_chart(frame: pd.DataFrame, threshold: float = 0.001) -> alt.Chart:
    """The SRM p-value per day on a log scale, with the flagging threshold."""
    df = frame.drop_duplicates("day").assign(day=lambda d: pd.to_datetime(d["day"]))
    df = df[df["p_value"] > 0]
    line = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None, axis=_DAY_AXIS),
            y=alt.Y("p_value:Q", scale=alt.Scale(type="log"), title="SRM p-value (log)"),
            tooltip=["day:T", alt.Tooltip("p_value:Q", format=".2e")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"y": [threshold]}))
        .mark_rule(color="#cf222e", strokeDash=[4, 4])
        .encode(y="y:Q")
    )
    return alt.layer(line, rule).properties(height=220)
