"""Compare a treatment arm with the baseline from sufficient statistics: Welch, delta method, CUPED.

One code path serves every case. Each arm is reduced to the means ``mu`` and the sample covariance
matrix ``S`` of its per-unit variables — [Y] for a mean, [Y, X] with CUPED, [num, den] for a ratio,
[num, den, pre_num, pre_den] for a ratio with CUPED — and every estimate is a smooth function of the
means, whose variance comes from the delta method, Var f(mu) ≈ ∇fᵀ S ∇f / n (Casella & Berger 2002,
§5.5.4; for A/B metrics Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics",
KDD). Per arm:

- ``v``, the (adjusted) value compared: mean Y; Y − θX (CUPED, Deng, Xu, Kohavi & Walker 2013,
  "Improving the Sensitivity of Online Controlled Experiments by Utilizing Pre-Experiment Data",
  WSDM); num/den (ratio); num/den − θ·pre_num/pre_den (gbstats' regression-adjusted ratio);
- ``u``, the unadjusted baseline value that the relative lift divides by (as gbstats does).

Absolute effect v_b − v_a with variance σ²_v,b/n_b + σ²_v,a/n_a, Welch–Satterthwaite degrees of
freedom (Welch 1947; Satterthwaite 1946). Relative effect (v_b − v_a)/|u_a| with the delta-method
variance w_b/u_a² + w_a·u_b²/u_a⁴ (gbstats' form; exact without CUPED). Sequential intervals: :mod:`ab_pipelines.stats.sequential`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ab_pipelines.stats.moments import Moments, RatioMoments
from ab_pipelines.stats.sequential import always_valid_p_value, confidence_sequence_halfwidth

__all__ = ["Comparison", "compare"]


@dataclass(frozen=True)
class Comparison:
    """The comparison of arm b (treatment) with arm a (baseline).

    Fields are floats when ``compare`` got scalar moments, numpy arrays (one element per
    comparison) when it got arrays. A field that cannot be computed is NaN (see ``compare``).

    Attributes:
        effect: mean_b − mean_a (absolute) or (mean_b − mean_a)/|mean_a| (relative); with CUPED,
            the adjusted means, divided by the unadjusted baseline mean.
        se: standard error of ``effect``.
        ci_low: lower bound of the (1 − α) interval (the confidence sequence when sequential).
        ci_high: upper bound.
        p_value: two-sided p-value (always-valid when sequential).
        mean_a: unadjusted mean of the baseline (Σnum/Σden for a ratio).
        mean_b: unadjusted mean of the treatment.
        n_a: units in the baseline.
        n_b: units in the treatment.
        df: Welch–Satterthwaite degrees of freedom (used by the fixed-horizon interval).
        relative: whether ``effect`` is relative.
        sequential_tuning: N* of the confidence sequence, None for fixed horizon.
        theta: CUPED coefficient (None without CUPED).
        variance_reduction: 1 − Var(CUPED effect)/Var(raw effect) (None without CUPED).
        adjusted_mean_a: CUPED-adjusted baseline mean (None without CUPED).
        adjusted_mean_b: CUPED-adjusted treatment mean (None without CUPED).
    """

    effect: Any
    se: Any
    ci_low: Any
    ci_high: Any
    p_value: Any
    mean_a: Any
    mean_b: Any
    n_a: Any
    n_b: Any
    df: Any
    relative: bool
    sequential_tuning: float | None = None
    theta: Any = None
    variance_reduction: Any = None
    adjusted_mean_a: Any = None
    adjusted_mean_b: Any = None


_MEAN_VARS = (("sum", "sum_sq"), ("pre_sum", "pre_sum_sq"))
_MEAN_CROSS = {(0, 1): "sum_cross"}
_RATIO_VARS = (
    ("num_sum", "num_sum_sq"),
    ("den_sum", "den_sum_sq"),
    ("pre_num_sum", "pre_num_sum_sq"),
    ("pre_den_sum", "pre_den_sum_sq"),
)
_RATIO_CROSS = {
    (0, 1): "num_den_sum",
    (0, 2): "num_pre_num_sum",
    (0, 3): "num_pre_den_sum",
    (1, 2): "den_pre_num_sum",
    (1, 3): "den_pre_den_sum",
    (2, 3): "pre_num_pre_den_sum",
}


def _arm(m: Moments | RatioMoments, k: int) -> tuple[Any, Any, Any]:
    """(n, mean vector (..., k), sample covariance (..., k, k)) of the first k per-unit variables."""
    ratio = isinstance(m, RatioMoments)
    names, cross = (_RATIO_VARS, _RATIO_CROSS) if ratio else (_MEAN_VARS, _MEAN_CROSS)
    f = lambda name: np.asarray(getattr(m, name), dtype=np.float64)  # noqa: E731
    n = f("n")
    sums = [f(names[i][0]) for i in range(k)]
    prods = [[None] * k for _ in range(k)]
    for i in range(k):
        prods[i][i] = f(names[i][1])
        for j in range(i + 1, k):
            prods[i][j] = prods[j][i] = f(cross[(i, j)])
    n, *flat = np.broadcast_arrays(n, *sums, *(p for row in prods for p in row))
    s = np.stack(flat[:k], axis=-1)
    pp = np.stack(flat[k:], axis=-1).reshape(n.shape + (k, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        nn = n[..., None]
        mu = s / nn
        cov = (pp - s[..., :, None] * s[..., None, :] / nn[..., None]) / (nn[..., None] - 1.0)
    return n, mu, cov


def _quad(g: Any, s: Any, h: Any) -> Any:
    """gᵀ S h over the trailing axes."""
    return np.einsum("...i,...ij,...j->...", g, s, h)


def _gradients(mu: Any, theta: Any, ratio: bool, cuped: bool) -> tuple[Any, Any, Any, Any]:
    """Per arm: v (value compared), u (unadjusted value), ∇v and ∇u over the per-unit variables."""
    zero = np.zeros_like(mu[..., 0])
    if not ratio:
        y = mu[..., 0]
        if not cuped:
            g = np.ones_like(mu)
            return y, y, g, g
        x = mu[..., 1]
        one = np.ones_like(y)
        return y - theta * x, y, np.stack([one, -theta + zero], -1), np.stack([one, zero], -1)
    m, d = mu[..., 0], mu[..., 1]
    r = m / d
    g_post = [1.0 / d, -m / d**2]
    if not cuped:
        g = np.stack(g_post, -1)
        return r, r, g, g
    pm, pd = mu[..., 2], mu[..., 3]
    # gbstats RegressionAdjustedRatioStatistic: v = m/d − θ·pm/pd, nabla as below.
    gv = np.stack(g_post + [-theta / pd, theta * pm / pd**2], -1)
    gu = np.stack(g_post + [zero, zero], -1)
    return r - theta * pm / pd, r, gv, gu


def _theta(a: Any, b: Any, ratio: bool, arms: tuple) -> Any:
    """CUPED coefficient; 0 where the covariate has no variance (gbstats falls back the same way)."""
    if not ratio:
        # Pooled over the two arms as one sample (gbstats compute_theta): cov(Y, X)/var(X).
        _, _, cov = _arm(a + b, 2)
        num, den = cov[..., 0, 1], cov[..., 1, 1]
    else:
        # gbstats compute_theta_regression_adjusted_ratio: θ = Σ_arms cov(r̂_post, r̂_pre) /
        # Σ_arms var(r̂_pre), the linearised (delta-method) post and pre ratios of each arm.
        num = den = 0.0
        for _, mu, cov in arms:
            gpost = np.stack([1.0 / mu[..., 1], -mu[..., 0] / mu[..., 1] ** 2], -1)
            gpre = np.stack([1.0 / mu[..., 3], -mu[..., 2] / mu[..., 3] ** 2], -1)
            num = num + _quad(gpost, cov[..., :2, 2:], gpre)
            den = den + _quad(gpre, cov[..., 2:, 2:], gpre)
    return np.where(
        den > 0, num / np.where(den > 0, den, 1.0), np.where(np.isnan(den), np.nan, 0.0)
    )


def _effect(arms: tuple, vals: tuple, relative: bool) -> tuple[Any, Any, Any]:
    """Effect, its variance and Welch df from both arms' (n, mu, S) and (v, u, ∇v, ∇u)."""
    (n_a, _, s_a), (n_b, _, s_b) = arms
    (v_a, u_a, gv_a, _), (v_b, u_b, gv_b, _) = vals
    w_a = _quad(gv_a, s_a, gv_a) / n_a
    w_b = _quad(gv_b, s_b, gv_b) / n_b
    df = (w_a + w_b) ** 2 / (w_a**2 / (n_a - 1.0) + w_b**2 / (n_b - 1.0))
    diff = v_b - v_a
    if not relative:
        return diff, w_a + w_b, df
    s = np.abs(u_a)
    # Delta method for (v_b − v_a)/u_a in gbstats' form: Var ≈ w_b/u_a² + w_a·u_b²/u_a⁴, with the
    # unadjusted means u. Without CUPED (v = u) this is the exact delta method (Deng et al. 2018);
    # with CUPED it is what GrowthBook reports, so both tools give the same intervals.
    var = w_b / s**2 + w_a * u_b**2 / s**4
    return diff / s, var, df


