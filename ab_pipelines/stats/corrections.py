"""Multiple-testing corrections: Holm (family-wise error) and Benjamini–Hochberg (false discovery).

The family (CONTRACTS section 5) is the primary and secondary metrics × non-baseline variants of one
experiment on one day; guardrails are excluded. The adjusted p-value is the one decisions use.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["adjust_pvalues"]


def adjust_pvalues(pvalues: ArrayLike, method: Literal["holm", "bh"] = "holm") -> Any:
    """Adjusted p-values, monotone in the raw ones; reject a hypothesis when its value is <= α.

    - ``"holm"``: Holm (1979), "A simple sequentially rejective multiple test procedure":
      p̃_(i) = max_{j<=i} min(1, (m − j + 1) p_(j)).
    - ``"bh"``: Benjamini & Hochberg (1995), "Controlling the false discovery rate":
      p̃_(i) = min_{j>=i} min(1, m p_(j) / j).

    NaN p-values (comparisons that could not be computed) stay NaN in place and are left out of the
    family: m counts the finite ones. A 2-D input is one family per row (pad with NaN).

    Args:
        pvalues: raw p-values, the family on the last axis.
        method: ``"holm"`` or ``"bh"``.

    Returns:
        An array of the input's shape.

    Examples:
        >>> adjust_pvalues([0.01, 0.04], method="holm").tolist()
        [0.02, 0.04]
        >>> adjust_pvalues([0.01, 0.04, float("nan"), 0.03], method="bh").tolist()
        [0.03, 0.04, nan, 0.04]
    """
    if method not in ("holm", "bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    shape = p.shape
    p = np.atleast_1d(p)
    order = np.argsort(p, axis=-1)  # NaN sort last
    ps = np.take_along_axis(p, order, axis=-1)
    m = np.sum(~np.isnan(p), axis=-1, keepdims=True)
    j = np.arange(1, p.shape[-1] + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - j + 1) * ps), axis=-1)
    else:
        scaled = np.minimum(1.0, m * ps / j)
        # fmin ignores the trailing NaNs while taking the running minimum from the largest p.
        adj = np.flip(np.fmin.accumulate(np.flip(scaled, -1), axis=-1), -1)
    adj = np.where(np.isnan(ps), np.nan, adj)
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    return out.reshape(shape)
