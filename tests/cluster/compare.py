"""Compare the lake tables of two runs of the same input: counts exact, floats to a relative 1e-9."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from ab_pipelines.lake import TABLES, Lake
from ab_pipelines.settings import paths

__all__ = ["GOLD", "differences", "max_relative_difference", "table_rows"]

GOLD = [spec for spec in TABLES.values() if spec.tier == "gold"]


def table_rows(home: Path, spec) -> list[dict]:
    """The table's current rows as dicts, sorted by partition and keys."""
    table = Lake(paths(home)).read_arrow(spec)
    order = [*spec.partition_by, *spec.keys] or spec.schema.names
    return table.sort_by([(c, "ascending") for c in order]).to_pylist()


def _close(a, b, rtol: float) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def differences(home_a: Path, home_b: Path, specs, rtol: float = 1e-9) -> tuple[dict, list[str]]:
    """(rows per table, every difference as a sentence); no difference means an empty list."""
    counts, problems = {}, []
    for spec in specs:
        a, b = table_rows(home_a, spec), table_rows(home_b, spec)
        counts[spec.qualified] = (len(a), len(b))
        if len(a) != len(b):
            problems.append(f"{spec.qualified}: {len(a)} rows against {len(b)}")
            continue
        for ra, rb in zip(a, b, strict=True):
            for col in spec.schema.names:
                if not _close(ra[col], rb[col], rtol):
                    key = {k: ra[k] for k in (*spec.partition_by, *spec.keys)}
                    problems.append(f"{spec.qualified} {key} {col}: {ra[col]!r} != {rb[col]!r}")
    return counts, problems


def max_relative_difference(home_a: Path, home_b: Path, spec) -> float:
    """The largest relative difference between matching float cells (0.0: identical to the bit)."""
    worst = 0.0
    for ra, rb in zip(table_rows(home_a, spec), table_rows(home_b, spec), strict=False):
        for col, typ in zip(spec.schema.names, spec.schema.types, strict=True):
            if pa.types.is_floating(typ) and ra[col] is not None and rb[col] is not None:
                a, b = ra[col], rb[col]
                if a != b and not (math.isnan(a) and math.isnan(b)):
                    worst = max(worst, abs(a - b) / max(abs(a), abs(b)))
    return worst
