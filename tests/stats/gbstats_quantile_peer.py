"""Runs inside a venv of its own with gbstats 0.8.0: quantile cases, JSON in, JSON out.

stdin: a list of cases {"relative": bool, "a": {...}, "b": {...}}, each arm the fields of
``ab_pipelines.stats.quantile.QuantileMoments`` (the six per-unit sums present for event-level);
stdout: [{"effect", "ci_low", "ci_high", "p_value", "variance_a", "variance_b", "error"}].
"""

import json
import sys

from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import QuantileClusteredStatistic, QuantileStatistic


def build(d):
    unit = dict(
        n=int(d["n"]),
        n_star=int(d["n_star"]),
        nu=d["q"],
        quantile_hat=d["quantile"],
        quantile_lower=d["lower"],
        quantile_upper=d["upper"],
    )
    if d.get("n_units") is None:
        return QuantileStatistic(**unit)
    return QuantileClusteredStatistic(
        **unit,
        main_sum=d["below_sum"],
        main_sum_squares=d["below_sum_sq"],
        denominator_sum=d["events_sum"],
        denominator_sum_squares=d["events_sum_sq"],
        main_denominator_sum_product=d["below_events_sum"],
        n_clusters=int(d["n_units"]),
    )


out = []
for case in json.load(sys.stdin):
    a, b = build(case["a"]), build(case["b"])
    diff = "relative" if case["relative"] else "absolute"
    r = TwoSidedTTest(a, b, FrequentistConfig(difference_type=diff)).compute_result()
    out.append(
        {
            "effect": r.expected,
            "ci_low": r.ci[0],
            "ci_high": r.ci[1],
            "p_value": r.p_value,
            "variance_a": a.variance,
            "variance_b": b.variance,
            "error": r.error_message,
        }
    )
json.dump(out, sys.stdout)
