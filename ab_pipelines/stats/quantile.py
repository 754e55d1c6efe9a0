"""Quantile metrics (p50, p90, p99 of a per-unit value or of event values): the difference of quantiles.

The method is GrowthBook's (gbstats 0.8.0 ``QuantileStatistic`` / ``QuantileClusteredStatistic``),
Algorithm 1 of Yao, Li & Lu (2024), arXiv:2401.14549, built on the delta method for quantiles of Deng, Knoblich & Lu (2018), "Applying the Delta Method in
Metric Analytics", KDD, §4. Per arm, with ν the quantile level and n the values it is taken over:

1. Q̂ = the ν-th sample quantile; L, U = the sample quantiles at levels ν ∓ z·sqrt(ν(1 − ν)/n*),
   z = Φ⁻¹(0.975), n* = the largest of 100·2^k (k = 0..19) below n (the grid lets SQL compute every
   candidate pair in one pass, before n is known).
2. i.i.d. variance (order-statistic, "outer CI" form): Var_iid(Q̂) = (n*/n)·((n − 1)/n)·((U − L)/(2z))²,
   since (U − L)/(2z) ≈ sqrt(ν(1 − ν)/n*)/f(Q) and Var(Q̂) ≈ ν(1 − ν)/(n f(Q)²) (Bahadur).
3. Events nested in units (event-level): with I_ij = 1{Y_ij ≤ Q̂} and Ī = Σ I_ij / Σ N_i, the
   Bahadur representation gives Var(Q̂) ≈ Var(Ī)/f(Q)², so the i.i.d. variance is scaled by
   Var_c(Ī) / (ν(1 − ν)/n), where Var_c(Ī) is the delta-method variance of the ratio of the per-unit
   sums S_i = Σ_j I_ij and N_i (the ratio-metric formula of ``compare``).

The two arms are then compared by ``compare``'s Welch test on (Q̂, n·Var(Q̂), n) per arm, exactly
as gbstats' ``TwoSidedTTest`` takes a ``QuantileStatistic``: absolute Q̂_b − Q̂_a, or relative
(Q̂_b − Q̂_a)/|Q̂_a| with the delta-method variance.

**Fixed horizon only.** GrowthBook does not implement sequential testing (nor CUPED) for quantile
metrics (docs.growthbook.io/statistics/quantile, FAQ 6), and gbstats 0.8.0 has no sequential test
of its own for them: its generic ``SequentialTwoSidedTTest`` would count N as the number of events,
not of independent units. ``compare_quantiles(..., sequential_tuning=...)`` raises ``ValueError``.

**What the SQL computes** (see :func:`quantile_summaries` for the aggregations; the models are
``dbt_like_sql/quantile_values.sql`` and ``quantile_stats.sql``): *exact* quantiles, not a sketch.
Spark's ``percentile_approx`` runs on Sail as DataFusion's ``approx_percentile_cont``, which
refuses an array of levels and interpolates between values (p50 of 1..1000: 500.5 against JVM
Spark's 500), so the two engines could not agree; the models rank each arm's distinct values
instead (rank error 0). Each unit's values are collected in the one join of units to events, and
for event-level metrics the per-unit counts (events, events at or below Q̂) come from a second
pass over those per-unit arrays, summed per arm. No event leaves Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.moments import Moments

__all__ = [
    "CLUSTER_FIELDS",
    "N_STAR_GRID",
    "QuantileMoments",
    "bound_levels",
    "compare_quantiles",
    "n_star_for",
    "quantile_summaries",
]

#: The sample sizes n* at which the order-statistic bounds are computed: GrowthBook's N_STAR_VALUES.
N_STAR_GRID = tuple(100 * 2**k for k in range(20))

# The bounds are computed at the 95% level whatever the test's alpha (GrowthBook's SQL and gbstats'
# QuantileStatistic both fix 0.05); only their width divided by 2z enters the variance.
_Z = float(special.ndtri(0.975))

#: QuantileMoments' per-unit sums of an event-level quantile (None at level unit).
CLUSTER_FIELDS = (
    "n_units",
    "below_sum",
    "below_sum_sq",
    "events_sum",
    "events_sum_sq",
    "below_events_sum",
)


def _f(x: Any) -> Any:
    return np.asarray(x, dtype=np.float64)


def _scalar(x: Any) -> Any:
    return float(x) if np.ndim(x) == 0 else x


@dataclass(frozen=True)
class QuantileMoments:
    """Sufficient statistics of a quantile metric in one arm (gbstats' quantile statistics).

    Unit-level (one value per unit) sets the first six fields; event-level (events nested in units)
    also sets the six per-unit sums, which carry the clustering. Every field but ``q`` accepts a
    numpy array (one arm per element), as :class:`~ab_pipelines.stats.moments.Moments` does.

    Attributes:
        q: the quantile level ν in (0, 1), e.g. 0.9 for p90.
        n: values the quantile is taken over: units (unit-level) or events (event-level).
            gbstats ``n`` (``quantile_n``).
        n_star: the grid sample size of the bounds, ``n_star_for(n)``. gbstats ``n_star``.
        quantile: the ν-th sample quantile Q̂. gbstats ``quantile_hat``.
        lower: the sample quantile at level ``bound_levels(q, n_star)[0]``. gbstats ``quantile_lower``.
        upper: the sample quantile at level ``bound_levels(q, n_star)[1]``. gbstats ``quantile_upper``.
        n_units: units with at least one event (event-level). gbstats ``n_clusters``.
        below_sum: Σ_i S_i, S_i = unit i's events with value ≤ ``quantile``. gbstats ``main_sum``.
        below_sum_sq: Σ_i S_i². gbstats ``main_sum_squares``.
        events_sum: Σ_i N_i, N_i = unit i's events (equals ``n``). gbstats ``denominator_sum``.
        events_sum_sq: Σ_i N_i². gbstats ``denominator_sum_squares``.
        below_events_sum: Σ_i S_i·N_i. gbstats ``main_denominator_sum_product``.

    Examples:
        >>> m = QuantileMoments(q=0.9, n=1000, n_star=800, quantile=10.0, lower=9.0, upper=11.5)
        >>> round(m.variance, 3)  # n·Var(Q̂), the per-value variance gbstats calls ``variance``
        325.072
        >>> round(m.standard_error, 4)
        0.5702
    """

    q: float
    n: ArrayLike
    n_star: ArrayLike
    quantile: ArrayLike
    lower: ArrayLike
    upper: ArrayLike
    n_units: ArrayLike | None = None
    below_sum: ArrayLike | None = None
    below_sum_sq: ArrayLike | None = None
    events_sum: ArrayLike | None = None
    events_sum_sq: ArrayLike | None = None
    below_events_sum: ArrayLike | None = None

    def __post_init__(self) -> None:
        q = np.asarray(self.q, dtype=np.float64)
        if not np.all((q > 0.0) & (q < 1.0)):
            raise ValueError(f"quantile level q must lie in (0, 1), got {self.q!r}")
        present = [getattr(self, name) is not None for name in CLUSTER_FIELDS]
        if any(present) and not all(present):
            raise ValueError("event-level QuantileMoments need all six per-unit sums, or none")

    @property
    def clustered(self) -> bool:
        """Whether the per-unit sums are present (event-level: events nested in units)."""
        return self.n_units is not None

    @property
    def iid_variance(self) -> Any:
        """n·Var(Q̂) as if the n values were independent: (n*/n)(n − 1)((U − L)/(2z))².

        NaN when n < 2, or when n is too small for the 95% bounds to lie inside (0, 1): n ≤
        z²·max(ν/(1 − ν), (1 − ν)/ν) (gbstats' rule; e.g. n ≤ 380 for p99).
        """
        q, n = _f(self.q), _f(self.n)
        width = _f(self.upper) - _f(self.lower)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = (_f(self.n_star) / n) * (n - 1.0) * (width / (2.0 * _Z)) ** 2
        enough = (n >= 2) & (n > _Z**2 * np.maximum(q / (1.0 - q), (1.0 - q) / q))
        return _scalar(np.where(enough, v, np.nan))

    @property
    def variance(self) -> Any:
        """n·Var(Q̂): the i.i.d. variance, scaled for clustering when event-level.

        Event-level: times Var_c(Ī)/(ν(1 − ν)/n), with Var_c(Ī) the delta-method variance of the
        ratio of means Σ S_i / Σ N_i over the K units (Yao, Li & Lu 2024, Algorithm 1, step 7;
        gbstats ``QuantileClusteredStatistic``). NaN when K < 2 or Σ N_i = 0.
        """
        v = _f(self.iid_variance)
        if not self.clustered:
            return _scalar(v)
        k, q, n = _f(self.n_units), _f(self.q), _f(self.n)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu_s, mu_n = _f(self.below_sum) / k, _f(self.events_sum) / k
            c = k / (k - 1.0)
            var_s = (_f(self.below_sum_sq) / k - mu_s**2) * c
            var_n = (_f(self.events_sum_sq) / k - mu_n**2) * c
            cov_sn = (_f(self.below_events_sum) / k - mu_s * mu_n) * c
            r = mu_s / mu_n
            var_ibar = (var_s - 2.0 * r * cov_sn + r**2 * var_n) / (k * mu_n**2)
            v = v * var_ibar / (q * (1.0 - q) / n)
        ok = (k >= 2) & (_f(self.events_sum) > 0)
        return _scalar(np.where(ok, v, np.nan))

    @property
    def standard_error(self) -> Any:
        """sqrt(Var(Q̂)) = sqrt(variance / n)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return _scalar(np.sqrt(_f(self.variance) / _f(self.n)))

    @property
    def units(self) -> Any:
        """Analysed units: ``n_units`` when event-level, else ``n``."""
        return self.n_units if self.clustered else self.n


def n_star_for(n: ArrayLike) -> Any:
    """The grid sample size of the bounds: the largest of ``N_STAR_GRID`` below n, else 100.

    GrowthBook's rule (``getQuantileBoundsFromQueryResponse``). The variance is rescaled by n*/n.

    Examples:
        >>> n_star_for(99), n_star_for(100), n_star_for(101), n_star_for(5000)
        (100, 100, 100, 3200)
    """
    grid = np.asarray(N_STAR_GRID)
    n = np.asarray(n)
    idx = np.searchsorted(grid, n, side="left") - 1
    out = grid[np.clip(idx, 0, grid.size - 1)]
    return int(out) if out.ndim == 0 else out


def bound_levels(q: float, n_star: ArrayLike) -> tuple[Any, Any]:
    """The levels of the bounds L and U: ν ∓ z·sqrt(ν(1 − ν)/n*), clipped to [1e-8, 1 − 1e-8].

    GrowthBook's ``getQuantileBoundValues`` (α = 0.05). Vectorised over ``n_star``, so
    ``bound_levels(q, N_STAR_GRID)`` gives the 40 levels a one-pass SQL model asks the sketch for.

    Examples:
        >>> lo, hi = bound_levels(0.9, 400)
        >>> round(lo, 4), round(hi, 4)
        (0.8706, 0.9294)
    """
    half = _Z * np.sqrt(q * (1.0 - q) / np.asarray(n_star, dtype=np.float64))
    lo, hi = np.maximum(q - half, 1e-8), np.minimum(q + half, 1.0 - 1e-8)
    return _scalar(lo), _scalar(hi)


def quantile_summaries(
    unit_ids: ArrayLike, values: ArrayLike, q: float, kind: str = "event"
) -> QuantileMoments:
    """The :class:`QuantileMoments` of one arm from raw arrays: the reference the SQL model reproduces.

    Sample quantiles are the inverted-CDF ones, ``np.quantile(..., method="inverted_cdf")``: the
    smallest value x with F_n(x) ≥ level, an observed value, as the SQL models answer.
    NaN values are ignored (SQL NULLs). ``unit_ids`` may be any hashable dtype.

    The SQL (Spark), per experiment × metric × variant (× segment), ``ν`` the level, ``A`` the
    accuracy:

    * ``kind="unit"`` — per unit: ``value = SUM(value)`` over its events (GROUP BY unit). Per arm:
      ``n = COUNT(value)``, and one sketch ``percentile_approx(value, array(ν, L₁, U₁, …, L₂₀,
      U₂₀), A)`` with the 40 levels ``bound_levels(ν, N_STAR_GRID)``; then ``n_star =
      n_star_for(n)`` and ``lower``/``upper`` = the pair of that n* (a CASE on n, or in Python).
    * ``kind="event"`` — pass 1, per arm over events: ``n = COUNT(value)`` and the same sketch
      over event values. Pass 2, per unit (events joined to their arm's ``quantile``):
      ``n_events = COUNT(value)``, ``n_below = COUNT_IF(value <= quantile)``. Per arm over units
      with ``n_events > 0``: ``n_units = COUNT(*)``, ``below_sum = SUM(n_below)``,
      ``below_sum_sq = SUM(n_below * n_below)``, ``events_sum = SUM(n_events)``,
      ``events_sum_sq = SUM(n_events * n_events)``, ``below_events_sum = SUM(n_below * n_events)``.

    The pipeline computes these quantiles exactly (see the module docstring). Were a sketch used
    instead (``percentile_approx(value, levels, A)`` on JVM Spark), each value would have an
    empirical-CDF level within ε = 1/A of the one asked, the standard error a relative error ≲
    ε / (z·sqrt(ν(1 − ν)/n*)), and keeping it below a tenth of Q̂'s sampling error would need
    ``A ≥ 10·sqrt(n / (ν(1 − ν)))``.

    Args:
        unit_ids: the unit of each value (1-D).
        values: the metric values (1-D, same length); events, or several rows per unit to sum.
        q: the quantile level ν in (0, 1).
        kind: ``"event"`` (quantile of event values, clustered variance) or ``"unit"`` (quantile of
            the per-unit sums, one value per unit).

    Returns:
        The arm's :class:`QuantileMoments` (NaN quantiles when there are no values).

    Examples:
        >>> ids = [1, 1, 1, 2, 2, 3]
        >>> m = quantile_summaries(ids, [5.0, 7.0, 9.0, 1.0, 2.0, 4.0], q=0.5)
        >>> m.n, m.quantile, m.n_units, m.below_sum, m.below_sum_sq, m.below_events_sum
        (6, 4.0, 3, 3.0, 5.0, 5.0)
        >>> quantile_summaries(ids, [5.0, 7.0, 9.0, 1.0, 2.0, 4.0], q=0.5, kind="unit").quantile
        4.0
    """
    if kind not in ("event", "unit"):
        raise ValueError(f"kind must be 'event' or 'unit', got {kind!r}")
    ids = np.asarray(unit_ids)
    y = np.asarray(values, dtype=np.float64)
    if ids.ndim != 1 or ids.shape != y.shape:
        raise ValueError("unit_ids and values must be 1-D arrays of the same length")
    keep = ~np.isnan(y)
    ids, y = ids[keep], y[keep]
    _, unit = np.unique(ids, return_inverse=True)
    if kind == "unit":
        return QuantileMoments(**_sketch(np.bincount(unit, weights=y), q))
    arm = _sketch(y, q)
    n_events = np.bincount(unit).astype(np.float64)
    n_below = np.bincount(unit, weights=(y <= arm["quantile"]).astype(np.float64))
    return QuantileMoments(
        **arm,
        n_units=int(n_events.size),
        below_sum=float(n_below.sum()),
        below_sum_sq=float(n_below @ n_below),
        events_sum=float(n_events.sum()),
        events_sum_sq=float(n_events @ n_events),
        below_events_sum=float(n_below @ n_events),
    )


def _sketch(y: np.ndarray, q: float) -> dict[str, Any]:
    """The unit-level fields: what the per-arm percentile sketch and COUNT give."""
    n = int(y.size)
    n_star = n_star_for(n)
    lo, hi = bound_levels(q, n_star)
    est = [np.nan] * 3 if n == 0 else np.quantile(y, [q, lo, hi], method="inverted_cdf").tolist()
    return dict(q=q, n=n, n_star=n_star, quantile=est[0], lower=est[1], upper=est[2])


def compare_quantiles(
    a: QuantileMoments,
    b: QuantileMoments,
    relative: bool = True,
    alpha: float = 0.05,
    sequential_tuning: float | None = None,
) -> Comparison:
    """Compare the quantile of arm ``b`` (treatment) with arm ``a`` (baseline), fixed horizon.

    Effect Q̂_b − Q̂_a, or (Q̂_b − Q̂_a)/|Q̂_a| (gbstats divides by Q̂_a: the same for a positive
    baseline), its variance Var(Q̂_a) + Var(Q̂_b) (relative: the delta method, as ``compare``), the
    Welch t interval and two-sided p-value, Welch–Satterthwaite df over the ``n`` values: gbstats'
    choice, which for event-level data counts events, not units (immaterial once the df is in the
    hundreds, where t ≈ normal; the method needs far more values than that anyway).

    Degenerate inputs never raise: where an arm's variance is undefined or 0 (too few values for
    the bounds, fewer than 2 units, tied bounds L = U) or (relative) Q̂_a = 0, effect, se, the
    interval, p-value and df are NaN. gbstats instead floors n·Var(Q̂) at 1e-5 when n ≥ 100, so
    a tied arm with n ≥ 1000 gets an interval there; no floor is applied here.

    Args:
        a: baseline arm (unit-level or event-level; scalars, or arrays: one comparison each).
        b: treatment arm, the same kind and level ``q`` as ``a``.
        relative: relative difference instead of the absolute one.
        alpha: 1 − the interval's confidence level.
        sequential_tuning: must be None: quantile metrics are fixed-horizon only.

    Returns:
        A :class:`~ab_pipelines.stats.compare.Comparison` whose ``mean_a``/``mean_b`` are the arms'
        quantiles and ``n_a``/``n_b`` their units (``n_units`` when event-level).

    Raises:
        ValueError: ``sequential_tuning`` given, different levels ``q``, or alpha outside (0, 1).
        TypeError: one arm event-level and the other unit-level.

    Examples:
        >>> a = QuantileMoments(q=0.9, n=4000, n_star=3200, quantile=412.0, lower=398.0, upper=431.0)
        >>> b = QuantileMoments(q=0.9, n=4100, n_star=3200, quantile=451.0, lower=436.0, upper=470.0)
        >>> r = compare_quantiles(a, b, relative=False)
        >>> round(r.effect, 2), round(r.se, 3), round(r.p_value, 6)
        (39.0, 10.742, 0.000284)
        >>> r = compare_quantiles(a, b)
        >>> round(r.effect, 4), round(r.ci_low, 4), round(r.ci_high, 4)
        (0.0947, 0.0411, 0.1482)
    """
    if sequential_tuning is not None:
        raise ValueError(
            "quantile metrics are fixed-horizon only: no sequential (always-valid) test exists "
            "for them here or in GrowthBook; use sequential_tuning=None and read the result at "
            "the planned end"
        )
    if a.clustered != b.clustered:
        raise TypeError("compare_quantiles needs two event-level or two unit-level arms")
    if not np.all(np.asarray(a.q) == np.asarray(b.q)):
        raise ValueError(f"both arms need the same quantile level, got {a.q!r} and {b.q!r}")
    r = compare(_as_moments(a), _as_moments(b), relative=relative, alpha=alpha)
    cast = _scalar if np.ndim(r.effect) == 0 else lambda x: np.asarray(x, dtype=np.float64)
    return replace(
        r,
        mean_a=cast(_f(a.quantile)),
        mean_b=cast(_f(b.quantile)),
        n_a=cast(_f(a.units)),
        n_b=cast(_f(b.units)),
    )


def _as_moments(m: QuantileMoments) -> Moments:
    """Moments with mean Q̂ and per-unit variance n·Var(Q̂) over n: what the Welch test reads.

    gbstats' TTest reads (mean, variance, n) of any statistic; a QuantileStatistic supplies these,
    so one Welch path (``compare``) serves means, ratios and quantiles.
    """
    n, est, v = _f(m.n), _f(m.quantile), _f(m.variance)
    # A zero variance (tied bounds L = U: no density estimate) makes the comparison undefined,
    # as gbstats' per-arm _has_zero_variance does, rather than an interval from one arm alone.
    v = np.where(v > 0, v, np.nan)
    # compare recovers v(n − 1) as sum_sq − sum²/n, to a relative 1e-16·Q̂²/v: negligible.
    with np.errstate(invalid="ignore"):
        return Moments(n=n, sum=n * est, sum_sq=v * (n - 1.0) + n * est**2)
