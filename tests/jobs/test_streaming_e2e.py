"""End to end: `dagster dev` is running; a dump file dropped into raw/ lands by itself, once."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, OPS_LANDED_FILES
from ab_pipelines.settings import REPO_ROOT, paths

pytestmark = [pytest.mark.slow, pytest.mark.dagster, pytest.mark.spark]

DAY = dt.date(2026, 11, 10)
SENSOR_SECONDS = 5  # the sensors look every 5 s here (30 by default)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_signals():
    # a child of a non-interactive shell may inherit ignored signals: restore them, own group
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setsid()


def _landed(home, rel) -> dict | None:
    rows = Lake(home).read_arrow(OPS_LANDED_FILES).to_pylist()
    return next((r for r in rows if r["source_file"] == rel), None)


def test_a_dropped_file_lands_once_while_the_sensor_runs(tmp_path, monkeypatch):
    home = paths(tmp_path / "abp")
    home.dagster_home.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home.dagster_home / "dagster.yaml")
    env = {
        **os.environ,
        "ABP_HOME": str(home.home),
        "DAGSTER_HOME": str(home.dagster_home),
        "ABP_SENSOR_SECONDS": str(SENSOR_SECONDS),
    }
    exe = os.path.join(os.path.dirname(sys.executable), "dagster")
    log = open(tmp_path / "dagster-dev.log", "wb")
    proc = subprocess.Popen(
        [exe, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(_free_port())],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_default_signals,
    )
    try:
        time.sleep(5)
        path = write_dump(
            home.raw,
            "exposures",
            DAY,
            7,
            0,
            [
                envelope(
                    "exposures",
                    7,
                    i,
                    1,
                    f"user-{i}",
                    {
                        "event_id": f"s{i}",
                        "user_id": f"user-{i}",
                        "experiment_id": "checkout_cta",
                        "variant": "control",
                        "ts": f"{DAY}T08:00:00Z",
                    },
                )
                for i in range(5)
            ],
        )
        rel = path.relative_to(home.raw).as_posix()
        deadline = time.time() + 360
        while _landed(home, rel) is None:
            assert proc.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            assert time.time() < deadline, (
                "not landed in 6 minutes:\n" + (tmp_path / "dagster-dev.log").read_text()[-3000:]
            )
            time.sleep(1)
        row = _landed(home, rel)
        assert (row["read"], row["landed"], row["duplicates"]) == (5, 5, 0)
        time.sleep(4 * SENSOR_SECONDS)  # several more looks: no second run may land it again
        assert len(Lake(home).read_arrow(BRONZE_EXPOSURES).to_pylist()) == 5

        monkeypatch.setenv("DAGSTER_HOME", str(home.dagster_home))
        from dagster import DagsterInstance, RunsFilter

        with DagsterInstance.get() as instance:
            runs = instance.get_runs(RunsFilter(job_name="land_stream"))
            assert len(runs) == 1 and runs[0].tags.get("dagster/partition") == DAY.isoformat()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
