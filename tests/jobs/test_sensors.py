"""The new-dump-files sensor: it asks for a run only for days with files not landed yet."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import pyarrow as pa
from dagster import SensorResult, SkipReason, build_sensor_context

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_LANDED_FILES
from jobs.sensors import new_dump_files

D1, D2 = dt.date(2026, 11, 10), dt.date(2026, 11, 11)


def dump(raw, day, offset):
    return write_dump(
        raw, "exposures", day, 0, offset, [envelope("exposures", 0, offset, 1, "u", {"x": 1})]
    )


def mark_landed(lake, path, raw, day):
    rel = path.relative_to(raw).as_posix()
    row = {
        "source_file": rel,
        "topic": "exposures",
        "bytes": path.stat().st_size,
        "read": 1,
        "landed": 1,
        "quarantined": 0,
        "duplicates": 0,
        "arrival_date": day,
    }
    lake.write_arrow(OPS_LANDED_FILES, pa.Table.from_pylist([row], schema=OPS_LANDED_FILES.schema))


def evaluate(cursor=None):
    return new_dump_files(build_sensor_context(cursor=cursor))


def test_requests_a_run_per_day_with_unlanded_files_and_observes_raw(home):
    lake = Lake(home)
    landed = dump(home.raw, D1, 0)
    mark_landed(lake, landed, home.raw, D1)
    dump(home.raw, D2, 100)
    result = evaluate()
    assert isinstance(result, SensorResult)
    assert [r.partition_key for r in result.run_requests] == [D2.isoformat()]
    assert {e.asset_key.to_user_string() for e in result.asset_events} == {"raw/exposures"}
    obs = result.asset_events[0].metadata
    assert obs["latest_arrival_day"].value == D2.isoformat()
    assert obs["dagster/last_updated_timestamp"].value > 0

    # same files, a later tick: at most the same request again, which Dagster drops by run key
    again = evaluate(result.cursor)
    keys = {r.run_key for r in result.run_requests}
    assert isinstance(again, SkipReason) or {r.run_key for r in again.run_requests} <= keys
    later = json.dumps({"since": json.loads(result.cursor)["since"] + 60})
    assert isinstance(evaluate(later), SkipReason)


def test_a_new_file_in_a_landed_day_gives_a_new_run_key(home):
    lake = Lake(home)
    first = dump(home.raw, D1, 0)
    r1 = evaluate()
    (req1,) = r1.run_requests
    mark_landed(lake, first, home.raw, D1)
    time.sleep(0.01)
    dump(home.raw, D1, 50)
    folder = home.raw / "exposures" / f"date={D1}"
    os.utime(
        folder, (time.time() + 10, time.time() + 10)
    )  # coarse file systems: make the change visible
    (req2,) = evaluate(r1.cursor).run_requests
    assert req2.partition_key == D1.isoformat() and req2.run_key != req1.run_key
    assert req2.tags["abp/new_files"] == "1"


def test_days_outside_the_partitions_are_skipped(home):
    dump(home.raw, dt.date(2001, 1, 1), 0)
    result = evaluate()
    assert isinstance(result, SensorResult) and result.run_requests == []


def test_registry_changed_requests_a_publish_on_change_only(home, tmp_path, monkeypatch):
    import shutil

    from ab_pipelines.config.publish import kill, publish
    from ab_pipelines.settings import REPO_ROOT
    from jobs.sensors import registry_changed

    root = tmp_path / "registry"
    shutil.copytree(REPO_ROOT / "experiments", root / "experiments")
    shutil.copytree(REPO_ROOT / "metrics", root / "metrics")
    monkeypatch.setenv("ABP_REGISTRY", str(root))
    first = registry_changed(build_sensor_context(cursor=None))
    assert len(first.run_requests) == 1
    assert isinstance(registry_changed(build_sensor_context(cursor=first.cursor)), SkipReason)
    publish(home, root)
    kill(home, "homepage_aa", "test", "a@example.com", registry_root=root)  # the kills table moved
    after_kill = registry_changed(build_sensor_context(cursor=first.cursor))
    assert len(after_kill.run_requests) == 1
    (root / "metrics" / "orders.yaml").write_text(
        (root / "metrics" / "orders.yaml").read_text() + "\n# edited\n"
    )
    edited = registry_changed(build_sensor_context(cursor=after_kill.cursor))
    assert len(edited.run_requests) == 1 and edited.cursor != after_kill.cursor
