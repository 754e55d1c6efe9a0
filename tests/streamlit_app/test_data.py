"""What each dashboard page shows (streamlit_app.data), on the demo tables and on edge cases."""

from __future__ import annotations

import datetime as dt
import inspect

import pyarrow.compute as pc
import pytest

from ab_pipelines.analysis.scorecard import ScorecardError, scorecard
from ab_pipelines.config import load_registry
from ab_pipelines.config.publish import current_payload
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SRM,
    OPS_DQ_RESULTS,
    SILVER_EXPOSURE_COUNTS,
    TableSpec,
)
from streamlit_app import data
from tests.streamlit_app.demo_data import QUARANTINE, copy_registry, write_dq

VIEWS = [
    fn
    for name, fn in inspect.getmembers(data, inspect.isfunction)
    if hasattr(fn, "reads") and fn.__module__ == data.__name__
]


def test_every_view_names_the_tables_it_reads():
    assert {f.__name__ for f in VIEWS} >= {
        "experiments_overview",
        "scorecard_card",
        "effect_over_time",
        "exposures_over_time",
        "srm_over_time",
        "dq_results",
        "quarantine_counts",
        "health_checks",
        "approvals",
        "kills",
        "audit_log",
        "alerts_open",
    }
    for fn in VIEWS:
        assert all(isinstance(s, TableSpec) for s in fn.reads), fn.__name__


def test_overview_has_status_badges_decision_and_lift(demo, demo_lake, demo_registry):
    frame = data.experiments_overview(demo_lake, demo_registry).set_index("experiment")
    assert set(frame.index) == set(demo_registry.experiments)
    assert frame.loc["hero_video", "status"] == "killed"
    assert frame.loc["hero_video", "guardrails"] == "breached"
    assert frame.loc["recs_ranking", "srm"] == "flagged"
    assert frame.loc["recs_ranking", "decision"] == "invalid"
    assert frame.loc["search_speed", "decision"] == "ship"
    assert (frame["data_quality"] == "ok").all()
    # killed on the third day: days running stop there
    start = demo_registry.experiments["hero_video"].start_date
    assert frame.loc["hero_video", "days_running"] == (demo.killed_at.date() - start).days + 1
    assert frame.loc["checkout_cta", "days_running"] == len(demo.days)
    # exposures: silver.exposure_counts summed over days and arrival days
    silver = demo_lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()
    want = sum(r["exposures"] for r in silver if r["experiment_id"] == "checkout_cta")
    assert frame.loc["checkout_cta", "exposures"] == want
    # the decision and the lift are the scorecard's (the decision's always-valid interval)
    for exp_id in ("checkout_cta", "search_speed", "recs_ranking"):
        card = scorecard(demo_lake, demo_registry, exp_id)
        assert frame.loc[exp_id, "decision"] == card["decision"]
        assert frame.loc[exp_id, "units"] == sum(card["srm"]["counts"].values())
        lead = card["metrics"][0]
        assert lead["role"] == "primary"
        seq = lead["sequential"]["relative"]
        assert frame.loc[exp_id, "lift"] == pytest.approx(seq["effect"])
        assert frame.loc[exp_id, "ci_low"] == pytest.approx(seq["ci_low"])
        assert frame.loc[exp_id, "primary_lift"] == data.interval_text(
            seq["effect"], seq["ci_low"], seq["ci_high"]
        )


def test_overview_counts_failed_data_quality_during_the_experiment(demo, tmp_path):
    home = demo.home.__class__(tmp_path / "abp")
    lake = Lake(home)
    registry = load_registry(demo.registry_root)
    exp = registry.experiments["checkout_cta"]
    src = Lake(demo.home)
    for spec in (GOLD_EXPERIMENT_RESULTS, GOLD_SRM):
        lake.write_arrow(spec, src.read_arrow(spec))
    write_dq(lake, exp.start_date, failing=("volume_in_band",))
    write_dq(lake, exp.start_date - dt.timedelta(days=3), failing=("ids_unique",))  # before
    frame = data.experiments_overview(lake, registry).set_index("experiment")
    assert frame.loc["checkout_cta", "data_quality"] == "1 failed"
    assert frame.loc["search_speed", "data_quality"] == "ok"  # starts later


def test_overview_of_an_empty_lake(home, registry):
    frame = data.experiments_overview(Lake(home), registry)
    assert len(frame) == len(registry.experiments)
    assert (frame["srm"] == "no data").all() and frame["decision"].isna().all()
    assert (frame["days_running"] == 0).all() and (frame["primary_lift"] == "n/a").all()


