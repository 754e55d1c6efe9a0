"""A Bayesian read of a comparison: GrowthBook's effect model on the delta-method estimate.

GrowthBook's Bayesian engine (gbstats 0.8.0, ``EffectBayesianABTest``; docs.growthbook.io
"Statistical Details") puts a normal prior on the effect Δ (relative lift, or absolute difference)
and treats the delta-method estimate as a normal likelihood, d ~ N(Δ, v), with d and v exactly the
frequentist estimate and its variance (:func:`ab_pipelines.stats.compare`, which is reused here, so
means, proportions, ratios and CUPED all come for free). The normal-normal update (Gelman et al.,
"Bayesian Data Analysis", 3rd ed., §2.5) gives the posterior N(m, s²):

    flat prior (improper, the default):  m = d,  s² = v
    N(μ₀, τ²) prior:   1/s² = 1/v + 1/τ²,   m = s² · (d/v + μ₀/τ²)

and from it, with z = m/s, Φ and φ the standard normal cdf and density:

    credible interval   m ± Φ⁻¹(1 − α/2) · s
    chance to win       P(Δ > 0) = Φ(z)                       (P(Δ < 0) when lower is better)
    risk of control     E[max(Δ, 0)]  = m·Φ(z) + s·φ(z)       (expected loss of keeping control)
    risk of treatment   E[max(−Δ, 0)] = −m·Φ(−z) + s·φ(z)     (expected loss of shipping it)

The two risks are the means of the truncated normals that gbstats computes as
P(Δ ≷ 0)·E[Δ | Δ ≷ 0] (Stucchio 2015, "Bayesian A/B Testing at VWO", expected loss); they are in
the effect's units: relative lift for ``relative=True``, metric units otherwise. When lower is better
the two risks swap, as gbstats does for inverse metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.moments import Moments, RatioMoments

__all__ = [
    "DEFAULT_CHANCE_TO_WIN_THRESHOLD",
    "DEFAULT_PROPER_PRIOR_STDDEV",
    "DEFAULT_RISK_THRESHOLD",
    "DEFAULT_ROLLBACK_RISK_THRESHOLD",
    "BayesianComparison",
    "Prior",
    "bayesian_compare",
    "bayesian_decision",
    "posterior",
]

#: GrowthBook's default confidence level: chance to win above it is a winner, below 1 − it a loser
#: (``DEFAULT_CONFIDENCE_LEVEL`` in growthbook/packages/shared/src/constants.ts).
DEFAULT_CHANCE_TO_WIN_THRESHOLD = 0.95
#: GrowthBook's default metric ``winRisk``: a relative risk at or below 0.25% is shown green,
#: "safe to call" (``DEFAULT_WIN_RISK_THRESHOLD``).
DEFAULT_RISK_THRESHOLD = 0.0025
#: GrowthBook's default metric ``loseRisk``: a relative risk of 1.25% or more is shown red
#: (``DEFAULT_LOSE_RISK_THRESHOLD``); informative only, :func:`bayesian_decision` does not use it.
DEFAULT_ROLLBACK_RISK_THRESHOLD = 0.0125
#: The prior sd GrowthBook's UI proposes when a metric turns a proper prior on
#: (``DEFAULT_PROPER_PRIOR_STDDEV``), on the relative lift: ±30%.
DEFAULT_PROPER_PRIOR_STDDEV = 0.3

_SQRT_2PI = np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Prior:
    """A normal prior on the effect, GrowthBook's ``GaussianPrior(mean, variance, proper)``.

    Attributes:
        mean: prior mean of the effect.
        variance: prior variance of the effect (used only when ``proper``).
        proper: False (the default) for GrowthBook's flat, improper prior: the posterior is the
            likelihood. True for the informative N(mean, variance).
        relative: whether ``mean`` and ``variance`` are on the relative lift (GrowthBook's metric
            setting, ``prior_type="relative"``) or on the absolute difference. A prior on the other
            scale than the comparison is rescaled with the baseline mean u_a, as gbstats does:
            mean·|u_a| and variance·u_a² (relative prior, absolute comparison), mean/|u_a| and
            variance/u_a² (the other way).

    Examples:
        >>> Prior().proper
        False
        >>> p = Prior.normal(mean=0.0, sd=0.1)
        >>> p.proper, round(p.variance, 4), p.relative
        (True, 0.01, True)
    """

    mean: float = 0.0
    variance: float = DEFAULT_PROPER_PRIOR_STDDEV**2
    proper: bool = False
    relative: bool = True

    def __post_init__(self) -> None:
        if self.proper and not self.variance > 0:
            raise ValueError(f"a proper prior needs a positive variance, got {self.variance!r}")

    @classmethod
    def normal(
        cls, mean: float = 0.0, sd: float = DEFAULT_PROPER_PRIOR_STDDEV, relative: bool = True
    ) -> Prior:
        """The proper prior N(mean, sd²), as GrowthBook's metric settings state it (mean, stddev)."""
        return cls(mean=mean, variance=sd**2, proper=True, relative=relative)


