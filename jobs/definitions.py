"""The Definitions object `dagster dev` loads (workspace.yaml): assets, jobs, schedules, resources."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from assets.landing import land_raw_dumps, raw_topics
from assets.partitions import daily_partitions
from assets.resources import LakeResource

__all__ = ["daily_job", "defs"]

# Everything the platform materializes for a day; later stages join this selection.
daily_job = define_asset_job(
    "daily",
    selection=AssetSelection.assets(land_raw_dumps),
    partitions_def=daily_partitions,
    description="Land, check and analyze one day (or a range, in one run).",
)

# At 00:30 UTC, the day that just ended (its dumps are complete).
daily_schedule = build_schedule_from_partitioned_job(daily_job, hour_of_day=0, minute_of_hour=30)

defs = Definitions(
    assets=[*raw_topics, land_raw_dumps],
    jobs=[daily_job],
    schedules=[daily_schedule],
    resources={"lake": LakeResource()},
)
