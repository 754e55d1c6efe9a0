"""Daily traffic from bronze: exposure events and distinct users per experiment and variant."""

from __future__ import annotations

import datetime as dt

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, SILVER_EXPOSURE_COUNTS

__all__ = ["count_exposures"]


def count_exposures(spark, lake: Lake, day: dt.date) -> int:
    """Replace arrival day ``day`` of silver.exposure_counts from bronze.exposures; returns rows.

    The engine aggregates; the few rows (day x experiment x variant) come back as Arrow and
    delta-rs commits them.
    """
    from pyspark.sql import functions as F

    part = [{"arrival_date": day.isoformat()}]
    counts = (
        lake.read_spark(spark, BRONZE_EXPOSURES, part)
        .groupBy(
            "arrival_date",
            F.to_date("ts").alias("event_date"),
            "experiment_id",
            "variant",
        )
        .agg(F.count("*").alias("exposures"), F.countDistinct("user_id").alias("units"))
        .toArrow()
    )
    lake.write_arrow(SILVER_EXPOSURE_COUNTS, counts, replace=part)
    return counts.num_rows
