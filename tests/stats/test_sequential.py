"""The confidence-sequence boundary against the formulas of Waudby-Smith et al. (2023)."""

from __future__ import annotations

import numpy as np
import pytest

from ab_pipelines.stats import always_valid_p_value, confidence_sequence_halfwidth, sequential_rho


def test_rho_and_halfwidth_formulas():
    alpha, nstar = 0.05, 5000
    rho = np.sqrt((-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / nstar)
    assert sequential_rho(alpha, nstar) == pytest.approx(rho)
    n, se = 12_345, 0.7
    # gbstats' form: sqrt(s2) · sqrt(2(Nρ²+1)/(N²ρ²) · log(sqrt(Nρ²+1)/α)) with s2 = se²·N.
    ref = np.sqrt(se**2 * n) * np.sqrt(
        2 * (n * rho**2 + 1) / (n**2 * rho**2) * np.log(np.sqrt(n * rho**2 + 1) / alpha)
    )
    assert confidence_sequence_halfwidth(se, n, alpha, nstar) == pytest.approx(ref)


def test_p_value_inverts_the_boundary():
    n, alpha, nstar = np.array([500, 5000, 50_000]), 0.05, 5000
    half = confidence_sequence_halfwidth(1.0, n, alpha, nstar)
    np.testing.assert_allclose(always_valid_p_value(half, 1.0, n, alpha, nstar), alpha, rtol=1e-10)
    assert np.all(always_valid_p_value(half * 1.01, 1.0, n, alpha, nstar) < alpha)
    assert always_valid_p_value(0.0, 1.0, 100, alpha, nstar) == 1.0


def test_tightest_near_the_tuning_sample_size():
    n = np.arange(1000, 40_000, 10)
    scaled = confidence_sequence_halfwidth(1 / np.sqrt(n), n, 0.05, 5000) * np.sqrt(n)
    assert 3000 < n[np.argmin(scaled)] < 8000


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        sequential_rho(0.0, 5000)
    with pytest.raises(ValueError):
        sequential_rho(0.05, 0)
