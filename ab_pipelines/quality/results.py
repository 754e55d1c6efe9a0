"""ops.dq_results: every check result, so the dashboard can show data quality without Dagster.

Each row carries ``day``, the partition day its check ran on (the run's partition key: the arrival
day of bronze and of silver.exposure_counts). ``day`` is the table's partition column and part of
its key, so "which checks failed on day D" is a filter, not a reconstruction from ``checked_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_DQ_RESULTS
from ab_pipelines.quality.suites import CheckOutcome

__all__ = ["checks_of_day", "failed_checks", "record_outcomes"]


def record_outcomes(lake: Lake, outcomes: Iterable[CheckOutcome]) -> int | None:
    """Upsert outcomes by (day, table, check): a re-run of a day replaces its earlier results."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "table": o.table,
            "check": o.check,
            "passed": o.passed,
            "observed": orjson.dumps(o.observed, option=orjson.OPT_SORT_KEYS).decode(),
            "sample": orjson.dumps(o.sample).decode(),
            "description": o.description,
            "checked_at": now,
            "day": o.day,
        }
        for o in outcomes
    ]
    if not rows:
        return None
    lake.merge_arrow(OPS_DQ_RESULTS, pa.Table.from_pylist(rows, schema=OPS_DQ_RESULTS.schema))
    return lake.version(OPS_DQ_RESULTS)


def checks_of_day(
    lake: Lake, day: dt.date, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The checks that ran on partition day ``day``: failures first, then by table and check.

    Reads only the day's partition. ``columns`` must include ``passed``, ``table`` and ``check``
    when given; all columns are read by default.
    """
    return _read(lake, pc.field("day") == pa.scalar(day, pa.date32()), columns)


def failed_checks(
    lake: Lake, day: dt.date, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The checks that failed on partition day ``day``, by table and check ([] when none did)."""
    on_day = pc.field("day") == pa.scalar(day, pa.date32())
    return _read(lake, on_day & (pc.field("passed") == pa.scalar(False)), columns)


def _read(lake: Lake, where: pc.Expression, columns: Sequence[str] | None) -> list[dict[str, Any]]:
    rows = lake.read_arrow(
        OPS_DQ_RESULTS, filter=where, columns=list(columns) if columns else None
    ).to_pylist()
    return sorted(rows, key=lambda r: (r["passed"], r["table"], r["check"]))
