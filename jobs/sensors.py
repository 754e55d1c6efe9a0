"""The streaming path: a sensor that notices new dump files and requests a landing run for their day.

The sensor only looks (the 60-second sensor limit): it stats the raw folders, compares each
changed day's files with ops.landed_files, and asks for a `land_stream` run of that arrival day.
The run lands only the files not yet landed, with the same exactly-once rules as the daily run.
It also records, as an observation of raw/<topic>, when the newest dump arrived, which the
freshness checks read.
"""

import datetime as dt
import hashlib
import json
import os

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from ab_pipelines.events.dumps import list_day_files
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import OPS_LANDED_FILES
from ab_pipelines.settings import paths
from assets.partitions import daily_partitions

__all__ = ["changed_days", "new_dump_files", "registry_changed", "registry_fingerprint"]


def _interval() -> int:
    raw = os.environ.get("ABP_SENSOR_SECONDS", "").strip() or "30"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"ABP_SENSOR_SECONDS={raw!r} is not a whole number of seconds like 30.")
    return int(raw)


# How often the sensors look for new dump files and registry changes (a new file lands within
# about this long; Dagster's daemon checks sensors every few seconds at most).
SENSOR_INTERVAL_SECONDS = _interval()
_SLACK_SECONDS = 5.0  # a folder touched this close to the last look is looked at again


def changed_days(raw, since: float) -> tuple[dict[str, dict[dt.date, float]], float]:
    """Per topic, the arrival-day folders modified after ``since``, and the newest mtime seen."""
    out: dict[str, dict[dt.date, float]] = {}
    newest = since
    if not raw.is_dir():
        return out, newest
    for topic_dir in raw.iterdir():
        if not topic_dir.is_dir() or topic_dir.name.startswith(("_", ".")):
            continue
        for day_dir in topic_dir.glob("date=*"):
            mtime = day_dir.stat().st_mtime
            if mtime <= since:
                continue
            try:
                day = dt.date.fromisoformat(day_dir.name.removeprefix("date="))
            except ValueError:
                continue
            out.setdefault(topic_dir.name, {})[day] = mtime
            newest = max(newest, mtime)
    return out, newest


@sensor(
    job_name="land_stream",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a landing run for every arrival day with dump files not yet landed.",
)
def new_dump_files(context: SensorEvaluationContext):
    home = paths()
    state = json.loads(context.cursor) if context.cursor else {"since": 0.0}
    changed, newest = changed_days(home.raw, state["since"] - _SLACK_SECONDS)
    if not changed:
        return SkipReason("no dump folder changed")
    lake = Lake(home)
    valid = set(daily_partitions.get_partition_keys())
    requests, observations = [], []
    for day in sorted({d for days in changed.values() for d in days}):
        if day.isoformat() not in valid:
            context.log.warning(f"dumps of {day} are outside the daily partitions; not landed")
            continue
        on_day = pc.field("arrival_date") == pa.scalar(day, pa.date32())
        landed = set(
            lake.read_arrow(OPS_LANDED_FILES, filter=on_day, columns=["source_file"])
            .column("source_file")
            .to_pylist()
        )
        new = sorted(
            f"{f.rel}:{f.size}" for f in list_day_files(home.raw, day) if f.rel not in landed
        )
        if new:
            key = hashlib.sha256("\n".join(new).encode()).hexdigest()[:16]
            requests.append(
                RunRequest(
                    run_key=f"{day}:{key}",
                    partition_key=day.isoformat(),
                    tags={"abp/trigger": "new_dump_files", "abp/new_files": str(len(new))},
                )
            )
    for topic, days in changed.items():
        if topic in ("exposures", "metric_events"):
            last = max(days.values())
            observations.append(
                AssetObservation(
                    asset_key=AssetKey(["raw", topic]),
                    metadata={
                        "dagster/last_updated_timestamp": MetadataValue.timestamp(last),
                        "latest_arrival_day": MetadataValue.text(max(days).isoformat()),
                    },
                )
            )
    return SensorResult(
        run_requests=requests,
        asset_events=observations,
        cursor=json.dumps({"since": newest}),
    )


def registry_fingerprint() -> str:
    """A hash of the registry files and of the versions of the kills table and of the bandits'
    weights (a new analysis day of a bandit publishes its weights): what publishing reads."""
    from ab_pipelines.lake.tables import GOLD_BANDIT_WEIGHTS, OPS_KILLS
    from ab_pipelines.settings import registry_root

    h = hashlib.sha256()
    root = registry_root()
    files = [root / "units.yaml"] + [
        f for d in ("experiments", "metrics", "holdouts") for f in sorted((root / d).glob("*.y*ml"))
    ]
    for f in files:
        if f.exists():
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    lake = Lake(paths())
    h.update(str(lake.version(OPS_KILLS)).encode() + b"\0")
    h.update(str(lake.version(GOLD_BANDIT_WEIGHTS)).encode())
    return h.hexdigest()[:16]


@sensor(
    job_name="publish_config",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Republishes the edge config when the registry files, the kills or a bandit's "
    "weights change.",
)
def registry_changed(context: SensorEvaluationContext):
    fingerprint = registry_fingerprint()
    if fingerprint == context.cursor:
        return SkipReason("registry unchanged")
    # No run key: a revert to an earlier fingerprint must publish again (Dagster skips used keys).
    return SensorResult(run_requests=[RunRequest()], cursor=fingerprint)
