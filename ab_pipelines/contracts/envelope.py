"""The Kafka dump format of CONTRACTS section 2, written once for the writers and for landing.

Writers (the SDK's sinks and producer, the simulator, the connector) build records with
:func:`envelope`, event values with :func:`exposure_event` / :func:`metric_event` and their ``ts``
with :func:`iso_ms`, and name files with :func:`dump_name` under :func:`day_dir`; landing reads
them against :data:`ENVELOPE_FIELDS`, :data:`ENVELOPE_INT_LIMITS`, :data:`TOPICS` and the limits
below, and quarantines with one of :data:`REASON_CODES`. Standard library only.

    $ABP_HOME/raw/<topic>/date=YYYY-MM-DD/<topic>+<partition>+<first_offset>.jsonl[.gz]

    {"topic": "exposures", "partition": 0, "offset": 1842, "timestamp": 1793491200123,
     "key": "user-42", "value": {...event...}}
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = [
    "DUMP_SUFFIXES",
    "ENVELOPE_FIELDS",
    "ENVELOPE_INT_LIMITS",
    "EXPOSURES",
    "MAX_LINE_BYTES",
    "MS_SUFFIX",
    "METRIC_EVENTS",
    "REASON_CODES",
    "SDK_SOURCE",
    "TOPICS",
    "TS_MAX_AFTER_DAYS",
    "TS_MAX_BEFORE_DAYS",
    "TopicSpec",
    "day_dir",
    "dump_name",
    "dump_name_pattern",
    "envelope",
    "exposure_event",
    "iso_ms",
    "metric_event",
    "second_stamp",
]

EXPOSURES = "exposures"
METRIC_EVENTS = "metric_events"
SDK_SOURCE = "sdk-python"  # the exposures' ``source`` written by this SDK

ENVELOPE_FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value")
_INT64 = 1 << 63
# Kafka partitions are int32, offsets int64; the timestamp (ms) must fit int64 once in µs.
ENVELOPE_INT_LIMITS = {"partition": 1 << 31, "offset": _INT64, "timestamp": _INT64 // 1000}

MAX_LINE_BYTES = 1 << 20  # a line over 1 MiB is quarantined as too_large
TS_MAX_BEFORE_DAYS = 7  # ts may be at most 7 days before the arrival day starts ...
TS_MAX_AFTER_DAYS = 1  # ... and at most 1 day after it ends: [D - 7d, D + 1d + 1d)

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
    EXPOSURES: TopicSpec(
        EXPOSURES,
        required=("event_id", "user_id", "experiment_id", "variant", "ts"),
        optional={"config_version": "int", "source": "str", "attributes": "object"},
    ),
    METRIC_EVENTS: TopicSpec(
        METRIC_EVENTS,
        required=("event_id", "user_id", "event", "ts"),
        optional={"value": "number", "properties": "object"},
    ),
}

DUMP_SUFFIXES = (".jsonl", ".jsonl.gz")


def day_dir(topic: str, day: dt.date) -> str:
    """The folder of a topic's arrival day, relative to the raw folder: ``<topic>/date=<day>``."""
    return f"{topic}/date={day.isoformat()}"


def dump_name(topic: str, partition: int, first_offset: int, gzipped: bool = False) -> str:
    """A dump file's name: ``<topic>+<partition>+<first_offset>.jsonl[.gz]``."""
    return f"{topic}+{partition}+{first_offset}.jsonl" + (".gz" if gzipped else "")


def dump_name_pattern(topic: str, partition: int) -> re.Pattern[str]:
    """Matches the dump names of one topic and partition; group 1 is the first offset."""
    return re.compile(rf"^{re.escape(topic)}\+{partition}\+(\d+)\.jsonl(\.gz)?$")


def envelope(
    topic: str, partition: int, offset: int, timestamp_ms: int, key: str | None, value
) -> dict:
    """A Kafka record envelope as a sink connector writes it."""
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        "key": key,
        "value": value,
    }


def exposure_event(event_id: str, ts: str, fields: tuple, source: str = SDK_SOURCE) -> dict:
    """The ``exposures`` value; ``fields`` is (user_id, experiment_id, variant, config_version,
    attributes already copied or None)."""
    user_id, experiment_id, variant, config_version, attributes = fields
    return {
        "event_id": event_id,
        "user_id": user_id,
        "experiment_id": experiment_id,
        "variant": variant,
        "ts": ts,
        "config_version": config_version,
        "source": source,
        "attributes": attributes or {},
    }


def metric_event(event_id: str, ts: str, fields: tuple) -> dict:
    """The ``metric_events`` value; ``fields`` is (user_id, event, value, properties or None)."""
    user_id, event, value, properties = fields
    return {
        "event_id": event_id,
        "user_id": user_id,
        "event": event,
        "value": value,
        "ts": ts,
        "properties": properties or {},
    }


# ``ts`` = second_stamp(epoch_ms // 1000) + MS_SUFFIX[epoch_ms % 1000]; hot writers inline it.
MS_SUFFIX = tuple(f".{ms:03d}Z" for ms in range(1000))


def second_stamp(epoch_s: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) of an epoch second: the first part of an event's ``ts``."""
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


_second: tuple[int, str] = (-1, "")


def iso_ms(epoch_ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC) of an epoch time in milliseconds, the events' ``ts``;
    the part up to the second is cached, so a stream of events costs one strftime per second.

    >>> iso_ms(1793491200123)
    '2026-11-01T00:00:00.123Z'
    """
    global _second
    sec, ms = divmod(epoch_ms, 1000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, second_stamp(sec))
    return cached[1] + MS_SUFFIX[ms]
