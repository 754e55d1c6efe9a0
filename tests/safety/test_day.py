"""The safety pass of a day: alerts, notifications and the automatic kill through the kill path."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ab_pipelines.analysis.results import experiment_results
from ab_pipelines.assignment import Client
from ab_pipelines.config import load_registry
from ab_pipelines.config.publish import publish
from ab_pipelines.lake.tables import GOLD_EXPERIMENT_RESULTS, OPS_AUDIT_LOG, OPS_KILLS
from ab_pipelines.safety import JsonLinesNotifier, open_alerts
from ab_pipelines.safety.day import AUTO_KILL_ACTOR, safety_day
from tests.safety.factory import sufficient_stats, write_exposures

HARMFUL = "hero_video"  # auto_kill: true in the demo registry
D1, D2 = dt.date(2026, 11, 5), dt.date(2026, 11, 6)
NOW = dt.datetime(2026, 11, 7, 0, 30, tzinfo=dt.UTC)


@pytest.fixture
def registry_root(registry_copy):
    return registry_copy


def write_results(lake, reg, exp_id: str, day: dt.date, load_lift: float, seed: int = 1):
    exp = reg.experiments[exp_id]
    stats = sufficient_stats(exp, day, load_lift, seed)
    t = experiment_results(exp, reg.metrics, day, stats, False)
    # other experiments' rows of that day stay: the day's partition gets both
    keep = lake.read_arrow(
        GOLD_EXPERIMENT_RESULTS,
        filter=(pc.field("day") == day) & (pc.field("experiment_id") != exp_id),
    )
    lake.write_arrow(
        GOLD_EXPERIMENT_RESULTS, pa.concat_tables([keep, t]), replace=[{"day": day.isoformat()}]
    )
    return t


def test_a_confirmed_breach_kills_an_auto_kill_experiment(home, lake, registry_root, tmp_path):
    reg = load_registry(registry_root)
    assert reg.experiments[HARMFUL].auto_kill
    publish(home, registry_root)
    write_results(lake, reg, HARMFUL, D1, load_lift=0.3)
    write_results(lake, reg, "homepage_aa", D1, load_lift=0.0, seed=2)
    write_exposures(lake, D1, {e: 800 for e in reg.experiments})
    sink = JsonLinesNotifier(tmp_path / "alerts.jsonl")
    s = safety_day(home, lake, reg, D1, [sink], now=NOW, registry_root=registry_root)

    (kill,) = s.kills
    assert kill.experiment_id == HARMFUL and kill.alert_id in kill.reason
    (k,) = lake.read_arrow(OPS_KILLS).to_pylist()
    assert k["by"] == AUTO_KILL_ACTOR and k["killed_at"] == NOW
    assert "page_load_ms" in k["reason"]
    audit = lake.read_arrow(OPS_AUDIT_LOG).to_pylist()
    assert any(a["action"] == "kill" and a["experiment_id"] == HARMFUL for a in audit)
    # the published config serves the baseline to everyone
    client = Client.from_file(str(home.edge / "config.json"))
    assert {client.assign(f"user-{i}", HARMFUL) for i in range(500)} == {"control"}
    # one alert, for the harmful experiment only (none for the A/A), and it was notified
    (alert,) = open_alerts(lake)
    assert (alert.kind, alert.experiment_id) == ("guardrail_breach", HARMFUL)
    (line,) = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert json.loads(line)["alert_id"] == alert.alert_id
    assert [d for d in s.delivery.delivered] and not s.delivery.failed

    # the first day after the kill (D1 + 2, killed at its 00:30): stopped, its alert closes,
    # no second kill
    d3 = D1 + dt.timedelta(days=2)
    write_results(lake, reg, HARMFUL, d3, load_lift=0.3)
    write_exposures(lake, d3, {e: 800 for e in reg.experiments if e != HARMFUL})
    later = NOW + dt.timedelta(days=1)
    s2 = safety_day(home, lake, reg, d3, [sink], now=later, registry_root=registry_root)
    assert not s2.kills and [a.alert_id for a in s2.reconciled.closed] == [alert.alert_id]
    assert lake.read_arrow(OPS_KILLS).num_rows == 1


def test_no_kill_without_auto_kill_or_on_an_old_look(home, lake, registry_root):
    reg = load_registry(registry_root)
    publish(home, registry_root)
    # checkout_cta has a page_load_ms guardrail but auto_kill: false -> alert, no kill
    write_results(lake, reg, "checkout_cta", D1, load_lift=0.3)
    # the harmful experiment breached on D1, but D2 is already analysed: D1 is not the latest look
    write_results(lake, reg, HARMFUL, D1, load_lift=0.3)
    write_results(lake, reg, HARMFUL, D2, load_lift=0.0)
    write_exposures(lake, D1, {e: 800 for e in reg.experiments})
    s = safety_day(home, lake, reg, D1, [], now=NOW, registry_root=registry_root)
    assert not s.kills and lake.read_arrow(OPS_KILLS).num_rows == 0
    assert {a.experiment_id for a in s.reconciled.opened} == {"checkout_cta", HARMFUL}
