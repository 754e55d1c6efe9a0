"""Runs inside a venv of its own with gbstats 0.8.0 (it pins numpy<2, pandas<2): JSON in, JSON out.

stdin: a list of cases {"kind": "mean"|"ratio"|"cuped", "relative": bool, "sequential": null|N*,
"a": {...}, "b": {...}} with the sufficient statistics; stdout: [{"effect","ci_low","ci_high","p_value"}].
"""

import json
import sys

from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    RatioStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
    compute_theta,
)


def mean_stat(d, prefix=""):
    return SampleMeanStatistic(n=d["n"], sum=d[prefix + "sum"], sum_squares=d[prefix + "sum_sq"])


def build(case, side):
    d = case[side]
    if case["kind"] == "mean":
        return mean_stat(d)
    if case["kind"] == "ratio":
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
    return RegressionAdjustedStatistic(
        n=d["n"],
        post_statistic=mean_stat(d),
        pre_statistic=mean_stat(d, "pre_"),
        post_pre_sum_of_products=d["sum_cross"],
        theta=0,
    )


out = []
for case in json.load(sys.stdin):
    a, b = build(case, "a"), build(case, "b")
    if case["kind"] == "cuped":
        theta = compute_theta(a, b)
        a.theta = b.theta = theta
    diff = "relative" if case["relative"] else "absolute"
    if case["sequential"]:
        test = SequentialTwoSidedTTest(
            a,
            b,
            SequentialConfig(difference_type=diff, sequential_tuning_parameter=case["sequential"]),
        )
    else:
        test = TwoSidedTTest(a, b, FrequentistConfig(difference_type=diff))
    r = test.compute_result()
    out.append({"effect": r.expected, "ci_low": r.ci[0], "ci_high": r.ci[1], "p_value": r.p_value})
json.dump(out, sys.stdout)
