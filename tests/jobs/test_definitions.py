"""The Dagster code location: it loads, and real runs land days and ranges."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from ab_pipelines.events import envelope, write_dump
from ab_pipelines.lake import Lake
from ab_pipelines.lake.tables import BRONZE_EXPOSURES, OPS_LANDED_FILES
from ab_pipelines.settings import REPO_ROOT
from jobs.driver import run_days

D1, D2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def test_definitions_validate_for_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_bytes((REPO_ROOT / "dagster.yaml").read_bytes())
    exe = os.path.join(os.path.dirname(sys.executable), "dagster")
    out = subprocess.run(
        [exe, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_every_asset_is_in_the_daily_job():
    from jobs.definitions import daily_job, defs

    job = defs.resolve_job_def(daily_job.name)
    analyze = defs.resolve_job_def("analyze")
    graph = defs.resolve_asset_graph()
    materializable = {
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable and k.path[0] != "config"
    }
    in_jobs = set(job.asset_layer.asset_graph.get_all_asset_keys()) | set(
        analyze.asset_layer.asset_graph.get_all_asset_keys()
    )
    assert materializable <= in_jobs
    assert {
        "bronze/exposures",
        "bronze/metric_events",
        "bronze/quarantine",
        "ops/landed_files",
    } <= {k.to_user_string() for k in materializable}


def exposure_lines(day: dt.date, base: int, n: int, variants=("control",)) -> list[dict]:
    """n exposure envelopes of checkout_cta on ``day``, offsets from ``base``, variants in turn."""
    return [
        envelope(
            "exposures",
            0,
            base + i,
            1,
            f"user-{i}",
            {
                "event_id": f"e{base + i}",
                "user_id": f"user-{i}",
                "experiment_id": "checkout_cta",
                "variant": variants[i % len(variants)],
                "ts": f"{day}T10:00:00Z",
            },
        )
        for i in range(n)
    ]


def write_day(raw, day: dt.date, base: int) -> None:
    lines = exposure_lines(day, base, 4)
    write_dump(raw, "exposures", day, 0, base, [*lines, lines[0], b"{oops"])


@pytest.mark.spark
@pytest.mark.dagster
def test_a_range_lands_in_one_dagster_run_and_a_rerun_changes_nothing(home, spark):
    from dagster import DagsterInstance

    write_day(home.raw, D1, 0)
    write_day(home.raw, D2, 100)
    assert run_days(home, D1, D2)
    instance = DagsterInstance.get()
    runs = {r.job_name: r for r in instance.get_runs()}
    assert set(runs) == {"daily", "analyze"}  # one landing run for the range, then the analysis
    assert runs["daily"].tags["dagster/asset_partition_range_start"] == D1.isoformat()
    # day D1's late window (D2) has landed, so D1 is analysed; D2 waits for D3
    assert runs["analyze"].tags["dagster/partition"] == D1.isoformat()
    from ab_pipelines.lake.tables import GOLD_SUFFICIENT_STATS

    gold = Lake(home).read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
    assert {r["day"] for r in gold} == {D1}
    cta = [r for r in gold if r["experiment_id"] == "checkout_cta"]
    assert cta and sum(r["n"] for r in cta if r["metric"] == "conversion") == 4
    lake = Lake(home)
    first = sorted(map(str, lake.read_arrow(BRONZE_EXPOSURES).to_pylist()))
    ledger = lake.read_arrow(OPS_LANDED_FILES).to_pylist()
    assert [(r["read"], r["landed"], r["quarantined"], r["duplicates"]) for r in ledger] == [
        (6, 4, 1, 1)
    ] * 2

    assert run_days(home, D2, D2)  # one partition, again
    assert sorted(map(str, lake.read_arrow(BRONZE_EXPOSURES).to_pylist())) == first
    from dagster import AssetKey

    def last_meta(*key):
        (rec,) = instance.fetch_materializations(AssetKey(list(key)), limit=1).records
        return rec.asset_materialization.metadata

    assert last_meta("bronze", "exposures")["landed"].value == 4
    assert last_meta("bronze", "exposures")["dagster/row_count"].value == 4
    assert "preview" in last_meta("bronze", "exposures")
    assert last_meta("bronze", "quarantine")["quarantined_by_reason"].value == {"bad_json": 1}
    ledger_meta = last_meta("ops", "landed_files")
    assert (ledger_meta["read"].value, ledger_meta["duplicates"].value) == (6, 1)


def write_exposures(raw, day: dt.date, n: int) -> None:
    base = (day - D1).days * 1000
    lines = exposure_lines(day, base, n, variants=("treatment", "control"))
    write_dump(raw, "exposures", day, 0, base, lines)


@pytest.mark.spark
@pytest.mark.dagster
def test_a_failed_blocking_check_stops_the_downstream_asset(home, spark):
    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    from ab_pipelines.lake.tables import OPS_DQ_RESULTS, SILVER_EXPOSURE_COUNTS

    days = [D1 + dt.timedelta(days=k) for k in range(4)]
    for day in days[:3]:
        write_exposures(home.raw, day, 40)
    write_exposures(home.raw, days[3], 4)  # a producer that broke: a tenth of the usual volume
    assert run_days(home, days[0], days[2])
    lake = Lake(home)
    assert {r["arrival_date"] for r in lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()} == set(
        days[:3]
    )

    run_days(home, days[3], days[3])
    # bronze landed the day (nothing is lost), but the blocked silver asset did not run for it
    assert lake.read_arrow(BRONZE_EXPOSURES).num_rows == 124
    assert days[3] not in {
        r["arrival_date"] for r in lake.read_arrow(SILVER_EXPOSURE_COUNTS).to_pylist()
    }
    dq = {
        (r["day"], r["table"], r["check"]): r for r in lake.read_arrow(OPS_DQ_RESULTS).to_pylist()
    }
    failed = dq[(days[3], "bronze.exposures", "volume_in_band")]
    assert failed["passed"] is False and '"table_row_count_to_be_between":4' in failed["observed"]
    assert dq[(days[2], "bronze.exposures", "volume_in_band")]["passed"] is True

    instance = DagsterInstance.get()
    check_key = AssetCheckKey(AssetKey(["bronze", "exposures"]), "volume_in_band")
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key])[
        check_key
    ]
    assert latest.event.dagster_event.event_specific_data.passed is False
    mats = instance.fetch_materializations(
        AssetKey(["silver", "exposure_counts"]), limit=10
    ).records
    assert {m.partition_key for m in mats} == {d.isoformat() for d in days[:3]}
    # a failed check is not a transient failure: the step is not retried
    last_run = instance.get_runs(limit=1)[0]
    kinds = [
        e.dagster_event.event_type_value
        for e in instance.all_logs(last_run.run_id)
        if e.dagster_event
    ]
    assert (
        "STEP_FAILURE" in kinds
        and "STEP_UP_FOR_RETRY" not in kinds
        and "STEP_RESTARTED" not in kinds
    )
    # the failed run is an alert (abp run's in-process runs are alerted without a daemon)
    from ab_pipelines.safety import open_alerts

    (alert,) = [a for a in open_alerts(lake) if a.kind == "run_failed"]
    assert alert.subject == last_run.run_id and "volume_in_band" in alert.message
    jsonl = (home.home / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert any(alert.alert_id in line for line in jsonl)


@pytest.mark.spark
@pytest.mark.dagster
def test_errors_in_the_data_fail_at_once_without_retries(home, spark):
    from dagster import DagsterInstance

    write_day(home.raw, D1, 0)
    assert run_days(home, D1, D1)
    next((home.raw / "exposures" / f"date={D1}").iterdir()).unlink()
    assert not run_days(home, D1, D1)
    last_run = DagsterInstance.get().get_runs(limit=1)[0]
    events = [e for e in DagsterInstance.get().all_logs(last_run.run_id) if e.dagster_event]
    kinds = [e.dagster_event.event_type_value for e in events]
    assert kinds.count("STEP_FAILURE") == 1 and "STEP_UP_FOR_RETRY" not in kinds
    failure = next(e for e in events if e.dagster_event.event_type_value == "STEP_FAILURE")
    assert "now missing" in failure.dagster_event.step_failure_data.user_failure_data.description
