"""Compare tables of two runs of the same input: counts and text exact, floats to a tolerance.

Engines sum doubles in parallel, so the order in which partial sums meet, and with it the last
bits of a sum, can change from one run to the next (docs/engines.md, "Floating-point sums"):
a float matches when ``|a - b| <= rtol * max(|a|, |b|) + atol``. Everything else must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from ab_pipelines.lake import TABLES, Lake
from ab_pipelines.settings import paths

__all__ = [
    "GOLD",
    "RTOL",
    "differences",
    "max_relative_difference",
    "table_differences",
    "table_rows",
]

GOLD = [spec for spec in TABLES.values() if spec.tier == "gold"]
RTOL, ATOL = 1e-9, 1e-12


def table_rows(home: Path, spec) -> list[dict]:
    """The table's current rows as dicts, sorted by partition and keys."""
    return _sorted(Lake(paths(home)).read_arrow(spec), [*spec.partition_by, *spec.keys])


def _sorted(table: pa.Table, keys: Sequence[str]) -> list[dict]:
    # every column but lists (Arrow cannot sort by a list; the keys decide the order anyway)
    order = list(keys) or [f.name for f in table.schema if not pa.types.is_list(f.type)]
    return table.sort_by([(c, "ascending") for c in order]).to_pylist()


def close(a, b, rtol: float = RTOL, atol: float = ATOL) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, list) and isinstance(b, list):  # e.g. cell means, Z'Z: element by element
        return len(a) == len(b) and all(close(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b)) + atol
    return a == b


def table_differences(
    a: pa.Table,
    b: pa.Table,
    keys: Sequence[str] = (),
    name: str = "table",
    rtol: float = RTOL,
    atol: float = ATOL,
    ignore: Sequence[str] = (),
) -> list[str]:
    """Every difference between two tables as a sentence (rows matched after sorting by ``keys``,
    or by every column); an empty list means they agree."""
    if a.column_names != b.column_names:
        return [f"{name}: columns {a.column_names} against {b.column_names}"]
    if a.num_rows != b.num_rows:
        return [f"{name}: {a.num_rows} rows against {b.num_rows}"]
    problems = []
    for ra, rb in zip(_sorted(a, keys), _sorted(b, keys), strict=True):
        for col in a.column_names:
            if col not in ignore and not close(ra[col], rb[col], rtol, atol):
                key = {k: ra[k] for k in keys}
                problems.append(f"{name} {key} {col}: {ra[col]!r} != {rb[col]!r}")
    return problems


def differences(
    home_a: Path, home_b: Path, specs, rtol: float = RTOL, ignore: Sequence[str] = ()
) -> tuple[dict, list[str]]:
    """(rows per table, every difference as a sentence) between the lakes of two homes."""
    counts, problems = {}, []
    for spec in specs:
        a, b = (Lake(paths(h)).read_arrow(spec) for h in (home_a, home_b))
        counts[spec.qualified] = (a.num_rows, b.num_rows)
        problems += table_differences(
            a, b, [*spec.partition_by, *spec.keys], spec.qualified, rtol, ignore=ignore
        )
    return counts, problems


def max_relative_difference(home_a: Path, home_b: Path, spec) -> float:
    """The largest relative difference between matching float cells (0.0: identical to the bit)."""
    worst = 0.0
    for ra, rb in zip(table_rows(home_a, spec), table_rows(home_b, spec), strict=False):
        for col, typ in zip(spec.schema.names, spec.schema.types, strict=True):
            if pa.types.is_floating(typ) and ra[col] is not None and rb[col] is not None:
                x, y = ra[col], rb[col]
                if x != y and not (math.isnan(x) and math.isnan(y)):
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst
