"""Great Expectations 1.x suites for the lake's tables, one named check per property.

Parse-time quarantine is the first line of defence; these checks are the backstop, run on what
was committed. Each check is a small group of GX expectations evaluated on one day's partition
(as pandas, through Arrow); its outcome carries the observed value and a few offending rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.events.parse import ts_window_for
from ab_pipelines.events.schema import TOPICS
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    SILVER_EXPOSURE_COUNTS,
    TableSpec,
)

__all__ = ["CHECKS", "CheckOutcome", "VOLUME_BAND", "check_names", "run_checks"]

SAMPLE_ROWS = 5
# A day's rows must lie within [low × median, high × median] of the previous days' counts.
VOLUME_BAND = (0.5, 2.0)
VOLUME_HISTORY_DAYS = 7
VOLUME_MIN_HISTORY = 3
_ROW_ID = ["source_file", "source_line"]


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named check on one table and day."""

    table: str
    check: str
    day: dt.date
    passed: bool
    observed: dict = field(default_factory=dict)
    sample: list = field(default_factory=list)
    description: str = ""


@dataclass(frozen=True)
class _Check:
    name: str
    description: str
    # (lake, spec, day, known_variants) -> list of GX expectations; [] means "nothing to check"
    build: Callable[..., list]


@cache
def _context():
    """One ephemeral GX context per process (GX 1.x; nothing is written to disk)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def _required(spec: TableSpec) -> list[str]:
    topic = "exposures" if spec is BRONZE_EXPOSURES else "metric_events"
    return [c for c in TOPICS[topic].required if c in spec.schema.names] + [
        "kafka_partition",
        "kafka_offset",
        "source_file",
        "source_line",
    ]


def _not_null(lake, spec, day, known):
    gxe = _gxe()
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in _required(spec)]


def _columns_typed(lake, spec, day, known):
    gxe = _gxe()
    return [gxe.ExpectTableColumnsToMatchSet(column_set=spec.schema.names, exact_match=True)] + [
        gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=["str"])
        for c in ("event_id", "user_id")
    ]


def _unique_ids(lake, spec, day, known):
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["kafka_partition", "kafka_offset"]),
    ]


def _ts_window(lake, spec, day, known):
    lo, hi = ts_window_for(day)
    to_ts = lambda us: dt.datetime.fromtimestamp(us / 1e6, dt.UTC)  # noqa: E731
    return [
        _gxe().ExpectColumnValuesToBeBetween(
            column="ts", min_value=to_ts(lo), max_value=to_ts(hi - 1)
        )
    ]


def _known_variants(lake, spec, day, known: Mapping[str, frozenset[str]]):
    pairs = sorted((e, v) for e, vs in known.items() for v in vs)
    return [
        _gxe().ExpectColumnPairValuesToBeInSet(
            column_A="experiment_id", column_B="variant", value_pairs_set=pairs
        )
    ]


def _finite_values(lake, spec, day, known):
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="value"),
        gxe.ExpectColumnValuesToBeBetween(column="value", min_value=-1e300, max_value=1e300),
    ]


def _volume_band(lake: Lake, spec, day, known):
    """Rows of the day within a band of the median of the previous days that have rows."""
    ds = lake.dataset(spec)
    history = []
    for k in range(1, VOLUME_HISTORY_DAYS + 1):
        d = day - dt.timedelta(days=k)
        n = ds.count_rows(filter=pc.field("arrival_date") == pa.scalar(d, pa.date32()))
        if n:
            history.append(n)
    if len(history) < VOLUME_MIN_HISTORY:
        return []
    median = statistics.median(history)
    lo, hi = VOLUME_BAND
    return [
        _gxe().ExpectTableRowCountToBeBetween(
            min_value=int(lo * median), max_value=int(hi * median) + 1
        )
    ]


_COMMON = [
    _Check("required_fields", "Required fields and Kafka coordinates are present.", _not_null),
    _Check("columns_typed", "Columns are exactly the table's, ids are strings.", _columns_typed),
    _Check("ids_unique", "event_id and (partition, offset) are unique in the day.", _unique_ids),
    _Check("ts_in_window", "ts lies in [arrival day - 7 days, arrival day + 2 days).", _ts_window),
    _Check(
        "volume_in_band",
        f"Rows within {VOLUME_BAND[0]}x..{VOLUME_BAND[1]}x of the median of the previous "
        f"{VOLUME_HISTORY_DAYS} days (once {VOLUME_MIN_HISTORY} days have rows).",
        _volume_band,
    ),
]


def _counts_consistent(lake, spec, day, known):
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToBeBetween(column="units", min_value=1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="exposures", column_B="units", or_equal=True
        ),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["event_date", "experiment_id", "variant"]),
    ]


CHECKS: dict[str, list[_Check]] = {
    BRONZE_EXPOSURES.qualified: [
        *_COMMON,
        _Check(
            "known_experiments",
            "Exposures only for experiments and variants in the registry.",
            _known_variants,
        ),
    ],
    BRONZE_METRIC_EVENTS.qualified: [
        *_COMMON,
        _Check("values_finite", "Every metric value is a finite number.", _finite_values),
    ],
    SILVER_EXPOSURE_COUNTS.qualified: [
        _Check(
            "counts_consistent",
            "At least one user per row, no more users than exposures, one row per key.",
            _counts_consistent,
        ),
    ],
}


def check_names(table: str) -> list[tuple[str, str]]:
    """(name, description) of the checks declared for a table."""
    return [(c.name, c.description) for c in CHECKS.get(table, [])]


def _json_safe(v):
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


def run_checks(
    lake: Lake,
    spec: TableSpec,
    day: dt.date,
    known_variants: Mapping[str, frozenset[str]],
) -> list[CheckOutcome]:
    """Run the table's checks on one arrival day's partition."""
    import great_expectations as gx

    checks = CHECKS.get(spec.qualified, [])
    if not checks:
        return []
    on_day = pc.field("arrival_date") == pa.scalar(day, pa.date32())
    frame = lake.read_arrow(spec, filter=on_day).to_pandas()
    ctx = _context()
    name = f"{spec.tier}_{spec.name}"
    # A fresh in-memory data source per call: the ephemeral context keeps nothing between days.
    source = ctx.data_sources.add_or_update_pandas(name)
    batch_def = source.add_dataframe_asset("day").add_batch_definition_whole_dataframe("whole")
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    id_cols = [c for c in _ROW_ID if c in frame.columns] or [
        c for c in spec.keys if c in frame.columns
    ]
    fmt = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": SAMPLE_ROWS,
        "unexpected_index_column_names": id_cols,
    }
    out = []
    for check in checks:
        expectations = check.build(lake, spec, day, known_variants)
        if not expectations:
            out.append(
                CheckOutcome(
                    spec.qualified,
                    check.name,
                    day,
                    True,
                    {"note": "not enough history to judge"},
                    [],
                    check.description,
                )
            )
            continue
        suite = gx.ExpectationSuite(name=f"{name}_{check.name}", expectations=expectations)
        result = batch.validate(suite, result_format=fmt)
        observed, sample = {}, []
        for r in result.results:
            key = r.expectation_config.type.removeprefix("expect_")
            col = r.expectation_config.kwargs.get("column")
            label = f"{key}[{col}]" if col else key
            res = r.result or {}
            observed[label] = _json_safe(
                res.get("observed_value")
                if res.get("observed_value") is not None
                else {"unexpected": res.get("unexpected_count", 0), "rows": len(frame)}
            )
            if not r.success:
                sample.extend(
                    _json_safe(res.get("partial_unexpected_index_list") or [])[:SAMPLE_ROWS]
                )
        out.append(
            CheckOutcome(
                spec.qualified,
                check.name,
                day,
                bool(result.success),
                observed,
                sample[:SAMPLE_ROWS],
                check.description,
            )
        )
    return out
