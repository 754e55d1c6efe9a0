"""Freshness: no new dumps for longer than ABP_FRESHNESS_HOURS is a failed check."""

from __future__ import annotations

import time

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetObservation,
    AssetSelection,
    DagsterInstance,
    Definitions,
    MetadataValue,
    define_asset_job,
)

from jobs.definitions import FRESHNESS_HOURS, freshness_checks


def _evaluate(instance) -> bool:
    defs = Definitions(
        asset_checks=freshness_checks,
        jobs=[define_asset_job("fresh", selection=AssetSelection.checks(*freshness_checks))],
    )
    defs.resolve_job_def("fresh").execute_in_process(instance=instance, raise_on_error=False)
    key = AssetCheckKey(AssetKey(["raw", "exposures"]), "freshness_check")
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    return latest.event.dagster_event.event_specific_data.passed


def _observe(instance, hours_ago: float) -> None:
    stamp = time.time() - hours_ago * 3600
    instance.report_runless_asset_event(
        AssetObservation(
            AssetKey(["raw", "exposures"]),
            metadata={"dagster/last_updated_timestamp": MetadataValue.timestamp(stamp)},
        )
    )


def test_stale_dumps_fail_and_fresh_dumps_pass():
    with DagsterInstance.ephemeral() as instance:
        _observe(instance, FRESHNESS_HOURS + 2)
        assert _evaluate(instance) is False
        _observe(instance, 0.1)
        assert _evaluate(instance) is True
