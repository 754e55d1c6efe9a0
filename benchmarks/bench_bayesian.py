"""Statistics: the Bayesian engine on 10,000 pairs of arms, vectorized ``bayesian_compare`` vs gbstats.

Half the pairs are revenue-like means, half conversions (0/1 values, Σy² = Σy), shuffled; both sides
get the same sufficient statistics and GrowthBook's informative prior N(0, 0.3²) on the relative
lift (the UI's proposal when a metric turns a proper prior on), so the normal-normal update runs.
The project reads all pairs in one ``bayesian_compare`` call over arrays; gbstats 0.8.0 builds two
SampleMeanStatistic and runs a relative EffectBayesianABTest per pair (conversions as
SampleMeanStatistic on the 0/1 values, as the peer test's "binary" kind: gbstats'
ProportionStatistic uses the variance p(1 − p) instead of the sample variance, a different
estimate). Timing and the agreement check are the t-test benchmark's (``bench_statistics``).
"""

from __future__ import annotations

import numpy as np

from ab_pipelines.stats import Moments, Prior, bayesian_compare
from benchmarks.bench_statistics import (
    CHECKED_PAIRS,
    PAIRS,
    arm_columns,
    check_agreement,
    mean_arms,
    speed_benchmark,
    time_against_gbstats,
)
from benchmarks.report import Benchmark

__all__ = ["run"]

TARGET_SPEEDUP = 100.0
TOLERANCE = 1e-9
# A clear winner's or loser's risk is tiny (down to 1e-90 here), where gbstats' product of scipy's
# normal cdf and truncnorm mean loses its digits (8e-8 relative at 1e-12, nothing at 1e-90), so
# values below this floor are compared absolutely.
RISK_FLOOR = 1e-6
FIELDS = ("effect", "ci_low", "ci_high", "chance_to_win", "risk_control", "risk_treatment")
PRIOR = Prior.normal()


def conversion_arms(rng: np.random.Generator, pairs: int) -> tuple[Moments, Moments]:
    """Conversion rates of 2% to 50%, lifts within a few percent: 0/1 values, so Σy² = Σy."""
    n_a, n_b = rng.integers(1_000, 50_000, size=(2, pairs))
    rate = rng.uniform(0.02, 0.5, pairs)
    k_a = rng.binomial(n_a, rate).astype(np.float64)
    k_b = rng.binomial(n_b, np.clip(rate * (1.0 + rng.normal(0.0, 0.05, pairs)), 0.0, 1.0))
    k_b = k_b.astype(np.float64)
    return (
        Moments(n=n_a.astype(np.float64), sum=k_a, sum_sq=k_a),
        Moments(n=n_b.astype(np.float64), sum=k_b, sum_sq=k_b),
    )


def mixed_arms(rng: np.random.Generator, pairs: int) -> tuple[Moments, Moments]:
    """Half means, half conversions, in a random order."""
    means, conversions = mean_arms(rng, pairs // 2), conversion_arms(rng, pairs - pairs // 2)
    order = rng.permutation(pairs)

    def mix(x: Moments, y: Moments) -> Moments:
        return Moments(
            **{
                k: np.concatenate([getattr(x, k), getattr(y, k)])[order]
                for k in ("n", "sum", "sum_sq")
            }
        )

    return mix(means[0], conversions[0]), mix(means[1], conversions[1])


def run(reps: int = 5, seed: int = 20261206) -> Benchmark:
    rng = np.random.default_rng(seed)
    a, b = mixed_arms(rng, PAIRS)
    check = sorted(int(i) for i in rng.choice(PAIRS, size=CHECKED_PAIRS, replace=False))
    payload = {
        "test": "bayesian",
        "columns": arm_columns(a, b, ("n", "sum", "sum_sq")),
        "prior": {"mean": PRIOR.mean, "variance": PRIOR.variance, "proper": True},
        "alpha": 0.05,
        "check": check,
    }
    timing = time_against_gbstats(
        lambda: bayesian_compare(a, b, relative=True, prior=PRIOR), payload, PAIRS, reps
    )
    worst = check_agreement(timing, FIELDS, TOLERANCE, floor=RISK_FLOOR)
    return speed_benchmark(
        "Statistics: Bayesian engine, relative lift with a proper prior, 10,000 pairs",
        timing,
        TARGET_SPEEDUP,
        project=f"one `bayesian_compare(a, b, relative=True, prior=Prior.normal())` over arrays "
        f"of {PAIRS:,} pairs (half means, half conversions)",
        peer="gbstats 0.8.0 `EffectBayesianABTest` (prior `GaussianPrior(0, 0.09, proper=True)`, "
        "relative) with two `SampleMeanStatistic` per pair",
        agreement=f"Agreement on {len(check)} pairs (effect, credible interval bounds, chance to "
        f"win, both risks): worst relative difference {worst:.1e} (tolerance {TOLERANCE:g}; "
        f"values below {RISK_FLOOR:g} compared absolutely).",
    )
