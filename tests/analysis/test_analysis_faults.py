"""Issue 9, part 1 for analysis: a run SIGKILLed while writing, then re-run.

The killed process has written the files of its next commit but not committed them: that table
reads as before, and a re-run ends with exactly the tables of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pyarrow as pa
import pytest

from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.delta import CRASH_ENV
from ab_pipelines.lake.tables import (
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
)
from ab_pipelines.settings import REPO_ROOT, paths
from tests.analysis.test_sufficient_stats import DAY, REGISTRY, write_bronze
from tests.compare import table_differences

pytestmark = [pytest.mark.spark, pytest.mark.slow]

GOLD = (GOLD_SUFFICIENT_STATS, GOLD_SRM, GOLD_HEALTH, GOLD_EXPERIMENT_RESULTS)

_ANALYSE_IN_A_NEW_PROCESS = """
import sys
from ab_pipelines.analysis.day import results_day, stats_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake import spark_session
from ab_pipelines.settings import paths
from tests.analysis.test_sufficient_stats import DAY, REGISTRY
lake = Lake(paths(sys.argv[1]))
stats_day(spark_session(), lake, REGISTRY, DAY)
results_day(lake, REGISTRY, DAY)
"""


def _bronze_lake(root) -> Lake:
    return write_bronze(Lake(paths(root)))


def _gold(lake: Lake) -> dict[str, pa.Table]:
    out = {}
    for spec in GOLD:
        t = lake.read_arrow(spec)
        keys = [
            c
            for c in ("experiment_id", "segment", "metric", "variant", "check", "subject")
            if c in t.column_names
        ]
        t = t.drop_columns([c for c in ("computed_at",) if c in t.column_names])
        out[spec.qualified] = t.sort_by([(k, "ascending") for k in keys])
    return out


@pytest.mark.parametrize("crash_at", [GOLD_SRM, GOLD_EXPERIMENT_RESULTS])
def test_analysis_killed_while_writing_then_rerun_equals_an_uninterrupted_run(
    spark, tmp_path, crash_at
):
    reference = _bronze_lake(tmp_path / "ref")
    stats_day(spark, reference, REGISTRY, DAY)
    results_day(reference, REGISTRY, DAY)
    want = _gold(reference)
    assert all(t.num_rows for t in want.values())

    lake = _bronze_lake(tmp_path / "crash")
    env = {**os.environ, CRASH_ENV: crash_at.qualified, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", _ANALYSE_IN_A_NEW_PROCESS, str(lake.home.home)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert lake.version(crash_at) is None  # never committed: no table yet, readable as empty
    assert lake.read_arrow(crash_at).num_rows == 0
    assert any(lake.path(crash_at).rglob("*.parquet"))  # the killed commit's files
    assert lake.read_arrow(GOLD_SUFFICIENT_STATS).num_rows  # committed before the kill

    stats_day(spark, lake, REGISTRY, DAY)
    results_day(lake, REGISTRY, DAY)
    got = _gold(lake)
    for name, table in want.items():
        assert table_differences(got[name], table, name=name) == []
