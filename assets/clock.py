"""The platform's clock in a run: the ``abp/now`` tag, set by whoever starts the run.

A run started by the demo (or a replay) carries its simulated time here, so the alerts and kills
its assets make are stamped with it; a run without the tag (schedules, sensors, the UI) uses the
settings' clock (``ab_pipelines.settings.now``).
"""

from __future__ import annotations

import datetime as dt

from dagster import AssetExecutionContext

__all__ = ["NOW_TAG", "run_clock"]

NOW_TAG = "abp/now"


def run_clock(context: AssetExecutionContext) -> dt.datetime | None:
    """The run's ``abp/now`` tag as an aware UTC time; None when the run has none."""
    raw = context.run.tags.get(NOW_TAG)
    if not raw:
        return None
    t = dt.datetime.fromisoformat(raw)
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