_FLAT_PRIOR = Prior()


@dataclass(frozen=True)
class BayesianComparison:
    """The posterior of the effect of arm b (treatment) over arm a (baseline).

    Fields are floats for scalar moments, numpy arrays (one element per comparison) for arrays.
    Where the comparison cannot be computed (see :func:`bayesian_compare`) the numeric fields
    except the means and n are NaN.

    Attributes:
        effect: posterior mean of the effect (GrowthBook's ``expected``): relative lift
            (mean_b − mean_a)/|mean_a| or absolute difference, CUPED-adjusted when asked.
        sd: posterior standard deviation of the effect.
        ci_low: lower bound of the equal-tailed (1 − α) credible interval.
        ci_high: upper bound.
        chance_to_win: posterior probability that the treatment is better than the baseline, in the
            metric's desired direction.
        risk_control: expected loss of keeping the baseline, E[max(Δ, 0)] (E[max(−Δ, 0)] when
            lower is better), in the effect's units (GrowthBook's ``risk[0]``).
        risk_treatment: expected loss of shipping the treatment, E[max(−Δ, 0)] (E[max(Δ, 0)] when
            lower is better) (GrowthBook's ``risk[1]``).
        data_effect: the estimate the likelihood is centred on (``compare``'s effect).
        data_se: its standard error (``compare``'s se).
        mean_a: unadjusted baseline mean (Σnum/Σden for a ratio).
        mean_b: unadjusted treatment mean.
        n_a: units in the baseline.
        n_b: units in the treatment.
        relative: whether the effect (and the risks) are relative.
        higher_is_better: the metric's desired direction.
        prior: the prior as given (before any rescaling).
        alpha: 1 − the credible level.
    """

    effect: Any
    sd: Any
    ci_low: Any
    ci_high: Any
    chance_to_win: Any
    risk_control: Any
    risk_treatment: Any
    data_effect: Any
    data_se: Any
    mean_a: Any
    mean_b: Any
    n_a: Any
    n_b: Any
    relative: bool
    higher_is_better: bool
    prior: Prior
    alpha: float

    @property
    def relative_risk_control(self) -> Any:
        """``risk_control`` as a fraction of the baseline mean, as GrowthBook's risk column shows it."""
        return self._relative(self.risk_control)

    @property
    def relative_risk_treatment(self) -> Any:
        """``risk_treatment`` as a fraction of the baseline mean."""
        return self._relative(self.risk_treatment)

    def _relative(self, risk: Any) -> Any:
        if self.relative:
            return risk
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.asarray(risk, dtype=np.float64) / np.abs(self.mean_a)
        return float(out) if np.ndim(out) == 0 else out


