"""A run killed mid-way never blocks the runs after it (docs/reliability.md, "Crash matrix").

Dagster cannot see that an in-process run died: the default run launcher has no worker health
check, so a SIGKILLed ``abp run`` stays ``STARTED`` and keeps its pool slot, and a step waiting
for that slot waits forever (it does not even answer SIGTERM). Here:

- Every run ``abp`` starts carries its host and process id (tags ``abp/host``, ``abp/pid``) and a
  heartbeat (``abp/heartbeat``); runs the daemon launches name their process in an engine event.
- :func:`close_dead_runs` marks failed every unfinished run whose process is gone (on this host:
  its pid is not alive, or is another process now; elsewhere: no heartbeat for
  ``ABP_RUN_DEAD_SECONDS``), frees the pool slots of any finished run, and raises a
  ``run_failed`` alert. ``abp run``, the demo and the ``dead_runs`` sensor (every minute in the
  daemon) call it before work starts.
- :func:`execute_guarded` runs a job in a worker thread while this thread answers SIGTERM and
  Ctrl-C (the run is recorded canceled and its slots freed within ``ABP_STOP_SECONDS``), beats
  the heartbeat, and fails a step that waited for a pool slot longer than
  ``ABP_SLOT_WAIT_MINUTES``, naming the run that holds it.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEventType
from dagster._core.utils import make_new_run_id

from ab_pipelines.processes import HOST, alive
from ab_pipelines.settings import Paths, paths

__all__ = [
    "HEARTBEAT_TAG",
    "HOST_TAG",
    "PID_TAG",
    "RunCanceled",
    "RunState",
    "SlotWaitTimeout",
    "close_dead_runs",
    "dead_runs",
    "execute_guarded",
    "fail_run",
    "fail_stuck_waits",
    "run_states",
]

HOST_TAG, PID_TAG, HEARTBEAT_TAG = "abp/host", "abp/pid", "abp/heartbeat"
POOLS = ("spark",)  # the assets' pools (a pool at its default limit is listed only once used)
_UNFINISHED = [
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} '{raw}' must be a number") from None
    if value <= 0:
        raise ValueError(f"{name} '{raw}' must be positive")
    return value


def slot_wait_seconds() -> float:
    """ABP_SLOT_WAIT_MINUTES (default 60): how long a step may wait for a pool slot."""
    return 60 * _seconds("ABP_SLOT_WAIT_MINUTES", 60)


def heartbeat_seconds() -> float:
    """ABP_RUN_HEARTBEAT_SECONDS (default 30): how often a run started by abp says it lives."""
    return _seconds("ABP_RUN_HEARTBEAT_SECONDS", 30)


def dead_after_seconds() -> float:
    """ABP_RUN_DEAD_SECONDS (default 300): a run of another host without a heartbeat this long
    is dead (a run of this host is judged by its process at once)."""
    return _seconds("ABP_RUN_DEAD_SECONDS", 300)


def stop_seconds() -> float:
    """ABP_STOP_SECONDS (default 8): after SIGTERM or Ctrl-C, how long the run may take to stop
    by itself before its process exits anyway (its record canceled, its slots freed)."""
    return _seconds("ABP_STOP_SECONDS", 8)


# ---- what runs are doing ---------------------------------------------------------------------
@dataclass(frozen=True)
class RunState:
    """An unfinished run, its process, and the pool slots it holds or waits for."""

    run_id: str
    job_name: str
    status: str
    created: float  # epoch seconds
    host: str | None
    pid: int | None
    alive: bool | None  # None: cannot tell (another host, no heartbeat kept)
    holds: list[str] = field(default_factory=list)  # "pool: step"
    waits: list[tuple[str, str, float]] = field(default_factory=list)  # pool, step, since

    def describe(self) -> str:
        where = f"pid {self.pid} on {self.host or HOST}" if self.pid else "no process recorded"
        state = {True: "alive", False: "dead", None: "unknown"}[self.alive]
        return (
            f"run {self.run_id} (job {self.job_name}, {self.status.lower()}, started "
            f"{_when(self.created)}, {where}, {state})"
        )


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _process_of(
    instance: DagsterInstance, run, created: float
) -> tuple[str | None, int | None, float]:
    """(host, pid, when the pid was recorded): from abp's tags, else from the run's engine events
    (a daemon-launched run's worker names itself there)."""
    pid = run.tags.get(PID_TAG)
    if pid and pid.isdigit():
        return run.tags.get(HOST_TAG), int(pid), created
    for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data if record.dagster_event else None
        value = data.metadata.get("pid") if data else None
        text = getattr(value, "value", value)
        if isinstance(text, str) and text.isdigit():
            return None, int(text), record.timestamp
    return None, None, created


def _is_alive(run, host: str | None, pid: int | None, since: float, now: float) -> bool | None:
    if host in (None, HOST):
        if pid is None:
            # Nothing named a process yet: a run being created or launched. Past the start
            # timeout it never will.
            return now - since < dead_after_seconds()
        return alive(pid, since)
    beat = run.tags.get(HEARTBEAT_TAG)
    if beat is None:
        return None
    return now - float(beat) < dead_after_seconds()


def _slots(instance: DagsterInstance) -> tuple[dict[str, list[str]], dict[str, list]]:
    """Per run: the slots it holds ("pool: step") and the steps waiting (pool, step, since)."""
    storage = instance.event_log_storage
    holds: dict[str, list[str]] = {}
    waits: dict[str, list] = {}
    if not storage.supports_global_concurrency_limits:
        return holds, waits
    for pool in sorted(storage.get_concurrency_keys() | set(POOLS)):
        info = storage.get_concurrency_info(pool)
        for slot in info.claimed_slots:
            holds.setdefault(slot.run_id, []).append(f"{pool}: {slot.step_key}")
        for step in info.pending_steps:
            if step.assigned_timestamp is None:
                waits.setdefault(step.run_id, []).append(
                    (pool, step.step_key, step.enqueued_timestamp.timestamp())
                )
    return holds, waits


def run_states(instance: DagsterInstance) -> list[RunState]:
    """Every unfinished run, with its process's state and its slots; oldest first."""
    holds, waits = _slots(instance)
    now = time.time()
    out = []
    for record in instance.get_run_records(RunsFilter(statuses=_UNFINISHED)):
        run, created = record.dagster_run, record.create_timestamp.timestamp()
        host, pid, since = _process_of(instance, run, created)
        out.append(
            RunState(
                run_id=run.run_id,
                job_name=run.job_name,
                status=run.status.value,
                created=created,
                host=host,
                pid=pid,
                alive=_is_alive(run, host, pid, since, now),
                holds=holds.get(run.run_id, []),
                waits=waits.get(run.run_id, []),
            )
        )
    return sorted(out, key=lambda s: s.created)


def _free_slots(instance: DagsterInstance, run_id: str) -> None:
    """Free every pool slot the run holds or waits for (a run's end does not)."""
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


# ---- closing runs ----------------------------------------------------------------------------
def _close(instance: DagsterInstance, home: Paths, run_id: str, message: str) -> None:
    """Record the run failed (canceled if it was being canceled), free its slots, alert."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in _UNFINISHED:
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
            from ab_pipelines.safety.day import alert_run_failure

            alert_run_failure(home, run_id, run.job_name, message)
    _free_slots(instance, run_id)


def close_dead_runs(instance: DagsterInstance, home: Paths, by: str) -> list[RunState]:
    """Close every unfinished run whose process is gone; free slots held by finished runs.

    Returns the runs closed. ``by`` names who closed them, in the message the run records.
    """
    closed = []
    for state in run_states(instance):
        if state.alive is False:
            what = f"pid {state.pid} on {state.host or HOST}" if state.pid else "its process"
            _close(
                instance,
                home,
                state.run_id,
                f"the run's process ({what}) died; marked failed by {by}",
            )
            closed.append(state)
    # Slots of runs that ended without freeing them (closed by hand in the UI, or by an older
    # version): a finished run holds nothing.
    holds, _ = _slots(instance)
    for run_id in holds:
        run = instance.get_run_by_id(run_id)
        if run is None or run.status not in _UNFINISHED:
            _free_slots(instance, run_id)
    return closed


def fail_stuck_waits(instance: DagsterInstance, home: Paths, by: str) -> list[str]:
    """Close the runs this project does not guard itself (launched by the daemon) that waited
    for a pool slot longer than ABP_SLOT_WAIT_MINUTES: their process is stopped, the run
    recorded failed with the reason. Returns what was done, one line per run."""
    limit, done = slot_wait_seconds(), []
    states = run_states(instance)
    for state in states:
        run = instance.get_run_by_id(state.run_id)
        if run is None or PID_TAG in run.tags or not state.waits:
            continue
        reason = _slot_wait_message(states, state.run_id, limit)
        if reason:
            done.append(fail_run(instance, home, state.run_id, f"{by}: {reason}"))
    return done


def fail_run(instance: DagsterInstance, home: Paths, run_id: str, by: str) -> str:
    """Close one run by hand (``abp runs --fail``): stop its process here if it still lives
    (SIGTERM, then SIGKILL), record it failed, free its slots. Returns what was done."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise LookupError(f"no run {run_id} in this instance (abp runs --stuck lists them)")
    if run.status not in _UNFINISHED:
        _free_slots(instance, run_id)
        return f"run {run_id} had already ended ({run.status.value.lower()}); its slots are free"
    state = next(s for s in run_states(instance) if s.run_id == run_id)
    stopped = ""
    if state.alive and state.pid and state.host in (None, HOST):
        _stop_process(state.pid)
        stopped = f" after stopping its process {state.pid}"
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status not in _UNFINISHED:
            _free_slots(instance, run_id)
            return f"run {run_id} stopped ({run.status.value.lower()}){stopped}"
    _close(instance, home, run_id, f"marked failed by {by}{stopped}")
    return f"run {run_id} marked failed{stopped}; its slots are free"


def _stop_process(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + stop_seconds() + 5
    while time.time() < deadline and alive(pid):
        time.sleep(0.2)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)


# ---- running a job so that nothing waits forever -------------------------------------------
class _RunStopped(Exception):
    def __init__(self, message: str, run_id: str = ""):
        super().__init__(message)
        self.run_id = run_id


class SlotWaitTimeout(_RunStopped):
    """A step waited for a pool slot longer than ABP_SLOT_WAIT_MINUTES (the run failed)."""


class RunCanceled(_RunStopped):
    """The run was stopped by SIGTERM or Ctrl-C and recorded as canceled."""


def _raise_in(thread: threading.Thread, exc_type: type[BaseException], message: str = "") -> None:
    """Raise ``exc_type(message)`` in ``thread`` at its next Python instruction (a wait loop's
    sleep returns within a second; a long call into the engine must return first)."""
    # CPython raises an async exception by its class: a subclass carries the message.
    carrier = type(
        exc_type.__name__,
        (exc_type,),
        {"__init__": lambda self, *args: exc_type.__init__(self, message)},
    )
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(carrier)
    )