def _interval(
    effect: Any,
    var: Any,
    df: Any,
    n_a: Any,
    n_b: Any,
    valid: Any,
    alpha: float,
    sequential_tuning: float | None,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """(ok, effect, se, df, half-width, p-value) of an effect with variance ``var``: the Welch t
    interval with ``df`` (fixed horizon) or the confidence sequence (``sequential_tuning``);
    NaN where not ``valid``, an arm has n < 2, or the effect or its se is not a positive number.
    Shared by :func:`compare` and the regression adjustment (``stats.regression``)."""
    se = np.sqrt(var)
    ok = valid & (n_a >= 2) & (n_b >= 2) & np.isfinite(effect) & np.isfinite(se) & (se > 0)
    effect, se, df = (np.where(ok, x, np.nan) for x in (effect, se, df))
    if sequential_tuning is None:
        half = special.stdtrit(df, 1.0 - alpha / 2.0) * se
        p = 2.0 * special.stdtr(df, -np.abs(effect / se))
    else:
        half = confidence_sequence_halfwidth(se, n_a + n_b, alpha, sequential_tuning)
        p = always_valid_p_value(effect, se, n_a + n_b, alpha, sequential_tuning)
    return ok, effect, se, df, half, p


def compare(
    a: Moments | RatioMoments,
    b: Moments | RatioMoments,
    relative: bool = True,
    alpha: float = 0.05,
    cuped: bool = False,
    sequential_tuning: float | None = None,
) -> Comparison:
    """Compare arm ``b`` (treatment) with arm ``a`` (baseline).

    Fixed horizon (``sequential_tuning=None``): Welch t interval effect ± t_{1−α/2, df}·se and its
    two-sided p-value, df by Welch–Satterthwaite. Sequential (``sequential_tuning=N*``, 5000 for
    YAML ``sequential: true``): the asymptotic confidence sequence of Waudby-Smith et al. (2023) with
    N = n_a + n_b and its always-valid p-value (:mod:`ab_pipelines.stats.sequential`).

    CUPED (``cuped=True``, needs the pre-period fields): θ = cov(Y, X)/var(X) on both arms pooled,
    adjusted means Y − θX, relative lift over the unadjusted baseline mean (gbstats). Ratio metrics
    use gbstats' regression-adjusted ratio: θ from the linearised post and pre ratios, adjusted
    value num/den − θ·pre_num/pre_den. θ = 0 (the raw estimate) when the covariate has no variance.

    Degenerate inputs never raise: where an arm has n < 2, the effect has zero or undefined variance,
    or (relative) the baseline mean is 0, effect, se, ci_low, ci_high, p_value and df are NaN.

    Args:
        a: baseline arm moments (scalars, or arrays: one comparison per element).
        b: treatment arm moments, same type as ``a``, broadcastable with it.
        relative: relative lift instead of the absolute difference.
        alpha: 1 − the interval's confidence level.
        cuped: apply CUPED / regression adjustment.
        sequential_tuning: N* of the confidence sequence; None for a fixed-horizon analysis.

    Returns:
        A :class:`Comparison`; floats for scalar moments, arrays for arrays.

    Examples:
        >>> a = Moments(n=3407, sum=1396.87, sum_sq=52377.9767)
        >>> b = Moments(n=3461, sum=2422.7, sum_sq=134698.29)
        >>> r = compare(a, b, relative=False)
        >>> round(r.effect, 4), round(r.se, 4), round(r.p_value, 4)
        (0.29, 0.1248, 0.0202)
        >>> r = compare(a, b, relative=True)
        >>> round(r.effect, 4), round(r.ci_low, 4), round(r.ci_high, 4)
        (0.7073, -0.0353, 1.4499)
    """
    if type(a) is not type(b):
        raise TypeError("compare needs two Moments or two RatioMoments")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    ratio = isinstance(a, RatioMoments)
    if cuped and not (a.has_pre and b.has_pre):
        raise ValueError("cuped=True needs the pre-period fields of both arms")
    k = (2 if ratio else 1) * (2 if cuped else 1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        arms = (_arm(a, k), _arm(b, k))
        theta = _theta(a, b, ratio, arms) if cuped else 0.0
        vals = tuple(_gradients(mu, theta, ratio, cuped) for _, mu, _ in arms)
        effect, var, df = _effect(arms, vals, relative)
        n_a, n_b = arms[0][0], arms[1][0]
        ok, effect, se, df, half, p = _interval(
            effect, var, df, n_a, n_b, True, alpha, sequential_tuning
        )
        extra: dict[str, Any] = {}
        if cuped:
            raw = tuple(_gradients(mu, 0.0, ratio, cuped) for _, mu, _ in arms)
            _, var_raw, _ = _effect(arms, raw, relative)
            extra = dict(
                theta=theta,
                variance_reduction=np.where(ok, 1.0 - var / var_raw, np.nan),
                adjusted_mean_a=vals[0][0],
                adjusted_mean_b=vals[1][0],
            )
    out = dict(
        effect=effect,
        se=se,
        ci_low=effect - half,
        ci_high=effect + half,
        p_value=p,
        mean_a=vals[0][1],
        mean_b=vals[1][1],
        n_a=n_a,
        n_b=n_b,
        df=df,
        **extra,
    )
    scalar = np.ndim(effect) == 0
    out = {key: float(x) if scalar else np.asarray(x, dtype=np.float64) for key, x in out.items()}
    return Comparison(relative=relative, sequential_tuning=sequential_tuning, **out)
