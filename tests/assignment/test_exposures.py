"""DumpExposureSink: CONTRACTS section 2 files that parse cleanly, offsets, failures."""

from __future__ import annotations

import datetime as dt
import json
import logging

from ab_pipelines.assignment import Client, DumpExposureSink, ListExposureSink
from ab_pipelines.events.parse import parse_dump_file
from tests.assignment import corpus

T0 = dt.datetime(2026, 11, 24, 23, 59, 0, tzinfo=dt.UTC).timestamp()


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _known_variants(p: dict) -> dict[str, frozenset[str]]:
    held = {k: frozenset({"holdout", "general"}) for k in p.get("holdouts", {})}
    return {k: frozenset(e["variants"]) for k, e in p["experiments"].items()} | held


def _files(raw):
    return sorted(p for p in (raw / "exposures").rglob("*") if p.is_file())


def _parse(raw, p: dict) -> list[dict]:
    rows = []
    for f in _files(raw):
        rel = f.relative_to(raw).as_posix()
        day = dt.date.fromisoformat(f.parent.name.removeprefix("date="))
        for batch in parse_dump_file(f.read_bytes(), rel, "exposures", day, _known_variants(p)):
            rows += batch.to_pylist()
    return rows


def test_dump_files_parse_cleanly(tmp_path):
    p = corpus()["payload"]
    raw = tmp_path / "raw"
    clock = Clock()
    sink = DumpExposureSink(raw, partition=7, flush_every=100, clock=clock)
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    attrs = {"country": "US", "platform": "ios", "device_id": "d-1", "note": "ü😀"}
    expected = 0
    for i in range(150):
        expected += len(client.assign_all(f"user-{i}", attrs))
        if i == 120:
            clock.t += 120  # the next flush arrives on the next UTC day
    client.flush()
    files = _files(raw)
    assert [f.parent.name for f in files][0] == "date=2026-11-24"
    assert files[-1].parent.name == "date=2026-11-25"
    assert all(f.name.startswith("exposures+7+") and f.suffix == ".jsonl" for f in files)
    rows = _parse(raw, p)
    assert rows and all(r["status"] == "ok" for r in rows), [r["detail"] for r in rows][:3]
    # overrides/killed/stopped and repeated units are not logged
    assert {r["experiment_id"] for r in rows}.isdisjoint({"recs_widget", "free_shipping"})
    offsets = [r["kafka_offset"] for r in rows]
    assert offsets == list(range(len(offsets)))
    assert len({r["event_id"] for r in rows}) == len(rows)
    first = json.loads(files[0].read_text().splitlines()[0])
    assert set(first) == {"topic", "partition", "offset", "timestamp", "key", "value"}
    assert first["topic"] == "exposures" and first["partition"] == 7
    assert first["timestamp"] == int(T0 * 1000)
    assert first["value"]["ts"] == "2026-11-24T23:59:00.000Z"
    assert first["value"]["source"] == "sdk-python" and first["value"]["config_version"] == 1
    assert first["value"]["attributes"] == attrs
    assert not list(raw.rglob(".*"))  # no temp files left


def test_offsets_continue_across_sink_instances(tmp_path):
    p = corpus()["payload"]
    raw = tmp_path / "raw"
    for run in range(2):
        sink = DumpExposureSink(raw, partition=3, flush_every=40, clock=Clock())
        other = DumpExposureSink(raw, partition=4, flush_every=1000, clock=Clock())
        client = Client.from_payload(p, trusted=True, exposure_sink=sink)
        for i in range(100):
            client.assign(f"run{run}-user-{i}", "homepage_hero")
            other.log(
                unit="x",
                user_id="x",
                experiment_id="homepage_hero",
                variant="control",
                config_version=1,
                attributes=None,
            )
        sink.flush()
        other.flush()
        assert sink.next_offset == 100 * (run + 1)
    rows = [r for r in _parse(raw, p) if r["kafka_partition"] == 3]
    assert sorted(r["kafka_offset"] for r in rows) == list(range(200))
    names = sorted(f.name for f in _files(raw) if "+3+" in f.name)
    assert names == sorted(f"exposures+3+{n}.jsonl" for n in (0, 40, 80, 100, 140, 180))


def test_a_failing_sink_does_not_break_assign(tmp_path, caplog):
    p = corpus()["payload"]
    raw = tmp_path / "raw"
    raw.write_text("a file, not a folder")
    sink = DumpExposureSink(raw, partition=1, flush_every=10, clock=Clock())
    client = Client.from_payload(p, trusted=True, exposure_sink=sink)
    plain = Client.from_payload(p, trusted=True)
    with caplog.at_level(logging.ERROR, logger="ab_pipelines.sdk"):
        for i in range(55):
            assert client.assign(f"u{i}", "homepage_hero") == plain.assign(f"u{i}", "homepage_hero")
        client.flush()
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    assert sink.pending() == 55  # kept for the retry
    raw.unlink()
    sink.flush()
    assert sink.pending() == 0
    rows = _parse(raw, p)
    assert len(rows) == 55 and all(r["status"] == "ok" for r in rows)
    assert sorted(r["kafka_offset"] for r in rows) == list(range(55))


def test_a_raising_custom_sink_does_not_break_assign(caplog):
    class Raising(ListExposureSink):
        def log(self, **kw):
            raise RuntimeError("broker down")

    client = Client.from_payload(corpus()["payload"], trusted=True, exposure_sink=Raising())
    with caplog.at_level(logging.ERROR, logger="ab_pipelines.sdk"):
        assert client.assign("u1", "homepage_hero") is not None
        assert client.assign("u2", "homepage_hero") is not None
    assert len(caplog.records) == 1


def test_flush_at_exit(tmp_path):
    import subprocess
    import sys

    raw = tmp_path / "raw"
    code = (
        "import sys\n"
        "from ab_pipelines.assignment import DumpExposureSink\n"
        "s = DumpExposureSink(sys.argv[1], partition=2)\n"
        "s.log(unit='u', user_id='u', experiment_id='e', variant='a', config_version=1,"
        " attributes=None)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(raw)], check=True)
    files = _files(raw)
    assert [f.name for f in files] == ["exposures+2+0.jsonl"]
    assert len(files[0].read_text().splitlines()) == 1
