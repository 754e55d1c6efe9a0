"""Statistics on sufficient statistics (CONTRACTS section 5): numpy and scipy only.

No Spark, Dagster or pandas is imported, so an analyst can use it in a notebook::

    from ab_pipelines.stats import Moments, RatioMoments, compare, srm_test, adjust_pvalues
"""

from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.corrections import adjust_pvalues
from ab_pipelines.stats.guardrails import guardrail_bound, guardrail_breached
from ab_pipelines.stats.moments import Moments, RatioMoments
from ab_pipelines.stats.power import days_needed, mde_for, sample_size
from ab_pipelines.stats.sequential import (
    DEFAULT_SEQUENTIAL_TUNING,
    always_valid_p_value,
    confidence_sequence_halfwidth,
    sequential_rho,
)
from ab_pipelines.stats.srm import SrmResult, srm_test

__all__ = [
    "DEFAULT_SEQUENTIAL_TUNING",
    "Comparison",
    "Moments",
    "RatioMoments",
    "SrmResult",
    "adjust_pvalues",
    "always_valid_p_value",
    "compare",
    "confidence_sequence_halfwidth",
    "days_needed",
    "guardrail_bound",
    "guardrail_breached",
    "mde_for",
    "sample_size",
    "sequential_rho",
    "srm_test",
]
