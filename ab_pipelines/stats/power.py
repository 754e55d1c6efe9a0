"""Power analysis for a two-sided, fixed-horizon two-sample test (``abp plan``, ``analysis.mde``).

Normal approximation (e.g. Chow, Shao & Wang 2008, "Sample Size Calculations in Clinical Research",
§3.2): to detect an absolute difference δ with a two-sided level-α test and power 1 − β, with
n_a units in the baseline and r·n_a in the treatment,

    n_a = (z_{1−α/2} + z_{1−β})² · σ² · (1 + 1/r) / δ².

A relative MDE is δ = mde · |mean|. The variance σ² is the per-unit variance of the metric
(for a ratio metric, the delta-method variance of the linearised ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["days_needed", "mde_for", "sample_size"]


def _z_sum(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must lie in (0, 1)")
    return float(special.ndtri(1.0 - alpha / 2.0) + special.ndtri(power))


def _out(x: Any) -> Any:
    return x.item() if np.ndim(x) == 0 else x


def sample_size(
    mean: ArrayLike,
    variance: ArrayLike,
    mde: ArrayLike,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
    ratio: float = 1.0,
) -> Any:
    """Units needed in the baseline arm (the treatment needs ``ratio`` times as many).

    Args:
        mean: baseline mean of the metric (used when ``relative``).
        variance: per-unit variance of the metric.
        mde: minimum detectable effect, relative (0.02 = 2%) or absolute.
        alpha: two-sided significance level.
        power: probability of detecting an effect of size ``mde``.
        relative: whether ``mde`` is relative to ``mean``.
        ratio: n_treatment / n_baseline.

    Returns:
        An int (or int array), rounded up; -1 where the MDE or the mean is 0 (nothing detectable).

    Examples:
        >>> sample_size(mean=0.1, variance=0.09, mde=0.05)
        56512
        >>> sample_size(mean=0.1, variance=0.09, mde=0.005, relative=False)
        56512
    """
    z = _z_sum(alpha, power)
    delta = np.abs(np.asarray(mde, dtype=np.float64))
    if relative:
        delta = delta * np.abs(np.asarray(mean, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        n = z**2 * np.asarray(variance, dtype=np.float64) * (1.0 + 1.0 / ratio) / delta**2
    n = np.where(np.isfinite(n), np.ceil(n - 1e-9), -1).astype(np.int64)
    return _out(n)


def mde_for(
    n_per_arm: ArrayLike,
    mean: ArrayLike,
    variance: ArrayLike,
    alpha: float = 0.05,
    power: float = 0.8,
    relative: bool = True,
) -> Any:
    """The smallest effect detectable with ``n_per_arm`` units in each of two arms.

    δ = (z_{1−α/2} + z_{1−β}) · sqrt(2σ²/n), divided by |mean| when ``relative`` (NaN if mean is 0).

    Examples:
        >>> round(mde_for(56512, mean=0.1, variance=0.09), 4)
        0.05
    """
    z = _z_sum(alpha, power)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = z * np.sqrt(
            2.0 * np.asarray(variance, dtype=np.float64) / np.asarray(n_per_arm, dtype=np.float64)
        )
        if relative:
            m = np.abs(np.asarray(mean, dtype=np.float64))
            d = np.where(m > 0, d / m, np.nan)
    return _out(np.asarray(d, dtype=np.float64))


def days_needed(
    users_per_day_per_arm: ArrayLike, n_per_arm: ArrayLike, n_so_far: ArrayLike = 0
) -> Any:
    """Whole days until each arm reaches ``n_per_arm`` units (0 if already there; -1 if no traffic).

    Examples:
        >>> days_needed(1000, 56512)
        57
        >>> days_needed(1000, 56512, n_so_far=50000)
        7
    """
    rate = np.asarray(users_per_day_per_arm, dtype=np.float64)
    left = np.maximum(
        np.asarray(n_per_arm, dtype=np.float64) - np.asarray(n_so_far, dtype=np.float64), 0.0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(left == 0, 0.0, np.where(rate > 0, np.ceil(left / rate), -1.0))
    return _out(d.astype(np.int64))
