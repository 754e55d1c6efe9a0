"""adjust_pvalues against statsmodels' multipletests; NaN handling; batched families."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from ab_pipelines.stats import adjust_pvalues

METHODS = {"holm": "holm", "bh": "fdr_bh"}


@pytest.mark.parametrize("method", ["holm", "bh"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_statsmodels(method, seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 12), rng.uniform(0, 0.01, 4), [0.03, 0.03]])
    rng.shuffle(p)
    ref = multipletests(p, method=METHODS[method])[1]
    np.testing.assert_allclose(adjust_pvalues(p, method=method), ref, rtol=1e-12)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_nan_kept_in_place_and_out_of_the_family(method):
    p = np.array([0.01, np.nan, 0.04, 0.02, np.nan])
    out = adjust_pvalues(p, method=method)
    assert np.isnan(out[[1, 4]]).all()
    ref = multipletests(p[[0, 2, 3]], method=METHODS[method])[1]
    np.testing.assert_allclose(out[[0, 2, 3]], ref)


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_monotone_and_batched(method):
    rng = np.random.default_rng(9)
    p = rng.uniform(0, 0.2, (50, 6))
    p[::3, 4:] = np.nan  # families of different sizes, padded with NaN
    out = adjust_pvalues(p, method=method)
    for row, adj in zip(p, out, strict=True):
        np.testing.assert_allclose(adj, adjust_pvalues(row, method=method))
        keep = ~np.isnan(row)
        order = np.argsort(row[keep])
        assert np.all(np.diff(adj[keep][order]) >= -1e-15)
        assert np.all(adj[keep] >= row[keep] * (1 - 1e-12))


def test_edge_cases():
    assert adjust_pvalues([], "holm").shape == (0,)
    assert adjust_pvalues([0.3], "bh").tolist() == [0.3]
    assert adjust_pvalues([0.5, 0.9], "holm").tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        adjust_pvalues([0.1], "bonferroni")
