"""Landing under faults: killed mid-write, and runs at the same time (issue 9, parts 1 and 2).

The promise: a record that arrives is landed once or quarantined with a reason, never lost and
never doubled, whatever fails and however often it is re-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake.delta import CRASH_ENV
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
)
from ab_pipelines.settings import paths
from tests.events.test_landing import D1, D2, D3, KNOWN, land, snapshot, write_three_days

pytestmark = pytest.mark.spark

TABLES = (BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, BRONZE_QUARANTINE, OPS_LANDED_FILES)

_LAND_IN_A_NEW_PROCESS = """
import datetime as dt, sys
from ab_pipelines.events.landing import land_day
from ab_pipelines.lake import Lake
from ab_pipelines.lake import spark_session
from ab_pipelines.settings import paths
home = paths(sys.argv[1])
known = {"checkout_cta": frozenset({"control", "treatment"})}
land_day(spark_session(), Lake(home), home.raw, dt.date.fromisoformat(sys.argv[2]), known)
"""


def _land_in_subprocess(home, day, crash_at: str) -> subprocess.CompletedProcess:
    env = {**os.environ, CRASH_ENV: crash_at}
    return subprocess.run(
        [sys.executable, "-c", _LAND_IN_A_NEW_PROCESS, str(home.home), day.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory):
    """The tables of an uninterrupted, sequential landing of the three days."""
    return snapshot(land(spark, tmp_path_factory.mktemp("ref"), "ref", [D1, D2, D3]))


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [BRONZE_EXPOSURES, BRONZE_METRIC_EVENTS, OPS_LANDED_FILES])
def test_killed_while_writing_then_rerun_equals_an_uninterrupted_run(
    spark, tmp_path, reference, crash_at
):
    home = paths(tmp_path / "crash")
    write_three_days(home.raw)
    lake = Lake(home)
    land_day(spark, lake, home.raw, D1, KNOWN)
    before = {s.qualified: lake.version(s) for s in TABLES}
    rows_before = snapshot(lake)

    proc = _land_in_subprocess(home, D2, crash_at.qualified)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # Files of the killed commit are on disk but in no snapshot: the table reads as before.
    after = {s.qualified: lake.version(s) for s in TABLES}
    assert after[crash_at.qualified] == before[crash_at.qualified]
    assert any((lake.path(crash_at)).rglob("*.parquet"))
    killed = snapshot(lake)
    assert killed[crash_at.qualified] == rows_before[crash_at.qualified]
    assert killed[OPS_LANDED_FILES.qualified] == rows_before[OPS_LANDED_FILES.qualified]

    for day in (D2, D3):
        report = land_day(spark, lake, home.raw, day, KNOWN)
        assert all(f.balanced for f in report.files)
    assert snapshot(lake) == reference


def test_neighbouring_days_landed_at_once_equal_a_sequential_landing(spark, tmp_path, reference):
    home = paths(tmp_path / "together")
    write_three_days(home.raw)
    lake = Lake(home)
    errors: list[BaseException] = []
    started: list[float] = []

    def run(day):
        started.append(time.monotonic())
        try:
            land_day(spark, lake, home.raw, day, KNOWN)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # D2 and D3 share events (late copies): landed at once without the landing lock, each would
    # keep its own copy. Then the same day twice at once: written once.
    threads = [threading.Thread(target=run, args=(d,)) for d in (D1, D2, D3, D2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(started) == 4 and max(started) - min(started) < 5  # they did run at once
    assert snapshot(lake) == reference
