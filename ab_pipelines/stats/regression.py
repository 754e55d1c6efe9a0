"""Regression adjustment with several covariates (CUPED++, CURE) and post-stratification, from sums.

**Regression adjustment.** CUPED (:func:`~ab_pipelines.stats.compare.compare`) adjusts a metric
with one covariate, its own pre-period value. Here the covariates are several: the metric's own
pre-period value first, then other pre-period metrics and the unit's assignment-time attributes
(0/1 dummies). Eppo's CUPED++ regresses each metric on the pre-period values of the experiment's
metrics and the assignment properties with a ridge regression, per variation
(https://docs.geteppo.com/statistics/cuped); Statsig's CURE computes the covariance matrix of
covariates and outcomes in SQL and fits a multivariate regression on it, selecting covariates
with the lasso (https://docs.statsig.com/experiments-plus/cure). Here one θ serves both arms, as
in CUPED. Per arm, Spark computes one aggregation of Z = [y, x_1 .. x_k]: n, Σ of every column
and Σ of every product (Z'Z), a :class:`RegressionMoments`. The rest is k×k matrices in numpy.

With θ fitted on both arms pooled (as CUPED pools, Deng, Xu, Kohavi & Walker 2013, WSDM), per arm

    v = ȳ − θ'(x̄ − x̄_pooled),   θ = argmin Var_pooled(y − θ'x) + ridge·Σ_j θ_j² Var_pooled(x_j),

the effect v_b − v_a and its variance by the delta method with θ held fixed, Var(v) = g'S g / n with
g = [1, −θ] and S the arm's sample covariance of Z: the single-covariate formula of compare.py
(gbstats) with a vector θ, so one covariate and ``ridge=0`` give ``compare(..., cuped=True)``
exactly. A ratio metric has two responses, Z = [num, den, x_1 .. x_k]; θ is fitted on its
linearised value (num − R·den)/mean(den) (Deng, Knoblich & Lu 2018, KDD) and the arm value is
Σnum/Σden − θ'(x̄ − x̄_pooled).

θ is estimated, and that costs: a covariate that explains nothing still adds about 1/N to the
effect's variance (N units in both arms). The ``guard`` (on by default) keeps the multi-covariate
fit only when it beats the CUPED fit (the metric's own pre-period covariates alone) on Hocking's
S_p criterion, RSS/((N − df − 1)(N − df − 2)), an estimate of the out-of-sample residual variance
of a regression with df fitted slopes (Hocking 1976, "The analysis and selection of variables in
linear regression", Biometrics 32; Breiman & Freedman 1983, JASA 78). The criterion reads the sums
of both arms as one sample, which under the null hypothesis are the same whichever units are in
which arm, so the choice does not bias the test. ``pooling="within"`` fits θ on the arms centred
apart (the ANCOVA slopes), free of the effect's leaking into θ that shrinks the "total" estimate
by about k/N.

**Post-stratification** (GrowthBook's "CUPEDps",
https://docs.growthbook.io/statistics/post-stratification, gbstats ``frequentist/post_strat.py``):
one categorical attribute cuts the units into strata; the effect is the average of the per-stratum
effects weighted by each stratum's share of units w_s (both arms pooled). It needs per-stratum
:class:`~ab_pipelines.stats.moments.Moments` only: the segment rows of one attribute in
``gold.sufficient_stats`` partition the units, so no new aggregation is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ab_pipelines.stats.compare import (
    Comparison,
    _arm,
    _effect,
    _interval,
    _quad,
    _theta,
    compare,
)
from ab_pipelines.stats.moments import Moments

__all__ = ["RegressionMoments", "compare_adjusted", "compare_poststratified"]

# Directions of the standardised covariates with a variance below this share of the largest are
# dropped (pseudo-inverse): exact collinearity, e.g. every level of an attribute as a dummy.
_RCOND = 1e-10
# A covariate whose centred sum of squares is below this share of its raw one is a constant.
_CONSTANT = 1e-12


@dataclass(frozen=True)
class RegressionMoments:
    """Sufficient statistics of a metric and its k covariates in one arm: n, Σ Z and Z'Z.

    Z = [y, x_1 .. x_k] per unit (``responses=1``), or Z = [num, den, x_1 .. x_k] for a ratio metric
    Σnum/Σden (``responses=2``). The first covariates should be the responses' own pre-period
    values (the CUPED covariates, ``pre_y`` or ``pre_num, pre_den``): the guard compares against
    them. Attributes enter as 0/1 dummies; keeping every level is fine (collinear columns are
    handled by the pseudo-inverse).

    Attributes:
        n: number of units (array: one arm per element).
        sums: Σ Z, shape (..., p) with p = responses + k.
        cross: Z'Z, the sums of every product of two columns, shape (..., p, p), symmetric.
        responses: 1 for a mean or proportion, 2 for a ratio.

    One Spark aggregation per arm gives every field: see :meth:`column_names` for the names.

    Examples:
        >>> m = RegressionMoments.from_values([1.0, 2.0, 4.0], [[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
        >>> int(m.n), m.sums.tolist(), m.covariates
        (3, [7.0, 3.0, 2.0], 2)
        >>> RegressionMoments.column_names(["y", "pre_y"])
        ['n', 'y_sum', 'y_sum_sq', 'pre_y_sum', 'pre_y_sum_sq', 'y_pre_y_sum']
        >>> int((m + m).n), float((m + m).cross[0, 1])
        (6, 20.0)
    """

    n: ArrayLike
    sums: ArrayLike
    cross: ArrayLike
    responses: int = 1

    def __post_init__(self) -> None:
        p = np.shape(self.sums)[-1] if np.ndim(self.sums) else 0
        if self.responses not in (1, 2):
            raise ValueError(f"responses must be 1 (mean) or 2 (ratio), got {self.responses!r}")
        if np.shape(self.cross)[-2:] != (p, p) or p <= self.responses:
            raise ValueError(
                f"sums (..., p) and cross (..., p, p) with p > responses are needed, got "
                f"{np.shape(self.sums)} and {np.shape(self.cross)}"
            )

    @property
    def covariates(self) -> int:
        """k, the number of covariates."""
        return int(np.shape(self.sums)[-1]) - self.responses

    @classmethod
    def from_values(
        cls, y: ArrayLike, X: ArrayLike, den: ArrayLike | None = None
    ) -> RegressionMoments:
        """Sums of raw per-unit values, for tests and notebooks.

        ``y`` is the metric (the numerator when ``den`` is given), ``X`` the covariates (n × k, or
        a vector for one covariate).
        """
        y = np.asarray(y, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64).reshape(y.size, -1)
        cols = [y[:, None]] + (
            [np.asarray(den, dtype=np.float64)[:, None]] if den is not None else []
        )
        z = np.hstack(cols + [X])
        return cls(n=int(y.size), sums=z.sum(0), cross=z.T @ z, responses=len(cols))

    @classmethod
    def from_moments(cls, m: Moments) -> RegressionMoments:
        """The CUPED :class:`~ab_pipelines.stats.moments.Moments` as Z = [y, x] (one covariate)."""
        if not m.has_pre:
            raise ValueError("from_moments needs the pre-period fields of the Moments")
        f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
        n, s, ss, xs, xss, cr = np.broadcast_arrays(
            f(m.n), f(m.sum), f(m.sum_sq), f(m.pre_sum), f(m.pre_sum_sq), f(m.sum_cross)
        )
        cross = np.stack([np.stack([ss, cr], -1), np.stack([cr, xss], -1)], -2)
        return cls(n=n, sums=np.stack([s, xs], -1), cross=cross)

    @staticmethod
    def column_names(columns: Sequence[str]) -> list[str]:
        """The aggregate columns the SQL must produce per arm for Z's columns named ``columns``.

        ``n`` (units), then per column c ``c_sum`` (Σc) and ``c_sum_sq`` (Σc²), then per pair of
        columns c before d ``c_d_sum`` (Σc·d): the naming of ``gold.sufficient_stats``, so
        ``["num", "den", "pre_num", "pre_den"]`` names exactly the fields of RatioMoments.
        """
        names = ["n"]
        for c in columns:
            names += [f"{c}_sum", f"{c}_sum_sq"]
        names += [f"{c}_{d}_sum" for i, c in enumerate(columns) for d in columns[i + 1 :]]
        if len(set(names)) != len(names):
            raise ValueError(f"columns {list(columns)!r} give clashing aggregate names")
        return names

    @classmethod
    def from_columns(
        cls, row: Mapping[str, ArrayLike], columns: Sequence[str], responses: int = 1
    ) -> RegressionMoments:
        """Read the aggregates named by :meth:`column_names` from a row (or a dict of arrays)."""
        cls.column_names(columns)
        f = lambda name: np.asarray(row[name], dtype=np.float64)  # noqa: E731
        p = len(columns)
        prods = [[None] * p for _ in range(p)]
        for i, c in enumerate(columns):
            prods[i][i] = f(f"{c}_sum_sq")
            for j in range(i + 1, p):
                prods[i][j] = prods[j][i] = f(f"{c}_{columns[j]}_sum")
        n, *flat = np.broadcast_arrays(
            f("n"), *(f(f"{c}_sum") for c in columns), *(x for r in prods for x in r)
        )
        sums = np.stack(flat[:p], -1)
        cross = np.stack(flat[p:], -1).reshape(n.shape + (p, p))
        return cls(n=n, sums=sums, cross=cross, responses=responses)

    def __add__(self, other: RegressionMoments) -> RegressionMoments:
        """The sums of two disjoint groups of units: Spark partitions, both arms, cohorts.

        Days add up only as cohorts (units first exposed that day), never the same units twice.
        """
        if self.responses != other.responses:
            raise ValueError("cannot add RegressionMoments of a mean and of a ratio")
        return RegressionMoments(
            n=np.add(self.n, other.n),
            sums=np.add(self.sums, other.sums),
            cross=np.add(self.cross, other.cross),
            responses=self.responses,
        )


def _stats(m: RegressionMoments) -> tuple[Any, Any, Any, Any]:
    """(n, mean vector (..., p), sample covariance (..., p, p), Σz²/n (..., p)) of one arm."""
    n = np.asarray(m.n, dtype=np.float64)
    s = np.asarray(m.sums, dtype=np.float64)
    zz = np.asarray(m.cross, dtype=np.float64)
    batch = np.broadcast_shapes(n.shape, s.shape[:-1], zz.shape[:-2])
    n = np.broadcast_to(n, batch)
    s = np.broadcast_to(s, batch + s.shape[-1:])
    zz = np.broadcast_to(zz, batch + zz.shape[-2:])
    nn = n[..., None]
    mu = s / nn
    cov = (zz - s[..., :, None] * s[..., None, :] / nn[..., None]) / (nn[..., None] - 1.0)
    return n, mu, cov, np.diagonal(zz, axis1=-2, axis2=-1) / nn


def _response_gradient(mu: Any, r: int) -> Any:
    """∇ of the arm's unadjusted value over its responses: [1] for a mean, ∇(m/d) for a ratio."""
    if r == 1:
        return np.ones_like(mu[..., :1])
    m, d = mu[..., 0], mu[..., 1]
    return np.stack([1.0 / d, -m / d**2], -1)


def _solve(
    mu: Any, cov: Any, raw_sq: Any, r: int, ridge: float, use: Any
) -> tuple[Any, Any, Any, Any]:
    """θ (..., k) from a covariance of Z, its degrees of freedom, rank and residual variance.

    Ridge on standardised covariates: θ = D^{-1/2}(R + ridge·I)⁺ D^{-1/2} s_xy, R the covariates'
    correlation matrix, D their variances (Hoerl & Kennard 1970). The pseudo-inverse drops the
    directions of R with an eigenvalue below _RCOND of the largest (collinear covariates);
    covariates without variance (or not in ``use``) get θ = 0. df = Σ e/(e + ridge) over the kept
    eigenvalues e (Hastie, Tibshirani & Friedman 2009, §3.4.1): the number of slopes without ridge.
    The response is y, or for a ratio its linearisation at the pooled means ``mu``.
    """
    g = _response_gradient(mu, r)
    sxy = np.einsum("...ij,...j->...i", cov[..., r:, :r], g)
    syy = _quad(g, cov[..., :r, :r], g)
    sxx = cov[..., r:, r:]
    d = np.diagonal(sxx, axis1=-2, axis2=-1)
    keep = use & (d > _CONSTANT * raw_sq[..., r:])
    inv = np.where(keep, 1.0 / np.sqrt(np.where(keep, d, 1.0)), 0.0)
    corr = sxx * inv[..., :, None] * inv[..., None, :]
    c = sxy * inv
    finite = np.isfinite(corr).all((-2, -1)) & np.isfinite(c).all(-1) & np.isfinite(syy)
    e, vec = np.linalg.eigh(np.where(finite[..., None, None], corr, 0.0))
    kept = e > _RCOND * np.max(e, axis=-1, keepdims=True)
    shrink = np.where(kept, 1.0 / np.where(kept, e + ridge, 1.0), 0.0)
    beta = np.einsum(
        "...ij,...j,...kj,...k->...i", vec, shrink, vec, np.where(finite[..., None], c, 0.0)
    )
    theta = np.where(finite[..., None], beta * inv, np.nan)
    df = np.where(finite, np.sum(np.where(kept, e * shrink, 0.0), -1), np.nan)
    resid = syy - 2.0 * np.einsum("...i,...i->...", theta, sxy) + _quad(theta, sxx, theta)
    return theta, df, np.sum(kept, -1), resid


def _hocking(n: Any, df: Any, resid: Any) -> Any:
    """Hocking's S_p = RSS/((N − df − 1)(N − df − 2)) of a fit on N pooled units (or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sp = (n - 1.0) * resid / ((n - df - 1.0) * (n - df - 2.0))
    return np.where(n - df - 2.0 > 0, sp, np.nan)


def _arm_values(mu: Any, theta: Any, x0: Any, r: int) -> tuple[Any, Any, Any, Any]:
    """v (adjusted value), u (unadjusted), ∇v, ∇u of one arm over its per-unit variables Z."""
    gr = _response_gradient(mu, r)
    u = mu[..., 0] if r == 1 else mu[..., 0] / mu[..., 1]
    v = u - np.einsum("...i,...i->...", theta, mu[..., r:] - x0)
    zero = np.zeros_like(mu[..., r:])
    return v, u, np.concatenate([gr, -theta + zero], -1), np.concatenate([gr, zero], -1)


def _comparison(
    effect: Any,
    var: Any,
    df: Any,
    n_a: Any,
    n_b: Any,
    valid: Any,
    relative: bool,
    alpha: float,
    sequential_tuning: float | None,
    var_raw: Any,
    **fields_: Any,
) -> Comparison:
    """Interval and p-value as compare computes them (Welch t, or the confidence sequence)."""
    ok, effect, se, df, half, p = _interval(
        effect, var, df, n_a, n_b, valid, alpha, sequential_tuning
    )
    out = dict(
        effect=effect,
        se=se,
        ci_low=effect - half,
        ci_high=effect + half,
        p_value=p,
        n_a=n_a,
        n_b=n_b,
        df=df,
        variance_reduction=np.where(ok, 1.0 - var / var_raw, np.nan),
        **fields_,
    )
    theta = out.pop("theta")
    scalar = np.ndim(effect) == 0
    out = {key: float(x) if scalar else np.asarray(x, dtype=np.float64) for key, x in out.items()}
    if theta is not None:
        theta = np.asarray(theta, dtype=np.float64)
        theta = float(theta) if theta.ndim == 0 else theta
    return Comparison(relative=relative, sequential_tuning=sequential_tuning, theta=theta, **out)


def _check(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def compare_adjusted(
    a: RegressionMoments,
    b: RegressionMoments,
    relative: bool = True,
    alpha: float = 0.05,
    ridge: float = 0.0,
    sequential_tuning: float | None = None,
    guard: bool = True,
    pooling: str = "total",
) -> Comparison:
    """Compare arm ``b`` with arm ``a``, adjusting for several covariates (CUPED++ / CURE).

    θ is fitted on both arms pooled (the centred cross-products of a + b, as CUPED pools), with an
    optional ridge penalty on the standardised covariates; the adjusted values are
    v = ȳ − θ'(x̄ − x̄_pooled) (Σnum/Σden − θ'(x̄ − x̄_pooled) for a ratio); the absolute effect is
    v_b − v_a, the relative one (v_b − v_a)/|ū_a| over the unadjusted baseline mean, both with
    compare's delta-method variance and Welch degrees of freedom. One covariate with ``ridge=0``
    is ``compare(..., cuped=True)``. Covariates without variance get θ = 0; collinear ones share
    the minimum-norm θ of the pseudo-inverse (the fitted values, hence the estimate, are those of
    any least-squares solution).

    ``pooling="total"`` fits θ on a + b as one sample, as compare (and gbstats) do for CUPED; the
    effect leaks into that covariance, shrinking the estimate towards 0 by about k/N (measured:
    4.5% for 9 slopes on 200 units, 0.2% on 4,000). ``pooling="within"`` fits θ on the arms'
    covariances pooled (each arm centred on its own means): the slopes of OLS of y on
    [1, arm, x], whose effect it then equals, free of that shrinkage.

    ``guard=True`` (the rule against being worse than CUPED): the fit on all covariates is used
    only where its Hocking S_p = RSS/((N − df − 1)(N − df − 2)) on the pooled units is below the
    S_p of the fit on the responses' own pre-period covariates alone (the first ``responses``
    covariates); otherwise those alone (the other θ are 0). ``guard=False`` always uses all.

    The variance holds θ fixed, as compare does; with k slopes on N units it is optimistic by about
    2k/N (measured: 0.89 of the actual variance for 9 slopes on 200 units without the guard, 0.99
    on 4,000), so keep N ≫ k; the guard drops slopes that do not pay.

    Degenerate inputs never raise: where an arm has fewer than 2 units, N ≤ k + 2, the effect has
    zero or undefined variance, or (relative) the baseline mean is 0, the estimates are NaN.

    Args:
        a: baseline arm (scalars, or arrays: one comparison per element of the leading axes).
        b: treatment arm, with the same columns.
        relative: relative lift instead of the absolute difference.
        alpha: 1 − the interval's confidence level.
        ridge: penalty as a share of each covariate's variance added to the diagonal (0: OLS).
        sequential_tuning: N* of the confidence sequence; None for a fixed horizon.
        guard: fall back to the CUPED covariates where the others do not pay for themselves.
        pooling: "total" (both arms as one sample, as CUPED) or "within" (arms centred apart).

    Returns:
        A :class:`~ab_pipelines.stats.compare.Comparison`; ``theta`` holds the k coefficients
        (..., k), ``variance_reduction`` is 1 − Var/Var(unadjusted estimate), and the adjusted
        means are v_a and v_b, on y's scale (compare's CUPED reports ȳ − θx̄ instead: the same
        difference).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(2000, 2))
        >>> y = 10 + X @ [1.0, 1.0] + rng.normal(size=2000)
        >>> a = RegressionMoments.from_values(y[:1000], X[:1000])
        >>> b = RegressionMoments.from_values(y[1000:] + 0.2, X[1000:])
        >>> r = compare_adjusted(a, b, relative=False)  # planted: effect 0.2, θ = [1, 1], R² = 2/3
        >>> round(r.effect, 1), round(r.variance_reduction, 1), r.theta.round(1).tolist()
        (0.2, 0.7, [1.0, 1.0])
    """
    _check(alpha)
    if a.responses != b.responses or a.covariates != b.covariates:
        raise ValueError("compare_adjusted needs two arms with the same columns")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    if pooling not in ("total", "within"):
        raise ValueError(f"pooling must be 'total' or 'within', got {pooling!r}")
    r, k = a.responses, a.covariates
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        n_pool, mu_pool, cov_pool, raw_sq = _stats(a + b)
        arms = tuple(_stats(m)[:3] for m in (a, b))
        cov_fit = cov_pool
        if pooling == "within":
            (n_a, _, s_a), (n_b, _, s_b) = arms
            w = lambda n: ((n - 1.0) / (n_pool - 2.0))[..., None, None]  # noqa: E731
            cov_fit = w(n_a) * s_a + w(n_b) * s_b
        fit = lambda cov, use: _solve(mu_pool, cov, raw_sq, r, ridge, use)  # noqa: E731
        every, own = np.ones(k, dtype=bool), np.arange(k) < r
        theta, _, rank, _ = fit(cov_fit, every)
        if guard and k > r:
            # Decided on the sums of both arms as one sample: the same whoever is in which arm.
            _, df_all, _, res_all = fit(cov_pool, every)
            _, df_own, _, res_own = fit(cov_pool, own)
            wider = _hocking(n_pool, df_all, res_all) < _hocking(n_pool, df_own, res_own)
            theta_own, _, rank_own, _ = fit(cov_fit, own)
            theta = np.where(wider[..., None], theta, theta_own)  # NaN criterion: own covariates
            rank = np.where(wider, rank, rank_own)
        x0 = mu_pool[..., r:]
        vals = tuple(_arm_values(mu, theta, x0, r) for _, mu, _ in arms)
        effect, var, df = _effect(arms, vals, relative)
        raw = tuple(_arm_values(mu, np.zeros_like(theta), x0, r) for _, mu, _ in arms)
        _, var_raw, _ = _effect(arms, raw, relative)
        return _comparison(
            effect,
            var,
            df,
            arms[0][0],
            arms[1][0],
            n_pool > rank + 2,
            relative,
            alpha,
            sequential_tuning,
            var_raw,
            mean_a=vals[0][1],
            mean_b=vals[1][1],
            adjusted_mean_a=vals[0][0],
            adjusted_mean_b=vals[1][0],
            theta=theta,
        )


def _stack(strata: Moments | Sequence[Moments]) -> Moments:
    """Per-stratum Moments as one Moments whose last axis is the stratum."""
    if isinstance(strata, Moments):
        return strata
    values = {}
    for f in fields(Moments):
        xs = [getattr(m, f.name) for m in strata]
        values[f.name] = (
            None if any(x is None for x in xs) else np.stack(np.broadcast_arrays(*xs), -1)
        )
    return Moments(**values)


def compare_poststratified(
    strata_a: Moments | Sequence[Moments],
    strata_b: Moments | Sequence[Moments],
    relative: bool = True,
    alpha: float = 0.05,
    cuped: bool = False,
    sequential_tuning: float | None = None,
) -> Comparison:
    """Compare arm ``b`` with arm ``a`` post-stratified on one categorical attribute (GrowthBook).

    Per stratum s: the baseline mean ȳ_a,s and the effect Δ_s = v_b,s − v_a,s (v = ȳ, or ȳ − θ_s·x̄
    with ``cuped``, θ_s pooled over both arms of the stratum as compare does), with their joint
    covariance V_s. With w_s = N_s/N, the stratum's share of the units of both arms, GrowthBook
    (gbstats ``PostStratificationSummary``) combines α_s = (ȳ_a,s, Δ_s) as

        α = Σ_s w_s α_s,   Cov(α) = Σ_s w_s² V_s + Σ_s w_s (α_s − α)(α_s − α)' / N,

    the first term the variance given the strata sizes (Miratrix, Sekhon & Yu 2013, JRSS B 75;
    gbstats' ``covariance_part_2`` to first order), the second that of the strata shares
    themselves (multinomial, gbstats' ``covariance_part_1``).
    The absolute effect is α_2 = Σ w_s Δ_s; the relative one α_2/|α_1|, over the post-stratified
    baseline mean, by the delta method on (α_1, α_2). Degrees of freedom: Satterthwaite (1946)
    over the per-stratum, per-arm variance terms (Welch's with one stratum).

    With one stratum this is ``compare`` (and, without ``cuped``, also relative). Strata without
    units in either arm are skipped; a stratum with fewer than 2 units in one arm makes the result
    NaN (merge small strata first, as the segments' "other" does). Never raises on data.

    Args:
        strata_a: baseline Moments per stratum: a sequence, or one Moments whose last axis is the
            stratum (leading axes: one comparison each).
        strata_b: treatment Moments of the same strata, in the same order.
        relative: relative lift instead of the absolute difference.
        alpha: 1 − the interval's confidence level.
        cuped: CUPED within each stratum (needs the pre-period fields).
        sequential_tuning: N* of the confidence sequence; None for a fixed horizon.

    Returns:
        A :class:`~ab_pipelines.stats.compare.Comparison`: means are unadjusted over all strata,
        ``adjusted_mean_a`` is α_1 and ``adjusted_mean_b`` α_1 + α_2, ``theta`` the per-stratum θ_s
        (with ``cuped``), ``variance_reduction`` 1 − Var/Var(raw ``compare``).

    Examples:
        >>> a = [Moments(100, 100.0, 200.0), Moments(100, 500.0, 2600.0)]
        >>> b = [Moments(120, 132.0, 270.0), Moments(80, 416.0, 2200.0)]
        >>> r = compare_poststratified(a, b, relative=False)
        >>> round(r.effect, 3), round(r.mean_b - r.mean_a, 3), round(r.variance_reduction, 2)
        (0.145, -0.26, 0.82)
    """
    _check(alpha)
    a, b = _stack(strata_a), _stack(strata_b)
    if cuped and not (a.has_pre and b.has_pre):
        raise ValueError("cuped=True needs the pre-period fields of every stratum")
    k = 2 if cuped else 1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        (n_a, mu_a, s_a), (n_b, mu_b, s_b) = _arm(a, k), _arm(b, k)
        theta = _theta(a, b, False, None) if cuped else np.zeros_like(n_a)
        g = np.stack([np.ones_like(theta), -theta], -1)[..., :k]
        e0 = np.stack([np.ones_like(theta), np.zeros_like(theta)], -1)[..., :k]
        v_a, v_b = (np.einsum("...i,...i->...", g, mu) for mu in (mu_a, mu_b))
        var_va, var_vb = _quad(g, s_a, g) / n_a, _quad(g, s_b, g) / n_b
        cov_ya_va = _quad(e0, s_a, g) / n_a
        var_ya = s_a[..., 0, 0] / n_a
        n_s = n_a + n_b
        present = n_s > 0
        w = n_s / np.sum(n_s, -1, keepdims=True)
        alpha_s = np.where(present[..., None], np.stack([mu_a[..., 0], v_b - v_a], -1), 0.0)
        v_s = np.stack(
            [np.stack([var_ya, -cov_ya_va], -1), np.stack([-cov_ya_va, var_va + var_vb], -1)], -2
        )
        v_s = np.where(present[..., None, None], v_s, 0.0)
        mean = np.einsum("...s,...si->...i", w, alpha_s)
        dev = alpha_s - mean[..., None, :]
        cov = (
            np.einsum("...s,...sij->...ij", w**2, v_s)
            + np.einsum("...s,...si,...sj->...ij", w, dev, dev) / np.sum(n_s, -1)[..., None, None]
        )
        base, diff = mean[..., 0], mean[..., 1]
        if relative:
            s = np.abs(base)
            grad = np.stack([-diff * np.sign(base) / base**2, 1.0 / s], -1)
            effect, var = diff / s, _quad(grad, cov, grad)
        else:
            effect, var = diff, cov[..., 1, 1]
        terms = [np.where(present, w**2 * v, 0.0) for v in (var_va, var_vb)]
        dfs = [np.where(present, (n - 1.0), 1.0) for n in (n_a, n_b)]
        df = sum(t.sum(-1) for t in terms) ** 2 / sum(
            (t**2 / d).sum(-1) for t, d in zip(terms, dfs, strict=True)
        )
        total_a = Moments(n_a.sum(-1), np.sum(a.sum, -1), np.sum(a.sum_sq, -1))
        total_b = Moments(n_b.sum(-1), np.sum(b.sum, -1), np.sum(b.sum_sq, -1))
        raw = compare(total_a, total_b, relative=relative)
        return _comparison(
            effect,
            var,
            df,
            total_a.n,
            total_b.n,
            True,
            relative,
            alpha,
            sequential_tuning,
            np.asarray(raw.se, dtype=np.float64) ** 2,
            mean_a=raw.mean_a,
            mean_b=raw.mean_b,
            adjusted_mean_a=base,
            adjusted_mean_b=base + diff,
            theta=theta if cuped else None,
        )
