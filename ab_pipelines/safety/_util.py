"""Small helpers shared by the safety modules: JSON without NaN, a file lock, UTC now."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import TableSpec


def utc_now() -> dt.datetime:
    """The platform clock (``ABP_NOW`` when set, else the wall clock); see ab_pipelines.settings."""
    from ab_pipelines.settings import now

    return now()


def as_utc(t: dt.datetime | None) -> dt.datetime:
    """``t`` (or now) as an aware UTC datetime; a naive one is taken to be UTC already."""
    if t is None:
        return utc_now()
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def json_safe(v: Any) -> Any:
    """``v`` with NaN/inf as None, dates as ISO strings, numpy scalars as Python numbers."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [json_safe(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, int | float):  # numpy scalars
        v = v.item()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, int):
        return v
    return str(v)


def num(x: Any) -> float | None:
    """A finite float, or None (never NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def dumps(v: Any) -> str:
    """Canonical JSON (sorted keys), null instead of NaN."""
    return json.dumps(json_safe(v), sort_keys=True, allow_nan=False, separators=(",", ":"))


@contextlib.contextmanager
def table_lock(lake: Lake, spec: TableSpec) -> Iterator[None]:
    """One writer at a time for a read-modify-write of ``spec`` (a lock file beside the table)."""
    path: Path = lake.path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{spec.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
