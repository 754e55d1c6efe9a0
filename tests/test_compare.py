"""The comparison of two runs' tables itself: it reports what differs, and only that."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import GOLD_SRM
from ab_pipelines.settings import paths
from tests.compare import differences, max_relative_difference


def _srm(home, statistics: list[float]) -> None:
    n = len(statistics)
    table = pa.table(
        {
            "experiment_id": ["e"] * n,
            "segment": ["all"] * n,
            "variant": [f"v{i}" for i in range(n)],
            "units": [100] * n,
            "weight": [1.0 / n] * n,
            "expected": [100.0] * n,
            "statistic": statistics,
            "p_value": [0.5] * n,
            "flagged": [False] * n,
            "day": [dt.date(2026, 11, 3)] * n,
        }
    )
    Lake(paths(home)).write_arrow(GOLD_SRM, table.cast(GOLD_SRM.schema))


def test_equal_within_1e9_and_different_beyond(tmp_path):
    a, b, c, d = (tmp_path / x for x in "abcd")
    _srm(a, [1.0, 2.0])
    _srm(b, [1.0 + 1e-12, 2.0])  # within a relative 1e-9
    _srm(c, [1.0 + 1e-6, 2.0])  # beyond
    _srm(d, [1.0])  # a row missing
    assert differences(a, b, [GOLD_SRM])[1] == []
    assert 0 < max_relative_difference(a, b, GOLD_SRM) < 1e-9
    problems = differences(a, c, [GOLD_SRM])[1]
    assert len(problems) == 1 and "statistic" in problems[0] and "'v0'" in problems[0]
    assert differences(a, d, [GOLD_SRM])[1] == ["gold.srm: 2 rows against 1"]
    assert max_relative_difference(a, a, GOLD_SRM) == 0.0