@pytest.mark.parametrize(
    ("cuped", "sequential"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_scorecard_rows_follow_the_chosen_view(demo_lake, demo_registry, cuped, sequential):
    card = data.scorecard_card(demo_lake, demo_registry, "hero_video", None)
    assert card == scorecard(demo_lake, demo_registry, "hero_video")
    rows = data.scorecard_rows(card, demo_registry.metrics, cuped, sequential)
    assert list(rows["metric"]) == [m["metric"] for m in card["metrics"]]
    for row, entry in zip(rows.to_dict("records"), card["metrics"], strict=True):
        if sequential:
            want = entry["sequential"]["relative"]
        elif cuped and entry["cuped"] is not None:
            want = entry["cuped"]["relative"]
        else:
            want = entry["relative"]
        assert row["lift"] == pytest.approx(want["effect"])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((want["ci_low"], want["ci_high"]))
        assert row["p_value"] == pytest.approx(want["p_value"])
        assert row["estimate"].startswith("always-valid" if sequential else "fixed-horizon")
    guard = rows[rows["role"] == "guardrail"].iloc[0]
    assert guard["metric"] == "page_load_ms" and guard["desired"] == "lower"
    assert bool(guard["breached"]) is True and guard["margin"] == pytest.approx(0.03)
    if (
        sequential
    ):  # the breach: the always-valid interval lies above 0 for a lower-is-better metric
        assert guard["verdict"] == "worse"


def test_pick_estimate_labels_what_is_shown():
    four = {"effect": 0.1, "ci_low": 0.0, "ci_high": 0.2, "p_value": 0.5}
    entry = {"relative": four, "cuped": {"relative": four}, "sequential": {"relative": four}}
    assert data.pick_estimate(entry, True, True)[1] == "always-valid, CUPED"
    assert data.pick_estimate(entry, False, True)[1] == "always-valid, CUPED (raw not stored)"
    assert data.pick_estimate(entry, True, False)[1] == "fixed-horizon, CUPED"
    assert data.pick_estimate(entry, False, False)[1] == "fixed-horizon, raw"
    no_pre = {**entry, "cuped": None}
    assert data.pick_estimate(no_pre, True, False)[1] == "fixed-horizon, raw (no pre-period)"
    assert data.pick_estimate(no_pre, False, True)[1] == "always-valid, raw"


@pytest.mark.parametrize(
    ("low", "high", "higher", "want"),
    [
        (0.01, 0.05, True, "better"),
        (0.01, 0.05, False, "worse"),
        (-0.05, -0.01, True, "worse"),
        (-0.05, -0.01, False, "better"),
        (-0.01, 0.05, True, "inconclusive"),
        (None, 0.05, True, "no data"),
        (float("nan"), 0.05, True, "no data"),
    ],
)
def test_verdict_reads_the_interval_in_the_desired_direction(low, high, higher, want):
    assert data.verdict(low, high, higher) == want


def test_segments_are_exploratory_rows_with_their_srm(demo_lake, demo_registry):
    card = data.scorecard_card(demo_lake, demo_registry, "search_speed", None)
    segs = data.segment_rows(card, demo_registry.metrics, True, True)
    assert set(segs["segment"]) == {"platform=ios", "platform=android"}
    assert segs["segment_srm_p_value"].notna().all()
    assert set(segs["metric"]) == {"page_load_ms", "conversion"}
    assert data.segment_rows({"metrics": []}, demo_registry.metrics, True, True).empty


def test_plan_lines_say_how_much_longer():
    with_mde = {
        "plan": [
            {
                "metric": "conversion",
                "units_per_arm": 1200,
                "mde_now": 0.2,
                "mde_target": 0.05,
                "units_per_arm_needed": 30000,
                "days_more": 24,
            }
        ]
    }
    (line,) = data.plan_lines(with_mde)
    assert "30,000 units per arm" in line and "about 24 more day(s)" in line
    without = {"plan": [{**with_mde["plan"][0], "mde_target": None, "days_more": None}]}
    (line,) = data.plan_lines(without)
    assert "can detect a 20.0% relative change now" in line
    assert data.plan_lines({}) == []


def test_effect_over_time_is_one_row_per_day_from_gold(demo, demo_lake):
    frame = data.effect_over_time(demo_lake, "checkout_cta")
    conv = frame[(frame["metric"] == "conversion") & (frame["variant"] == "treatment")]
    assert list(conv["day"]) == list(demo.days)
    gold = {
        r["day"]: r
        for r in demo_lake.read_arrow(GOLD_EXPERIMENT_RESULTS).to_pylist()
        if r["experiment_id"] == "checkout_cta"
        and r["metric"] == "conversion"
        and r["segment"] == "all"
    }
    for r in conv.to_dict("records"):
        g = gold[r["day"]]
        assert r["effect"] == pytest.approx(g["seq_rel_effect"])
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(
            (g["seq_rel_ci_low"], g["seq_rel_ci_high"])
        )
        assert r["fixed_effect"] == pytest.approx(g["cuped_rel_effect"])
        assert r["n"] == g["n_baseline"] + g["n_variant"]
    # later days hold more units: the estimates are cumulative
    assert conv["n"].is_monotonic_increasing
    assert data.effect_over_time(demo_lake, "search_speed", "platform=ios")["metric"].nunique() == 2


def test_exposures_over_time_sum_the_arrival_days(demo, demo_lake):
    frame = data.exposures_over_time(demo_lake, "checkout_cta")
    assert set(frame["variant"]) == {"control", "treatment"}
    assert list(frame["event_date"].drop_duplicates()) == list(demo.days)
    silver = demo_lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()
    day = demo.days[0]
    want = sum(
        r["exposures"]
        for r in silver
        if (r["experiment_id"], r["variant"], r["event_date"]) == ("checkout_cta", "control", day)
    )
    got = frame[(frame["variant"] == "control") & (frame["event_date"] == day)]["exposures"]
    assert int(got.iloc[0]) == want
    # hero_video was killed: no exposures after the kill day
    assert (
        data.exposures_over_time(demo_lake, "hero_video")["event_date"].max()
        == demo.killed_at.date()
    )


def test_srm_over_time_has_expected_counts(demo, demo_lake):
    frame = data.srm_over_time(demo_lake, "recs_ranking")
    assert len(frame) == 2 * len(demo.days)
    last = frame[frame["day"] == demo.last_day]
    assert bool(last["flagged"].all()) and last["p_value"].iloc[0] < 0.001
    assert last["expected"].sum() == pytest.approx(last["units"].sum())
    assert last["units"].iloc[0] > last["expected"].iloc[0]  # the baseline got too many


def test_dq_results_and_per_day_summary(home):
    lake = Lake(home)
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    write_dq(lake, d1, failing=("volume_in_band",))
    write_dq(lake, d2)
    frame = data.dq_results(lake)
    assert "sample" not in frame.columns
    assert list(frame["day"].drop_duplicates()) == [d2, d1]  # newest first
    first_of_d1 = frame[frame["day"] == d1].iloc[0]
    assert not first_of_d1["passed"] and first_of_d1["check"] == "volume_in_band"
    assert list(data.dq_results(lake, start=d2)["day"].unique()) == [d2]
    assert list(data.dq_results(lake, end=d1)["day"].unique()) == [d1]
    summary = data.dq_by_day(frame)
    assert summary.to_dict("records") == [
        {"day": d1, "checks": 4, "failed": 1},
        {"day": d2, "checks": 4, "failed": 0},
    ]
    assert data.dq_by_day(data.dq_results(Lake(home.__class__(home.home / "empty")))).empty


def test_the_checks_of_one_day(home):
    lake = Lake(home)
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    assert data.dq_of_day(lake, d1).empty and "day" in data.dq_of_day(lake, d1).columns
    write_dq(lake, d1, failing=("volume_in_band", "values_finite"))
    write_dq(lake, d2)
    frame = data.dq_of_day(lake, d1)
    assert list(frame.columns) == list(data.dq_results(lake).columns)
    assert set(frame["day"]) == {d1} and len(frame) == 4
    assert list(frame["check"][:2]) == ["volume_in_band", "values_finite"]  # failures first
    assert not frame["passed"][:2].any() and frame["passed"][2:].all()
    assert data.dq_of_day(lake, d2)["passed"].all()
    assert data.dq_of_day(lake, dt.date(2026, 3, 3)).empty
    assert data.dq_of_day.reads == (OPS_DQ_RESULTS,)


def test_quarantine_counts_by_reason_without_reading_the_raw_text(demo, demo_lake, monkeypatch):
    asked = []
    real = Lake.read_arrow

    def spy(self, spec, filter=None, columns=None, version=None):
        asked.append((spec.qualified, tuple(columns or spec.schema.names)))
        return real(self, spec, filter=filter, columns=columns, version=version)

    monkeypatch.setattr(Lake, "read_arrow", spy)
    frame = data.quarantine_counts(demo_lake)
    assert asked == [("bronze.quarantine", ("arrival_date", "topic", "reason"))]
    by_reason = frame.groupby("reason")["lines"].sum().to_dict()
    assert by_reason == {k: v * len(demo.days) for k, v in QUARANTINE.items()}


def test_health_checks_of_one_experiment(demo, demo_lake):
    frame = data.health_checks(demo_lake, "checkout_cta")
    assert set(frame["check"]) == {"crossovers", "metric_without_data", "pre_period_imbalance"}
    cross = frame[frame["check"] == "crossovers"]
    assert list(cross["day"]) == list(demo.days) and (cross["value"] > 0).all()


def test_config_and_audit_views(demo, demo_lake, demo_registry):
    config = data.published_config(demo.home)
    payload = current_payload(demo.home)
    assert config["version"] == payload["version"] == 2  # the publish, then the kill
    served = config["experiments"].set_index("experiment")
    assert served.loc["hero_video", "status"] == "killed"
    assert served.loc["hero_video", "serve_variant"] == "control"
    kills = data.kills(demo_lake)
    assert list(kills["experiment_id"]) == ["hero_video"] and kills["by"].iloc[0] == "system"
    audit = data.audit_log(demo_lake)
    # newest first: the kill and the publish it made (same time), then the first publish
    assert sorted(audit["action"][:2]) == ["kill", "publish"]
    assert (audit["action"].iloc[-1], audit["actor"].iloc[-1]) == ("publish", "demo")
    assert audit["at"].is_monotonic_decreasing
    alerts = data.alerts_open(demo_lake)
    assert list(alerts["kind"]) == ["srm"] and alerts["experiment_id"].iloc[0] == "recs_ranking"
    approvals = data.approvals(demo_lake, demo_registry)
    assert set(approvals["experiment"]) == set(demo_registry.experiments)
    assert (approvals["state"] == "current").all()


def test_approval_states(tmp_path, home):
    root = copy_registry(tmp_path / "registry")
    path = root / "experiments" / "checkout_cta.yaml"
    path.write_text(path.read_text().replace("Clearer copy", "Shorter copy"))  # content edit
    owner_path = root / "experiments" / "homepage_aa.yaml"
    owner_path.write_text(
        owner_path.read_text().replace("status: running", "status: draft").split("approvals:")[0]
    )
    frame = data.approvals(Lake(home), load_registry(root)).set_index("experiment")
    assert frame.loc["checkout_cta", "state"] == "stale"
    assert frame.loc["homepage_aa", "state"] == "none"
    assert frame.loc["search_speed", "state"] == "current"


def test_views_of_an_empty_lake(home, registry):
    lake = Lake(home)
    assert data.published_config(home) is None
    for frame in (
        data.effect_over_time(lake, "checkout_cta"),
        data.exposures_over_time(lake, "checkout_cta"),
        data.srm_over_time(lake, "checkout_cta"),
        data.dq_results(lake),
        data.quarantine_counts(lake),
        data.health_checks(lake, "checkout_cta"),
        data.kills(lake),
        data.audit_log(lake),
        data.alerts_open(lake),
    ):
        assert frame.empty and len(frame.columns) > 0
    assert data.experiment_days(lake, "checkout_cta") == []
    with pytest.raises(ScorecardError, match="has not been analysed yet"):
        data.scorecard_card(lake, registry, "checkout_cta", None)


def test_interval_text():
    assert data.interval_text(0.0123, -0.005, 0.029) == "+1.2% [-0.5%, +2.9%]"
    assert data.interval_text(None, None, None) == "n/a"
    assert data.interval_text(float("nan"), 0.0, 0.1) == "n/a"


def test_a_new_day_shows_up_in_the_views(demo, tmp_path):
    """Views read the current snapshot; the dashboard's cache is keyed on these versions."""
    lake = Lake(demo.home.__class__(tmp_path / "abp"))
    src = Lake(demo.home)
    old = src.read_arrow(GOLD_EXPERIMENT_RESULTS)
    lake.write_arrow(GOLD_EXPERIMENT_RESULTS, old.filter(pc.field("day") < demo.last_day))
    v1 = lake.version(GOLD_EXPERIMENT_RESULTS)
    assert data.experiment_days(lake, "checkout_cta")[-1] < demo.last_day
    lake.write_arrow(GOLD_EXPERIMENT_RESULTS, old.filter(pc.field("day") == demo.last_day))
    assert lake.version(GOLD_EXPERIMENT_RESULTS) > v1
    assert data.experiment_days(lake, "checkout_cta")[-1] == demo.last_day
