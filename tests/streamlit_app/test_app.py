"""Every dashboard page in Streamlit's AppTest, on the demo tables."""

from __future__ import annotations

import datetime as dt
import shutil

import pyarrow.compute as pc
import pytest
import yaml
from streamlit.testing.v1 import AppTest

from ab_pipelines.analysis.scorecard import scorecard
from ab_pipelines.config import load_registry, validate_registry
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import GOLD_EXPERIMENT_RESULTS
from streamlit_app.launch import APP
from tests.streamlit_app.demo_data import QUARANTINE, copy_registry, write_dq

PAGES = {
    "overview": "views/overview.py",
    "scorecard": "views/scorecard.py",
    "over_time": "views/over_time.py",
    "health": "views/health.py",
    "config": "views/config_audit.py",
    "authoring": "views/authoring.py",
}


def app(page: str | None = None, experiment: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(PAGES[page]).run()
        assert not at.exception, at.exception
    if experiment:
        at.sidebar.selectbox(key="experiment_picker").select(experiment).run()
        assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [
        e.value for kind in ("title", "subheader", "markdown", "caption") for e in getattr(at, kind)
    ]
    parts += [
        e.value for kind in ("error", "warning", "success", "info") for e in getattr(at, kind)
    ]
    return "\n".join(str(p) for p in parts)


def test_overview_lists_every_experiment_with_badges(dashboard_env):
    at = app()
    assert [t.value for t in at.title] == ["Experiments"]
    grid = at.dataframe[0].value
    registry = load_registry(dashboard_env.registry_root)
    assert set(grid["name"]) == {e.name for e in registry.experiments.values()}
    row = grid.set_index("experiment")
    assert row.loc["recs_ranking", "srm"] == "flagged"
    assert row.loc["hero_video", "status"] == "killed"
    assert row.loc["hero_video", "guardrails"] == "breached"
    assert row.loc["search_speed", "decision"] == "ship"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["SRM flagged"] == "1" and metrics["Guardrails breached"] == "1"
    assert metrics["Open alerts"] == "1"
    text = texts(at)
    assert "New recommendations ranking" in text and "SRM flagged" in text
    assert "guardrail breached" in text and "killed" in text


def test_scorecard_switches_between_raw_cuped_fixed_and_sequential(dashboard_env):
    at = app("scorecard", "checkout_cta")
    assert at.title[0].value == "Checkout button copy"
    card = scorecard(
        Lake(dashboard_env.home), load_registry(dashboard_env.registry_root), "checkout_cta"
    )
    assert f"Decision: {card['decision']}" in texts(at)
    assert "SRM ok" in texts(at)
    shown = at.dataframe[0].value
    first = card["metrics"][0]
    assert shown["metric"].iloc[0] == first["metric"]
    assert shown["lift"].iloc[0] == pytest.approx(first["sequential"]["relative"]["effect"])
    at.radio(key="intervals").set_value("fixed-horizon").run()
    assert at.dataframe[0].value["lift"].iloc[0] == pytest.approx(
        first["cuped"]["relative"]["effect"]
    )
    at.radio(key="estimate").set_value("raw").run()
    raw = at.dataframe[0].value
    assert raw["lift"].iloc[0] == pytest.approx(first["relative"]["effect"])
    assert raw["estimate"].iloc[0] == "fixed-horizon, raw"
    subheaders = [s.value for s in at.subheader]
    assert subheaders == [
        "Metrics",
        "Guardrails",
        "Interactions with concurrent experiments",
        "How much longer",
        "Segments (exploratory)",
    ]
    # checkout_cta has an MDE: the plan says how many more days
    assert "more day(s)" in texts(at)


def test_scorecard_shows_a_breached_guardrail_and_the_kill(dashboard_env):
    at = app("scorecard", "hero_video")
    text = texts(at)
    assert "Decision: rollback" in text and "Killed" in text and "by system" in text
    assert any("Guardrail breached: page_load_ms · treatment" in e.value for e in at.error)
    guards = at.dataframe[1].value
    assert list(guards["metric"]) == ["page_load_ms"] and bool(guards["breached"].iloc[0])


def test_scorecard_flags_srm_and_shows_exploratory_segments(dashboard_env):
    at = app("scorecard", "recs_ranking")
    assert any("SRM flagged" in e.value for e in at.error)
    assert "Decision: invalid" in texts(at)
    at.sidebar.selectbox(key="experiment_picker").select("search_speed").run()
    assert "Decision: ship" in texts(at)
    segment = at.selectbox(key="segment:search_speed")
    assert set(segment.options) == {"platform=ios", "platform=android"}
    segment.select("platform=android").run()
    assert "Exploratory" in texts(at)
    seg_table = at.dataframe[-1].value
    assert set(seg_table["metric"]) == {"page_load_ms", "conversion"}


def test_scorecard_of_a_bandit_shows_its_weights_over_time(dashboard_env):
    at = app("scorecard", "promo_banner")
    assert "Bandit: weights over time" in [h.value for h in at.subheader]
    assert "weighted by period" in texts(at)
    frames = [d.value for d in at.dataframe]
    periods = next(f for f in frames if "period" in f.columns and "weight" in f.columns)
    assert set(periods["variant"]) == {"none", "discount", "free_shipping"}
    assert any("P(best) free_shipping" in f.columns for f in frames)


def test_the_chosen_experiment_stays_across_pages(dashboard_env):
    at = app("scorecard", "recs_ranking")
    for page, title in (
        ("health", "Health: New recommendations ranking"),
        ("overview", "Experiments"),
        ("over_time", "Over time: New recommendations ranking"),
    ):
        at.switch_page(PAGES[page]).run()
        assert at.title[0].value == title


def test_scorecard_as_of_an_earlier_day(dashboard_env):
    at = app("scorecard", "checkout_cta")
    day = dashboard_env.days[0]
    at.sidebar.selectbox(key="as_of:checkout_cta").select(day).run()
    assert f"as of {day}" in texts(at)
    card = scorecard(
        Lake(dashboard_env.home), load_registry(dashboard_env.registry_root), "checkout_cta", day
    )
    assert at.dataframe[0].value["n_variant"].iloc[0] == card["metrics"][0]["n"]["treatment"]


def test_over_time_draws_the_band_and_the_exposures(dashboard_env):
    at = app("over_time", "checkout_cta")
    assert at.title[0].value == "Over time: Checkout button copy"
    assert at.selectbox(key="over_time_metric:checkout_cta").value == "conversion"
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # the effect with its band, the exposures
    assert "always-valid" in texts(at) and f"Latest ({dashboard_env.last_day})" in texts(at)
    at.selectbox(key="over_time_metric:checkout_cta").select("page_load_ms").run()
    assert not at.exception
    per_day = at.dataframe[0].value
    assert len(per_day) == len(dashboard_env.days)


def test_health_shows_srm_checks_quality_and_quarantine(dashboard_env):
    at = app("health", "recs_ranking")
    assert any(e.value.startswith("**SRM flagged**") for e in at.error)
    subheaders = [s.value for s in at.subheader]
    assert subheaders == [
        "Sample ratio mismatch",
        "Crossovers and other checks",
        "Data quality",
        "Quarantined lines",
    ]
    text = texts(at)
    assert "**Crossovers**" in text and "data-quality checks passed" in text
    assert f"**{sum(QUARANTINE.values()) * len(dashboard_env.days)}** lines quarantined" in text
    reasons = next(
        d.value for d in at.dataframe if "reason" in d.value.columns and "lines" in d.value.columns
    )
    assert reasons.iloc[0]["reason"] == "bad_json"
    at.sidebar.selectbox(key="experiment_picker").select("checkout_cta").run()
    assert any(s.value.startswith("**SRM ok**") for s in at.success)


def test_health_shows_the_checks_of_a_chosen_day(demo, tmp_path, monkeypatch):
    shutil.copytree(demo.home.home, tmp_path / "abp")
    monkeypatch.setenv("ABP_HOME", str(tmp_path / "abp"))
    monkeypatch.setenv("ABP_REGISTRY", str(demo.registry_root))
    bad_day = demo.days[1]
    write_dq(Lake(demo.home.__class__(tmp_path / "abp")), bad_day, failing=("volume_in_band",))
    at = app("health", "checkout_cta")
    pick = at.selectbox(key="dq_day:checkout_cta")
    assert pick.value == demo.last_day and list(pick.options) == [
        str(d) for d in sorted(demo.days, reverse=True)
    ]
    assert f"All 4 checks of {demo.last_day} passed." in texts(at)
    pick.select(bad_day).run()
    assert not at.exception, at.exception
    assert f"1 of 4 check(s) failed on {bad_day}." in texts(at)
    of_day = next(
        d.value
        for d in at.dataframe
        if "check" in d.value.columns and set(d.value["day"]) == {bad_day} and len(d.value) == 4
    )
    assert of_day.iloc[0]["check"] == "volume_in_band" and not of_day.iloc[0]["passed"]


def test_config_and_audit(dashboard_env):
    at = app("config")
    assert at.metric[0].label == "Version serving" and at.metric[0].value == "2"
    text = texts(at)
    assert "hero_video** killed at" in text and "by **system**" in text
    assert any("**srm** (critical) recs_ranking" in e.value for e in at.error)
    frames = [d.value for d in at.dataframe]
    served = frames[0].set_index("experiment")
    assert served.loc["hero_video", "status"] == "killed"
    approvals = next(f for f in frames if "state" in f.columns)
    assert set(approvals["state"]) == {"current"}
    audit = next(f for f in frames if "action" in f.columns)
    assert sorted(audit["action"]) == ["kill", "publish", "publish"]


def fill_draft(at: AppTest, exp_id: str, weights=(0.5, 0.5)) -> None:
    at.text_input(key="draft_id").input(exp_id)
    at.text_input(key="draft_name").input("Banner colour")
    at.text_input(key="draft_owner").input("ana@example.com")
    at.text_area(key="draft_hypothesis").input("A green banner gets more clicks.")
    at.date_input(key="draft_start").set_value(dt.date(2026, 12, 1))
    at.session_state["draft_variants"] = {
        "edited_rows": {0: {"weight": weights[0]}, 1: {"id": "green", "weight": weights[1]}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.session_state["draft_guardrails"] = {
        "edited_rows": {},
        "added_rows": [{"metric": "page_load_ms", "max_relative_change": 0.05}],
        "deleted_rows": [],
    }
    at.multiselect(key="draft_primary").set_value(["conversion"])


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_authoring_validates_and_writes_a_draft(dashboard_env, tmp_path, monkeypatch):
    root = copy_registry(tmp_path / "registry")
    monkeypatch.setenv("ABP_REGISTRY", str(root))
    at = app("authoring")
    assert at.title[0].value == "Draft a new experiment"
    fill_draft(at, "banner_color", weights=(0.6, 0.5))
    button(at, "Validate and write the draft").click().run()
    assert not at.exception, at.exception
    assert any("nothing was written" in e.value for e in at.error)
    assert any("weights sum to 1.1, not 1" in m.value for m in at.markdown)
    assert not (root / "experiments" / "banner_color.yaml").exists()

    fill_draft(at, "banner_color")
    button(at, "Validate").click().run()
    assert any("is valid" in s.value for s in at.success)
    assert not (root / "experiments" / "banner_color.yaml").exists()
    button(at, "Validate and write the draft").click().run()
    path = root / "experiments" / "banner_color.yaml"
    assert any("Wrote" in s.value for s in at.success) and path.exists()
    doc = yaml.safe_load(path.read_text())
    assert doc["status"] == "draft"
    assert doc["variants"] == [{"id": "control", "weight": 0.5}, {"id": "green", "weight": 0.5}]
    assert doc["metrics"]["guardrails"] == [{"metric": "page_load_ms", "max_relative_change": 0.05}]
    assert validate_registry(root) == []
    # nothing was published: the edge config is the demo's
    from ab_pipelines.config.publish import current_payload

    assert "banner_color" not in current_payload(dashboard_env.home)["experiments"]
    # the same id again is refused
    button(at, "Validate and write the draft").click().run()
    assert any("is taken" in m.value for m in at.markdown)


def test_a_new_materialization_is_picked_up(demo, tmp_path, monkeypatch):
    shutil.copytree(demo.home.home, tmp_path / "abp")
    monkeypatch.setenv("ABP_HOME", str(tmp_path / "abp"))
    monkeypatch.setenv("ABP_REGISTRY", str(demo.registry_root))
    lake = Lake(demo.home.__class__(tmp_path / "abp"))
    last = lake.read_arrow(GOLD_EXPERIMENT_RESULTS)
    lake.write_arrow(
        GOLD_EXPERIMENT_RESULTS, last.slice(0, 0), replace=[{"day": demo.last_day.isoformat()}]
    )
    at = app()
    as_of = at.dataframe[0].value.set_index("experiment").loc["checkout_cta", "as_of"]
    assert as_of == demo.days[-2]
    lake.write_arrow(
        GOLD_EXPERIMENT_RESULTS,
        last.filter(pc.field("day") == demo.last_day),
        replace=[{"day": demo.last_day.isoformat()}],
    )
    at.run()
    as_of = at.dataframe[0].value.set_index("experiment").loc["checkout_cta", "as_of"]
    assert as_of == demo.last_day


def test_every_page_reruns_warm_without_an_error(dashboard_env):
    """A rerun on the warm cache (what an analyst's click does) draws every page again; how fast
    is measured by `make bench` (benchmarks/bench_dashboard.py: under 2 s each), not here."""
    at = app()
    for name, path in PAGES.items():
        at.switch_page(path).run()  # warms the cache
        titles = [t.value for t in at.title]
        at.run()
        assert not at.exception, (name, at.exception)
        assert [t.value for t in at.title] == titles, name


def test_a_bayesian_experiment_shows_chance_to_win_and_risk(demo, tmp_path, monkeypatch):
    root = copy_registry(tmp_path / "registry")
    path = root / "experiments" / "checkout_cta.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["analysis"] = {**doc.get("analysis", {}), "engine": "bayesian"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    monkeypatch.setenv("ABP_HOME", str(demo.home.home))
    monkeypatch.setenv("ABP_REGISTRY", str(root))
    at = app("scorecard", "checkout_cta")
    card = scorecard(Lake(demo.home), load_registry(root), "checkout_cta")
    first = card["metrics"][0]["bayesian"]
    assert card["analysis"]["engine"] == "bayesian" and first is not None
    assert at.radio(key="intervals").value == "Bayesian (credible)"
    assert "Bayesian engine: a metric decides when its chance to win exceeds 95%" in texts(at)
    shown = at.dataframe[0].value
    assert shown["lift"].iloc[0] == pytest.approx(first["effect"])
    assert shown["chance_to_win"].iloc[0] == pytest.approx(first["chance_to_win"])
    assert shown["risk_variant"].iloc[0] == pytest.approx(first["risk_variant"])
    assert shown["bayes_call"].iloc[0] == first["call"]
    assert "p_value_adjusted" not in shown.columns
    at.radio(key="intervals").set_value("always-valid (sequential)").run()
    assert at.dataframe[0].value["lift"].iloc[0] == pytest.approx(
        card["metrics"][0]["sequential"]["relative"]["effect"]
    )


def test_scorecard_flags_a_differential_impact_beside_the_segments(dashboard_env):
    """search_speed's lite saves 25% of load time on android and 10% on ios (demo_data): the
    segment section warns with the attribute and the driving level, and lists every test."""
    at = app("scorecard", "search_speed")
    flags = [e.value for e in at.warning if "DIFFERENTIAL IMPACT" in e.value]
    assert flags and "page_load_ms (lite) differs by platform" in flags[0]
    assert "platform=android" in flags[0]
    tests = next(d.value for d in at.dataframe if "attribute" in d.value.columns)
    assert set(tests["attribute"]) == {"platform"} and tests["flagged"].any()
    assert "Interactions with concurrent experiments" in texts(at)


def test_a_holdout_is_in_the_scorecard_picker(dashboard_env):
    at = app("scorecard")
    picker = at.sidebar.selectbox(key="experiment_picker")
    assert "Checkout long-term holdout (checkout_holdout, holdout)" in picker.options
    picker.select("checkout_holdout").run()
    assert not at.exception, at.exception
    assert any("Holdout: 5% of units kept out" in e.value for e in at.info)
