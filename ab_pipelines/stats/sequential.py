"""Asymptotic confidence sequences: intervals and p-values valid at every look (peeking allowed).

Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas (2023), "Time-uniform central limit theory and
asymptotic confidence sequences", Annals of Statistics (arXiv:2103.06476), the Gaussian-mixture
asymptotic confidence sequence (their "CS-AM"): the two-sided (1 − α) asymptotic confidence sequence for an effect estimated with standard error
``se`` after ``N`` units is

    effect ± se · sqrt( 2(Nρ² + 1)/(Nρ²) · log( sqrt(Nρ² + 1)/α ) )

where ρ > 0 is fixed in advance. Choosing ρ to make the boundary tightest at N = N* (the tuning
parameter, "the sample size you expect") gives (same paper, the optimal-ρ choice)

    ρ² = ( −2 log α + log(−2 log α + 1) ) / N*.

This is the form GrowthBook (gbstats ``SequentialTwoSidedTTest``) and Eppo use. N counts both arms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_SEQUENTIAL_TUNING",
    "always_valid_p_value",
    "confidence_sequence_halfwidth",
    "sequential_rho",
]

#: N* used when the experiment YAML says ``sequential: true``.
DEFAULT_SEQUENTIAL_TUNING = 5000


def _check(alpha: float, tuning: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if not tuning > 0:
        raise ValueError(f"sequential_tuning (N*) must be positive, got {tuning!r}")


def sequential_rho(alpha: float, tuning: float) -> float:
    """The mixing parameter ρ that makes the boundary tightest at N = ``tuning``.

    Waudby-Smith et al. (2023), optimal ρ for time N*: ρ = sqrt((−2 log α + log(−2 log α + 1)) / N*).

    Examples:
        >>> round(sequential_rho(0.05, 5000), 6)
        0.03984
    """
    _check(alpha, tuning)
    a = -2.0 * np.log(alpha)
    return float(np.sqrt((a + np.log(a + 1.0)) / tuning))


def confidence_sequence_halfwidth(se: ArrayLike, n: ArrayLike, alpha: float, tuning: float) -> Any:
    """Half-width of the (1 − α) asymptotic confidence sequence after ``n`` units.

    Waudby-Smith et al. (2023), Gaussian-mixture boundary: se · sqrt(2(Nρ² + 1)/(Nρ²) · log(sqrt(Nρ² + 1)/α)).

    Examples:
        >>> round(float(confidence_sequence_halfwidth(1.0, 5000, 0.05, 5000)), 4)
        3.0352
    """
    rho = sequential_rho(alpha, tuning)
    a = np.asarray(n, dtype=np.float64) * rho**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(se, dtype=np.float64) * np.sqrt(
            2.0 * (a + 1.0) / a * np.log(np.sqrt(a + 1.0) / alpha)
        )


def always_valid_p_value(
    effect: ArrayLike, se: ArrayLike, n: ArrayLike, alpha: float, tuning: float
) -> Any:
    """The smallest level at which the confidence sequence (with ρ fixed from α, N*) excludes 0.

    Inverting the boundary for α with ρ held fixed: with z = effect/se and a = Nρ²,

        p = min(1, sqrt(a + 1) · exp(−z² · a / (2(a + 1)))),

    so ``p <= alpha`` exactly when the (1 − α) confidence sequence excludes 0. Rejecting whenever
    p <= α, at any look, keeps the type I error at most α (asymptotically).

    Examples:
        >>> round(float(always_valid_p_value(0.0, 1.0, 5000, 0.05, 5000)), 3)
        1.0
        >>> bool(always_valid_p_value(3.1, 1.0, 5000, 0.05, 5000) < 0.05)
        True
    """
    rho = sequential_rho(alpha, tuning)
    a = np.asarray(n, dtype=np.float64) * rho**2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.asarray(effect, dtype=np.float64) / np.asarray(se, dtype=np.float64)
        p = np.sqrt(a + 1.0) * np.exp(-(z**2) * a / (2.0 * (a + 1.0)))
    return np.minimum(p, 1.0)
