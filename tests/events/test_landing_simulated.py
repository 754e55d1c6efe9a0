"""Landing what the simulator wrote: every planted malformed line is quarantined as planted."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
from ab_pipelines.simulate import simulate_days

pytestmark = [pytest.mark.spark, pytest.mark.slow]

START = dt.date(2026, 11, 2)


def test_simulated_days_land_with_every_planted_defect_in_quarantine(spark, home, registry):
    simulate_days(home, START, 3, users=1500, seed=3, registry=registry, history_days=0)
    lake = Lake(home)
    days = [START + dt.timedelta(days=i) for i in range(4)]  # day 4 holds day 3's late records
    for day in days:
        report = land_day(spark, lake, home.raw, day, registry.known_variants())
        assert all(f.balanced for f in report.files)

    planted = set()
    for manifest in (home.raw / "_malformed").glob("date=*.json"):
        planted |= {
            (m["file"], m["line"], m["reason"]) for m in orjson.loads(manifest.read_bytes())
        }
    quarantined = {
        (r["source_file"], r["source_line"], r["reason"])
        for r in lake.read_arrow(BRONZE_QUARANTINE).to_pylist()
    }
    assert planted and quarantined == planted
    assert len({reason for _, _, reason in planted}) >= 8

    for spec in (BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS):
        rows = lake.read_arrow(
            spec, columns=["event_id", "kafka_partition", "kafka_offset"]
        ).to_pylist()
        assert len({r["event_id"] for r in rows}) == len(rows)
        assert len({(r["kafka_partition"], r["kafka_offset"]) for r in rows}) == len(rows)

    ledger = lake.read_arrow(OPS_LANDED_FILES).to_pylist()
    assert sum(r["duplicates"] for r in ledger) > 0
    assert all(r["read"] == r["landed"] + r["quarantined"] + r["duplicates"] for r in ledger)
