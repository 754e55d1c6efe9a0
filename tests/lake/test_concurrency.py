"""Two writers at once on one Delta table, in separate processes: both commit, nothing doubles.

Each process has its own delta-rs runtime (started with ``spawn``: delta-rs cannot be forked).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
from pathlib import Path

import pyarrow as pa
import pytest

from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_LANDED_FILES as SPEC
from ab_pipelines.settings import paths

ROUNDS = 6


def _rows(day: dt.date, tag: str, n: int = 3) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source_file": f"{tag}/{i}",
                "topic": "exposures",
                "bytes": 1,
                "read": 1,
                "landed": 1,
                "quarantined": 0,
                "duplicates": 0,
                "arrival_date": day,
            }
            for i in range(n)
        ],
        schema=SPEC.schema,
    )


def _writer(home: str, day: dt.date, tag: str, replace: bool, barrier, out) -> None:
    lake = Lake(paths(Path(home)))
    barrier.wait()
    try:
        for k in range(ROUNDS):
            part = [{"arrival_date": day.isoformat()}] if replace else None
            lake.write_arrow(SPEC, _rows(day, f"{tag}{k}"), replace=part)
        out.put((tag, "ok"))
    except Exception as exc:  # reported to the test, which fails on it
        out.put((tag, f"{type(exc).__name__}: {exc}"))


def _race(home: Path, jobs: list[tuple[dt.date, str, bool]]) -> list[tuple[str, str]]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(len(jobs)), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(str(home), day, tag, replace, barrier, out))
        for day, tag, replace in jobs
    ]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def _tags(lake: Lake) -> list[str]:
    return sorted(r.split("/")[0] for r in lake.read_arrow(SPEC).column("source_file").to_pylist())


D1, D2, D3 = dt.date(2026, 11, 2), dt.date(2026, 11, 3), dt.date(2026, 11, 4)


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(paths(tmp_path))
    lake.write_arrow(SPEC, _rows(D1, "seed"))
    return lake


def test_replacing_different_days_at_once_both_commit(lake, tmp_path):
    assert _race(tmp_path, [(D2, "a", True), (D3, "b", True)]) == [("a", "ok"), ("b", "ok")]
    # each day holds its writer's last round; the seed day is untouched
    assert _tags(lake) == ["a5"] * 3 + ["b5"] * 3 + ["seed"] * 3
    assert lake.version(SPEC) == 2 * ROUNDS


def test_replacing_the_same_day_at_once_leaves_one_writers_rows(lake, tmp_path):
    assert _race(tmp_path, [(D2, "a", True), (D2, "b", True)]) == [("a", "ok"), ("b", "ok")]
    tags = _tags(lake)
    assert tags[-3:] == ["seed"] * 3
    assert tags[:3] in (["a5"] * 3, ["b5"] * 3)  # written once, by whoever committed last
    assert len(tags) == 6
    assert lake.version(SPEC) == 2 * ROUNDS


def test_appending_at_once_to_a_table_that_does_not_exist_yet(tmp_path):
    results = _race(tmp_path, [(D2, "a", False), (D3, "b", False)])
    assert results == [("a", "ok"), ("b", "ok")]
    tags = _tags(Lake(paths(tmp_path)))
    assert tags == sorted(f"{t}{k}" for t in "ab" for k in range(ROUNDS) for _ in range(3))
