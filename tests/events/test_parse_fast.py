"""The column-at-a-time parser gives exactly the rows of the per-line parser, or steps aside.

``parse_dump_file`` parses chunks whose lines all land a column at a time and leaves every
other chunk to ``parse_line``; these tests compare the two paths (``fast=False`` forces the
per-line one) on varied valid lines, on chunks with one bad line, and on generated lines.
"""

from __future__ import annotations

import datetime as dt
import random

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ab_pipelines.events import parse as P
from ab_pipelines.events.parse import _fast_columns, parse_dump_file, ts_window_for

DAY = dt.date(2026, 11, 2)
KNOWN = {"checkout_cta": frozenset({"control", "treatment"}), "other": frozenset({"a", "b"})}


def _both(body: bytes, topic: str) -> tuple[pa.Table, pa.Table]:
    rel = f"{topic}/date={DAY}/{topic}+0+0.jsonl"
    fast = pa.Table.from_batches(
        list(parse_dump_file(body, rel, topic, DAY, KNOWN)), P.PARSED_SCHEMA
    )
    slow = pa.Table.from_batches(
        list(parse_dump_file(body, rel, topic, DAY, KNOWN, fast=False)), P.PARSED_SCHEMA
    )
    return fast, slow


def _varied_line(rng: random.Random, i: int, topic: str) -> bytes:
    """A valid line with the optional shapes the format allows, picked at random."""
    zone = rng.choice(["Z", "+00:00", "+02:00", "-05:30", "+05:45"])
    frac = rng.choice(["", ".1", ".123", ".123456"])
    hour = rng.randrange(6, 18)  # inside the window whatever the zone
    ts = f"2026-11-0{rng.choice([1, 2, 3])}T{hour:02d}:{rng.randrange(60):02d}:07{frac}{zone}"
    if topic == "exposures":
        value: dict = {
            "event_id": f"e{i}",
            "user_id": rng.choice(["u1", "ü-2", "user 3", "4"]),
            "experiment_id": "checkout_cta",
            "variant": rng.choice(["control", "treatment"]),
            "ts": ts,
        }
        if rng.random() < 0.5:
            value["config_version"] = rng.choice([0, 7, 2**62, -3, None])
        if rng.random() < 0.5:
            value["source"] = rng.choice(["sdk", None, ""])
        if rng.random() < 0.5:
            value["attributes"] = rng.choice([{"b": 1, "a": [1, 2]}, {}, None, {"x": {"y": 1.5}}])
    else:
        value = {"event_id": f"m{i}", "user_id": f"u{i % 7}", "event": "purchase", "ts": ts}
        if rng.random() < 0.7:
            value["value"] = rng.choice([0, 12, 12.5, -1e300, 2**53, None, 1e-300])
        if rng.random() < 0.5:
            value["properties"] = rng.choice([{"z": 1, "a": "b"}, None, {}])
    if rng.random() < 0.2:
        value["color"] = rng.choice(["blue", 1, None, {"k": [1]}])
    env: dict = {
        "topic": topic,
        "partition": rng.randrange(0, 2**31),
        "offset": rng.randrange(0, 2**63),
        "timestamp": rng.randrange(0, 2**63 // 1000),
        "value": orjson.dumps(value).decode() if rng.random() < 0.2 else value,
    }
    if rng.random() < 0.8:
        env["key"] = rng.choice(["user-1", None, 42, {"id": 1}, ["a"], ""])
    if rng.random() < 0.1:
        env["headers"] = {"h": rng.choice([1, "x"])}
    keys = list(env)
    rng.shuffle(keys)  # key order must not matter
    return orjson.dumps({k: env[k] for k in keys})


@pytest.mark.parametrize("topic", ["exposures", "metric_events"])
def test_varied_valid_lines_take_the_fast_path_and_match_the_per_line_parser(topic):
    rng = random.Random(topic)
    lines = [_varied_line(rng, i, topic) for i in range(3000)]
    assert _fast_columns(lines, topic, ts_window_for(DAY), KNOWN) is not None
    fast, slow = _both(b"\n".join(lines) + b"\n", topic)
    assert fast.num_rows == 3000 and set(fast.column("status").to_pylist()) == {"ok"}
    assert fast.equals(slow)


BAD = [
    b"not json",
    b"\xff\xfe{}",
    b"[1]",
    b"",
    b'{"topic": "exposures"}',
    orjson.dumps(
        {"topic": "exposures", "partition": True, "offset": 1, "timestamp": 1, "value": {}}
    ),
]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", [0, 4095, 4096, 9999])
def test_one_bad_line_sends_its_chunk_to_the_per_line_parser(bad, where):
    rng = random.Random(where)
    lines = [_varied_line(rng, i, "exposures") for i in range(10_000)]
    lines[where] = bad
    fast, slow = _both(b"\n".join(lines) + b"\n", "exposures")
    assert fast.equals(slow)
    statuses = fast.column("status").to_pylist()
    assert statuses.count("quarantined") == 1 and statuses[where] == "quarantined"
    assert fast.column("source_line").to_pylist() == list(range(1, 10_001))


@pytest.mark.parametrize(
    "change",
    [
        {"ts": "2026-11-02T10:00:00"},  # no zone
        {"ts": "2026-10-01T10:00:00Z"},  # out of the window
        {"variant": "blue"},
        {"experiment_id": "nope"},
        {"user_id": ""},
        {"user_id": 5},
        {"config_version": True},
        {"config_version": 2**63},
        {"config_version": 1.0},
        {"attributes": [1]},
    ],
)
def test_each_subtle_reject_is_left_to_the_per_line_parser(change):
    rng = random.Random(1)
    lines = [_varied_line(rng, i, "exposures") for i in range(50)]
    env = orjson.loads(lines[7])
    value = env["value"] if isinstance(env["value"], dict) else orjson.loads(env["value"])
    env["value"] = {**value, **change}
    lines[7] = orjson.dumps(env)
    assert _fast_columns(lines, "exposures", ts_window_for(DAY), KNOWN) is None
    fast, slow = _both(b"\n".join(lines), "exposures")
    assert fast.equals(slow) and fast.column("status").to_pylist()[7] == "quarantined"


def test_metric_values_that_are_not_finite_numbers_are_left_to_the_per_line_parser():
    for bad in (True, "1", None):
        line = orjson.dumps(
            {
                "topic": "metric_events",
                "partition": 0,
                "offset": 1,
                "timestamp": 1,
                "value": {
                    "event_id": "m",
                    "user_id": "u",
                    "event": "e",
                    "ts": "2026-11-02T00:00:00Z",
                    "value": bad,
                },
            }
        )
        fast, slow = _both(line, "metric_events")
        assert fast.equals(slow)
    line = b'{"topic":"metric_events","partition":0,"offset":1,"timestamp":1,"value":{"event_id":"m","user_id":"u","event":"e","ts":"2026-11-02T00:00:00Z","value":9007199254740993}}'
    fast, slow = _both(line, "metric_events")
    assert fast.equals(slow) and fast.column("value").to_pylist() == [9007199254740992.0]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "2026-11-02T10:00:00Z",
            "2026-11-02T10:00:00+01:00",
            "2026-11-02",
            "control",
            "checkout_cta",
            "",
        ]
    ),
)


