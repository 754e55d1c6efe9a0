"""Statistics on sufficient statistics (CONTRACTS section 5): numpy and scipy only.

No Spark, Dagster or pandas is imported, so an analyst can use it in a notebook::

    from ab_pipelines.stats import Moments, RatioMoments, compare, srm_test, adjust_pvalues
"""

from ab_pipelines.stats.bayesian import (
    DEFAULT_CHANCE_TO_WIN_THRESHOLD,
    DEFAULT_PROPER_PRIOR_STDDEV,
    DEFAULT_RISK_THRESHOLD,
    DEFAULT_ROLLBACK_RISK_THRESHOLD,
    BayesianComparison,
    Prior,
    bayesian_compare,
    bayesian_decision,
)
from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.corrections import adjust_pvalues
from ab_pipelines.stats.guardrails import guardrail_bound, guardrail_breached
from ab_pipelines.stats.moments import Moments, RatioMoments
from ab_pipelines.stats.power import days_needed, mde_for, sample_size
from ab_pipelines.stats.quantile import (
    N_STAR_GRID,
    QuantileMoments,
    bound_levels,
    compare_quantiles,
    n_star_for,
    quantile_summaries,
)
from ab_pipelines.stats.regression import (
    RegressionMoments,
    compare_adjusted,
    compare_poststratified,
)
from ab_pipelines.stats.sequential import (
    DEFAULT_SEQUENTIAL_TUNING,
    always_valid_p_value,
    confidence_sequence_halfwidth,
    sequential_rho,
)
from ab_pipelines.stats.srm import SrmResult, srm_test

__all__ = [
    "DEFAULT_CHANCE_TO_WIN_THRESHOLD",
    "DEFAULT_PROPER_PRIOR_STDDEV",
    "DEFAULT_RISK_THRESHOLD",
    "DEFAULT_ROLLBACK_RISK_THRESHOLD",
    "DEFAULT_SEQUENTIAL_TUNING",
    "N_STAR_GRID",
    "BayesianComparison",
    "Comparison",
    "Moments",
    "Prior",
    "QuantileMoments",
    "RatioMoments",
    "RegressionMoments",
    "SrmResult",
    "adjust_pvalues",
    "always_valid_p_value",
    "bayesian_compare",
    "bayesian_decision",
    "bound_levels",
    "compare",
    "compare_adjusted",
    "compare_poststratified",
    "compare_quantiles",
    "confidence_sequence_halfwidth",
    "days_needed",
    "guardrail_bound",
    "guardrail_breached",
    "mde_for",
    "n_star_for",
    "quantile_summaries",
    "sample_size",
    "sequential_rho",
    "srm_test",
]
