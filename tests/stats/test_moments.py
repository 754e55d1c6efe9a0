"""Moments and RatioMoments: sums from raw values, pooling, arrays; the import stays light."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import numpy as np
import pytest

import ab_pipelines.stats as stats
from ab_pipelines.stats import (
    Moments,
    RatioMoments,
    corrections,
    guardrails,
    moments,
    power,
    sequential,
    srm,
)

compare_module = importlib.import_module("ab_pipelines.stats.compare")


def test_from_values_matches_numpy():
    rng = np.random.default_rng(1)
    y, x = rng.normal(3, 2, 500), rng.normal(1, 1, 500)
    m = Moments.from_values(y, x)
    assert m.n == 500
    assert m.mean == pytest.approx(y.mean())
    assert m.variance == pytest.approx(y.var(ddof=1))
    assert m.sum_cross == pytest.approx(np.dot(x, y))
    assert m.has_pre and not Moments.from_values(y).has_pre


def test_add_pools_units():
    rng = np.random.default_rng(2)
    y1, y2 = rng.normal(size=100), rng.normal(size=50)
    assert (Moments.from_values(y1) + Moments.from_values(y2)).variance == pytest.approx(
        np.concatenate([y1, y2]).var(ddof=1)
    )


def test_ratio_fields_are_column_names():
    rng = np.random.default_rng(3)
    num, den = rng.poisson(5, 200).astype(float), rng.poisson(2, 200).astype(float) + 1
    r = RatioMoments.from_values(num, den, num * 0.5, den)
    assert r.has_pre and r.num_pre_den_sum == pytest.approx(np.dot(num, den))
    assert r.mean == pytest.approx(num.sum() / den.sum())
    assert not RatioMoments.from_values(num, den).has_pre
    names = [f for f in RatioMoments.__dataclass_fields__]
    assert all(n.isidentifier() and n == n.lower() for n in names)
    assert len(names) == 15


def test_array_fields_and_degenerate_values():
    m = Moments(n=np.array([0, 1, 3]), sum=np.array([0.0, 1.0, 6.0]), sum_sq=np.array([0, 1, 14.0]))
    assert np.isnan(m.mean[0]) and m.mean[2] == 2.0
    assert np.isnan(m.variance[:2]).all() and m.variance[2] == pytest.approx(1.0)
    assert np.isnan(RatioMoments(3, 1.0, 1.0, 0.0, 0.0, 0.0).mean)


def test_import_pulls_in_no_pandas_spark_or_dagster():
    code = (
        "import sys, ab_pipelines.stats; "
        "bad = [m for m in ('pandas', 'pyspark', 'dagster') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    "module",
    [stats, moments, compare_module, sequential, srm, corrections, guardrails, power],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_names():
    for name in ("Moments", "RatioMoments", "compare", "srm_test", "adjust_pvalues"):
        assert name in stats.__all__
    for name in stats.__all__:
        assert hasattr(stats, name)
