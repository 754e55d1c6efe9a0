"""The dump parser: envelope variants, every reason code, and one row per line read."""

from __future__ import annotations

import datetime as dt
import gzip

import orjson
import pyarrow as pa
import pytest

from ab_pipelines.events.parse import parse_dump_file, parse_line, read_lines, ts_window_for
from ab_pipelines.events.schema import REASON_CODES

DAY = dt.date(2026, 11, 2)
KNOWN = {"checkout_cta": frozenset({"control", "treatment"})}
WINDOW = ts_window_for(DAY)


def exposure(**over):
    v = {
        "event_id": "e1",
        "user_id": "user-1",
        "experiment_id": "checkout_cta",
        "variant": "control",
        "ts": "2026-11-02T10:00:00Z",
    }
    v.update(over)
    return {k: x for k, x in v.items() if x is not ...}


def metric(**over):
    v = {
        "event_id": "m1",
        "user_id": "user-1",
        "event": "purchase",
        "value": 12.5,
        "ts": "2026-11-02T10:00:00Z",
    }
    v.update(over)
    return {k: x for k, x in v.items() if x is not ...}


def env(value, topic="exposures", **over) -> bytes:
    e = {
        "topic": topic,
        "partition": 0,
        "offset": 7,
        "timestamp": 1793491200123,
        "key": "user-1",
        "value": value,
    }
    e.update(over)
    return orjson.dumps({k: x for k, x in e.items() if x is not ...})


def parse(line: bytes, folder="exposures"):
    return parse_line(line, folder, WINDOW, KNOWN)


def reason(line: bytes, folder="exposures") -> str:
    batches = list(
        parse_dump_file(line + b"\n", f"{folder}/date={DAY}/x+0+0.jsonl", folder, DAY, KNOWN)
    )
    (row,) = pa.Table.from_batches(batches).to_pylist()
    assert row["status"] == "quarantined", row
    return row["reason"]


def test_value_as_object_and_as_json_string_give_the_same_row():
    a = parse(env(exposure()))
    b = parse(env(orjson.dumps(exposure()).decode()))
    assert a == b
    assert a["kafka_offset"] == 7 and a["kafka_timestamp"] == 1793491200123000
    assert a["ts"] == int(dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC).timestamp()) * 1_000_000


def test_offsets_in_timestamps_are_converted_to_utc():
    row = parse(env(metric(ts="2026-11-02T12:00:00+02:00"), topic="metric_events"), "metric_events")
    assert row["ts"] == int(dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC).timestamp()) * 1_000_000


def test_unknown_fields_go_to_extra_never_rejected():
    row = parse(env(exposure(attributes={"country": "US"}, color="blue"), headers={"h": 1}))
    assert orjson.loads(row["extra"]) == {"color": "blue", "_envelope": {"headers": {"h": 1}}}
    assert orjson.loads(row["attributes"]) == {"country": "US"}


def test_metric_value_defaults_to_one():
    row = parse(env(metric(value=...), topic="metric_events"), "metric_events")
    assert row["value"] == 1.0


@pytest.mark.parametrize(
    "line, folder, expected",
    [
        (b"\xff\xfe{}", "exposures", "bad_encoding"),
        (b'{"topic": "exposures", "partition": 0', "exposures", "bad_json"),
        (env(exposure()).replace(b"}", b"} trailing", 1)[:-3], "exposures", "bad_json"),
        (b"[1, 2]", "exposures", "bad_envelope"),
        (env(exposure(), offset=...), "exposures", "bad_envelope"),
        (env(exposure(), partition="zero"), "exposures", "bad_envelope"),
        (env(42), "exposures", "bad_envelope"),
        (env("not json at all"), "exposures", "bad_json"),
        (env(exposure(user_id=...)), "exposures", "missing_field"),
        (env(exposure(user_id=None)), "exposures", "missing_field"),
        (env(exposure(user_id=42)), "exposures", "wrong_type"),
        (env(metric(value=True), topic="metric_events"), "metric_events", "wrong_type"),
        (env(metric(value="12"), topic="metric_events"), "metric_events", "wrong_type"),
        (env(exposure(attributes=["US"])), "exposures", "wrong_type"),
        (env(exposure(ts="2026-11-02T10:00:00")), "exposures", "bad_timestamp"),
        (env(exposure(ts="yesterday")), "exposures", "bad_timestamp"),
        (env(exposure(ts="2026-10-20T10:00:00Z")), "exposures", "ts_out_of_range"),
        (env(exposure(ts="2026-11-04T00:00:00Z")), "exposures", "ts_out_of_range"),
        (env(exposure(), topic="clicks"), "exposures", "unknown_topic"),
        (env(exposure(experiment_id="nope")), "exposures", "unknown_experiment"),
        (env(exposure(variant="blue")), "exposures", "unknown_variant"),
        (env(exposure(pad="x" * (1 << 20))), "exposures", "too_large"),
        (env(exposure(), topic="metric_events"), "exposures", "bad_envelope"),
    ],
)
def test_each_bad_line_gets_its_reason_code(line, folder, expected):
    assert reason(line, folder) == expected


def test_nan_and_infinity_are_not_json():
    line = env(metric(), topic="metric_events").replace(b"12.5", b"NaN")
    assert reason(line, "metric_events") == "bad_json"


def test_ts_window_edges_are_half_open():
    ok_early = env(exposure(ts="2026-10-26T00:00:00Z"))  # exactly 7 days before the arrival day
    ok_late = env(exposure(ts="2026-11-03T23:59:59.999999Z"))
    assert parse(ok_early)["ts"] == WINDOW[0]
    assert parse(ok_late)["ts"] == WINDOW[1] - 1


def test_every_line_is_one_row_and_numbered():
    body = (
        env(exposure()) + b"\n\n" + b"garbage\r\n" + env(exposure(event_id="e2"))
    )  # no final newline
    rows = pa.Table.from_batches(
        list(parse_dump_file(body, "exposures/date=2026-11-02/f.jsonl", "exposures", DAY, KNOWN))
    ).to_pylist()
    assert [r["source_line"] for r in rows] == [1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["ok", "quarantined", "quarantined", "ok"]
    assert rows[2]["raw"] == "garbage"


def test_gzip_multi_member_reads_all_members():
    data = gzip.compress(env(exposure()) + b"\n") + gzip.compress(
        env(exposure(event_id="e2")) + b"\n"
    )
    lines, corrupt = read_lines(data, gzipped=True)
    assert len(lines) == 2 and corrupt is None


def test_truncated_gzip_keeps_complete_lines_and_quarantines_the_tail():
    body = b"".join(env(exposure(event_id=f"e{i}")) + b"\n" for i in range(200))
    data = gzip.compress(body)[:-40]  # lose the end marker and some data
    rows = pa.Table.from_batches(
        list(parse_dump_file(data, "exposures/date=2026-11-02/f.jsonl.gz", "exposures", DAY, KNOWN))
    ).to_pylist()
    assert rows[-1]["reason"] == "corrupt_file"
    assert all(r["status"] == "ok" for r in rows[:-1])
    assert rows[-1]["source_line"] == len(rows)
    assert len(rows) >= 190


def test_a_file_that_is_not_gzip_is_one_corrupt_record():
    rows = pa.Table.from_batches(
        list(
            parse_dump_file(
                b"hello, not gzip", "exposures/date=2026-11-02/f.jsonl.gz", "exposures", DAY, KNOWN
            )
        )
    ).to_pylist()
    assert [(r["source_line"], r["reason"]) for r in rows] == [(1, "corrupt_file")]
    assert rows[0]["raw"] == "hello, not gzip"


def test_empty_file_has_no_rows():
    assert (
        list(parse_dump_file(b"", "exposures/date=2026-11-02/f.jsonl", "exposures", DAY, KNOWN))
        == []
    )


def test_reason_codes_are_the_contracts_closed_set():
    assert set(REASON_CODES) == {
        "bad_encoding",
        "bad_json",
        "bad_envelope",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "ts_out_of_range",
        "unknown_topic",
        "unknown_experiment",
        "unknown_variant",
        "too_large",
        "corrupt_file",
    }


@pytest.mark.parametrize(
    "line, expected",
    [
        (env(exposure(), timestamp=10**16), "bad_envelope"),
        (env(exposure(), offset=2**64 - 1), "bad_envelope"),
        (env(exposure(), partition=2**31), "bad_envelope"),
        (env(exposure(), offset=-1), "bad_envelope"),
        (env(exposure(config_version=2**63)), "wrong_type"),
    ],
)
def test_integers_that_do_not_fit_are_quarantined_not_crashing(line, expected):
    assert reason(line) == expected


def _gz_rows(data: bytes):
    return pa.Table.from_batches(
        list(parse_dump_file(data, "exposures/date=2026-11-02/f.jsonl.gz", "exposures", DAY, KNOWN))
    ).to_pylist()


def test_a_flipped_byte_in_the_middle_keeps_the_lines_before_it():
    body = b"".join(env(exposure(event_id=f"e{i}")) + b"\n" for i in range(3000))
    data = bytearray(gzip.compress(body))
    data[len(data) // 2] ^= 0xFF
    rows = _gz_rows(bytes(data))
    assert rows[-1]["reason"] == "corrupt_file"
    good = [r for r in rows if r["status"] == "ok"]
    assert len(good) > 500 and len(rows) == len(good) + 1 + sum(
        r["status"] == "quarantined" and r["reason"] != "corrupt_file" for r in rows
    )


def test_a_bad_checksum_keeps_every_line_and_flags_the_file():
    body = b"".join(env(exposure(event_id=f"e{i}")) + b"\n" for i in range(100))
    data = bytearray(gzip.compress(body))
    data[-8] ^= 0xFF  # the CRC32 of the trailer
    rows = _gz_rows(bytes(data))
    assert [r["status"] for r in rows[:-1]] == ["ok"] * 100
    assert rows[-1]["reason"] == "corrupt_file" and rows[-1]["source_line"] == 101
