"""The bulk parser gives exactly the per-line parser's rows, or steps aside.

``bulk_columns`` (pyarrow's JSON reader plus vectorized checks) must accept the shapes real
dumps have, and for everything it cannot prove it must return None, so that a slower parser
decides; either way ``parse_dump_file`` gives the rows of ``parse_line``.
"""

from __future__ import annotations

import json
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ab_pipelines.events.parse import ts_window_for
from ab_pipelines.events.parse_bulk import bulk_columns as _bulk_text
from tests.events.test_parse_fast import DAY, KNOWN, _both


def bulk_columns(lines, topic, window, known):
    return _bulk_text(b"\n".join(lines), len(lines), topic, window, known)


WINDOW = ts_window_for(DAY)


def _line(rng: random.Random, i: int, topic: str) -> bytes:
    """A line of the shapes the SDK, the simulator and connectors write (all provable)."""
    zone = rng.choice(["Z", "+00:00", "+02:00", "-05:30", "+05:45"])
    frac = rng.choice(["", ".1", ".12", ".123", ".1234", ".12345", ".123456"])
    ts = f"2026-11-0{rng.choice([1, 2, 3])}T{rng.randrange(6, 18):02d}:{rng.randrange(60):02d}:07{frac}{zone}"
    if topic == "exposures":
        value: dict = {
            "event_id": f"e{i}",
            "user_id": rng.choice(["u1", "ü-2", "user 3", "4", "名前", "😀"]),
            "experiment_id": rng.choice(["checkout_cta", "other"]),
            "ts": ts,
        }
        value["variant"] = rng.choice(sorted(KNOWN[value["experiment_id"]]))
        if rng.random() < 0.5:
            value["config_version"] = rng.choice([0, 7, 2**62, -3])
        if rng.random() < 0.5:
            value["source"] = rng.choice(["sdk", "", "edge"])
        if rng.random() < 0.7:
            value["attributes"] = rng.choice(
                [{"country": "US", "platform": "ios"}, {}, {"b": 1, "a": "x", "c": True},
                 {"z": -5, "é": "ü"}, {"country": "CA"}, {"beta": False}]
            )  # fmt: skip
    else:
        value = {"event_id": f"m{i}", "user_id": f"u{i % 7}", "event": "purchase", "ts": ts}
        if rng.random() < 0.7:
            value["value"] = rng.choice([0, 12, 12.5, -1e300, 2**53 + 1, 1e-300, 3.14159, 1e22])
        if rng.random() < 0.5:
            value["properties"] = rng.choice([{"z": 1, "a": "b"}, {}, {"currency": "USD"}])
    env: dict = {
        "topic": topic,
        "partition": rng.randrange(0, 2**31),
        "offset": rng.randrange(0, 2**63),
        "timestamp": rng.randrange(0, 2**63 // 1000),
        "value": value,
    }
    if rng.random() < 0.8:
        env["key"] = rng.choice(["user-1", "", "k"])
    keys = list(env)
    rng.shuffle(keys)  # key order must not matter
    return orjson.dumps({k: env[k] for k in keys})


@pytest.mark.parametrize("topic", ["exposures", "metric_events"])
def test_the_common_shapes_are_parsed_in_bulk_exactly_as_line_by_line(topic):
    rng = random.Random(5)
    lines = [_line(rng, i, topic) for i in range(3000)]
    assert bulk_columns(lines, topic, WINDOW, KNOWN) is not None  # the fast path was taken
    fast, slow = _both(b"\n".join(lines) + b"\n", topic)
    assert fast.num_rows == 3000 and set(fast.column("status").to_pylist()) == {"ok"}
    assert fast.equals(slow)


def _exposure(**value) -> dict:
    base = {"event_id": "e1", "user_id": "u1", "experiment_id": "checkout_cta",
            "variant": "control", "ts": "2026-11-02T10:00:00Z"}  # fmt: skip
    return {"topic": "exposures", "partition": 0, "offset": 1, "timestamp": 1, "key": "u1",
            "value": {**base, **value}}  # fmt: skip


GOOD = orjson.dumps(_exposure())
UNPROVABLE = {
    "an escape": orjson.dumps(_exposure(user_id='a"b')),
    "a unicode escape": GOOD.replace(b'"user_id":"u1"', b'"user_id":"\\u00fc"'),
    "a lone surrogate": GOOD.replace(b'"user_id":"u1"', b'"user_id":"\\ud800"'),
    "a null in an object": orjson.dumps(_exposure(attributes={"a": None})),
    "a double in an object": orjson.dumps(_exposure(attributes={"a": 1.5})),
    "a nested object": orjson.dumps(_exposure(attributes={"a": {"b": "c"}})),
    "a list in an object": orjson.dumps(_exposure(attributes={"a": ["b"]})),
    "a date in an object": orjson.dumps(_exposure(attributes={"signup": "2026-01-01"})),
    "an unknown event field": orjson.dumps(_exposure(color="blue")),
    "an unknown envelope field": orjson.dumps({**_exposure(), "headers": {"h": "x"}}),
    "a kcat string value": orjson.dumps(
        {**_exposure(), "value": orjson.dumps(_exposure()["value"]).decode()}
    ),
    "a numeric key": orjson.dumps({**_exposure(), "key": 42}),
    "a NaN literal": GOOD.replace(b'"partition":0', b'"partition":NaN'),
    "seven fraction digits": orjson.dumps(_exposure(ts="2026-11-02T10:00:00.1234567Z")),
    "a lowercase zone": orjson.dumps(_exposure(ts="2026-11-02T10:00:00z")),
    "a space for T": orjson.dumps(_exposure(ts="2026-11-02 10:00:00Z")),
    "no zone": orjson.dumps(_exposure(ts="2026-11-02T10:00:00")),
    "a day that does not exist": orjson.dumps(_exposure(ts="2026-02-30T10:00:00Z")),
    "a 20-digit number": orjson.dumps(_exposure(config_version=2**64 - 1)),
    "a tab": GOOD.replace(b'"user_id":"u1"', b'"user_id":"u\t1"'),
    "two objects on a line": GOOD + b" " + GOOD,
    "an unknown experiment": orjson.dumps(_exposure(experiment_id="nope")),
    "an unknown variant": orjson.dumps(_exposure(variant="nope")),
    "a ts out of range": orjson.dumps(_exposure(ts="2026-10-01T10:00:00Z")),
    "an empty required field": orjson.dumps(_exposure(user_id="")),
    "a missing required field": orjson.dumps({**_exposure(), "value": {"event_id": "e"}}),
    "a wrong topic": orjson.dumps({**_exposure(), "topic": "metric_events"}),
    "a negative offset": orjson.dumps({**_exposure(), "offset": -1}),
    "a float partition": GOOD.replace(b'"partition":0', b'"partition":0.0'),
    "a boolean timestamp": GOOD.replace(b'"timestamp":1', b'"timestamp":true'),
}


@pytest.mark.parametrize("case", sorted(UNPROVABLE))
def test_what_the_bulk_parser_cannot_prove_goes_to_the_slower_paths(case):
    lines = [GOOD, UNPROVABLE[case], GOOD]
    assert bulk_columns(lines, "exposures", WINDOW, KNOWN) is None
    assert bulk_columns([GOOD, GOOD], "exposures", WINDOW, KNOWN) is not None
    fast, slow = _both(b"\n".join(lines), "exposures")
    assert fast.equals(slow)


@pytest.mark.parametrize("blank", [b"", b"   ", b" \t ", b"\r", b"null"])
def test_a_blank_line_is_not_skipped(blank):
    body = GOOD + b"\n" + blank + b"\n" + GOOD + b"\n"
    assert _bulk_text(body, 3, "exposures", WINDOW, KNOWN) is None
    fast, slow = _both(body, "exposures")
    assert fast.equals(slow) and fast.column("status").to_pylist() == ["ok", "quarantined", "ok"]


def test_a_whole_file_is_parsed_in_bulk_with_or_without_its_last_newline():
    for body in (GOOD + b"\n" + GOOD, GOOD + b"\n" + GOOD + b"\n", GOOD + b"\r\n" + GOOD + b"  "):
        n = body.count(b"\n") + (not body.endswith(b"\n"))
        assert _bulk_text(body, n, "exposures", WINDOW, KNOWN) is not None
        fast, slow = _both(body, "exposures")
        assert fast.equals(slow) and fast.num_rows == n
    # a line that does not start with "{" is left to the slower parsers, which agree
    assert _bulk_text(b"  " + GOOD, 1, "exposures", WINDOW, KNOWN) is None
    fast, slow = _both(b"  " + GOOD, "exposures")
    assert fast.equals(slow) and fast.column("status").to_pylist() == ["ok"]


def test_metric_values_default_to_one_and_infinity_is_left_to_the_line_parser():
    m = {"topic": "metric_events", "partition": 0, "offset": 1, "timestamp": 1,
         "value": {"event_id": "m", "user_id": "u", "event": "e", "ts": "2026-11-02T10:00:00Z"}}  # fmt: skip
    line = orjson.dumps(m)
    got = bulk_columns([line], "metric_events", WINDOW, KNOWN)
    assert got is not None and got["value"].to_pylist() == [1.0]
    inf = line.replace(b'"event":"e"', b'"event":"e","value":Infinity')
    assert bulk_columns([inf], "metric_events", WINDOW, KNOWN) is None
    fast, slow = _both(inf, "metric_events")
    assert fast.equals(slow) and fast.column("reason").to_pylist() == ["bad_json"]


# Generated flat objects and values that are provable or close to it: the result must match
# line by line whether the bulk parser takes the chunk or steps aside.
names = st.text(
    st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs")), max_size=6
)
flat = st.dictionaries(
    names,
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        names,
        st.floats(allow_nan=False, allow_infinity=False),
    ),  # fmt: skip
    max_size=4,
)


