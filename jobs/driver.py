"""Driving Dagster from the command line: DAGSTER_HOME under ABP_HOME, and in-process runs of the
daily and analyze jobs over a range of days (``abp run`` and the demo, jobs/demo.py)."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import click

from ab_pipelines.cli import UserError, registry_or_fail
from ab_pipelines.settings import REPO_ROOT, Paths, SetupError, paths, settings
from assets.clock import NOW_TAG

__all__ = ["close_dead_runs_now", "ensure_dagster_home", "execute", "run_days"]


def ensure_dagster_home(p: Paths) -> None:
    """DAGSTER_HOME = $ABP_HOME/dagster, holding a copy of the repo's dagster.yaml."""
    home = p.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    src, dst = REPO_ROOT / "dagster.yaml", home / "dagster.yaml"
    if src.exists() and (not dst.exists() or dst.read_bytes() != src.read_bytes()):
        shutil.copyfile(src, dst)
    os.environ["DAGSTER_HOME"] = str(home)


def run_days(p: Paths, first: dt.date, last: dt.date, now: dt.datetime | None = None) -> bool:
    """Land (and check) first..last in one Dagster run, then analyse the days whose late window
    closed with it: first - late .. last - late (from the first experiment start). True if all ran.

    ``now`` is the platform's clock for these runs (the demo's simulated time; default: the
    settings' clock): the runs carry it as the ``abp/now`` tag, so alerts and kills are stamped
    with it.
    """
    ensure_dagster_home(p)
    try:
        from assets.analysis import LATE_ARRIVAL_DAYS
        from jobs.definitions import analyze_job, daily_job, defs
    except SetupError as exc:
        raise UserError(str(exc)) from None
    partitions = defs.resolve_job_def(daily_job.name).partitions_def.get_partition_keys()
    if first.isoformat() < partitions[0]:
        raise UserError(
            f"{first} is before the first daily partition {partitions[0]}; "
            "set ABP_FIRST_DAY (YYYY-MM-DD) to land older days."
        )
    if last.isoformat() > partitions[-1]:
        raise UserError(
            f"{last} is in the future: the last day that can be run is {partitions[-1]}."
        )
    close_dead_runs_now(p)
    if not execute(defs, daily_job.name, first, last, now):
        return False
    late = dt.timedelta(days=LATE_ARRIVAL_DAYS)
    starts = [e.start_date for e in registry_or_fail().experiments.values()]
    a_first = max(first - late, min(starts, default=last), dt.date.fromisoformat(partitions[0]))
    if not starts or last - late < a_first:
        return True
    return execute(defs, analyze_job.name, a_first, last - late, now)


def execute(
    defs, job_name: str, first: dt.date, last: dt.date, now: dt.datetime | None = None
) -> bool:
    """One in-process run of a partitioned job over first..last, recorded in the instance.

    The run answers SIGTERM and Ctrl-C within seconds (recorded canceled) and fails a step that
    waits for a pool slot longer than ABP_SLOT_WAIT_MINUTES (jobs/recovery.py).
    """
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ab_pipelines.safety.day import alert_run_failure
    from jobs.recovery import RunCanceled, SlotWaitTimeout, execute_guarded

    tags = {NOW_TAG: now.isoformat()} if now is not None else {}
    if first == last:
        kwargs = {"partition_key": first.isoformat()}
    else:
        tags |= {
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
        }
        kwargs = {}
    if tags:
        kwargs["tags"] = tags
    # The console shows warnings only; the instance's event log (the Dagster UI) keeps everything.
    quiet = {"loggers": {"console": {"config": {"log_level": settings().log_level}}}}
    instance = DagsterInstance.get()
    try:
        result = execute_guarded(
            defs.resolve_job_def(job_name),
            instance,
            run_config=quiet,
            raise_on_error=False,
            **kwargs,
        )
    except RunCanceled as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(130) from None
    except SlotWaitTimeout as exc:
        click.echo(f"error: {exc}", err=True)
        alert_run_failure(paths(), exc.run_id, job_name, str(exc), now=now)
        return False
    if not result.success:
        messages = []
        for ev in result.all_events:
            if ev.is_step_failure and ev.step_failure_data.error is not None:
                msg = ev.step_failure_data.error.message.strip()
                messages.append(f"step {ev.step_key} failed: {msg}")
                click.echo(messages[-1], err=True)
        # No daemon watches in-process runs: open the run_failed alert here (once per run).
        alert_run_failure(
            paths(), result.run_id, job_name, "; ".join(messages) or "run failed", now=now
        )
    return result.success


def close_dead_runs_now(p: Paths) -> None:
    """Close the runs whose process died (they would hold the engine's pool slot forever)."""
    from dagster import DagsterInstance

    from jobs.recovery import close_dead_runs

    for state in close_dead_runs(DagsterInstance.get(), p, f"abp (pid {os.getpid()})"):
        click.echo(f"closed {state.describe()}: its process died", err=True)
