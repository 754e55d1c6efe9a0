"""Statistics on sufficient statistics (CONTRACTS section 5): numpy and scipy only.

No Spark, Dagster or pandas is imported, so an analyst can use it in a notebook::

    from ab_pipelines.stats import Moments, RatioMoments, compare, srm_test, adjust_pvalues
"""

from ab_pipelines.stats.bandit import (
    DEFAULT_BANDIT_DRAWS,
    DEFAULT_BANDIT_FLOOR,
    DEFAULT_BANDIT_MIN_UNITS,
    BanditWeights,
    compare_by_period,
    floor_weights,
    thompson_weights,
)
from ab_pipelines.stats.bayesian import (
    DEFAULT_CHANCE_TO_WIN_THRESHOLD,
    DEFAULT_PROPER_PRIOR_STDDEV,
    DEFAULT_RISK_THRESHOLD,
    DEFAULT_ROLLBACK_RISK_THRESHOLD,
    BayesianComparison,
    Prior,
    bayesian_compare,
    bayesian_decision,
    posterior,
)
from ab_pipelines.stats.compare import Comparison, compare
from ab_pipelines.stats.corrections import adjust_pvalues
from ab_pipelines.stats.evalues import Discoveries, e_bh, e_value, monitor_discoveries
from ab_pipelines.stats.guardrails import guardrail_bound, guardrail_breached
from ab_pipelines.stats.heterogeneity import (
    HeterogeneityTest,
    Scan,
    heterogeneity_scan,
    heterogeneity_test,
)
from ab_pipelines.stats.interactions import (
    InteractionTest,
    interaction_cells,
    interaction_scan,
    interaction_test,
)
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
    "DEFAULT_BANDIT_DRAWS",
    "DEFAULT_BANDIT_FLOOR",
    "DEFAULT_BANDIT_MIN_UNITS",
    "DEFAULT_CHANCE_TO_WIN_THRESHOLD",
    "DEFAULT_PROPER_PRIOR_STDDEV",
    "DEFAULT_RISK_THRESHOLD",
    "DEFAULT_ROLLBACK_RISK_THRESHOLD",
    "DEFAULT_SEQUENTIAL_TUNING",
    "N_STAR_GRID",
    "BanditWeights",
    "BayesianComparison",
    "Comparison",
    "Discoveries",
    "HeterogeneityTest",
    "InteractionTest",
    "Moments",
    "Prior",
    "QuantileMoments",
    "RatioMoments",
    "RegressionMoments",
    "Scan",
    "SrmResult",
    "adjust_pvalues",
    "always_valid_p_value",
    "bayesian_compare",
    "bayesian_decision",
    "posterior",
    "bound_levels",
    "compare",
    "compare_adjusted",
    "compare_by_period",
    "compare_poststratified",
    "compare_quantiles",
    "confidence_sequence_halfwidth",
    "days_needed",
    "e_bh",
    "e_value",
    "floor_weights",
    "guardrail_bound",
    "guardrail_breached",
    "heterogeneity_scan",
    "heterogeneity_test",
    "interaction_cells",
    "interaction_scan",
    "interaction_test",
    "mde_for",
    "monitor_discoveries",
    "n_star_for",
    "quantile_summaries",
    "sample_size",
    "sequential_rho",
    "srm_test",
    "thompson_weights",
]
