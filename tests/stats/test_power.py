"""sample_size / mde_for / days_needed against statsmodels' power solver and a simulation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower

from ab_pipelines.stats import Moments, compare, days_needed, mde_for, sample_size


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_matches_statsmodels(ratio):
    mean, var, mde = 3.1, 25.0, 0.05
    n = sample_size(mean, var, mde, alpha=0.05, power=0.8, relative=True, ratio=ratio)
    ref = NormalIndPower().solve_power(
        effect_size=mde * mean / np.sqrt(var), alpha=0.05, power=0.8, ratio=ratio
    )
    assert n == int(np.ceil(ref))


def test_mde_inverts_sample_size_and_arrays():
    n = sample_size([0.1, 3.0], [0.09, 25.0], 0.03)
    assert n.shape == (2,)
    np.testing.assert_allclose(mde_for(n, [0.1, 3.0], [0.09, 25.0]), 0.03, rtol=1e-3)
    assert sample_size(0.0, 1.0, 0.05) == -1
    assert np.isnan(mde_for(1000, 0.0, 1.0))


def test_days_needed():
    assert days_needed(1000, 56512) == 57
    assert days_needed(1000, 1000, n_so_far=5000) == 0
    assert days_needed(0, 10) == -1
    assert days_needed(np.array([100.0, 200.0]), 1000).tolist() == [10, 5]


def test_power_is_achieved_in_simulation():
    rng = np.random.default_rng(5)
    p, mde = 0.1, 0.1
    n = sample_size(p, p * (1 - p), mde)
    sa = rng.binomial(n, p, 4000).astype(float)
    sb = rng.binomial(n, p * (1 + mde), 4000).astype(float)
    r = compare(Moments(n, sa, sa), Moments(n, sb, sb), relative=False)
    achieved = np.mean(r.p_value < 0.05)
    print(f"\npower at n={n} per arm: {achieved:.4f} (target 0.80)")
    assert achieved == pytest.approx(0.8, abs=0.03)
