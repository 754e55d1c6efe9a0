"""ops.dq_results: every check result, so the dashboard can show data quality without Dagster."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import orjson
import pyarrow as pa

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import OPS_DQ_RESULTS
from ab_pipelines.quality.suites import CheckOutcome

__all__ = ["record_outcomes"]


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
