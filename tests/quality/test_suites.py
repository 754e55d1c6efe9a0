"""The Great Expectations suites catch bad data that slipped into bronze, with sample rows."""

from __future__ import annotations

import datetime as dt

import orjson
import pyarrow as pa

from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, OPS_DQ_RESULTS
from ab_pipelines.quality import checks_of_day, failed_checks, record_outcomes, run_checks

D = dt.date(2026, 11, 10)
KNOWN = {"checkout_cta": frozenset({"control", "treatment"})}


def exposures(day: dt.date, n: int, start: int = 0, **over) -> pa.Table:
    ts = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    rows = []
    for i in range(start, start + n):
        r = {
            "event_id": f"e{day}-{i}",
            "user_id": f"user-{i}",
            "experiment_id": "checkout_cta",
            "variant": "control",
            "ts": ts,
            "config_version": 1,
            "source": "sdk",
            "attributes": None,
            "extra": None,
            "kafka_partition": 0,
            "kafka_offset": i,
            "kafka_timestamp": ts,
            "kafka_key": None,
            "source_file": f"exposures/date={day}/f.jsonl",
            "source_line": i + 1,
            "arrival_date": day,
        }
        r.update({k: (v(i) if callable(v) else v) for k, v in over.items()})
        rows.append(r)
    return pa.Table.from_pylist(rows, schema=BRONZE_EXPOSURES.schema)


def outcome_map(outcomes):
    return {o.check: o for o in outcomes}


def test_clean_day_passes_every_check(home):
    lake = Lake(home)
    lake.write_arrow(BRONZE_EXPOSURES, exposures(D, 50))
    got = outcome_map(run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))
    assert set(got) == {
        "required_fields",
        "columns_typed",
        "ids_unique",
        "ts_in_window",
        "volume_in_band",
        "known_experiments",
    }
    assert all(o.passed for o in got.values()), {
        k: o.observed for k, o in got.items() if not o.passed
    }
    assert got["volume_in_band"].observed == {"note": "not enough history to judge"}


def test_planted_bad_rows_fail_their_checks_with_sample_rows(home):
    lake = Lake(home)
    far = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)
    bad = exposures(
        D,
        40,
        event_id=lambda i: "dup" if i < 3 else f"e{i}",
        variant=lambda i: "purple" if i == 7 else "control",
        ts=lambda i: far if i == 9 else dt.datetime(2026, 11, 10, 12, tzinfo=dt.UTC),
        user_id=lambda i: None if i == 11 else f"user-{i}",
    )
    lake.write_arrow(BRONZE_EXPOSURES, bad)
    got = outcome_map(run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))
    failed = {k for k, o in got.items() if not o.passed}
    assert failed == {"ids_unique", "known_experiments", "ts_in_window", "required_fields"}
    assert {r["source_line"] for r in got["ids_unique"].sample} == {1, 2, 3}
    assert got["known_experiments"].sample[0]["source_line"] == 8
    assert got["ts_in_window"].sample[0]["source_line"] == 10
    assert got["required_fields"].sample[0]["source_line"] == 12


def test_volume_band_against_the_previous_days(home):
    lake = Lake(home)
    for k in range(1, 5):
        lake.write_arrow(BRONZE_EXPOSURES, exposures(D - dt.timedelta(days=k), 100, start=1000 * k))
    lake.write_arrow(BRONZE_EXPOSURES, exposures(D, 10))
    vol = outcome_map(run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))["volume_in_band"]
    assert not vol.passed and vol.observed["table_row_count_to_be_between"] == 10
    lake.write_arrow(BRONZE_EXPOSURES, exposures(D, 120), replace=[{"arrival_date": D.isoformat()}])
    assert outcome_map(run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))["volume_in_band"].passed


def test_metric_events_have_their_own_checks(home):
    lake = Lake(home)
    ts = dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC)
    rows = [
        {
            "event_id": f"m{i}",
            "user_id": "u",
            "event": "purchase",
            "value": 1.0,
            "ts": ts,
            "properties": None,
            "extra": None,
            "kafka_partition": 0,
            "kafka_offset": i,
            "kafka_timestamp": ts,
            "kafka_key": None,
            "source_file": "f",
            "source_line": i + 1,
            "arrival_date": D,
        }
        for i in range(5)
    ]
    rows[2]["value"] = None
    lake.write_arrow(
        BRONZE_METRIC_EVENTS, pa.Table.from_pylist(rows, schema=BRONZE_METRIC_EVENTS.schema)
    )
    got = outcome_map(run_checks(lake, BRONZE_METRIC_EVENTS, D, KNOWN))
    assert not got["values_finite"].passed and got["values_finite"].sample[0]["source_line"] == 3
    assert got["ids_unique"].passed


