"""The Kafka dump format's vocabulary (CONTRACTS section 2): topics, fields, reason codes.

The Arrow schema of a parsed line is defined once here; the bronze tables' schemas in
``ab_pipelines.lake.tables`` are projections of it.
"""

from __future__ import annotations

import pyarrow as pa

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

MAX_LINE_BYTES = 1 << 20  # a line over 1 MiB is quarantined as too_large
TS_MAX_BEFORE_DAYS = 7  # ts may be at most 7 days before the arrival day starts ...
TS_MAX_AFTER_DAYS = 1  # ... and at most 1 day after it ends: [D - 7d, D + 1d + 1d)
# Two copies of one event share its ts, so both arrived within [ts - 2d, ts + 7d]: 9 arrival days
# cover every possible pair, and the dedupe only has to look that far (docs/landing.md).
DEDUPE_WINDOW_DAYS = TS_MAX_BEFORE_DAYS + TS_MAX_AFTER_DAYS + 1

REASON_CODES = (
    "bad_encoding",
    "bad_json",
    "bad_envelope",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "ts_out_of_range",
    "unknown_topic",
    "unknown_experiment",
    "unknown_variant",
    "too_large",
    "corrupt_file",
)


class TopicSpec:
    """The event fields of one topic: required strings, optional fields and their kinds."""

    def __init__(self, name: str, required: tuple[str, ...], optional: dict[str, str]):
        self.name = name
        self.required = required  # all strings except "ts", which is an ISO-8601 string
        self.optional = optional  # field -> "str" | "int" | "number" | "object"
        self.known = frozenset(required) | frozenset(optional)


TOPICS: dict[str, TopicSpec] = {
    "exposures": TopicSpec(
        "exposures",
        required=("event_id", "user_id", "experiment_id", "variant", "ts"),
        optional={"config_version": "int", "source": "str", "attributes": "object"},
    ),
    "metric_events": TopicSpec(
        "metric_events",
        required=("event_id", "user_id", "event", "ts"),
        optional={"value": "number", "properties": "object"},
    ),
}

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
