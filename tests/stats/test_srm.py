"""srm_test against scipy.stats.chisquare, and the flagging rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from ab_pipelines.stats import srm_test


@pytest.mark.parametrize(
    "counts,weights",
    [
        ([1000, 1200], [0.5, 0.5]),
        ([5012, 4988], [0.5, 0.5]),
        ([300, 610, 290], [1, 2, 1]),
        ([90, 10], [0.9, 0.1]),
    ],
)
def test_matches_scipy_chisquare(counts, weights):
    r = srm_test(counts, weights)
    w = np.asarray(weights, float)
    expected = np.sum(counts) * w / w.sum()
    ref = sps.chisquare(counts, expected)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    np.testing.assert_allclose(r.expected, expected)


def test_flagging_rule():
    assert srm_test([1000, 1200], [0.5, 0.5]).flagged
    assert not srm_test([5012, 4988], [0.5, 0.5]).flagged
    # Strong mismatch but a variant expects fewer than 100 users: not flagged yet.
    small = srm_test([1590, 10], [0.95, 0.05])  # expects 80
    assert small.p_value < 0.001 and not small.flagged
    empty = srm_test([0, 0], [0.5, 0.5])
    assert np.isnan(empty.p_value) and not empty.flagged


def test_batched_rows():
    r = srm_test([[1000, 1200], [5012, 4988]], [0.5, 0.5])
    assert r.flagged.tolist() == [True, False]
    assert r.p_value[1] == pytest.approx(srm_test([5012, 4988], [0.5, 0.5]).p_value)
