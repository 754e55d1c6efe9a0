"""The Spark-side assigner: the CONTRACTS section 6 rules, vectorized over a column of units.

It reads the same compiled experiments as the SDK (docs/edge-config.md) and hashes with the same
contract (``ab_pipelines.contracts.hashing``), but applies the rules in a separate implementation
(numpy over whole batches, inside a pandas UDF), so the corpus and 200,000 random users can prove
that both agree. No sticky store: that lives only in clients. Holdouts: pass the payload's
``holdouts`` object; the ones of the experiment's layer come from the contract
(``layer_holdouts``) and take their units out before the layer range and the hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ab_pipelines.contracts.hashing import bucket
from ab_pipelines.contracts.payload import fixed_variant, layer_holdouts

__all__ = ["assign_frame", "spark_assign"]


def _buckets(salt: str, units: np.ndarray) -> np.ndarray:
    """The contract's ``bucket(salt, unit)`` of every unit."""
    return np.fromiter((bucket(salt, u) for u in units), dtype=np.int64, count=len(units))


def assign_frame(
    units: pd.Series,
    attributes: pd.Series | None,
    exp: dict,
    holdouts: Mapping | None = None,
) -> pd.Series:
    """The variant (or None) of each row for one compiled experiment.

    ``units`` holds the user ids; ``attributes`` JSON objects as text (or dicts), or None;
    ``holdouts`` the payload's ``holdouts`` object (None: no holdouts).
    """
    n = len(units)
    attrs = (
        [a if isinstance(a, dict) else (json.loads(a) if a else {}) for a in attributes]
        if attributes is not None
        else [{}] * n
    )
    # Values are compared and hashed as text; a missing, null or empty unit means "no unit".
    raw = (
        units.to_numpy(dtype=object)
        if exp["unit"] == "user_id"
        else [a.get(exp["unit"]) for a in attrs]
    )
    unit = np.array([None if u is None or u == "" else str(u) for u in raw], dtype=object)
    has_unit = np.array([u is not None for u in unit], dtype=bool)
    # object arrays, not numpy strings: those drop trailing NULs and pad every id to the longest
    unit_text = np.array([u if u is not None else "" for u in unit], dtype=object)
    out = np.full(n, None, dtype=object)

    targeted = np.ones(n, dtype=bool)
    for key, allowed in exp["targeting"].items():
        allowed = {str(x) for x in allowed}
        targeted &= np.array([a.get(key) is not None and str(a.get(key)) in allowed for a in attrs])

    # Rule 3b: a held-out unit gets None whatever the status (a shipped variant included).
    held_out = np.zeros(n, dtype=bool)
    for held in layer_holdouts(holdouts, exp["layer"]):
        hb = _buckets(held.salt, unit_text)
        held_out |= (hb >= held.lo) & (hb < held.hi)
    status = exp["status"]
    if status in ("killed", "stopped"):
        out[has_unit & ~held_out] = fixed_variant(status, exp["variants"], exp["serve_variant"])
    elif status == "running":
        live = has_unit & targeted & ~held_out
        if exp["layer"] is not None:
            lo, hi = exp["layer_buckets"]
            lb = _buckets(exp["layer"], unit_text)
            live &= (lb >= lo) & (lb < hi)
        b = _buckets(exp["salt"], unit_text)
        for variant, (lo, hi) in zip(exp["variants"], exp["variant_buckets"], strict=True):
            out[live & (b >= lo) & (b < hi)] = variant
    overrides = exp["overrides"]
    if overrides:
        forced = np.array([overrides.get(u) if u is not None else None for u in unit], dtype=object)
        hit = np.array([f is not None for f in forced])
        out[hit] = forced[hit]
    return pd.Series(out, index=units.index, dtype=object)


def spark_assign(unit_col, attributes_col, exp: dict, holdouts: Mapping | None = None):
    """A Spark Column: the variant of each row for the compiled experiment ``exp`` (with the
    payload's ``holdouts`` object, if any)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("string")
    def _assign(units: pd.Series, attributes: pd.Series) -> pd.Series:
        return assign_frame(units, attributes, exp, holdouts)

    return _assign(unit_col, attributes_col)
