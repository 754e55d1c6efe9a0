"""The dump envelope contract: what the writers write is what landing reads, written once."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from ab_pipelines.assignment import DumpExposureSink
from ab_pipelines.contracts import envelope as contract
from ab_pipelines.events import schema
from ab_pipelines.events.dumps import list_day_files, write_dump
from ab_pipelines.events.parse import parse_dump_file
from ab_pipelines.events.producer import iso_ms, metric_event

DAY = dt.date(2026, 11, 2)
NOON = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC).timestamp()


def test_landing_and_the_writers_share_one_vocabulary():
    assert schema.TOPICS is contract.TOPICS and schema.REASON_CODES is contract.REASON_CODES
    assert schema.MAX_LINE_BYTES == contract.MAX_LINE_BYTES
    assert iso_ms is contract.iso_ms and metric_event is contract.metric_event
    assert tuple(contract.envelope("t", 0, 1, 2, "k", {})) == contract.ENVELOPE_FIELDS


def test_names_follow_the_layout():
    name = contract.dump_name("exposures", 3, 1842, gzipped=True)
    assert name == "exposures+3+1842.jsonl.gz" and name.endswith(contract.DUMP_SUFFIXES)
    assert contract.dump_name_pattern("exposures", 3).match(name).group(1) == "1842"
    assert not contract.dump_name_pattern("exposures", 31).match(name)
    assert contract.day_dir("exposures", DAY) == "exposures/date=2026-11-02"


def test_iso_ms_is_the_ts_format_landing_reads():
    assert contract.iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert contract.iso_ms(1793491200999) == "2026-11-01T00:00:00.999Z"


def _land(raw, known=None):
    (f,) = list_day_files(raw, DAY)
    batches = parse_dump_file(f.path.read_bytes(), f.rel, f.topic, DAY, known or {})
    return f, pa.Table.from_batches(list(batches)).to_pylist()


def test_what_the_sdk_sink_writes_lands(tmp_path):
    sink = DumpExposureSink(tmp_path, partition=5, clock=lambda: NOON)
    sink.log(
        unit="u-1",
        user_id="u-1",
        experiment_id="exp",
        variant="b",
        config_version=4,
        attributes={"country": "US"},
    )
    sink.flush()
    f, rows = _land(tmp_path, {"exp": frozenset({"a", "b"})})
    assert f.rel == f"{contract.day_dir('exposures', DAY)}/{contract.dump_name('exposures', 5, 0)}"
    assert [r["status"] for r in rows] == ["ok"]
    assert rows[0]["source"] == contract.SDK_SOURCE and rows[0]["kafka_partition"] == 5


def test_what_the_dump_writer_writes_lands(tmp_path):
    ms = int(NOON * 1000)
    value = contract.metric_event("e-1", contract.iso_ms(ms), ("u-1", "purchase", 9.5, None))
    env = contract.envelope(contract.METRIC_EVENTS, 2, 10, ms, "u-1", value)
    write_dump(tmp_path, contract.METRIC_EVENTS, DAY, 2, 10, [env], gzipped=True)
    _, rows = _land(tmp_path)
    assert [(r["status"], r["value"], r["kafka_offset"]) for r in rows] == [("ok", 9.5, 10)]
