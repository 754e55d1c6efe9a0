"""Sample ratio mismatch: are the analysed users split as configured?

Pearson's χ² goodness-of-fit test (Pearson 1900) of the observed counts against the configured
weights; for the practice see Fabijan et al. (2019), "Diagnosing Sample Ratio Mismatch in Online
Controlled Experiments", KDD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["SRM_ALPHA", "SRM_MIN_EXPECTED", "SrmResult", "srm_test"]

#: p-value below which a mismatch is flagged.
SRM_ALPHA = 0.001
#: a mismatch is flagged only once every variant expects at least this many users.
SRM_MIN_EXPECTED = 100


@dataclass(frozen=True)
class SrmResult:
    """Outcome of :func:`srm_test`.

    Attributes:
        p_value: P(χ²_{k−1} >= statistic); NaN when there are no users.
        statistic: Pearson's Σ (observed − expected)² / expected.
        flagged: p_value < 0.001 and every expected count >= 100.
        expected: expected counts, total × normalised weights.
    """

    p_value: Any
    statistic: Any
    flagged: Any
    expected: Any


def srm_test(counts: ArrayLike, weights: ArrayLike) -> SrmResult:
    """Pearson χ² test of the variants' user counts against their configured weights.

    Variants are on the last axis, so a 2-D input tests one experiment per row. Weights need not
    sum to 1; they are normalised.

    Args:
        counts: analysed users per variant.
        weights: configured weights per variant (positive).

    Returns:
        An :class:`SrmResult`; floats/bools for 1-D input, arrays for batched input.

    Examples:
        >>> r = srm_test([1000, 1200], [0.5, 0.5])
        >>> round(r.statistic, 3), f"{r.p_value:.2e}", r.flagged
        (18.182, '2.01e-05', True)
        >>> srm_test([5012, 4988], [0.5, 0.5]).flagged
        False
    """
    obs = np.asarray(counts, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    obs, w = np.broadcast_arrays(obs, w)
    k = obs.shape[-1]
    total = obs.sum(axis=-1, keepdims=True)
    expected = total * w / w.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.sum((obs - expected) ** 2 / expected, axis=-1)
    stat = np.where(total[..., 0] > 0, stat, np.nan)
    p = special.chdtrc(k - 1, stat)  # χ² survival function
    flagged = (p < SRM_ALPHA) & np.all(expected >= SRM_MIN_EXPECTED, axis=-1)
    if stat.ndim == 0:
        return SrmResult(float(p), float(stat), bool(flagged), expected)
    return SrmResult(p, stat, flagged, expected)
