"""Anytime-valid multiple testing: the e-process behind the always-valid p-value, and e-BH.

**The e-process.** The confidence sequence of :mod:`ab_pipelines.stats.sequential` (Waudby-Smith et
al. 2023, the Gaussian-mixture asymptotic CS) is the boundary of Robbins' normal-mixture
martingale (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 49, §3, the normal mixture). With z = effect/se after N
units, a = Nρ² and ρ fixed in advance from (α, N*) by
:func:`~ab_pipelines.stats.sequential.sequential_rho`,

    E_N = ∫ exp(λ S_N − λ² N/2) dN(0, ρ²)(λ) = exp(a z² / (2(a + 1))) / sqrt(a + 1),

S_N = z·sqrt(N) the standardised sum. Under the null (effect 0) E_N is a nonnegative martingale
with E_0 = 1 (exactly for Gaussian observations of known variance, asymptotically otherwise, which
is the sense in which the CS itself is valid), so E evaluated at any stopping time τ has
E[E_τ] <= 1: an e-process (Ramdas, Grünwald, Vovk & Shafer 2023, "Game-theoretic statistics and
safe anytime-valid inference", Statistical Science 38). Check at a fixed N: z ~ N(0, 1) and
c = a/(2(a + 1)) give E[exp(c z²)] = 1/sqrt(1 − 2c) = sqrt(a + 1), so E[E_N] = 1.

**Why not e = 1/p.** The project's always-valid p-value is p = min(1, 1/E_N): the cap makes
1/p = max(E_N, 1), whose mean is P(|Z| < z₀) + P(|Z| >= z₀/sqrt(a + 1)) > 1, with
z₀² = (a + 1)·log(a + 1)/a the z where E_N = 1: 1.48 at N = N*. So 1/p is *not* an e-value;
:func:`e_value` returns E_N, which may be below 1. (A running minimum of p, as other always-valid
p-values are defined, is further off: 1/min p = max_{s<=N} E_s, whose mean grows with the number
of looks and is infinite under continuous monitoring, since P(sup E >= x) = 1/x for a continuous
martingale.) The two agree wherever p < 1, and every e-BH threshold m/(αk) exceeds 1, so e-BH
decisions from 1/p and from E are the same; the difference matters once e-values are averaged,
multiplied or shown.

**e-BH** (Wang & Ramdas 2022, "False discovery rate control with e-values", JRSS-B 84): with m
hypotheses, reject the k* largest e-values, k* = max{k : e_(k) >= m/(αk)}. FDR <= α·m₀/m under
arbitrary dependence between the e-values: any rejection set R in which every rejected e_k >=
m/(α|R|) ("self-consistent") has FDR = E[Σ_null 1{k∈R}/|R|] <= (α/m)·Σ_null E[e_k] <= α·m₀/m.

**Continuous monitoring** (:func:`monitor_discoveries`): at each look, e-BH on the *stopped*
e-processes, each frozen at the look where it was first rejected. The stopped values are e-values
(optional stopping at the stopping time "first rejected, or the last look"), the final set is e-BH
on them, so FDR <= α·m₀/m at every look and at any data-dependent stopping time; a discovery, once
made, stays (its frozen value keeps clearing the threshold, which can only fall as discoveries
accumulate). The same argument covers "reject whatever per-look e-BH (equivalently per-look BH on
p = min(1, 1/E)) ever rejected": that set is self-consistent for the e-processes stopped at each
hypothesis' first rejection, and it is a subset of the monitor's. The martingale property must hold
in the filtration of all the family's data, which it does when units arrive independently over
time (each look adds new units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ab_pipelines.stats.sequential import DEFAULT_SEQUENTIAL_TUNING, sequential_rho

__all__ = ["Discoveries", "e_bh", "e_value", "monitor_discoveries"]


def e_value(
    effect: ArrayLike,
    se: ArrayLike,
    n: ArrayLike,
    alpha: float = 0.05,
    tuning: float = DEFAULT_SEQUENTIAL_TUNING,
) -> Any:
    """The normal-mixture e-process E_N whose boundary is the confidence sequence (see module).

    E_N = exp(a z²/(2(a + 1)))/sqrt(a + 1), z = effect/se, a = Nρ², ρ = ``sequential_rho(alpha,
    tuning)``, N the units of both arms (as in
    :func:`~ab_pipelines.stats.sequential.always_valid_p_value`, whose value is min(1, 1/E_N)).
    ``alpha`` only fixes ρ, as it does for the confidence sequence: choose it before the data.

    NaN where effect or se is NaN, both are 0, or n < 0; 1 for n = 0 (no data yet); inf when the
    exponent overflows (an effect too large to miss, or se = 0 with an effect).

    Examples:
        >>> round(float(e_value(0.0, 1.0, 5000)), 4)  # no evidence: below 1
        0.3345
        >>> round(float(e_value(3.1, 1.0, 5000)), 2)
        23.86
        >>> from ab_pipelines.stats.sequential import always_valid_p_value
        >>> round(float(1.0 / always_valid_p_value(3.1, 1.0, 5000, 0.05, 5000)), 2)
        23.86
    """
    rho = sequential_rho(alpha, tuning)
    n = np.asarray(n, dtype=np.float64)
    a = np.where(n >= 0, n * rho**2, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z2 = (np.asarray(effect, dtype=np.float64) / np.asarray(se, dtype=np.float64)) ** 2
        log_e = np.where(a > 0, a * z2 / (2.0 * (a + 1.0)), 0.0) - 0.5 * np.log1p(a)
        log_e = np.where(np.isnan(z2) | np.isnan(a), np.nan, log_e)
        out = np.exp(log_e)
    return float(out) if out.ndim == 0 else out


def _family(e: Any, m: int | None) -> tuple[Any, Any]:
    """The e-values as float64 (NaN stays NaN) and the family size per row."""
    e = np.asarray(e, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if np.any(e < 0):
            raise ValueError("e-values are nonnegative; got a negative one")
    count = np.sum(~np.isnan(e), axis=-1, keepdims=True)
    if m is None:
        return e, count
    if m < np.max(count, initial=0):
        raise ValueError(f"m = {m} is smaller than the number of e-values in a family")
    return e, np.full(count.shape, float(m))


def e_bh(e_values: ArrayLike, alpha: float = 0.05, m: int | None = None) -> Any:
    """e-BH (Wang & Ramdas 2022): reject the k* largest e-values, k* = max{k: e_(k) >= m/(αk)}.

    FDR <= α·m₀/m under any dependence between the e-values. NaN e-values (comparisons that could
    not be computed) are never rejected; by default they are also left out of the family (m counts
    the others, as :func:`~ab_pipelines.stats.corrections.adjust_pvalues` does); pass ``m`` to fix
    the family size instead (the monitor does: the family is fixed in advance). A 2-D input is one
    family per row.

    Args:
        e_values: nonnegative e-values, the family on the last axis.
        alpha: the FDR target, in (0, 1).
        m: the family size; default the number of non-NaN e-values in each family.

    Returns:
        A boolean array of the input's shape.

    Examples:
        >>> e_bh([50.0, 45.0, 1.0, 0.2], alpha=0.1).tolist()  # thresholds 40, 20, 13.3, 10
        [True, True, False, False]
        >>> e_bh([35.0, 1.0, 0.2, 0.1], alpha=0.1).tolist()  # 35 < 4/(0.1·1) = 40
        [False, False, False, False]
        >>> e_bh([30.0, 25.0, 22.0, float("nan")], alpha=0.1).tolist()  # m = 3: 3/(0.1·3) = 10
        [True, True, True, False]
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    e, size = _family(e_values, m)
    shape = e.shape
    e = np.atleast_1d(e)
    size = np.atleast_1d(size)
    ranked = -np.sort(-np.where(np.isnan(e), -np.inf, e), axis=-1)  # descending, NaN last
    k = np.arange(1, e.shape[-1] + 1)
    with np.errstate(divide="ignore"):
        ok = ranked >= size / (alpha * k)
    # k* is the largest k that clears its threshold (0 when none does).
    k_star = np.max(np.where(ok, k, 0), axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        threshold = np.where(k_star > 0, size / (alpha * np.maximum(k_star, 1)), np.inf)
    out = np.where(np.isnan(e), False, e >= threshold)
    return out.reshape(shape)


@dataclass(frozen=True)
class Discoveries:
    """What e-BH under continuous monitoring rejected, look by look.

    Attributes:
        rejected: boolean, shape (..., looks, m): the discoveries standing after each look (once
            rejected, always rejected).
        first_look: int, shape (..., m): the index of the look a hypothesis was first rejected at;
            -1 if never.
        stopped_e: float, shape (..., m): the e-value e-BH used at the last look: the frozen value
            at the first rejection, the last look's e-value otherwise.
        alpha: the FDR target.
        m: the family size.
    """

    rejected: Any
    first_look: Any
    stopped_e: Any
    alpha: float
    m: int

    @property
    def final(self) -> Any:
        """The discoveries after the last look, shape (..., m)."""
        return self.rejected[..., -1, :]


def monitor_discoveries(e_values: ArrayLike, alpha: float = 0.05) -> Discoveries:
    """e-BH at every look on the e-processes stopped at their first rejection ("reject once, keep").

    At look t, hypothesis k enters e-BH with its e-process value at min(t, τ_k), τ_k its first
    rejection; the family size m is the last axis' length whatever is NaN (a NaN, e.g. a comparison
    not yet computable, is never rejected and does not shrink the family). FDR <= α·m₀/m at every
    look and at any data-dependent stopping time (module docstring). Feed it the whole history of
    e-values of the family, every look so far in order: it is recomputed, not stored.

    Args:
        e_values: e-process values, shape (..., looks, m): looks in time order, the family last.
        alpha: the FDR target, in (0, 1).

    Returns:
        :class:`Discoveries`.

    Examples:
        >>> looks = [[5.0, 1.0, 1.0], [70.0, 2.0, 1.0], [3.0, 40.0, 1.0]]
        >>> d = monitor_discoveries(looks, alpha=0.05)  # thresholds 60, 30, 20
        >>> d.rejected.astype(int).tolist()
        [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
        >>> d.first_look.tolist(), d.stopped_e.tolist()
        ([1, 2, -1], [70.0, 40.0, 1.0])
    """
    e = np.asarray(e_values, dtype=np.float64)
    if e.ndim < 2:
        raise ValueError("e_values needs shape (..., looks, m)")
    m = e.shape[-1]
    looks = e.shape[-2]
    rejected = np.zeros(e.shape, dtype=bool)
    before = np.zeros(e.shape[:-2] + (m,), dtype=bool)
    frozen = np.full(e.shape[:-2] + (m,), np.nan)
    first = np.full(e.shape[:-2] + (m,), -1, dtype=np.int64)
    stopped = frozen
    for t in range(looks):
        stopped = np.where(before, frozen, e[..., t, :])
        now = e_bh(stopped, alpha=alpha, m=m) | before  # `| before` is a no-op (see module)
        new = now & ~before
        frozen = np.where(new, e[..., t, :], frozen)
        first = np.where(new, t, first)
        rejected[..., t, :] = now
        before = now
    return Discoveries(rejected=rejected, first_look=first, stopped_e=stopped, alpha=alpha, m=m)
