"""Guardrail breach: the harm bound of a guardrail metric lies wholly beyond its margin.

The bounds to pass are the always-valid ones: the relative-change confidence sequence of
``compare(..., relative=True, sequential_tuning=N*)`` (CONTRACTS section 5), so a guardrail can be
checked at every daily look without inflating false alarms. The side of the two-sided (1 − α)
sequence is used as the one-sided bound (conservative: its one-sided level is α/2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["guardrail_bound", "guardrail_breached"]


def guardrail_bound(
    rel_ci_low: ArrayLike, rel_ci_high: ArrayLike, higher_is_better: ArrayLike
) -> Any:
    """The bound on the harmful side: the lower bound when lower is better, else the upper bound.

    Examples:
        >>> float(guardrail_bound(0.011, 0.05, higher_is_better=False))
        0.011
    """
    return np.where(np.asarray(higher_is_better, dtype=bool), rel_ci_high, rel_ci_low)


def guardrail_breached(
    rel_ci_low: ArrayLike, rel_ci_high: ArrayLike, margin: ArrayLike, higher_is_better: ArrayLike
) -> Any:
    """Whether the relative change is harmful beyond ``margin`` with (always-valid) confidence.

    For ``higher_is_better=False`` (e.g. page load time) a breach is ``rel_ci_low > +margin``;
    otherwise it is ``rel_ci_high < −margin``. NaN bounds are never a breach. Vectorized: returns a
    bool for scalar inputs, a bool array otherwise.

    Args:
        rel_ci_low: lower bound of the relative change (always-valid sequential bound).
        rel_ci_high: upper bound of the relative change.
        margin: the tolerated relative harm, e.g. 0.02 (``max_relative_change``).
        higher_is_better: the metric's direction.

    Examples:
        >>> guardrail_breached(0.011, 0.05, 0.02, higher_is_better=False)
        False
        >>> guardrail_breached(0.03, 0.05, 0.02, higher_is_better=False)
        True
        >>> guardrail_breached([-0.09, -0.01], [-0.03, 0.02], 0.02, True).tolist()
        [True, False]
    """
    hib = np.asarray(higher_is_better, dtype=bool)
    margin = np.asarray(margin, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        breached = np.where(
            hib,
            np.asarray(rel_ci_high, dtype=np.float64) < -margin,
            np.asarray(rel_ci_low, dtype=np.float64) > margin,
        )
    return bool(breached) if breached.ndim == 0 else breached
