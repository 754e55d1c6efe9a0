"""The landing's dedupe on keys (Arrow, on the driver) against a plain-Python reference.

The reference is the rule of docs/landing.md applied to every row of the window at once: sort by
"first arrived" (arrival day, Kafka partition and offset, file, line), keep the first row per
(partition, offset), then the first survivor per event_id. The landing reads only the landed rows
linked to a candidate (``_related``); it must keep and drop exactly what the reference does for
every candidate, and for every landed row linked to one.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ab_pipelines.events.landing import _dedupe, _related
from ab_pipelines.events.stage import KEY_COLUMNS
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_METRIC_EVENTS
from ab_pipelines.settings import paths

DAY = dt.date(2026, 11, 10)
COLS = list(KEY_COLUMNS[1:])  # the key rows: no topic
ORDER = ("arrival_date", "kafka_partition", "kafka_offset", "source_file", "source_line")


def reference(rows: list[dict]) -> set[tuple]:
    """Row ids (arrival_date, source_file, source_line) kept, over all rows at once."""
    rows = sorted(rows, key=lambda r: tuple(r[c] for c in ORDER))
    seen, first = set(), []
    for r in rows:
        if (r["kafka_partition"], r["kafka_offset"]) not in seen:
            seen.add((r["kafka_partition"], r["kafka_offset"]))
            first.append(r)
    seen, kept = set(), set()
    for r in first:
        if r["event_id"] not in seen:
            seen.add(r["event_id"])
            kept.add(_id(r))
    return kept


def _id(r: dict) -> tuple:
    return (r["arrival_date"], r["source_file"], r["source_line"])


def linked_to_new(new: list[dict], existing: list[dict]) -> set[tuple]:
    """Ids of the landed rows linked to a candidate through shared keys (any number of hops)."""
    offsets = {(r["kafka_partition"], r["kafka_offset"]) for r in new}
    events = {r["event_id"] for r in new}
    linked: set[tuple] = set()
    while True:
        more = {
            _id(r)
            for r in existing
            if (r["kafka_partition"], r["kafka_offset"]) in offsets or r["event_id"] in events
        }
        if more == linked:
            return linked
        linked = more
        for r in existing:
            if _id(r) in linked:
                offsets.add((r["kafka_partition"], r["kafka_offset"]))
                events.add(r["event_id"])


row = st.fixed_dictionaries(
    {
        "kafka_partition": st.integers(0, 2),
        "kafka_offset": st.integers(0, 4),
        "event_id": st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        "day": st.integers(-3, 3),
        "file": st.sampled_from(["f1", "f2"]),
    }
)


def _rows(drawn: list[dict], new: bool) -> list[dict]:
    out = []
    for i, d in enumerate(drawn):
        day = DAY if new else DAY + dt.timedelta(days=d["day"] or 1)
        out.append(
            {
                "kafka_partition": d["kafka_partition"],
                "kafka_offset": d["kafka_offset"],
                "event_id": d["event_id"],
                "arrival_date": day,
                "source_file": f"{'new' if new else 'old'}/{d['file']}",
                "source_line": i + 1,
            }
        )
    return out


def _keys(rows: list[dict]) -> pa.Table:
    schema = pa.schema([BRONZE_METRIC_EVENTS.schema.field(c) for c in COLS])
    return pa.Table.from_pylist(rows, schema=schema)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(new=st.lists(row, max_size=8), old=st.lists(row, max_size=10))
def test_keys_dedupe_matches_the_reference_over_the_whole_window(tmp_path_factory, new, old):
    lake = Lake(paths(tmp_path_factory.mktemp("lake")))
    new_rows, old_rows = _rows(new, True), _rows(old, False)
    if old_rows:
        full = _keys(old_rows)
        for f in BRONZE_METRIC_EVENTS.schema:
            if f.name not in full.column_names:
                full = full.append_column(f, pa.nulls(full.num_rows, f.type))
        lake.write_arrow(BRONZE_METRIC_EVENTS, full.select(BRONZE_METRIC_EVENTS.schema.names))
    window = [DAY + dt.timedelta(days=k) for k in range(-3, 4) if k]

    existing = _related(lake, BRONZE_METRIC_EVENTS, window, _keys(new_rows))
    kept = _dedupe(_keys(new_rows), existing).to_pylist()

    expected = reference(new_rows + old_rows)
    linked = linked_to_new(new_rows, old_rows)
    assert {_id(r) for r in existing.to_pylist()} == linked
    got_new = {_id(r) for r in kept if r["_new"]}
    assert got_new == {_id(r) for r in new_rows} & expected
    # Every linked landed row is kept or lost as over the whole window.
    got_old = {_id(r) for r in kept if not r["_new"]}
    assert got_old == linked & expected
