"""Runs inside the gbstats 0.8.0 venv (see test_peer_gbstats.peer_python): JSON in, JSON out.

stdin: a list of cases {"kind": "mean"|"proportion"|"binary"|"ratio"|"cuped", "relative": bool,
"inverse": bool, "alpha": float, "prior": {"mean", "variance", "proper", "type"}, "a": {...},
"b": {...}} with the sufficient statistics (the field names of Moments / RatioMoments). "proportion"
is gbstats' ProportionStatistic (variance p(1 − p)); "binary" the same 0/1 data as a
SampleMeanStatistic. stdout: one {"effect", "sd", "ci_low", "ci_high", "chance_to_win",
"risk_control", "risk_treatment", "error"} per case, from EffectBayesianABTest.compute_result().
"""

import json
import sys

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.models.statistics import (
    ProportionStatistic,
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)


def mean_stat(d, prefix=""):
    return SampleMeanStatistic(n=d["n"], sum=d[prefix + "sum"], sum_squares=d[prefix + "sum_sq"])


def build(kind, d):
    if kind in ("mean", "binary"):
        return mean_stat(d)
    if kind == "proportion":
        return ProportionStatistic(n=d["n"], sum=d["sum"])
    if kind == "ratio":
        return RatioStatistic(
            n=d["n"],
            m_statistic=SampleMeanStatistic(
                n=d["n"], sum=d["num_sum"], sum_squares=d["num_sum_sq"]
            ),
            d_statistic=SampleMeanStatistic(
                n=d["n"], sum=d["den_sum"], sum_squares=d["den_sum_sq"]
            ),
            m_d_sum_of_products=d["num_den_sum"],
        )
    # theta=0 here: the test's constructor (BaseABTest) computes the pooled theta itself.
    return RegressionAdjustedStatistic(
        n=d["n"],
        post_statistic=mean_stat(d),
        pre_statistic=mean_stat(d, "pre_"),
        post_pre_sum_of_products=d["sum_cross"],
        theta=0,
    )


out = []
for case in json.load(sys.stdin):
    p = case["prior"]
    config = EffectBayesianConfig(
        difference_type="relative" if case["relative"] else "absolute",
        inverse=case["inverse"],
        alpha=case["alpha"],
        prior_effect=GaussianPrior(mean=p["mean"], variance=p["variance"], proper=p["proper"]),
        prior_type=p["type"],
    )
    test = EffectBayesianABTest(
        build(case["kind"], case["a"]), build(case["kind"], case["b"]), config
    )
    r = test.compute_result()
    out.append(
        {
            "effect": r.expected,
            "sd": r.uplift.stddev,
            "ci_low": r.ci[0],
            "ci_high": r.ci[1],
            "chance_to_win": r.chance_to_win,
            "risk_control": r.risk[0],
            "risk_treatment": r.risk[1],
            "error": r.error_message,
        }
    )
json.dump(out, sys.stdout)