def _slot_wait_message(states: list[RunState], run_id: str, limit: float) -> str | None:
    """Why run ``run_id`` must stop waiting, or None: a step of it waited longer than ``limit``
    seconds for a slot; the message names who holds the pool and how to free it. ``states``:
    :func:`run_states`."""
    mine = next((s for s in states if s.run_id == run_id), None)
    if mine is None:
        return None
    now = time.time()
    for pool, step, since in mine.waits:
        if now - since < limit:
            continue
        holders = [s for s in states if any(h.startswith(f"{pool}: ") for h in s.holds)]
        held = "; ".join(s.describe() for s in holders) or "no run (the slot was just freed)"
        fix = (
            f"`abp runs --stuck` lists stuck runs, `abp runs --fail {holders[0].run_id}` closes it"
            if holders
            else "run again"
        )
        return (
            f"step {step} waited {(now - since) / 60:.0f} min (ABP_SLOT_WAIT_MINUTES) for a slot "
            f"of the '{pool}' pool, held by {held}; {fix}"
        )
    return None


def execute_guarded(job_def, instance: DagsterInstance, **kwargs):
    """``job_def.execute_in_process(instance=instance, **kwargs)``, with nothing waiting forever.

    The run goes on in this (main) thread, where Dagster turns SIGTERM and SIGINT into an
    interrupt of the running step; a watcher thread beats the run's heartbeat and covers what
    Dagster does not: a signal that arrives while a step waits for a pool slot (Dagster only
    notes it), a run that does not stop within ABP_STOP_SECONDS (it is recorded canceled, its
    slots freed, and the process exits with 128 + the signal), and a slot wait longer than
    ABP_SLOT_WAIT_MINUTES. Raises :class:`RunCanceled` or :class:`SlotWaitTimeout` (the run
    recorded canceled or failed); otherwise returns the result.
    """
    if threading.current_thread() is not threading.main_thread():
        # Signals reach the main thread only: elsewhere (tests) run without the guard.
        return job_def.execute_in_process(instance=instance, **kwargs)
    run_id = make_new_run_id()
    tags = {
        **kwargs.pop("tags", {}),
        HOST_TAG: HOST,
        PID_TAG: str(os.getpid()),
        HEARTBEAT_TAG: f"{time.time():.0f}",
    }
    watcher = _Watcher(instance, run_id)
    try:
        with watcher:
            result = job_def.execute_in_process(
                instance=instance, run_id=run_id, tags=tags, **kwargs
            )
    except (SlotWaitTimeout, DagsterExecutionInterruptedError, KeyboardInterrupt):
        result = None  # raised by the watcher outside any step: told below
    finally:
        _free_slots(instance, run_id)
    run = instance.get_run_by_id(run_id)
    unfinished = run is not None and run.status in _UNFINISHED
    if watcher.signals:
        name = signal.Signals(watcher.signals[0]).name
        if unfinished:
            instance.report_run_canceled(run, f"stopped by {name}")
        raise RunCanceled(f"run {run_id} was stopped by {name} and recorded as canceled", run_id)
    if watcher.timed_out:
        if unfinished:
            instance.report_run_failed(run, watcher.timed_out)
        raise SlotWaitTimeout(watcher.timed_out, run_id)
    if result is None:
        raise RuntimeError(f"run {run_id} was interrupted")
    return result


