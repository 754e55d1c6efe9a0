"""End to end: the demo's harmful experiment is detected, alerted and killed through Dagster runs,
and the traffic after the kill gets the baseline; the A/A experiment raises no alert."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from ab_pipelines.assignment import Client
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_KILLS, SILVER_EXPOSURE_COUNTS
from ab_pipelines.safety import read_alerts
from jobs.cli import main

HARMFUL, AA = "hero_video", "homepage_aa"


@pytest.mark.slow
@pytest.mark.spark
@pytest.mark.dagster
def test_the_demo_kills_the_harmful_experiment_and_spares_the_aa(home, spark):
    out = CliRunner().invoke(main, ["demo", "--days", "5", "--users", "4000"])
    assert out.exit_code == 0, out.output
    lake = Lake(home)

    (kill,) = lake.read_arrow(OPS_KILLS).to_pylist()
    assert (kill["experiment_id"], kill["by"]) == (HARMFUL, "system")
    assert "page_load_ms" in kill["reason"] and "alert" in kill["reason"]
    last_day = dt.date(2026, 11, 6)  # the demo plays 2026-11-02 .. 2026-11-06
    assert kill["killed_at"].date() <= last_day  # killed within the simulated days
    assert f"KILLED {HARMFUL} by system" in out.output

    # the published config serves the baseline to everyone
    client = Client.from_file(str(home.edge / "config.json"))
    assert {client.assign(f"user-{i}", HARMFUL) for i in range(2000)} == {"control"}
    # and the traffic after the kill logged no exposure of it (the SDK serves the baseline)
    after = [
        r
        for r in lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()
        if r["experiment_id"] == HARMFUL and r["event_date"] >= kill["killed_at"].date()
    ]
    assert sum(r["exposures"] for r in after) == 0
    # at least one simulated day came after the kill (a day is published at 00:00 and its traffic
    # follows; a kill stamped on the day's 00:30 is served from that day's traffic on), and it landed
    first_after = kill["killed_at"].date()
    if kill["killed_at"].time() > dt.time(0, 30):
        first_after += dt.timedelta(days=1)
    assert first_after <= last_day
    landed_days = {r["event_date"] for r in lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()}
    assert last_day in landed_days

    alerts = read_alerts(lake)
    breach = [a for a in alerts if a.kind == "guardrail_breach"]
    assert {a.experiment_id for a in breach} == {HARMFUL}
    assert breach[0].effect > 0.05 and breach[0].bound > breach[0].margin == 0.03
    assert not [a for a in alerts if a.experiment_id == AA]  # no alert for the A/A
    # every alert event reached the file notifier
    lines = [
        json.loads(x) for x in (home.home / "alerts" / "alerts.jsonl").read_text().splitlines()
    ]
    assert {(x["alert_id"], x["event"]) for x in lines} >= {(breach[0].alert_id, "opened")}

    # the scorecard says rollback
    card = json.loads(CliRunner().invoke(main, ["results", HARMFUL, "--json"]).output)
    assert card["decision"] == "rollback" and card["killed"]["by"] == "system"
