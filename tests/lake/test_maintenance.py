"""Maintenance compacts, checkpoints and vacuums while keeping the time-travel promise."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pyarrow as pa

from ab_pipelines.lake import Lake
from ab_pipelines.lake.delta import retention_properties
from ab_pipelines.lake.maintenance import maintain_table
from ab_pipelines.lake.tables import OPS_LANDED_FILES

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def one_row(i: int, day: dt.date) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "source_file": f"f{i}",
                "topic": "exposures",
                "bytes": i,
                "read": i,
                "landed": i,
                "quarantined": 0,
                "duplicates": 0,
                "arrival_date": day,
            }
        ],
        schema=OPS_LANDED_FILES.schema,
    )


def content(lake, version=None):
    return sorted(map(str, lake.read_arrow(OPS_LANDED_FILES, version=version).to_pylist()))


def small_files_table(lake: Lake, n: int = 12) -> None:
    for i in range(n):  # the streaming path: one small file per commit
        lake.write_arrow(OPS_LANDED_FILES, one_row(i, D1 if i % 2 else D2))


def test_compaction_leaves_fewer_files_same_rows_and_every_recent_version(home):
    lake = Lake(home)
    small_files_table(lake)
    versions = {v: content(lake, v) for v in range(lake.version(OPS_LANDED_FILES) + 1)}
    before = content(lake)
    report = maintain_table(lake, OPS_LANDED_FILES)
    assert report.files_before == 12 and report.files_after == 2  # one per partition
    assert report.files_vacuumed == 0  # nothing older than the retention
    assert content(lake) == before
    for v, rows in versions.items():
        assert content(lake, v) == rows  # time travel intact within the retention
    assert (
        lake.path(OPS_LANDED_FILES)
        / "_delta_log"
        / f"{report.version_after:020d}.checkpoint.parquet"
    ).exists() or any(
        p.name.endswith(".checkpoint.parquet")
        for p in (lake.path(OPS_LANDED_FILES) / "_delta_log").iterdir()
    )
    assert lake.table(OPS_LANDED_FILES).metadata().configuration == retention_properties()


def test_vacuum_removes_what_the_retention_no_longer_promises(home):
    lake = Lake(home)
    small_files_table(lake, 6)
    maintain_table(lake, OPS_LANDED_FILES)  # compacted: the six small files are now tombstones
    root = lake.path(OPS_LANDED_FILES)
    live = {os.path.basename(u) for u in lake.table(OPS_LANDED_FILES).file_uris()}
    before = content(lake)
    # Deletion times in the log are "now": only a zero-day retention may drop those files.
    report = maintain_table(lake, OPS_LANDED_FILES, retention_days=0)
    assert report.files_vacuumed == 6
    left = {p.name for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}
    assert left == live
    assert content(lake) == before


def test_dead_staging_folders_are_removed(home):
    lake = Lake(home)
    small_files_table(lake, 1)
    dead = lake.path(OPS_LANDED_FILES) / "_staging" / "deadbeef"
    dead.mkdir(parents=True)
    (dead / "part-0.parquet").write_bytes(b"x")
    old = time.time() - 2 * 86400
    os.utime(dead, (old, old))
    fresh = lake.staging_dir(OPS_LANDED_FILES)
    fresh.mkdir()
    report = maintain_table(lake, OPS_LANDED_FILES)
    assert report.staging_removed == 1 and not dead.exists() and fresh.exists()


def test_a_killed_process_staging_folder_goes_at_the_next_staging(home):
    """A folder named by a process that is gone (a kill between staging and commit) is removed
    when the next one is made, whatever its age; a live process's folder stays."""
    lake = Lake(home)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is free now (and, reused, would name a process started later)
    root = lake.path(OPS_LANDED_FILES) / "_staging"
    killed = root / f"{child.pid}-0123abcd"
    (killed / "arrival_date=2026-11-01").mkdir(parents=True)
    mine = lake.staging_dir(OPS_LANDED_FILES)
    mine.mkdir()
    assert not killed.exists() and mine.name.startswith(f"{os.getpid()}-")
    lake.staging_dir(OPS_LANDED_FILES)
    assert mine.exists()


def test_the_maintenance_job_runs_in_dagster(home):
    from dagster import DagsterInstance

    from jobs.definitions import defs

    lake = Lake(home)
    small_files_table(lake, 8)
    before, v3 = content(lake), content(lake, 3)
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("maintain_tables").execute_in_process(instance=instance)
    assert result.success
    assert len(lake.table(OPS_LANDED_FILES).file_uris()) == 2
    assert content(lake) == before and content(lake, 3) == v3
