"""Bandits: Thompson-sampling weights per arm, and the analysis that corrects for changing weights.

**Weights** (GrowthBook's multi-armed bandit, docs.growthbook.io/bandits/overview and gbstats
``bayesian/bandits.py``). Each arm's mean of the decision metric gets a normal posterior
N(m_k, s_k²): m_k the arm's mean, s_k² its variance over n (a flat prior; GrowthBook's proper
N(0, 10⁴) prior is as good as flat). The weight of arm k is the posterior probability that it is
the best, w_k = P(μ_k > μ_i for every i ≠ k) = ∫ φ_k(x) Π_{i≠k} Φ((x − m_i)/s_i) dx
(docs.growthbook.io/statistics/contextual-bandit-technical), estimated from ``draws`` joint draws
of the posteriors (10,000, GrowthBook's count, from a seeded generator, so the weights are a
function of the data and the seed), and exact for two arms: Φ((m_b − m_a)/sqrt(s_a² + s_b²)).
Before every arm has ``min_units`` units (the burn-in) the weights are not updated. Every arm then
keeps at least ``floor`` of the traffic (GrowthBook: 1%, "in case your user behavior changes over
time"): arms below it are set to it and the others share the rest in proportion to their
probabilities. (GrowthBook clamps and then renormalises, which leaves clamped arms slightly below
the floor, e.g. 0.985% each when two of three are clamped; here the floor holds exactly.)

**Weighting by period.** With weights that change, the units an arm received come from different
days in different proportions: when the metric drifts over time, pooling each arm's units compares
arms on different mixtures of days (Simpson's paradox; Optimizely's "Epoch Stats Engine", 2018,
fixes it the same way). GrowthBook weights by period: per arm, the mean of each period p (the
units first exposed while one set of weights was live) is averaged with the same weights w_p for
every arm, the period's share of all units. Per arm

    v = Σ_p w_p ȳ_p,   Var(v) = Σ_p w_p² s_p²/n_p,

a stratified (post-stratified on period) mean: within a period the split between arms was fixed
before its units arrived, so each ȳ_p is unbiased for that period's arm mean, whatever the
allocation rule did with earlier periods, and v targets the arm mean under constant weights. The
posterior of the weights uses these (m_k = v, s_k² = Var(v)), as GrowthBook's does; the analysis
(:func:`compare_by_period`) compares v_b − v_a. Mean and proportion metrics (``Moments``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.moments import Moments
from ab_pipelines.stats.regression import _comparison

__all__ = [
    "DEFAULT_BANDIT_DRAWS",
    "DEFAULT_BANDIT_FLOOR",
    "DEFAULT_BANDIT_MIN_UNITS",
    "BanditWeights",
    "compare_by_period",
    "floor_weights",
    "thompson_weights",
]

#: GrowthBook's minimum share of traffic per arm (``min_variation_weight``).
DEFAULT_BANDIT_FLOOR = 0.01
#: Units every arm needs before the weights adapt (GrowthBook waits for 100 × arms in total).
DEFAULT_BANDIT_MIN_UNITS = 100
#: Monte Carlo draws of the posteriors (GrowthBook's ``n_samples``).
DEFAULT_BANDIT_DRAWS = 10_000


@dataclass(frozen=True)
class BanditWeights:
    """Thompson-sampling weights for the arms of one or many bandits (arms on the last axis).

    Attributes:
        weights: the traffic split to publish, shape (..., K): each >= the floor, summing to 1; the
            current weights (equal ones if none were given) where ``updated`` is False.
        best_probability: P(arm is best) under the posterior, before the floor (NaN where a
            posterior cannot be computed).
        posterior_mean: each arm's posterior mean m_k (period-weighted with ``by_period``).
        posterior_sd: each arm's posterior sd s_k.
        n: units per arm.
        updated: whether the weights were recomputed (every arm past the burn-in, every posterior
            finite), shape (...).
        seed: the seed of the Monte Carlo draws.
        draws: the number of draws; None where the two-arm closed form was used.
    """

    weights: Any
    best_probability: Any
    posterior_mean: Any
    posterior_sd: Any
    n: Any
    updated: Any
    seed: int
    draws: int | None


def _f(x: Any) -> Any:
    return np.asarray(x, dtype=np.float64)


def _by_period(m: Moments, share: Any) -> tuple[Any, Any, Any, Any]:
    """Per arm (periods on the last axis): n, v = Σ w_p ȳ_p, Var(v), and the variance
    terms w_p² s_p²/n_p with their n_p − 1 (for Satterthwaite). Periods with w_p = 0 drop out; an
    arm with fewer than 2 units in a period that counts makes v and Var(v) NaN."""
    n, s, ss = _f(m.n), _f(m.sum), _f(m.sum_sq)
    n, s, ss = np.broadcast_arrays(n, s, ss)
    w = np.broadcast_to(_f(share), n.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_p = s / n
        var_p = (ss - s * s / n) / (n - 1.0)
        bad = np.any((w > 0) & ~((n >= 2) & np.isfinite(var_p)), axis=-1)
        terms = np.where(w > 0, w**2 * var_p / n, 0.0)
        v = np.sum(np.where(w > 0, w * mean_p, 0.0), axis=-1)
        var = np.sum(terms, axis=-1)
    v, var = np.where(bad, np.nan, v), np.where(bad, np.nan, var)
    return np.sum(n, axis=-1), v, var, (terms, np.where(w > 0, n - 1.0, 1.0))


def _shares(share: ArrayLike | None, units: Any) -> Any:
    """Period weights normalised to sum to 1 over the last axis; default the units' own shares."""
    w = units if share is None else _f(share)
    if np.any(w < 0):
        raise ValueError("period_share must be nonnegative")
    total = np.sum(w, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return w / total


def compare_by_period(
    a: Moments,
    b: Moments,
    period_share: ArrayLike | None = None,
    relative: bool = True,
    alpha: float = 0.05,
    sequential_tuning: float | None = None,
) -> Comparison:
    """Compare arm ``b`` with arm ``a`` of a bandit, weighting by period (GrowthBook).

    Per arm v = Σ_p w_p ȳ_p with w_p = ``period_share`` normalised (the same for both arms), the
    effect v_b − v_a, or (v_b − v_a)/|v_a| when relative; variance Σ_p w_p²(s²_b,p/n_b,p +
    s²_a,p/n_a,p) with the weights held fixed, and for the relative lift the delta method
    Var(v_b)/v_a² + Var(v_a)·v_b²/v_a⁴ (compare's form); Satterthwaite (1946) degrees of freedom
    over the 2P variance terms of the difference (for the relative lift too, as compare's Welch
    df); Welch t interval and p-value. With one period this is ``compare``.

    The weights should be each period's share of the experiment's units over *all* arms (N_p/N,
    what GrowthBook uses): they do not depend on which arm the bandit favoured. Without them the
    shares of the two arms compared are used (n_a,p + n_b,p), which is unbiased for a constant
    effect but weights days by how much traffic these two arms got.

    Fixed horizon by default. With ``sequential_tuning`` (N*), the interval and p-value are the
    asymptotic confidence sequence's (:mod:`~ab_pipelines.stats.sequential`) on this estimate and
    its standard error, N the units of both arms: the period-weighted estimate is asymptotically
    normal like compare's, but the boundary was derived for a fixed split, so under adaptive
    weights it is an approximation (docs/analysis.md, "Bandits"). Where an arm has fewer than 2
    units in a period with w_p > 0, or (relative) v_a = 0, the numbers are NaN (merge periods
    first); never raises on data.

    Args:
        a: baseline (control) Moments, the period on the last axis (leading axes: one comparison
            each).
        b: treatment Moments of the same periods.
        period_share: w_p, e.g. N_p, the units of all arms first exposed in period p; any scale.
        relative: relative lift instead of the absolute difference.
        alpha: 1 − the interval's confidence level.
        sequential_tuning: N* of the confidence sequence, None for fixed horizon.

    Returns:
        A :class:`~ab_pipelines.stats.compare.Comparison`: ``mean_a``/``mean_b`` the pooled
        (unweighted) means, ``adjusted_mean_a``/``adjusted_mean_b`` the period-weighted v_a, v_b,
        ``variance_reduction`` 1 − Var/Var(pooled ``compare``) (negative: what weighting costs).

    Examples:
        >>> a = Moments(n=[500, 50], sum=[5000.0, 750.0], sum_sq=[100000.0, 16250.0])
        >>> b = Moments(n=[500, 950], sum=[5100.0, 15200.0], sum_sq=[102000.0, 330000.0])
        >>> r = compare_by_period(a, b, period_share=[1000, 1000], relative=False)
        >>> round(r.adjusted_mean_a, 2), round(r.adjusted_mean_b, 2), round(r.effect, 2)
        (12.5, 13.1, 0.6)
        >>> round(r.mean_b - r.mean_a, 2)  # the pooled means mix the days differently
        3.55
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    units = np.broadcast_arrays(_f(a.n), _f(b.n))
    w = _shares(period_share, units[0] + units[1])
    n_a, v_a, var_a, (t_a, d_a) = _by_period(a, w)
    n_b, v_b, var_b, (t_b, d_b) = _by_period(b, w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = v_b - v_a
        if relative:
            s = np.abs(v_a)
            effect, var = diff / s, var_b / s**2 + var_a * v_b**2 / s**4
        else:
            effect, var = diff, var_a + var_b
        # Satterthwaite over the per-period terms of the difference; like compare's Welch df, the
        # same for the relative lift.
        df = (np.sum(t_a, -1) + np.sum(t_b, -1)) ** 2 / (
            np.sum(t_a**2 / d_a, -1) + np.sum(t_b**2 / d_b, -1)
        )
        pooled_a = Moments(n_a, np.sum(_f(a.sum), -1), np.sum(_f(a.sum_sq), -1))
        pooled_b = Moments(n_b, np.sum(_f(b.sum), -1), np.sum(_f(b.sum_sq), -1))
        raw = compare(pooled_a, pooled_b, relative=relative)
    return _comparison(
        effect,
        var,
        df,
        n_a,
        n_b,
        np.isfinite(var),
        relative,
        alpha,
        sequential_tuning,
        _f(raw.se) ** 2,
        mean_a=raw.mean_a,
        mean_b=raw.mean_b,
        adjusted_mean_a=v_a,
        adjusted_mean_b=v_b,
        theta=None,
    )


def floor_weights(p: ArrayLike, floor: float = DEFAULT_BANDIT_FLOOR) -> Any:
    """Weights >= ``floor`` summing to 1, proportional to ``p`` above the floor (arms last).

    w_k = max(floor, c·p_k) with c chosen so that Σ w_k = 1: arms whose share would fall below the
    floor get exactly the floor, the others split the rest in proportion to p.

    Examples:
        >>> floor_weights([0.995, 0.004, 0.001], 0.01).round(4).tolist()
        [0.98, 0.01, 0.01]
        >>> floor_weights([0.5, 0.3, 0.2], 0.01).tolist()
        [0.5, 0.3, 0.2]
    """
    p = _f(p)
    k = p.shape[-1]
    if not 0.0 <= floor <= 1.0 / k:
        raise ValueError(f"floor must lie in [0, 1/{k}], got {floor!r}")
    p = p / np.sum(p, axis=-1, keepdims=True)
    clamped = np.zeros(p.shape, dtype=bool)
    for _ in range(k):  # each pass clamps at least one more arm, or nothing changes
        free = np.sum(np.where(clamped, 0.0, p), axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = (1.0 - floor * np.sum(clamped, axis=-1, keepdims=True)) / free
        newly = ~clamped & (c * p < floor)
        if not newly.any():
            break
        clamped |= newly
    return np.where(clamped, floor, c * p)


def _best_probability(
    mean: Any, sd: Any, higher_is_better: bool, method: str, draws: int, seed: int
) -> tuple[Any, int | None]:
    """P(arm is best) for normal posteriors N(mean, sd²), arms on the last axis."""
    sign = 1.0 if higher_is_better else -1.0
    k = mean.shape[-1]
    if k == 2 and method == "auto":
        diff = sign * (mean[..., 1] - mean[..., 0])
        total = np.sqrt(sd[..., 0] ** 2 + sd[..., 1] ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            p1 = np.where(total > 0, special.ndtr(diff / total), 0.5 + 0.5 * np.sign(diff))
        return np.stack([1.0 - p1, p1], -1), None
    # Common random numbers: the same standard normal draws for every bandit in the batch, so a
    # bandit's weights do not depend on what else is computed with it.
    z = np.random.default_rng(seed).standard_normal((k, draws))
    y = np.stack([sign * (mean[..., j, None] + sd[..., j, None] * z[j]) for j in range(k)])
    top = np.max(y, axis=0)
    wins = y == top
    # A tie (possible only with zero posterior sd) shares the draw between the tied arms.
    share = wins / np.sum(wins, axis=0)
    return np.moveaxis(np.mean(share, axis=-1), 0, -1), draws


def thompson_weights(
    arms: Moments,
    by_period: bool = False,
    period_share: ArrayLike | None = None,
    higher_is_better: bool = True,
    min_units: int = DEFAULT_BANDIT_MIN_UNITS,
    floor: float = DEFAULT_BANDIT_FLOOR,
    current_weights: ArrayLike | None = None,
    draws: int = DEFAULT_BANDIT_DRAWS,
    seed: int = 0,
    method: Literal["auto", "monte_carlo"] = "auto",
) -> BanditWeights:
    """Thompson-sampling weights from each arm's posterior of the decision metric (GrowthBook).

    w_k = P(arm k is best) under independent normal posteriors N(m_k, s_k²) (module docstring),
    then the floor (:func:`floor_weights`). Without ``by_period``, m_k and s_k² are the arm's
    mean and variance/n; with it, the period-weighted mean and its variance (GrowthBook's
    weighting by period). Two arms: the exact Φ((m_b − m_a)/sqrt(s_a² + s_b²)) (``method="auto"``);
    more: ``draws`` joint draws from ``numpy.random.default_rng(seed)`` (Monte Carlo error
    ≈ sqrt(w(1 − w)/draws), 0.005 at 10,000), deterministic given the seed.

    Where some arm has fewer than ``min_units`` units, or a posterior is not finite (an arm with
    n < 2 in a period that counts), the weights are not updated: ``current_weights`` (equal if
    None) are returned and ``updated`` is False.

    Args:
        arms: Moments with the arms on the last axis (..., K); with ``by_period``, (..., K, P),
            the periods last. Leading axes: independent bandits.
        by_period: weight each arm's periods (the last axis) by ``period_share``.
        period_share: w_p, shape (..., P), any scale (e.g. N_p); default each period's units over
            all K arms.
        higher_is_better: the metric's direction (False: the smallest mean is the best).
        min_units: units every arm needs before the weights adapt (the burn-in).
        floor: the minimum weight of every arm, in [0, 1/K].
        current_weights: the live weights, returned while not updated (default 1/K each).
        draws: Monte Carlo draws (more than two arms, or ``method="monte_carlo"``).
        seed: the seed of the draws; the pipeline can use one per experiment and day.
        method: ``"auto"`` (closed form for two arms) or ``"monte_carlo"`` (always draw).

    Returns:
        :class:`BanditWeights`.

    Examples:
        >>> arms = Moments(n=[4000, 4000], sum=[400.0, 440.0], sum_sq=[400.0, 440.0])
        >>> w = thompson_weights(arms)
        >>> w.weights.round(3).tolist(), bool(w.updated)
        ([0.072, 0.928], True)
        >>> thompson_weights(arms, min_units=5000).weights.tolist()  # burn-in: not yet
        [0.5, 0.5]
        >>> three = Moments(n=[4000] * 3, sum=[400.0, 440.0, 300.0], sum_sq=[400.0, 440.0, 300.0])
        >>> thompson_weights(three, seed=1).weights.round(3).tolist()
        [0.067, 0.923, 0.01]
    """
    if method not in ("auto", "monte_carlo"):
        raise ValueError(f"method must be 'auto' or 'monte_carlo', got {method!r}")
    if not draws >= 1:
        raise ValueError(f"draws must be positive, got {draws!r}")
    if by_period:
        units = np.broadcast_arrays(_f(arms.n), _f(arms.sum), _f(arms.sum_sq))[0]
        w = _shares(period_share, np.sum(units, axis=-2))[..., None, :]
        n, mean, var, _ = _by_period(arms, w)
    else:
        n, mean = _f(arms.n), _f(arms.mean)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = _f(arms.variance) / n
    n, mean, var = np.broadcast_arrays(n, mean, var)
    k = mean.shape[-1]
    if k < 2:
        raise ValueError("a bandit needs at least two arms on the last axis")
    if not 0.0 <= floor <= 1.0 / k:
        raise ValueError(f"floor must lie in [0, 1/{k}], got {floor!r}")
    sd = np.sqrt(var)
    finite = np.all(np.isfinite(mean) & np.isfinite(sd), axis=-1)
    updated = finite & np.all(n >= min_units, axis=-1)
    with np.errstate(invalid="ignore"):
        best, used = _best_probability(
            np.where(finite[..., None], mean, 0.0),
            np.where(finite[..., None], sd, 0.0),
            higher_is_better,
            method,
            draws,
            seed,
        )
    best = np.where(finite[..., None], best, np.nan)
    current = np.full(mean.shape, 1.0 / k) if current_weights is None else _f(current_weights)
    current = np.broadcast_to(current, mean.shape)
    new = floor_weights(np.where(updated[..., None], best, 1.0), floor)
    weights = np.where(updated[..., None], new, current)
    scalar = updated.ndim == 0
    return BanditWeights(
        weights=weights,
        best_probability=best,
        posterior_mean=mean,
        posterior_sd=sd,
        n=n,
        updated=bool(updated) if scalar else updated,
        seed=seed,
        draws=used,
    )
