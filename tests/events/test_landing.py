"""Landing raw dumps into bronze in Spark: exactly once, in any day order, nothing lost."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools

import orjson
import pyarrow as pa
import pytest

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.events import landing as landing_module
from ab_pipelines.events.landing import LandingError, land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
from ab_pipelines.settings import paths

pytestmark = pytest.mark.spark

D1, D2, D3 = dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4)
KNOWN = {"checkout_cta": frozenset({"control", "treatment"})}


def exposure(i: int, day: dt.date, event_id: str | None = None) -> dict:
    return {
        "event_id": event_id or f"x{i}",
        "user_id": f"user-{i}",
        "experiment_id": "checkout_cta",
        "variant": "control" if i % 2 else "treatment",
        "ts": f"{day}T10:00:{i % 60:02d}Z",
    }


def purchase(i: int, day: dt.date) -> dict:
    return {
        "event_id": f"m{i}",
        "user_id": f"user-{i}",
        "event": "purchase",
        "value": 1.5 * i,
        "ts": f"{day}T11:00:00Z",
        "properties": {"currency": "USD"},
    }


def write_three_days(raw):
    """Three arrival days with every kind of duplicate across and within days."""
    # D1: offsets 0..9; two bad lines
    write_dump(
        raw,
        "exposures",
        D1,
        0,
        0,
        [envelope("exposures", 0, i, 1, f"user-{i}", exposure(i, D1)) for i in range(10)]
        + [b"{not json", b"\xff\xfe\xfd"],
    )
    # D2: a consumer replay of offsets 5..9 (same envelopes), new offsets 10..14, and a
    # producer retry of x3 under a new offset (same event_id).
    replay = [envelope("exposures", 0, i, 2, f"user-{i}", exposure(i, D1)) for i in range(5, 10)]
    write_dump(raw, "exposures", D2, 0, 5, replay, gzipped=True)
    fresh = [envelope("exposures", 0, i, 2, f"user-{i}", exposure(i, D2)) for i in range(10, 15)]
    fresh.append(envelope("exposures", 2, 0, 2, "user-3", exposure(3, D1)))
    fresh.append(
        envelope("exposures", 0, 12, 2, "user-12", exposure(12, D2))
    )  # duplicate within the day
    write_dump(raw, "exposures", D2, 0, 10, fresh)
    write_dump(
        raw,
        "metric_events",
        D2,
        0,
        0,
        [envelope("metric_events", 0, i, 2, f"user-{i}", purchase(i, D2)) for i in range(6)],
        gzipped=True,
    )
    # D3: late copies of D2's purchases (kcat style: value as a JSON string) and one new
    late = [
        envelope("metric_events", 0, i, 3, f"user-{i}", orjson.dumps(purchase(i, D2)).decode())
        for i in range(4, 7)
    ]
    write_dump(raw, "metric_events", D3, 0, 4, late)
    # an unknown topic folder and an empty file are read too
    write_dump(raw, "clicks", D3, 0, 0, [envelope("clicks", 0, 0, 3, "u", {"x": 1})])
    write_dump(raw, "exposures", D3, 0, 99, [])


def snapshot(lake: Lake) -> dict:
    out = {}
    for spec in (BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, BRONZE_QUARANTINE, OPS_LANDED_FILES):
        rows = lake.read_arrow(spec).to_pylist()
        out[spec.qualified] = sorted(
            orjson.dumps(r, option=orjson.OPT_SORT_KEYS, default=str) for r in rows
        )
    return out


def land(spark, tmp_path, name: str, order) -> Lake:
    home = paths(tmp_path / name)
    write_three_days(home.raw)
    lake = Lake(home)
    for day in order:
        report = land_day(spark, lake, home.raw, day, KNOWN)
        assert all(f.balanced for f in report.files), report.files
    return lake


@pytest.mark.parametrize("where", ["here", "worker processes"])
def test_counts_of_an_in_order_landing(spark, tmp_path, monkeypatch, where):
    """The same counts whether a day is small enough to parse here or goes to the workers."""
    if where == "worker processes":
        monkeypatch.setattr(landing_module, "SMALL_DAY_BYTES", 0)
    lake = land(spark, tmp_path, "in_order", [D1, D2, D3])
    ledger = {r["source_file"]: r for r in lake.read_arrow(OPS_LANDED_FILES).to_pylist()}
    d2_fresh = ledger["exposures/date=2026-11-03/exposures+0+10.jsonl"]
    assert (d2_fresh["read"], d2_fresh["landed"], d2_fresh["duplicates"]) == (7, 5, 2)
    replay = ledger["exposures/date=2026-11-03/exposures+0+5.jsonl.gz"]
    assert (replay["read"], replay["landed"], replay["duplicates"]) == (5, 0, 5)
    late = ledger["metric_events/date=2026-11-04/metric_events+0+4.jsonl"]
    assert (late["read"], late["landed"], late["duplicates"]) == (3, 1, 2)
    assert ledger["clicks/date=2026-11-04/clicks+0+0.jsonl"]["quarantined"] == 1
    assert ledger["exposures/date=2026-11-04/exposures+0+99.jsonl"]["read"] == 0
    for r in ledger.values():
        assert r["read"] == r["landed"] + r["quarantined"] + r["duplicates"]

    exp = lake.read_arrow(BRONZE_EXPOSURES).to_pylist()
    assert len(exp) == 15
    assert len({(r["kafka_partition"], r["kafka_offset"]) for r in exp}) == len(exp)
    assert len({r["event_id"] for r in exp}) == len(exp)
    q = {
        (r["source_file"], r["source_line"]): r["reason"]
        for r in lake.read_arrow(BRONZE_QUARANTINE).to_pylist()
    }
    assert q == {
        ("exposures/date=2026-11-02/exposures+0+0.jsonl", 11): "bad_json",
        ("exposures/date=2026-11-02/exposures+0+0.jsonl", 12): "bad_encoding",
        ("clicks/date=2026-11-04/clicks+0+0.jsonl", 1): "unknown_topic",
    }


@pytest.mark.slow
def test_relanding_in_any_day_order_gives_identical_tables(spark, tmp_path):
    reference = snapshot(land(spark, tmp_path, "ref", [D1, D2, D3]))
    orders = [list(p) for p in itertools.permutations([D1, D2, D3]) if list(p) != [D1, D2, D3]]
    orders += [[D1, D2, D3, D1, D3, D2], [D3, D3, D1, D1]]
    for i, order in enumerate(orders):
        if D2 not in order:
            order = order + [D2]
        assert snapshot(land(spark, tmp_path, f"order{i}", order)) == reference, order


def test_first_arrived_copy_wins_even_when_landed_later(spark, tmp_path):
    lake = land(spark, tmp_path, "late_first", [D2, D1])
    rows = {r["event_id"]: r for r in lake.read_arrow(BRONZE_EXPOSURES).to_pylist()}
    # x5..x9 arrived on D1 and again on D2: D1's copy wins although D2 was landed first
    assert {rows[f"x{i}"]["arrival_date"] for i in range(5, 10)} == {D1}
    assert rows["x3"]["kafka_partition"] == 0  # the producer retry (partition 2) lost


def test_truncated_gzip_is_quarantined_with_its_good_lines_landed(spark, home):
    body = b"".join(
        orjson.dumps(envelope("exposures", 5, i, 1, "u", exposure(i, D1))) + b"\n"
        for i in range(50)
    )
    folder = home.raw / "exposures" / f"date={D1}"
    folder.mkdir(parents=True)
    (folder / "exposures+5+0.jsonl.gz").write_bytes(gzip.compress(body)[:-30])
    report = land_day(spark, Lake(home), home.raw, D1, KNOWN)
    (f,) = report.files
    assert f.balanced and f.quarantined == 1 and f.landed == f.read - 1
    assert report.by_reason == {"corrupt_file": 1}


def test_no_files_is_an_empty_day(spark, home):
    report = land_day(spark, Lake(home), home.raw, D1, KNOWN)
    assert report.files == [] and report.totals == {
        "read": 0,
        "landed": 0,
        "quarantined": 0,
        "duplicates": 0,
    }


def write_three_exposures(raw) -> None:
    write_dump(
        raw,
        "exposures",
        D1,
        0,
        0,
        [envelope("exposures", 0, i, 1, "u", exposure(i, D1)) for i in range(3)],
    )


def test_relanding_a_day_whose_files_are_gone_is_refused(spark, home):
    write_three_exposures(home.raw)
    lake = Lake(home)
    land_day(spark, lake, home.raw, D1, KNOWN)
    (home.raw / "exposures" / f"date={D1}" / "exposures+0+0.jsonl").unlink()
    with pytest.raises(LandingError, match="now missing.*Restore them"):
        land_day(spark, lake, home.raw, D1, KNOWN)
    assert lake.read_arrow(BRONZE_EXPOSURES).num_rows == 3


def test_within_a_day_kafka_order_wins_not_file_name_order(spark, home):
    # the same event under offsets 999 and 1000: file "+1000" sorts first as text
    write_dump(
        home.raw, "exposures", D1, 1, 999, [envelope("exposures", 1, 999, 1, "u", exposure(1, D1))]
    )
    write_dump(
        home.raw,
        "exposures",
        D1,
        1,
        1000,
        [envelope("exposures", 1, 1000, 1, "u", exposure(1, D1))],
    )
    land_day(spark, Lake(home), home.raw, D1, KNOWN)
    (row,) = Lake(home).read_arrow(BRONZE_EXPOSURES).to_pylist()
    assert row["kafka_offset"] == 999


def test_a_stale_ledger_of_a_later_day_is_repaired_by_a_rerun(spark, tmp_path):
    lake = land(spark, tmp_path, "stale", [D2, D1])
    good = snapshot(lake)
    # a run that died between rewriting D2 in bronze and updating D2's ledger rows
    ledger = lake.read_arrow(OPS_LANDED_FILES).to_pylist()
    broken = [{**r, "landed": r["read"] - r["quarantined"], "duplicates": 0} for r in ledger]
    lake.write_arrow(
        OPS_LANDED_FILES,
        pa.Table.from_pylist(broken, schema=OPS_LANDED_FILES.schema),
        overwrite_all=True,
    )
    assert snapshot(lake) != good
    land_day(spark, lake, lake.home.raw, D1, KNOWN)
    assert snapshot(lake) == good


def test_streaming_files_one_by_one_equals_landing_the_whole_day(spark, tmp_path):
    reference = snapshot(land(spark, tmp_path, "whole", [D1, D2, D3]))
    home = paths(tmp_path / "stream")
    write_three_days(home.raw)
    lake = Lake(home)
    land_day(spark, lake, home.raw, D1, KNOWN)
    # D2's files arrive one at a time; the streaming path lands only what is new
    d2 = sorted((home.raw / "exposures" / f"date={D2}").iterdir()) + sorted(
        (home.raw / "metric_events" / f"date={D2}").iterdir()
    )
    hidden = {f: f.with_name("." + f.name) for f in d2}
    for f, h in hidden.items():
        f.rename(h)
    for f, h in hidden.items():
        h.rename(f)
        report = land_day(spark, lake, home.raw, D2, KNOWN, new_files_only=True)
        assert report.mode == "new files" and [x.source_file for x in report.files] == [
            f.relative_to(home.raw).as_posix()
        ]
    again = land_day(spark, lake, home.raw, D2, KNOWN, new_files_only=True)
    assert again.files == []  # nothing new: nothing landed twice
    land_day(spark, lake, home.raw, D3, KNOWN, new_files_only=True)
    assert snapshot(lake) == reference


def test_streaming_after_a_run_that_died_midway_relands_the_whole_day(spark, home):
    write_three_exposures(home.raw)
    lake = Lake(home)
    land_day(spark, lake, home.raw, D1, KNOWN)
    # the ledger commit never happened
    lake.write_arrow(
        OPS_LANDED_FILES,
        OPS_LANDED_FILES.schema.empty_table(),
        replace=[{"arrival_date": D1.isoformat()}],
    )
    report = land_day(spark, lake, home.raw, D1, KNOWN, new_files_only=True)
    assert report.mode == "whole day"
    assert lake.read_arrow(BRONZE_EXPOSURES).num_rows == 3
    assert [(f.read, f.landed, f.duplicates) for f in report.files] == [(3, 3, 0)]
