"""Peer side of the statistics benchmark, run in the gbstats venv: one comparison at a time.

stdin: {"n_a", "sum_a", "sum_sq_a", "n_b", "sum_b", "sum_sq_b": lists, "check": [indices],
"warmup": int}; stdout: {"seconds": wall time of all the comparisons, "results": {index:
[effect, ci_low, ci_high, p_value]} for the indices in "check"}. Each comparison builds gbstats'
SampleMeanStatistic for both arms and runs its relative TwoSidedTTest, as the peer test does.
"""

import json
import sys
import time

from gbstats.frequentist.tests import FrequentistConfig, TwoSidedTTest
from gbstats.models.statistics import SampleMeanStatistic

data = json.load(sys.stdin)
columns = [data[k] for k in ("n_a", "sum_a", "sum_sq_a", "n_b", "sum_b", "sum_sq_b")]
rows = list(zip(*columns, strict=True))
config = FrequentistConfig(difference_type="relative")


def one(row):
    n_a, s_a, q_a, n_b, s_b, q_b = row
    a = SampleMeanStatistic(n=n_a, sum=s_a, sum_squares=q_a)
    b = SampleMeanStatistic(n=n_b, sum=s_b, sum_squares=q_b)
    return TwoSidedTTest(a, b, config).compute_result()


for row in rows[: data["warmup"]]:
    one(row)
start = time.perf_counter_ns()
for row in rows:
    one(row)
seconds = (time.perf_counter_ns() - start) / 1e9
results = {}
for i in data["check"]:
    r = one(rows[i])
    results[str(i)] = [r.expected, r.ci[0], r.ci[1], r.p_value]
json.dump({"seconds": seconds, "results": results}, sys.stdout)
