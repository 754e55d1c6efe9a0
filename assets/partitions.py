"""The daily partitions every pipeline asset shares: one per UTC day (arrival day for landing)."""

from __future__ import annotations

import datetime as dt
import os

from dagster import DailyPartitionsDefinition

from ab_pipelines.settings import SetupError

__all__ = ["FIRST_DAY", "daily_partitions"]

# The first day the platform can land; ABP_FIRST_DAY moves it for older history.
FIRST_DAY = os.environ.get("ABP_FIRST_DAY", "2025-01-01")
try:
    dt.date.fromisoformat(FIRST_DAY)
except ValueError:
    raise SetupError(f"ABP_FIRST_DAY '{FIRST_DAY}' is not a date; use YYYY-MM-DD.") from None

# end_offset=1: today's partition exists too, so today's arrivals can be landed before midnight.
daily_partitions = DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
