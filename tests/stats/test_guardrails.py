"""The guardrail breach rule, on the always-valid bounds."""

from __future__ import annotations

import numpy as np

from ab_pipelines.stats import Moments, compare, guardrail_bound, guardrail_breached


def test_rule_both_directions():
    # lower is better (latency): breach iff the lower bound exceeds +margin
    assert guardrail_breached(0.021, 0.06, 0.02, higher_is_better=False)
    assert not guardrail_breached(0.019, 0.06, 0.02, higher_is_better=False)
    # higher is better (revenue): breach iff the upper bound is below −margin
    assert guardrail_breached(-0.09, -0.021, 0.02, higher_is_better=True)
    assert not guardrail_breached(-0.09, -0.019, 0.02, higher_is_better=True)
    # good news beyond the margin is never a breach
    assert not guardrail_breached(-0.09, -0.05, 0.02, higher_is_better=False)


def test_vectorized_and_nan():
    lo = np.array([0.03, 0.03, np.nan, -0.2])
    hi = np.array([0.05, 0.05, np.nan, -0.1])
    hib = np.array([False, True, False, True])
    assert guardrail_breached(lo, hi, 0.02, hib).tolist() == [True, False, False, True]
    np.testing.assert_array_equal(guardrail_bound(lo, hi, hib), [0.03, 0.05, np.nan, -0.1])


def test_sequential_bounds_are_wider_so_fewer_breaches():
    a = Moments(n=4000, sum=4000 * 500.0, sum_sq=4000 * (500.0**2 + 200.0**2))
    b = Moments(n=4000, sum=4000 * 520.0, sum_sq=4000 * (520.0**2 + 200.0**2))  # +4% latency
    fixed = compare(a, b, relative=True)
    seq = compare(a, b, relative=True, sequential_tuning=5000)
    # A fixed-horizon look would call a breach; the always-valid bound does not, yet.
    assert fixed.ci_low > 0.02 > seq.ci_low
    assert guardrail_breached(fixed.ci_low, fixed.ci_high, 0.02, higher_is_better=False)
    assert not guardrail_breached(seq.ci_low, seq.ci_high, 0.02, higher_is_better=False)