@st.composite
def envelopes(draw):
    topic = draw(st.sampled_from(["exposures", "metric_events", "clicks"]))
    spec = P.TOPICS.get(topic, P.TOPICS["exposures"])
    value = {}
    for f in (*spec.required, *spec.optional):
        if draw(st.integers(0, 9)):  # mostly present
            value[f] = (
                draw(field_values)
                if draw(st.booleans())
                else {
                    "event_id": "e1",
                    "user_id": "u1",
                    "experiment_id": "checkout_cta",
                    "variant": "control",
                    "event": "purchase",
                    "ts": "2026-11-02T10:00:00Z",
                    "config_version": 3,
                    "source": "sdk",
                    "attributes": {"a": 1},
                    "value": 2.5,
                    "properties": None,
                }[f]
            )
    env = {
        "topic": topic,
        "partition": draw(st.integers(-1, 2**31)),
        "offset": draw(st.integers(-1, 2**64 - 1)),
        "timestamp": draw(st.integers(-1, 2**62)),
        "key": draw(json_values),
        "value": value,
    }
    drop = draw(st.sets(st.sampled_from(sorted(env))))
    return orjson.dumps({k: v for k, v in env.items() if k not in drop}), topic


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(envelopes(), min_size=1, max_size=6), st.sampled_from(["exposures", "metric_events"])
)
def test_generated_lines_get_the_same_rows_from_both_paths(lines, folder):
    body = b"\n".join(line for line, _ in lines)
    fast, slow = _both(body, folder)
    assert fast.equals(slow)
    assert fast.num_rows == len(lines)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_one_row_per_line_and_never_crash(data):
    fast, slow = _both(data, "exposures")
    assert fast.equals(slow)
    assert fast.num_rows == len(data.split(b"\n")) - (1 if data.endswith(b"\n") or not data else 0)


@pytest.mark.parametrize("bad", [True, False])
@pytest.mark.parametrize("first", [12.5, 3])
def test_a_boolean_value_after_numbers_is_quarantined_on_both_paths(bad, first):
    """pyarrow infers a column's type from its first number and then reads a later ``true``
    as 1.0: a chunk whose metric values mix numbers and booleans must go line by line, where
    the boolean is ``wrong_type`` (seen: a planted wrong_type landed as 1.0 through Kafka)."""

    def line(i: int, value) -> bytes:
        event = {"event_id": f"m{i}", "user_id": f"u{i}", "event": "e",
                 "ts": "2026-11-02T00:00:00Z", "value": value}  # fmt: skip
        env = {"topic": "metric_events", "partition": 0, "offset": i, "timestamp": 1,
               "value": event}  # fmt: skip
        return orjson.dumps(env)

    lines = [line(i, first) for i in range(5)] + [line(5, bad)] + [line(6, 1.5)]
    assert _fast_columns(lines, "metric_events", ts_window_for(DAY), KNOWN) is None
    fast, slow = _both(b"\n".join(lines), "metric_events")
    assert fast.equals(slow)
    assert fast.column("status").to_pylist() == ["ok"] * 5 + ["quarantined", "ok"]
    assert fast.column("reason").to_pylist()[5] == "wrong_type"
