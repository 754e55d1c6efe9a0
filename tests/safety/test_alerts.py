"""reconcile: one alert per episode, idempotent re-runs, out-of-order days, stops and run failures."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_ALERTS
from ab_pipelines.safety import (
    Condition,
    close_alert,
    open_alerts,
    read_alerts,
    recent_alerts,
    reconcile,
    reconcile_day,
    record_run_failure,
)
from ab_pipelines.settings import paths
from tests.safety.factory import DAY, experiment, healthy_day, registry, write_kill, write_results

D = {i: dt.date(2026, 3, i) for i in range(1, 20)}
T = {i: dt.datetime(2026, 3, i, 2, 0, tzinfo=dt.UTC) for i in range(1, 20)}


def breach(effect: float = 0.08, exp: str = "exp", metric: str = "page_load_ms") -> Condition:
    return Condition(
        kind="guardrail_breach",
        severity="critical",
        experiment_id=exp,
        subject=f"{metric}/treatment",
        message=f"{exp}: guardrail {metric} breached ({effect:+.2%})",
        effect=effect,
        bound=effect - 0.02,
        margin=0.05,
        detail={"variant": "treatment", "effect": effect},
    )


def dq(check: str = "volume_band") -> Condition:
    return Condition("dq_failed", "critical", "", f"bronze.exposures.{check}", f"{check} failed")


def table_rows(lake) -> list[dict]:
    return sorted(lake.read_arrow(OPS_ALERTS).to_pylist(), key=lambda r: r["alert_id"])


def test_a_breach_over_three_days_is_one_alert_and_a_return_is_a_second(lake):
    r1 = reconcile(lake, D[1], [breach(0.08)], now=T[1])
    (a,) = r1.opened
    assert a.alert_id == "guardrail_breach:exp:page_load_ms/treatment:2026-03-01"
    assert (a.status, a.opened_day, a.last_seen_day, a.closed_day) == ("open", D[1], D[1], None)
    assert r1.events() == [(a, "opened")]

    r2 = reconcile(lake, D[2], [breach(0.09)], now=T[2])
    r3 = reconcile(lake, D[3], [breach(0.10)], now=T[3])
    assert not r2.opened and not r3.opened and not r3.closed and r3.events() == []
    (a3,) = r3.updated
    assert (a3.alert_id, a3.last_seen_day, a3.effect) == (a.alert_id, D[3], 0.10)
    assert a3.opened_at == T[1] and a3.detail == {"variant": "treatment", "effect": 0.10}
    assert len(read_alerts(lake)) == 1

    r4 = reconcile(lake, D[4], [], now=T[4])
    (c,) = r4.closed
    assert (c.alert_id, c.status, c.closed_day, c.closed_at) == (a.alert_id, "closed", D[4], T[4])
    assert c.last_seen_day == D[3] and c.effect == 0.10
    assert r4.events() == [(c, "closed")]

    assert not reconcile(lake, D[5], [], now=T[5]).changed
    r6 = reconcile(lake, D[6], [breach(0.07)], now=T[6])
    (b,) = r6.opened
    assert b.alert_id.endswith(":2026-03-06") and b.alert_id != a.alert_id
    rows = table_rows(lake)
    assert [(r["status"], r["opened_day"], r["last_seen_day"], r["closed_day"]) for r in rows] == [
        ("closed", D[1], D[3], D[4]),
        ("open", D[6], D[6], None),
    ]
    assert [x.alert_id for x in open_alerts(lake)] == [b.alert_id]


def test_rerunning_a_day_changes_nothing(lake):
    conds = [breach(0.08), dq()]
    reconcile(lake, D[1], conds, now=T[1])
    reconcile(lake, D[2], [breach(0.09)], now=T[2])  # the dq alert closes
    before, version = table_rows(lake), lake.version(OPS_ALERTS)
    for _ in range(2):
        again = reconcile(lake, D[2], [breach(0.09)], now=T[9])
        assert not again.changed
    assert table_rows(lake) == before and lake.version(OPS_ALERTS) == version


def test_rerunning_the_newest_day_with_new_numbers_updates_in_place(lake):
    reconcile(lake, D[1], [breach(0.08)], now=T[1])
    r = reconcile(lake, D[1], [breach(0.11)], now=T[2])
    (u,) = r.updated
    assert not r.opened and u.effect == 0.11 and u.opened_at == T[1]
    assert len(read_alerts(lake)) == 1


def test_older_days_never_close_extend_or_reopen(lake):
    reconcile(lake, D[1], [breach()], now=T[1])
    reconcile(lake, D[5], [breach()], now=T[5])
    # Day 3 re-run without the breach: the alert was seen on day 5, so it stays open.
    r = reconcile(lake, D[3], [], now=T[6])
    assert not r.changed
    (a,) = open_alerts(lake)
    assert a.last_seen_day == D[5]
    # Close it on day 6, then re-run days inside and before the episode with the breach.
    reconcile(lake, D[6], [], now=T[6])
    for d in (D[1], D[4], D[5]):
        assert not reconcile(lake, d, [breach()], now=T[7]).changed
    assert open_alerts(lake) == []
    # A breach on the closing day itself (a corrected re-run) opens a new episode.
    (n,) = reconcile(lake, D[6], [breach()], now=T[7]).opened
    assert n.opened_day == D[6] and len(read_alerts(lake)) == 2


def test_a_day_evaluated_first_late_opens_its_episode_then(lake):
    # Days run newest first: the episode starts at the first day evaluated.
    reconcile(lake, D[5], [breach()], now=T[5])
    reconcile(lake, D[4], [breach()], now=T[5])
    (a,) = read_alerts(lake)
    assert (a.opened_day, a.last_seen_day) == (D[5], D[5])


def test_only_evaluated_kinds_close(lake):
    reconcile(lake, D[1], [breach(), dq()], now=T[1])
    r = reconcile(lake, D[2], [], scope_kinds=["dq_failed"], now=T[2])
    assert [c.kind for c in r.closed] == ["dq_failed"]
    assert [a.kind for a in open_alerts(lake)] == ["guardrail_breach"]


def test_a_stopped_experiment_closes_its_alerts_and_opens_none(lake):
    reconcile(lake, D[1], [breach(exp="exp"), breach(exp="other"), dq()], now=T[1])
    r = reconcile(
        lake,
        D[2],
        [breach(exp="exp"), breach(exp="other"), dq()],
        stopped_experiments={"exp"},
        now=T[2],
    )
    (c,) = r.closed
    assert (c.experiment_id, c.closed_day, c.closed_at) == ("exp", D[2], T[2])
    assert {a.experiment_id for a in r.updated} == {"other", ""}
    again = [breach(exp="exp"), breach(exp="other"), dq()]
    r3 = reconcile(lake, D[3], again, stopped_experiments={"exp"}, now=T[3])
    assert not r3.opened and not r3.closed
    assert sorted(a.experiment_id for a in open_alerts(lake)) == ["", "other"]


def test_a_kill_closes_alerts_through_reconcile_day(lake):
    exp = experiment()
    reg = registry(exp)
    for day in (DAY, DAY + dt.timedelta(days=1)):
        healthy_day(lake, exp, day)
        write_results(lake, exp, day, load_lift=0.3)
    r1 = reconcile_day(lake, reg, DAY, now=T[11])
    assert [a.kind for a in r1.opened] == ["guardrail_breach"]
    assert r1.opened[0].subject == "page_load_ms/treatment" and r1.opened[0].bound > 0.05
    write_kill(lake, "exp", dt.datetime(2026, 3, 11, 9, 0, tzinfo=dt.UTC))
    r2 = reconcile_day(lake, reg, DAY + dt.timedelta(days=1), now=T[12])
    assert [a.kind for a in r2.closed] == ["guardrail_breach"] and not r2.opened
    assert open_alerts(lake) == []


def test_nan_numbers_are_stored_as_null(lake):
    c = Condition(
        "srm",
        "critical",
        "exp",
        "",
        "srm",
        effect=math.nan,
        detail={"p_value": math.inf, "counts": {"a": 1}},
    )
    reconcile(lake, D[1], [c], now=T[1])
    (row,) = table_rows(lake)
    assert row["effect"] is None and row["detail"] == '{"counts":{"a":1},"p_value":null}'


def test_run_failures_open_once_and_close_only_by_hand(lake):
    r = record_run_failure(lake, "run-1", "analyze", "boom\nTraceback ...", now=T[3])
    (a,) = r.opened
    assert a.alert_id == "run_failed::run-1:2026-03-03"
    assert (a.kind, a.severity, a.subject, a.experiment_id) == (
        "run_failed",
        "critical",
        "run-1",
        "",
    )
    assert a.message == "run run-1 of job analyze failed: boom"
    assert a.detail["error"] == "boom\nTraceback ..." and a.detail["job_name"] == "analyze"
    assert not record_run_failure(lake, "run-1", "analyze", "boom", now=T[4]).changed

    assert not reconcile(lake, D[9], [], now=T[9]).changed  # never auto-closes
    with pytest.raises(ValueError, match="record_run_failure"):
        reconcile(lake, D[9], [Condition("run_failed", "critical", "", "r", "m")])

    (c,) = close_alert(lake, a.alert_id, now=T[10]).closed
    assert (c.status, c.closed_day, c.closed_at) == ("closed", D[10], T[10])
    assert not close_alert(lake, a.alert_id, now=T[11]).changed
    with pytest.raises(KeyError, match="no alert"):
        close_alert(lake, "nope")


def test_open_and_recent_alerts(lake, tmp_path):
    reconcile(lake, D[1], [dq("old")], now=T[1])
    reconcile(lake, D[2], [], now=T[2])  # closed on day 2
    reconcile(lake, D[8], [dq("recent")], now=T[8])
    reconcile(lake, D[9], [breach()], now=T[9])  # dq "recent" closes on day 9
    record_run_failure(lake, "run-7", "land", "disk full", now=T[9])
    warn = Condition("crossovers", "warning", "exp", "", "crossovers")
    reconcile(lake, D[10], [breach(), warn], now=T[10])

    assert [(a.kind, a.severity) for a in open_alerts(lake)] == [
        ("guardrail_breach", "critical"),
        ("run_failed", "critical"),
        ("crossovers", "warning"),
    ]
    recent = recent_alerts(lake, days=7, today=D[10])
    assert [a.subject for a in recent][-1] == "bronze.exposures.recent"
    assert "bronze.exposures.old" not in [a.subject for a in recent]
    assert len(recent_alerts(lake, days=30, today=D[10])) == 5
    empty = Lake(paths(tmp_path / "empty"))
    assert open_alerts(empty) == [] and recent_alerts(empty) == []
