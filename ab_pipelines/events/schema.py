"""Landing's view of the Kafka dump format (CONTRACTS section 2): the Arrow schema of a parsed line.

The format's vocabulary (topics and their fields, the envelope, the limits, the reason codes) is
the contract that the writers share, :mod:`ab_pipelines.contracts.envelope`; it is re-exported
here. The Arrow schema of a parsed line is defined once here; the bronze tables' schemas in
``ab_pipelines.lake.tables`` are projections of it.
"""

from __future__ import annotations

import pyarrow as pa

from ab_pipelines.contracts.envelope import (
    MAX_LINE_BYTES,
    REASON_CODES,
    TOPICS,
    TS_MAX_AFTER_DAYS,
    TS_MAX_BEFORE_DAYS,
    TopicSpec,
)

__all__ = [
    "DEDUPE_WINDOW_DAYS",
    "MAX_LINE_BYTES",
    "PARSED_SCHEMA",
    "REASON_CODES",
    "REPEATED_COLUMNS",
    "TOPICS",
    "TS_MAX_AFTER_DAYS",
    "TS_MAX_BEFORE_DAYS",
    "TopicSpec",
]

# Two copies of one event share its ts, so both arrived within [ts - 2d, ts + 7d]: 9 arrival days
# cover every possible pair, and the dedupe only has to look that far (docs/landing.md).
DEDUPE_WINDOW_DAYS = TS_MAX_BEFORE_DAYS + TS_MAX_AFTER_DAYS + 1

_TS = pa.timestamp("us", tz="UTC")

# Columns whose values repeat across a dump file's rows (dictionary-encoded in parquet).
REPEATED_COLUMNS = (
    "topic",
    "kafka_partition",
    "experiment_id",
    "variant",
    "event",
    "config_version",
    "source",
    "attributes",
    "properties",
    "source_file",
    "reason",
)

# One row per line read: landed candidates (status "ok") and quarantined lines alike.
PARSED_SCHEMA = pa.schema(
    [
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("arrival_date", pa.date32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
        ("raw_bytes", pa.int64()),
        ("topic", pa.string()),
        ("kafka_partition", pa.int64()),
        ("kafka_offset", pa.int64()),
        ("kafka_timestamp", _TS),
        ("kafka_key", pa.string()),
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("experiment_id", pa.string()),
        ("variant", pa.string()),
        ("event", pa.string()),
        ("value", pa.float64()),
        ("ts", _TS),
        ("config_version", pa.int64()),
        ("source", pa.string()),
        ("attributes", pa.string()),
        ("properties", pa.string()),
        ("extra", pa.string()),
    ]
)
