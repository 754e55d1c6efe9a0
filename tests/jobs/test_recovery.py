"""jobs/recovery.py without killing anything: the judgment of each kind of run, the sensor.

The kills themselves are in test_crash_recovery.py; here runs are written into a real instance
(the project's dagster.yaml, SQLite) as a dead or stuck process would have left them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ab_pipelines.lake import Lake
from ab_pipelines.processes import HOST
from ab_pipelines.safety import open_alerts

pytestmark = pytest.mark.dagster


@pytest.fixture
def instance(home):
    from dagster import DagsterInstance

    from jobs.driver import ensure_dagster_home

    ensure_dagster_home(home)
    with DagsterInstance.get() as inst:
        yield inst


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(instance, job: str, tags: dict, status=None):
    """A run record as a process left it (STARTED unless told)."""
    from dagster import DagsterRun, DagsterRunStatus
    from dagster._core.utils import make_new_run_id

    run = DagsterRun(
        job_name=job,
        run_id=make_new_run_id(),
        tags=tags,
        status=status or DagsterRunStatus.STARTED,
    )
    instance.add_run(run)
    return run


def _status(instance, run) -> str:
    return instance.get_run_by_id(run.run_id).status.value


def test_the_sensor_closes_dead_runs_and_frees_their_slots(home, instance):
    from dagster import DagsterRunStatus, build_sensor_context

    from jobs.recovery import HEARTBEAT_TAG, HOST_TAG, PID_TAG, dead_runs

    storage = instance.event_log_storage
    storage.set_concurrency_slots("spark", 2)  # the dead run's slot and the ended run's
    dead_here = _run(instance, "daily", {HOST_TAG: HOST, PID_TAG: str(_dead_pid())})
    storage.claim_concurrency_slot("spark", dead_here.run_id, "land_raw_dumps")
    # A pid reused by a process that started after the run: the run's own process is gone.
    reused = _run(instance, "daily", {HOST_TAG: HOST})
    time.sleep(2.5)  # beyond the slack between /proc's clock and the records'
    newcomer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    instance.add_run_tags(reused.run_id, {PID_TAG: str(newcomer.pid)})
    old_beat = f"{time.time() - 3600:.0f}"
    silent_elsewhere = _run(
        instance, "analyze", {HOST_TAG: "other", PID_TAG: "7", HEARTBEAT_TAG: old_beat}
    )
    fresh_beat = f"{time.time():.0f}"
    beating_elsewhere = _run(
        instance, "analyze", {HOST_TAG: "other", PID_TAG: "7", HEARTBEAT_TAG: fresh_beat}
    )
    mine = _run(instance, "daily", {HOST_TAG: HOST, PID_TAG: str(os.getpid())})
    ended = _run(instance, "daily", {}, status=DagsterRunStatus.FAILURE)
    storage.claim_concurrency_slot("spark", ended.run_id, "analysis_sql")  # left by an old version
    held = {slot.run_id for slot in storage.get_concurrency_info("spark").claimed_slots}
    assert held == {dead_here.run_id, ended.run_id}

    try:
        result = dead_runs(build_sensor_context(instance=instance))
    finally:
        newcomer.kill()
        newcomer.wait()
    assert "closed" in result.skip_message

    assert _status(instance, dead_here) == "FAILURE"
    assert _status(instance, reused) == "FAILURE"
    assert _status(instance, silent_elsewhere) == "FAILURE"
    assert _status(instance, beating_elsewhere) == "STARTED"
    assert _status(instance, mine) == "STARTED"
    assert not storage.get_concurrency_info("spark").claimed_slots  # both freed
    failure = [
        e
        for e in instance.all_logs(dead_here.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ]
    assert "died; marked failed by the dead_runs sensor" in failure[0].dagster_event.message
    alerts = {a.subject for a in open_alerts(Lake(home)) if a.kind == "run_failed"}
    assert {dead_here.run_id, silent_elsewhere.run_id} <= alerts
    # Nothing left to do: a second look closes nothing.
    assert (
        "no dead or stuck runs" in dead_runs(build_sensor_context(instance=instance)).skip_message
    )


def test_a_daemon_run_found_by_its_engine_event(home, instance):
    """A run the daemon launched names its process only in an engine event."""
    from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData

    from jobs.recovery import close_dead_runs, run_states

    run = _run(instance, "land_stream", {})
    event = DagsterEvent(
        event_type_value=DagsterEventType.ENGINE_EVENT.value,
        job_name=run.job_name,
        message="Started process for run",
        event_specific_data=EngineEventData.in_process(_dead_pid()),
    )
    instance.report_dagster_event(event, run_id=run.run_id)
    (state,) = run_states(instance)
    assert state.pid is not None and state.alive is False
    assert [s.run_id for s in close_dead_runs(instance, home, "a test")] == [run.run_id]


def test_a_daemon_run_waiting_too_long_for_a_slot_is_stopped(home, instance, monkeypatch):
    from jobs.recovery import HOST_TAG, PID_TAG, fail_stuck_waits

    monkeypatch.setenv("ABP_SLOT_WAIT_MINUTES", "0.001")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = _run(instance, "analyze", {HOST_TAG: HOST, PID_TAG: str(sleeper.pid)})
    waiting = _run(instance, "land_stream", {})  # launched by the daemon: no abp tags
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("spark")  # as a run's executor does
    storage.claim_concurrency_slot("spark", holder.run_id, "analysis_sql")
    storage.claim_concurrency_slot("spark", waiting.run_id, "land_raw_dumps")
    time.sleep(0.2)
    try:
        done = fail_stuck_waits(instance, home, "a test")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert len(done) == 1 and waiting.run_id in done[0]
    assert _status(instance, waiting) == "FAILURE" and _status(instance, holder) == "STARTED"
    message = [
        e.dagster_event.message
        for e in instance.all_logs(waiting.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ][0]
    assert holder.run_id in message and "abp runs --fail" in message


def test_every_run_closes_dead_runs_before_its_steps(home, instance):
    """Schedule and sensor runs too: the lake resource, set up before any step claims the
    engine's pool, closes the runs whose process died."""
    from dagster import build_init_resource_context

    from assets.resources import LakeResource
    from jobs.recovery import HOST_TAG, PID_TAG

    dead = _run(instance, "daily", {HOST_TAG: HOST, PID_TAG: str(_dead_pid())})
    LakeResource().setup_for_execution(build_init_resource_context(instance=instance))
    assert _status(instance, dead) == "FAILURE"
