"""Issue 9, part 3: a corpus of bad input landed in one run; no crash, nothing lost.

Every line is landed or quarantined with its reason code, and for every file
read = landed + quarantined + duplicates, with landed and quarantined read back from the tables.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections import Counter

import orjson
import pytest

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, BRONZE_QUARANTINE
from ab_pipelines.settings import paths

pytestmark = pytest.mark.spark

DAY = dt.date(2026, 11, 2)
KNOWN = {"checkout_cta": frozenset({"control", "treatment"})}


def exp(i: int, **over) -> dict:
    v = {
        "event_id": f"x{i}",
        "user_id": f"u{i}",
        "experiment_id": "checkout_cta",
        "variant": "control",
        "ts": "2026-11-02T10:00:00Z",
    }
    return {k: x for k, x in {**v, **over}.items() if x is not ...}


def met(i: int, **over) -> dict:
    v = {
        "event_id": f"m{i}",
        "user_id": f"u{i}",
        "event": "purchase",
        "value": 2.0,
        "ts": "2026-11-02T10:00:00Z",
    }
    return {k: x for k, x in {**v, **over}.items() if x is not ...}


def env(topic: str, offset: int, value) -> bytes:
    return orjson.dumps(envelope(topic, 0, offset, 1793613600000, "k", value))


# (line, expected): None means landed
EXPOSURE_LINES = [
    (env("exposures", 0, exp(0)), None),
    (b"\xff\xfe" + env("exposures", 1, exp(1)), "bad_encoding"),
    (env("exposures", 2, exp(2, pad="x" * (10 << 20))), "too_large"),  # a 10 MB line
    (env("exposures", 3, exp(3, user_id=7)), "wrong_type"),
    (env("exposures", 4, exp(4, variant=...)), "missing_field"),
    (env("exposures", 5, exp(5, config_version=True)), "wrong_type"),  # a boolean for a number
    (env("exposures", 6, exp(6, ts="2026-11-02T10:00:00")), "bad_timestamp"),  # no zone
    (env("exposures", 7, exp(7, ts="1970-01-01T00:00:00Z")), "ts_out_of_range"),
    (env("exposures", 8, exp(8, ts="2999-01-01T00:00:00Z")), "ts_out_of_range"),
    (env("exposures", 9, exp(9, experiment_id="ghost")), "unknown_experiment"),
    (env("exposures", 10, exp(10, variant="purple")), "unknown_variant"),
    (env("clicks", 11, exp(11)), "unknown_topic"),
    (env("exposures", 12, exp(12)).replace(b'"offset":12', b'"offset":"12"'), "bad_envelope"),
    (b"", "bad_json"),
    (env("exposures", 0, exp(0)), "duplicate"),  # the same record twice
]
METRIC_LINES = [
    (env("metric_events", 0, met(0)), None),
    (env("metric_events", 1, met(1)).replace(b'"value":2.0', b'"value":NaN'), "bad_json"),
    (env("metric_events", 2, met(2)).replace(b'"value":2.0', b'"value":Infinity'), "bad_json"),
    (env("metric_events", 3, met(3)).replace(b'"value":2.0', b'"value":1e999'), "bad_json"),
    (env("metric_events", 4, met(4, value=True)), "wrong_type"),
    (env("metric_events", 5, met(5, value="3.5")), "wrong_type"),
    (env("metric_events", 6, met(6, value=...)), None),  # a count event: value 1.0
    (env("metric_events", 7, met(7, event_id="")), "missing_field"),
    (env("metric_events", 8, met(8))[:-9], "bad_json"),  # cut in the middle
]


def write_corpus(raw) -> dict[str, Counter]:
    """The files; returns what each should give (reason counts, 'landed', 'duplicate')."""
    expected: dict[str, Counter] = {}

    def put(topic, first_offset, lines, gzipped=False, raw_body=None):
        path = write_dump(raw, topic, DAY, 0, first_offset, [ln for ln, _ in lines], gzipped)
        if raw_body is not None:
            path.write_bytes(raw_body)
        rel = path.relative_to(raw).as_posix()
        expected[rel] = Counter("landed" if r is None else r for _, r in lines)
        return path

    put("exposures", 0, EXPOSURE_LINES)
    put("metric_events", 0, METRIC_LINES)
    put("metric_events", 100, [])  # an empty file
    body = b"".join(env("metric_events", 200 + i, met(200 + i)) + b"\n" for i in range(300))
    path = put("metric_events", 200, [], gzipped=True, raw_body=gzip.compress(body)[:-30])
    expected[path.relative_to(raw).as_posix()] = Counter({"truncated": 1})
    not_json = put("metric_events", 900, [], raw_body=b"%PDF-1.4\n\xff\xd8\x00binary\n")
    expected[not_json.relative_to(raw).as_posix()] = Counter({"bad_json": 1, "bad_encoding": 1})
    return expected


def test_a_corpus_of_bad_input_lands_every_line_once_or_quarantines_it(spark, tmp_path):
    home = paths(tmp_path / "abp")
    expected = write_corpus(home.raw)
    lake = Lake(home)
    report = land_day(spark, lake, home.raw, DAY, KNOWN)  # must not raise
    files = {f.source_file: f for f in report.files}
    assert set(files) == set(expected)

    q = lake.read_arrow(BRONZE_QUARANTINE).to_pylist()
    landed = Counter(
        r["source_file"]
        for spec in (BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS)
        for r in lake.read_arrow(spec, columns=["source_file"]).to_pylist()
    )
    for rel, want in expected.items():
        f = files[rel]
        assert f.read == f.landed + f.quarantined + f.duplicates, rel
        reasons = Counter(r["reason"] for r in q if r["source_file"] == rel)
        assert f.quarantined == sum(reasons.values()) and f.landed == landed[rel]
        if "truncated" in want:  # good lines before the cut land; the tail is one record
            assert reasons == Counter({"corrupt_file": 1}) and f.landed >= 250
            continue
        assert f.landed == want["landed"], rel
        assert f.duplicates == want["duplicate"], rel
        assert reasons == Counter(
            {k: n for k, n in want.items() if k not in ("landed", "duplicate")}
        ), rel
    # the quarantine keeps what it can of each line: its number, bytes and a readable prefix
    big = next(r for r in q if r["reason"] == "too_large")
    assert big["raw_bytes"] > 10 << 20 and len(big["raw"]) == 1 << 20
    assert all(r["detail"] and r["source_line"] >= 1 for r in q)
    count_event = lake.read_arrow(BRONZE_METRIC_EVENTS).to_pylist()
    assert {r["event_id"]: r["value"] for r in count_event}["m6"] == 1.0
