"""The bodies of ``POST /assign`` and ``POST /events``, checked field by field.

A bad body is a ``Refusal`` (400) whose detail names the field (``attributes.plan``,
``events[3].value``) and says what it must be. Ids (``user_id``, ``anonymous_id``) are strings;
an integer is taken as its decimal string, as ``Tracker.track`` does; a boolean, a float, an
array or an object is refused. Fields the edge does not know are ignored (newer clients).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import orjson

from ab_pipelines.edge.errors import Refusal

__all__ = [
    "MAX_EVENTS",
    "AssignRequest",
    "MetricEvent",
    "assign_request",
    "events_request",
    "parse_json",
]

MAX_ID_CHARS = 512
MAX_EVENTS = 500
MAX_EXPERIMENTS = 1000
_LAST_TS = 253402300799  # 9999-12-31T23:59:59Z: the last time an ISO-8601 stamp can hold


@dataclass(frozen=True)
class AssignRequest:
    user_id: str | None
    anonymous_id: str | None
    attributes: dict[str, Any]
    experiments: list[str] | None


@dataclass(frozen=True)
class MetricEvent:
    """One event as ``Tracker.track`` takes it; ``user_id`` None means the anonymous id."""

    user_id: str | None
    event: str
    value: int | float
    properties: dict | None
    ts: float | None


def _kind(v: object) -> str:
    """The JSON name of a value's type, for the refusal."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "an array" if isinstance(v, list) else "an object"


def _bad(field: str, what: str, got: object = ...) -> Refusal:
    detail = f"{field} must be {what}"
    if got is not ...:
        detail += f", not {_kind(got)}"
    return Refusal(400, "bad_field", detail)


def parse_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, "bad_json", f"the body is not JSON: {exc}") from None


def _object(body: object, field: str = "the body") -> dict:
    if not isinstance(body, dict):
        raise _bad(field, "a JSON object", body)
    return body


def _id(v: object, field: str) -> str | None:
    """A unit id: a non-empty string (an integer taken as its decimal string), or absent."""
    if v is None:
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise _bad(field, "a string (or absent)", v)
    if not v or len(v) > MAX_ID_CHARS:
        raise _bad(field, f"a string of 1 to {MAX_ID_CHARS} characters (or absent)")
    return v


def assign_request(body: object) -> AssignRequest:
    body = _object(body)
    attributes = body.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        raise _bad("attributes", "an object of scalars", attributes)
    for k, v in attributes.items():
        if isinstance(v, dict | list):
            raise _bad(f"attributes.{k}", "a string, number, boolean or null", v)
    experiments = body.get("experiments")
    if experiments is not None:
        if not isinstance(experiments, list):
            raise _bad("experiments", "an array of experiment ids", experiments)
        if len(experiments) > MAX_EXPERIMENTS:
            raise _bad("experiments", f"at most {MAX_EXPERIMENTS} ids")
        for i, e in enumerate(experiments):
            if not isinstance(e, str) or not e:
                raise _bad(f"experiments[{i}]", "a non-empty string", e)
    return AssignRequest(
        user_id=_id(body.get("user_id"), "user_id"),
        anonymous_id=_id(body.get("anonymous_id"), "anonymous_id"),
        attributes=attributes,
        experiments=experiments,
    )


def _ts(v: object, field: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        if not (math.isfinite(v) and 0 < v <= _LAST_TS):
            raise _bad(field, f"epoch seconds between 0 and {_LAST_TS}")
        return float(v)
    if isinstance(v, str):
        try:
            t = dt.datetime.fromisoformat(v)
        except ValueError:
            raise _bad(field, "an ISO-8601 time with a zone (2026-11-05T10:00:00Z)") from None
        if t.tzinfo is None:
            raise _bad(field, "an ISO-8601 time with a zone (Z or +01:00)")
        return t.timestamp()
    raise _bad(field, "an ISO-8601 time with a zone or epoch seconds", v)


def _event(e: object, at: str) -> MetricEvent:
    e = _object(e, at.rstrip(".") or "the body")
    name = e.get("event")
    if not isinstance(name, str) or not name.strip():
        raise _bad(f"{at}event", "a non-empty string", name if name is not None else ...)
    value = e.get("value", 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{at}value", "a finite number", value)
    properties = e.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise _bad(f"{at}properties", "an object", properties)
    return MetricEvent(
        _id(e.get("user_id"), f"{at}user_id"), name, value, properties, _ts(e.get("ts"), f"{at}ts")
    )


def events_request(body: object) -> tuple[str | None, list[MetricEvent]]:
    """``(anonymous_id given in the body, events)`` of one event object or ``{"events": [...]}``."""
    body = _object(body)
    anonymous_id = _id(body.get("anonymous_id"), "anonymous_id")
    if "events" not in body:
        return anonymous_id, [_event(body, "")]
    events = body["events"]
    if not isinstance(events, list):
        raise _bad("events", "an array of event objects", events)
    if not events or len(events) > MAX_EVENTS:
        raise _bad("events", f"an array of 1 to {MAX_EVENTS} events")
    return anonymous_id, [_event(e, f"events[{i}].") for i, e in enumerate(events)]