def _prior_on_scale(prior: Prior, relative: bool, mean_a: Any) -> tuple[Any, Any]:
    """Prior mean and variance on the comparison's scale (gbstats EffectBayesianABTest.__init__)."""
    if prior.relative == relative:
        return prior.mean, prior.variance
    u = np.abs(np.asarray(mean_a, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        if relative:
            return prior.mean / u, prior.variance / u**2
        return prior.mean * u, prior.variance * u**2


def bayesian_compare(
    a: Moments | RatioMoments,
    b: Moments | RatioMoments,
    relative: bool = True,
    cuped: bool = False,
    prior: Prior | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianComparison:
    """GrowthBook's Bayesian comparison of arm ``b`` (treatment) with arm ``a`` (baseline).

    The likelihood is ``compare(a, b, relative, alpha, cuped)``'s effect and se (delta method,
    CUPED / regression adjustment with ``cuped=True``); the posterior, credible interval, chance to
    win and risks follow the module docstring, as gbstats 0.8.0 ``EffectBayesianABTest`` computes
    them. With the default flat prior the posterior is N(effect, se²): the credible interval is the
    normal (z) interval effect ± z_{1−α/2}·se, a little narrower than ``compare``'s Welch t interval.

    Degenerate inputs follow ``compare``'s convention, not gbstats': where an arm has n < 2, the
    effect has zero or undefined variance, or (relative) the baseline mean is 0, every posterior
    field is NaN. gbstats returns a placeholder there instead (chance to win 0.5, effect 0, interval
    [0, 0], risks [0, 0]) and raises ZeroDivisionError for a proper relative prior on an absolute
    comparison with a zero baseline mean (NaN here). Negative baseline means: the relative lift
    divides by |mean_a| (as ``compare`` does), gbstats by the signed mean, so for them the relative
    effect's sign differs from gbstats'.

    Args:
        a: baseline arm moments (scalars, or arrays: one comparison per element).
        b: treatment arm moments, same type as ``a``, broadcastable with it.
        relative: relative lift instead of the absolute difference.
        cuped: apply CUPED / regression adjustment (needs the pre-period fields).
        prior: a :class:`Prior`; None is GrowthBook's default, the flat improper prior.
        alpha: 1 − the credible interval's level.
        higher_is_better: the metric's desired direction (False is gbstats' ``inverse``): flips the
            chance to win and swaps the two risks.

    Returns:
        A :class:`BayesianComparison`; floats for scalar moments, arrays for arrays.

    Examples:
        >>> a = Moments(n=3407, sum=1396.87, sum_sq=52377.9767)
        >>> b = Moments(n=3461, sum=2422.7, sum_sq=134698.29)
        >>> r = bayesian_compare(a, b, relative=False)
        >>> round(r.effect, 4), round(r.ci_low, 4), round(r.ci_high, 4)
        (0.29, 0.0454, 0.5346)
        >>> round(r.chance_to_win, 4), round(r.risk_control, 4), round(r.risk_treatment, 5)
        (0.9899, 0.2904, 0.00043)
        >>> s = bayesian_compare(a, b, relative=False, prior=Prior.normal(0.0, 0.1))
        >>> bool(abs(s.effect) < abs(r.effect))
        True
    """
    c = compare(a, b, relative=relative, alpha=alpha, cuped=cuped, sequential_tuning=None)
    return posterior(c, prior, alpha, higher_is_better)


def posterior(
    c: Comparison,
    prior: Prior | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> BayesianComparison:
    """The Bayesian read of a fixed-horizon comparison already made: the normal-normal update of
    the module docstring on ``c.effect`` and ``c.se`` (its scale, relative or absolute, is
    ``c.relative``). :func:`bayesian_compare` is ``posterior(compare(...))``; a quantile metric's
    :func:`~ab_pipelines.stats.quantile.compare_quantiles` gives its posterior the same way, as
    gbstats' ``EffectBayesianABTest`` takes a ``QuantileStatistic`` (its mean the sample quantile,
    its variance the clustered delta-method one).

    Examples:
        >>> a = Moments(n=3407, sum=1396.87, sum_sq=52377.9767)
        >>> b = Moments(n=3461, sum=2422.7, sum_sq=134698.29)
        >>> p = posterior(compare(a, b, relative=False))
        >>> p == bayesian_compare(a, b, relative=False)
        True
    """
    prior = _FLAT_PRIOR if prior is None else prior
    relative = c.relative
    d = np.asarray(c.effect, dtype=np.float64)
    v = np.asarray(c.se, dtype=np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if prior.proper:
            m0, t2 = _prior_on_scale(prior, relative, c.mean_a)
            t2 = np.where(np.isfinite(t2) & (np.asarray(t2) > 0), t2, np.nan)
            precision = 1.0 / v + 1.0 / t2
            s2 = 1.0 / precision
            m = s2 * (d / v + m0 / t2)
        else:
            m, s2 = d, v
        s = np.sqrt(s2)
        half = special.ndtri(1.0 - alpha / 2.0) * s
        z = m / s
        density = np.exp(-0.5 * z**2) / _SQRT_2PI
        # E[max(Δ, 0)] and E[max(−Δ, 0)] of Δ ~ N(m, s²): the normal partial expectations.
        gain = m * special.ndtr(z) + s * density
        loss = -m * special.ndtr(-z) + s * density
        win = special.ndtr(z)
    if higher_is_better:
        risk_control, risk_treatment = gain, loss
    else:
        win, risk_control, risk_treatment = 1.0 - win, loss, gain
    out = dict(
        effect=m,
        sd=s,
        ci_low=m - half,
        ci_high=m + half,
        chance_to_win=win,
        risk_control=risk_control,
        risk_treatment=risk_treatment,
        data_effect=d,
        data_se=np.sqrt(v),
        mean_a=c.mean_a,
        mean_b=c.mean_b,
        n_a=c.n_a,
        n_b=c.n_b,
    )
    scalar = np.ndim(c.effect) == 0
    out = {key: float(x) if scalar else np.asarray(x, dtype=np.float64) for key, x in out.items()}
    return BayesianComparison(
        relative=relative, higher_is_better=higher_is_better, prior=prior, alpha=alpha, **out
    )


def bayesian_decision(
    result: BayesianComparison,
    chance_to_win_threshold: float = DEFAULT_CHANCE_TO_WIN_THRESHOLD,
    risk_threshold: float = DEFAULT_RISK_THRESHOLD,
) -> Any:
    """Which arm to keep: ``"ship"`` (the treatment), ``"rollback"`` (the baseline), ``"keep_running"``.

    GrowthBook's results table shows two signals per metric: the chance to win, coloured a winner
    above the organisation's confidence level (default 95%) and a loser below 1 − it; and the risk
    of the chosen arm relative to the baseline mean, green ("safe to call") at or below the metric's
    ``winRisk`` (default 0.25%), red at or above ``loseRisk`` (1.25%). This helper asks for both:

    - ``"ship"`` when chance to win > ``chance_to_win_threshold`` and the relative risk of shipping
      the treatment <= ``risk_threshold``;
    - ``"rollback"`` when chance to win < 1 − ``chance_to_win_threshold`` and the relative risk of
      keeping the baseline <= ``risk_threshold``;
    - ``"keep_running"`` otherwise, and wherever the comparison is NaN.

    The words are those of the experiment decision (``ab_pipelines.analysis.decision``).

    Args:
        result: a :class:`BayesianComparison` (scalar or arrays).
        chance_to_win_threshold: GrowthBook's confidence level, in (0.5, 1).
        risk_threshold: the largest acceptable expected loss, as a fraction of the baseline mean.

    Returns:
        A str for a scalar result, a numpy array of str otherwise.

    Examples:
        >>> a = Moments(n=20000, sum=2000.0, sum_sq=2000.0)
        >>> bayesian_decision(bayesian_compare(a, Moments(n=20000, sum=2300.0, sum_sq=2300.0)))
        'ship'
        >>> bayesian_decision(bayesian_compare(a, Moments(n=20000, sum=2030.0, sum_sq=2030.0)))
        'keep_running'
    """
    if not 0.5 < chance_to_win_threshold < 1.0:
        raise ValueError(
            f"chance_to_win_threshold must lie in (0.5, 1), got {chance_to_win_threshold!r}"
        )
    if not risk_threshold >= 0:
        raise ValueError(f"risk_threshold must be non-negative, got {risk_threshold!r}")
    win = np.asarray(result.chance_to_win, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ship = (win > chance_to_win_threshold) & (
            np.asarray(result.relative_risk_treatment) <= risk_threshold
        )
        rollback = (win < 1.0 - chance_to_win_threshold) & (
            np.asarray(result.relative_risk_control) <= risk_threshold
        )
    out = np.where(ship, "ship", np.where(rollback, "rollback", "keep_running"))
    return str(out) if out.ndim == 0 else out