@st.composite
def exposure_lines(draw):
    value = {
        "event_id": draw(names.filter(bool)),
        "user_id": draw(names.filter(bool)),
        "experiment_id": "checkout_cta",
        "variant": draw(st.sampled_from(["control", "treatment", "other"])),
        "ts": draw(
            st.sampled_from(
                [
                    "2026-11-02T10:00:00Z",
                    "2026-11-02T10:00:00.5+01:00",
                    "2026-11-01T23:59:59.999999-03:00",
                ]
            )
        ),  # fmt: skip
    }
    if draw(st.booleans()):
        value["attributes"] = draw(flat)
    if draw(st.booleans()):
        value["config_version"] = draw(st.integers(-(2**70), 2**70))
    env = {"topic": "exposures", "partition": draw(st.integers(0, 2**31 - 1)),
           "offset": draw(st.integers(0, 2**63 - 1)), "timestamp": 5, "key": draw(names),
           "value": value}  # fmt: skip
    # json, not orjson: integers beyond 64 bits are written too (orjson reads them as floats)
    return json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(exposure_lines(), min_size=1, max_size=8))
def test_generated_flat_lines_get_the_same_rows_in_bulk(lines):
    fast, slow = _both(b"\n".join(lines), "exposures")
    assert fast.equals(slow)
