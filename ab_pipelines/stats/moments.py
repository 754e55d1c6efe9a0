"""Sufficient statistics of one arm: what leaves Spark, and all the statistics library needs.

Every comparison in this package is computed from a handful of sums per arm (n, sums, sums of
squares, cross products), as GrowthBook's gbstats does, so aggregation happens where the data is
and the math stays small. Every field may hold a numpy array: one arm per element, which is how the
pipeline compares thousands of (experiment, metric, variant, segment) cells in one call.

The field names of :class:`RatioMoments` are the column names of ``gold.sufficient_stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Moments", "RatioMoments"]


def _as_float(x: Any) -> Any:
    """A field value as float64 (array or 0-d array), or None when absent."""
    return None if x is None else np.asarray(x, dtype=np.float64)


def _scalar(x: Any) -> Any:
    """A float for a 0-d result, the array otherwise."""
    return float(x) if np.ndim(x) == 0 else x


def _sum(x: Any) -> float:
    return float(np.sum(np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a per-unit metric Y (and its pre-period covariate X) in one arm.

    Attributes:
        n: number of analysed units.
        sum: Σ Y.
        sum_sq: Σ Y².
        pre_sum: Σ X, the pre-period covariate used by CUPED (optional).
        pre_sum_sq: Σ X² (optional).
        sum_cross: Σ X·Y (optional).

    A proportion is a mean of 0/1 values, so ``sum_sq == sum``. Every field accepts a numpy array
    (one arm per element); fields are stored as given.

    Examples:
        >>> m = Moments.from_values([1.0, 2.0, 3.0, 6.0])
        >>> m.n, m.sum, m.sum_sq, round(m.mean, 2), round(m.variance, 4)
        (4, 12.0, 50.0, 3.0, 4.6667)
        >>> int((m + m).n)
        8
    """

    n: ArrayLike
    sum: ArrayLike
    sum_sq: ArrayLike
    pre_sum: ArrayLike | None = None
    pre_sum_sq: ArrayLike | None = None
    sum_cross: ArrayLike | None = None

    @classmethod
    def from_values(cls, y: ArrayLike, x: ArrayLike | None = None) -> Moments:
        """Moments of raw per-unit values ``y`` (and the covariate ``x``), for tests and notebooks."""
        y = np.asarray(y, dtype=np.float64)
        if x is None:
            return cls(n=int(y.size), sum=_sum(y), sum_sq=_sum(y * y))
        x = np.asarray(x, dtype=np.float64)
        return cls(
            n=int(y.size),
            sum=_sum(y),
            sum_sq=_sum(y * y),
            pre_sum=_sum(x),
            pre_sum_sq=_sum(x * x),
            sum_cross=_sum(x * y),
        )

    @property
    def has_pre(self) -> bool:
        """Whether the CUPED covariate sums are present."""
        return (
            self.pre_sum is not None and self.pre_sum_sq is not None and self.sum_cross is not None
        )

    @property
    def mean(self) -> Any:
        """Σ Y / n (NaN when n = 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return _scalar(np.divide(self.sum, self.n, dtype=np.float64))

    @property
    def variance(self) -> Any:
        """Sample variance of Y, (Σ Y² − (Σ Y)²/n)/(n − 1) (NaN when n < 2)."""
        return _scalar(_cov(self.n, self.sum, self.sum, self.sum_sq))

    def __add__(self, other: Moments) -> Moments:
        """Moments of the union of two disjoint groups of units (e.g. two arms pooled)."""
        return _add(self, other)


@dataclass(frozen=True)
class RatioMoments:
    """Sufficient statistics of a ratio metric Σ numerator / Σ denominator in one arm.

    The four per-unit variables are the numerator ``num``, the denominator ``den`` and their
    pre-period twins ``pre_num`` and ``pre_den`` (CUPED covariates). The fields are n, the four sums,
    the four sums of squares and the six cross products; the pre-period ones are optional. The names
    are the column names of ``gold.sufficient_stats``.

    Examples:
        >>> r = RatioMoments.from_values(num=[2.0, 0.0, 4.0], den=[1.0, 1.0, 2.0])
        >>> r.n, r.num_sum, r.den_sum, r.num_den_sum, round(r.mean, 4)
        (3, 6.0, 4.0, 10.0, 1.5)
    """

    n: ArrayLike
    num_sum: ArrayLike
    num_sum_sq: ArrayLike
    den_sum: ArrayLike
    den_sum_sq: ArrayLike
    num_den_sum: ArrayLike
    pre_num_sum: ArrayLike | None = None
    pre_num_sum_sq: ArrayLike | None = None
    pre_den_sum: ArrayLike | None = None
    pre_den_sum_sq: ArrayLike | None = None
    pre_num_pre_den_sum: ArrayLike | None = None
    num_pre_num_sum: ArrayLike | None = None
    num_pre_den_sum: ArrayLike | None = None
    den_pre_num_sum: ArrayLike | None = None
    den_pre_den_sum: ArrayLike | None = None

    @classmethod
    def from_values(
        cls,
        num: ArrayLike,
        den: ArrayLike,
        pre_num: ArrayLike | None = None,
        pre_den: ArrayLike | None = None,
    ) -> RatioMoments:
        """Moments of raw per-unit numerators and denominators (and their pre-period twins)."""
        m = np.asarray(num, dtype=np.float64)
        d = np.asarray(den, dtype=np.float64)
        base = dict(
            n=int(m.size),
            num_sum=_sum(m),
            num_sum_sq=_sum(m * m),
            den_sum=_sum(d),
            den_sum_sq=_sum(d * d),
            num_den_sum=_sum(m * d),
        )
        if pre_num is None or pre_den is None:
            return cls(**base)
        pm = np.asarray(pre_num, dtype=np.float64)
        pd = np.asarray(pre_den, dtype=np.float64)
        return cls(
            **base,
            pre_num_sum=_sum(pm),
            pre_num_sum_sq=_sum(pm * pm),
            pre_den_sum=_sum(pd),
            pre_den_sum_sq=_sum(pd * pd),
            pre_num_pre_den_sum=_sum(pm * pd),
            num_pre_num_sum=_sum(m * pm),
            num_pre_den_sum=_sum(m * pd),
            den_pre_num_sum=_sum(d * pm),
            den_pre_den_sum=_sum(d * pd),
        )

    @property
    def has_pre(self) -> bool:
        """Whether all the pre-period fields needed for CUPED are present."""
        return all(getattr(self, f.name) is not None for f in fields(self))

    @property
    def mean(self) -> Any:
        """Σ numerator / Σ denominator (NaN when the denominator sums to 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            den = np.asarray(self.den_sum, dtype=np.float64)
            return _scalar(np.where(den != 0, np.divide(self.num_sum, den), np.nan))

    def __add__(self, other: RatioMoments) -> RatioMoments:
        """Moments of the union of two disjoint groups of units."""
        return _add(self, other)


def _add(a: Any, b: Any) -> Any:
    values = {}
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        values[f.name] = None if x is None or y is None else np.add(x, y)
    return type(a)(**values)


def _cov(n: Any, sum_x: Any, sum_y: Any, sum_xy: Any) -> Any:
    """Sample covariance from sums: (Σxy − Σx·Σy/n)/(n − 1); NaN when n < 2."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (np.asarray(sum_xy, dtype=np.float64) - np.multiply(sum_x, sum_y) / n) / (n - 1.0)
    return np.where(n >= 2, c, np.nan)