_WAKE = signal.SIGUSR1  # wakes the run's thread from a sleep


class _Watcher:
    """The thread beside a run in the main thread (see :func:`execute_guarded`)."""

    def __init__(self, instance: DagsterInstance, run_id: str):
        self.instance, self.run_id = instance, run_id
        self.signals: list[int] = []
        self.timed_out: str | None = None
        self._main = threading.main_thread()
        self._done = threading.Event()

    def __enter__(self) -> _Watcher:
        # A signal's number is written to this pipe whatever Python handler runs for it
        # (Dagster installs its own during the run): the watcher reads it here.
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        # Before and after Dagster's handlers: note the signal, do not die mid-bookkeeping.
        self._previous = {
            sig: signal.signal(sig, lambda signum, _f: None)
            for sig in (signal.SIGTERM, signal.SIGINT, _WAKE)
        }
        self._thread = threading.Thread(target=self._watch, name="run-watcher", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._read)
        os.close(self._write)

    def _main_waits(self) -> bool:
        """Is the run's thread sleeping in Dagster's step loop (a slot wait, a retry delay)?"""
        frame = sys._current_frames().get(self._main.ident)
        return frame is not None and frame.f_code.co_name == "sleep_til_ready"

    def _interrupt(self, exc_type: type[BaseException], message: str) -> None:
        _raise_in(self._main, exc_type, message)
        # A sleep (a retry's delay) sees the exception only when it ends: a signal ends it,
        # and the exception is raised in its (no-op) handler.
        signal.pthread_kill(self._main.ident, _WAKE)

    def _watch(self) -> None:
        import select

        limit, beat_every = slot_wait_seconds(), heartbeat_seconds()
        stop_by, interrupted = None, False
        last_beat = last_check = time.time()
        while not self._done.wait(0.2):
            now = time.time()
            if select.select([self._read], [], [], 0)[0]:
                got = [b for b in os.read(self._read, 64) if b in (signal.SIGTERM, signal.SIGINT)]
                if got and not self.signals:
                    self.signals.extend(got)
                    stop_by = now + stop_seconds()
                    run = self.instance.get_run_by_id(self.run_id)
                    if run is not None and run.status in _UNFINISHED:
                        name = signal.Signals(got[0]).name
                        self.instance.report_run_canceling(run, f"stopped by {name}")
            if stop_by is not None:
                if not interrupted and self._main_waits():
                    # Dagster raises a signal in a running step only; a run waiting for a slot
                    # or for a step's retry sleeps in its loop, where it is safe to stop.
                    interrupted = True
                    name = signal.Signals(self.signals[0]).name
                    self._interrupt(DagsterExecutionInterruptedError, f"stopped by {name}")
                if now > stop_by:
                    _give_up(self.instance, self.run_id, self.signals[0])
                continue
            if now - last_beat >= beat_every:
                last_beat = now
                with contextlib.suppress(Exception):  # a busy storage must not stop the run
                    self.instance.add_run_tags(self.run_id, {HEARTBEAT_TAG: f"{now:.0f}"})
            if self.timed_out is None and now - last_check >= 2:
                last_check = now
                self.timed_out = _slot_wait_message(run_states(self.instance), self.run_id, limit)
            if self.timed_out and not interrupted and self._main_waits():
                interrupted = True
                self._interrupt(SlotWaitTimeout, self.timed_out)


def _give_up(instance: DagsterInstance, run_id: str, signum: int) -> None:
    """The run did not stop in time (a long engine call): record it, free its slots, exit."""
    name = signal.Signals(signum).name
    message = (
        f"stopped by {name}; the run did not stop within {stop_seconds():g} s "
        "(ABP_STOP_SECONDS), so its process exited"
    )
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in _UNFINISHED:
        instance.report_run_canceled(run, message)
    _free_slots(instance, run_id)
    os.write(2, f"error: run {run_id} was {message}; recorded as canceled\n".encode())
    os._exit(128 + signum)


# ---- in the daemon ---------------------------------------------------------------------------
@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Every minute: close runs whose process died (they would keep their pool slot "
    "forever), free slots of ended runs, and stop daemon-launched runs that waited for a slot "
    "longer than ABP_SLOT_WAIT_MINUTES.",
)
def dead_runs(context: SensorEvaluationContext):
    home = paths()
    lines = [
        f"closed {s.describe()}"
        for s in close_dead_runs(context.instance, home, "the dead_runs sensor")
    ]
    lines += fail_stuck_waits(context.instance, home, "the dead_runs sensor")
    for line in lines:
        context.log.warning(line)
    return SkipReason("; ".join(lines) or "no dead or stuck runs")