def test_results_are_recorded_and_a_rerun_replaces_them(home):
    lake = Lake(home)
    lake.write_arrow(
        BRONZE_EXPOSURES, exposures(D, 20, variant=lambda i: "purple" if i == 0 else "control")
    )
    record_outcomes(lake, run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))
    rows = {r["check"]: r for r in lake.read_arrow(OPS_DQ_RESULTS).to_pylist()}
    assert rows["known_experiments"]["passed"] is False
    assert orjson.loads(rows["known_experiments"]["sample"])[0]["variant"] == "purple"
    assert (
        rows["known_experiments"]["day"] == D
        and rows["known_experiments"]["table"] == "bronze.exposures"
    )
    lake.write_arrow(BRONZE_EXPOSURES, exposures(D, 20), replace=[{"arrival_date": D.isoformat()}])
    record_outcomes(lake, run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))
    rows = lake.read_arrow(OPS_DQ_RESULTS).to_pylist()
    assert len(rows) == 6 and all(r["passed"] for r in rows)


def test_each_result_carries_its_day_and_the_failures_of_a_day_are_a_filter(home):
    lake = Lake(home)
    assert failed_checks(lake, D) == [] and checks_of_day(lake, D) == []  # no table yet
    after = D + dt.timedelta(days=1)
    lake.write_arrow(
        BRONZE_EXPOSURES, exposures(D, 20, variant=lambda i: "purple" if i == 0 else "control")
    )
    lake.write_arrow(BRONZE_EXPOSURES, exposures(after, 20))
    for day in (D, after):
        record_outcomes(lake, run_checks(lake, BRONZE_EXPOSURES, day, KNOWN))
    # every row says which partition day it checked, whatever day it was checked on
    assert {r["day"] for r in lake.read_arrow(OPS_DQ_RESULTS).to_pylist()} == {D, after}

    (failed,) = failed_checks(lake, D)
    assert (failed["day"], failed["table"], failed["check"]) == (
        D,
        "bronze.exposures",
        "known_experiments",
    )
    assert failed["passed"] is False and orjson.loads(failed["sample"])[0]["variant"] == "purple"
    assert failed_checks(lake, after) == []
    assert failed_checks(lake, D - dt.timedelta(days=1)) == []

    of_day = checks_of_day(lake, D, columns=["day", "table", "check", "passed"])
    assert len(of_day) == 6 and {r["day"] for r in of_day} == {D}
    assert of_day[0]["check"] == "known_experiments"  # failures first
    assert [r["check"] for r in of_day[1:]] == sorted(r["check"] for r in of_day[1:])
    assert all(r["passed"] for r in checks_of_day(lake, after))

    # the day's data fixed and checked again: the day has no failure left, the other day is kept
    lake.write_arrow(BRONZE_EXPOSURES, exposures(D, 20), replace=[{"arrival_date": D.isoformat()}])
    record_outcomes(lake, run_checks(lake, BRONZE_EXPOSURES, D, KNOWN))
    assert failed_checks(lake, D) == [] and len(checks_of_day(lake, after)) == 6


def test_silver_counts_have_checks_too(home):
    from ab_pipelines.lake.tables import SILVER_EXPOSURE_COUNTS

    lake = Lake(home)
    rows = [
        {
            "event_date": D,
            "experiment_id": "checkout_cta",
            "variant": v,
            "exposures": e,
            "units": u,
            "arrival_date": D,
        }
        for v, e, u in (("control", 10, 8), ("treatment", 5, 7))
    ]
    lake.write_arrow(
        SILVER_EXPOSURE_COUNTS, pa.Table.from_pylist(rows, schema=SILVER_EXPOSURE_COUNTS.schema)
    )
    (out,) = run_checks(lake, SILVER_EXPOSURE_COUNTS, D, {})
    assert out.check == "counts_consistent" and not out.passed
    assert out.sample[0]["variant"] == "treatment"
