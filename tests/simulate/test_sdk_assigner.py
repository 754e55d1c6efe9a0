"""The simulator assigns through the SDK with the config published so far: a kill changes traffic."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from ab_pipelines.assignment import Client
from ab_pipelines.config.publish import kill, publish
from ab_pipelines.events import list_day_files, parse_dump_file
from ab_pipelines.simulate import sdk_assigner, simulate_days

D1, D2 = dt.date(2026, 11, 4), dt.date(2026, 11, 5)


def exposed(home, registry, day):
    rows = []
    for f in list_day_files(home.raw, day):
        if f.topic == "exposures":
            batches = parse_dump_file(
                f.path.read_bytes(), f.rel, f.topic, day, registry.known_variants()
            )
            rows += [
                r for r in pa.Table.from_batches(list(batches)).to_pylist() if r["status"] == "ok"
            ]
    return rows


def test_a_kill_on_day_one_removes_the_experiment_from_day_two(home, registry):
    publish(home)
    client = Client.from_file(str(home.edge / "config.json"))
    simulate_days(
        home,
        D1,
        1,
        users=1500,
        seed=5,
        registry=registry,
        assigner=sdk_assigner(client),
        history_days=0,
    )
    day1 = exposed(home, registry, D1)
    assert any(r["experiment_id"] == "search_speed" for r in day1)
    for r in day1:  # what the SDK says is what the traffic got
        if r["experiment_id"] == "checkout_cta":
            attrs = json.loads(r["attributes"] or "{}")
            assert client.assign(r["user_id"], "checkout_cta", attrs) == r["variant"]

    kill(home, "search_speed", "pages broke", "oncall@example.com")
    client = Client.from_file(str(home.edge / "config.json"))
    simulate_days(home, D2, 1, users=1500, seed=5, registry=registry, assigner=sdk_assigner(client))
    start_of_d2 = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    day2 = [
        r for r in exposed(home, registry, D2) if r["ts"] >= start_of_d2
    ]  # not day 1's late ones
    assert not any(r["experiment_id"] == "search_speed" for r in day2)
    assert any(r["experiment_id"] == "homepage_aa" for r in day2)


def test_the_sdk_decides_who_logs_exposures(home, registry):
    publish(home)
    client = Client.from_file(str(home.edge / "config.json"))
    assigner = sdk_assigner(client)
    simulate_days(
        home, D1, 1, users=1500, seed=5, registry=registry, assigner=assigner, history_days=0
    )
    rows = [r for r in exposed(home, registry, D1) if r["experiment_id"] == "homepage_aa"]
    assert rows and {r["user_id"] for r in rows} <= assigner.logged("homepage_aa")
    cta = {
        r["user_id"] for r in exposed(home, registry, D1) if r["experiment_id"] == "checkout_cta"
    }
    assert "qa-user-1" not in assigner.logged("checkout_cta") and "qa-user-1" not in cta
