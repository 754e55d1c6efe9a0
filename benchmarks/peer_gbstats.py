"""Peer side of the statistics benchmarks, run in the gbstats venv: one comparison at a time.

stdin: {"test": "ttest" | "bayesian" | "quantile", "columns": {name: list, one value per pair},
"check": [indices], "warmup": int, and the test's options ("prior", "alpha" for "bayesian")};
stdout: {"seconds": wall time of all the comparisons, "results": {index: [fields]} for the indices
in "check"}. The columns are ``<field>_a`` and ``<field>_b`` of the arms (the field names of
``ab_pipelines.stats`` Moments / QuantileMoments, plus "q" for quantiles), mapped onto gbstats'
classes as the peer tests do (tests/stats/gbstats_*peer.py):

- "ttest": two SampleMeanStatistic, relative TwoSidedTTest; [effect, ci_low, ci_high, p_value].
- "bayesian": two SampleMeanStatistic, relative EffectBayesianABTest with the given prior;
  [effect, ci_low, ci_high, chance_to_win, risk_control, risk_treatment].
- "quantile": two QuantileClusteredStatistic (event-level), relative TwoSidedTTest;
  [effect, ci_low, ci_high, p_value].
"""

import json
import sys
import time

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import QuantileClusteredStatistic, SampleMeanStatistic

data = json.load(sys.stdin)
names = list(data["columns"])
rows = [
    dict(zip(names, values, strict=True)) for values in zip(*data["columns"].values(), strict=True)
]
RELATIVE = FrequentistConfig(difference_type="relative")


def mean_stat(row, side):
    return SampleMeanStatistic(
        n=row[f"n_{side}"], sum=row[f"sum_{side}"], sum_squares=row[f"sum_sq_{side}"]
    )


def ttest(row):
    return TwoSidedTTest(mean_stat(row, "a"), mean_stat(row, "b"), RELATIVE).compute_result()


def ttest_fields(r):
    return [r.expected, r.ci[0], r.ci[1], r.p_value]


def bayesian_config():
    p = data.get("prior", {})
    return EffectBayesianConfig(
        difference_type="relative",
        alpha=data.get("alpha", 0.05),
        prior_effect=GaussianPrior(
            mean=p.get("mean", 0.0), variance=p.get("variance", 1.0), proper=p.get("proper", False)
        ),
        prior_type=p.get("type", "relative"),
    )


BAYESIAN = bayesian_config()


def bayesian(row):
    return EffectBayesianABTest(mean_stat(row, "a"), mean_stat(row, "b"), BAYESIAN).compute_result()


def bayesian_fields(r):
    return [r.expected, r.ci[0], r.ci[1], r.chance_to_win, r.risk[0], r.risk[1]]


def quantile_stat(row, side):
    return QuantileClusteredStatistic(
        n=int(row[f"n_{side}"]),
        n_star=int(row[f"n_star_{side}"]),
        nu=row["q"],
        quantile_hat=row[f"quantile_{side}"],
        quantile_lower=row[f"lower_{side}"],
        quantile_upper=row[f"upper_{side}"],
        main_sum=row[f"below_sum_{side}"],
        main_sum_squares=row[f"below_sum_sq_{side}"],
        denominator_sum=row[f"events_sum_{side}"],
        denominator_sum_squares=row[f"events_sum_sq_{side}"],
        main_denominator_sum_product=row[f"below_events_sum_{side}"],
        n_clusters=int(row[f"n_units_{side}"]),
    )


def quantile(row):
    a, b = quantile_stat(row, "a"), quantile_stat(row, "b")
    return TwoSidedTTest(a, b, RELATIVE).compute_result()


TESTS = {
    "ttest": (ttest, ttest_fields),
    "bayesian": (bayesian, bayesian_fields),
    "quantile": (quantile, ttest_fields),
}
one, fields = TESTS[data.get("test", "ttest")]

for row in rows[: data["warmup"]]:
    one(row)
start = time.perf_counter_ns()
for row in rows:
    one(row)
seconds = (time.perf_counter_ns() - start) / 1e9
results = {}
for i in data["check"]:
    r = one(rows[i])
    if r.error_message:
        raise SystemExit(f"gbstats refused pair {i}: {r.error_message}")
    results[str(i)] = fields(r)
json.dump({"seconds": seconds, "results": results}, sys.stdout)
