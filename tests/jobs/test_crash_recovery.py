"""A run killed mid-way never blocks the runs after it (issue 21; docs/reliability.md).

``abp run`` is killed as an OOM kill or a lost container would kill it (SIGKILL to its whole
process group) at random moments while its Dagster runs exist; the next ``abp run`` must finish
in normal time with the same tables as a clean run. A stopped (alive but stuck) run holding the
engine's pool slot makes the next run fail after ABP_SLOT_WAIT_MINUTES with a message naming it,
and SIGTERM stops a run within seconds, waiting or working.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_HEALTH,
    GOLD_SRM,
    GOLD_SUFFICIENT_STATS,
    OPS_ALERTS,
    OPS_DQ_RESULTS,
    OPS_LANDED_FILES,
    SILVER_EXPOSURE_COUNTS,
    STAT_FIELDS,
)
from ab_pipelines.settings import REPO_ROOT, Paths

pytestmark = [
    pytest.mark.slow,
    pytest.mark.dagster,
    pytest.mark.spark,
]

ABP = os.path.join(os.path.dirname(sys.executable), "abp")
START = dt.date(2026, 11, 2)  # the registry's first experiment start
D1, D2 = START, START + dt.timedelta(days=1)
TABLES = (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    SILVER_EXPOSURE_COUNTS,
    GOLD_SUFFICIENT_STATS,
    GOLD_EXPERIMENT_RESULTS,
    GOLD_SRM,
    GOLD_HEALTH,
    OPS_LANDED_FILES,
    OPS_DQ_RESULTS,
)
STATS_KEY = ("day", "experiment_id", "metric", "variant", "segment")


def _env(home: Path, **extra) -> dict:
    return {
        **os.environ,
        "ABP_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "ABP_REGISTRY": str(REPO_ROOT),
        **extra,
    }


def _start(home: Path, *args: str, **env) -> subprocess.Popen:
    """``abp ARGS`` in a process group of its own (killed as a group, like a lost container)."""
    return subprocess.Popen(
        [ABP, *args],
        env=_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"abp did not finish within {timeout:.0f} s:\n{out[-3000:]}")
    return out


def _abp(home: Path, *args: str, timeout: float = 300, ok: bool = True, **env) -> str:
    proc = _start(home, *args, **env)
    out = _finish(proc, timeout)
    if ok:
        assert proc.returncode == 0, out[-3000:]
    return out


def _runs(home: Path) -> list[dict]:
    """Every Dagster run of ``home``: id, job, status, and the pid tag abp gives its runs."""
    db = home / "dagster" / "history" / "runs.db"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        try:
            rows = con.execute("SELECT run_id, pipeline_name, status FROM runs").fetchall()
            tags = con.execute(
                "SELECT run_id, value FROM run_tags WHERE key = 'abp/pid'"
            ).fetchall()
        except sqlite3.OperationalError:  # Dagster is creating its tables
            return []
    pids = dict(tags)
    return [
        {"run_id": r, "job": j, "status": s, "pid": int(pids[r]) if r in pids else None}
        for r, j, s in rows
    ]


def _pool_holders(home: Path) -> set[str]:
    db = home / "dagster" / "history" / "runs" / "index.db"
    if not db.exists():
        return set()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
        try:
            rows = con.execute(
                "SELECT run_id FROM concurrency_slots WHERE run_id IS NOT NULL"
            ).fetchall()
        except sqlite3.OperationalError:
            return set()
    return {r[0] for r in rows}


def _snapshot(home: Path, files: bool = True) -> dict:
    """Row counts of every table a run writes, and gold's statistics row by row. With
    ``files=False`` the landing ledger is compared by its lines (read, landed, quarantined,
    duplicates) rather than its files: through Kafka, where the connector cuts files is timing."""
    lake = Lake(Paths(home))
    counts = {
        spec.qualified: lake.read_arrow(spec).num_rows if lake.exists(spec) else 0
        for spec in TABLES
        if files or spec is not OPS_LANDED_FILES
    }
    if not files:
        ledger = lake.read_arrow(OPS_LANDED_FILES)
        for col in ("read", "landed", "quarantined", "duplicates"):
            counts[f"ops.landed_files {col}"] = sum(ledger.column(col).to_pylist())
    alerts = lake.read_arrow(OPS_ALERTS).to_pylist() if lake.exists(OPS_ALERTS) else []
    counts["ops.alerts (not run_failed)"] = sum(a["kind"] != "run_failed" for a in alerts)
    stats = sorted(
        tuple(r[k] for k in STATS_KEY) + tuple(round(r[f], 6) for f in STAT_FIELDS)
        for r in lake.read_arrow(GOLD_SUFFICIENT_STATS).to_pylist()
    )
    return {"counts": counts, "stats": stats}


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    """Two simulated days of dumps, nothing landed."""
    home = tmp_path_factory.mktemp("crash") / "base"
    _abp(home, "simulate", "--start", D1.isoformat(), "--days", "2", "--users", "400")
    return home


def _copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


@pytest.fixture(scope="session")
def clean(base, tmp_path_factory) -> tuple[dict, float]:
    """What a clean backfill of D1..D2 leaves, and how long a clean run of D2 takes."""
    home = _copy(base, tmp_path_factory.mktemp("clean") / "home")
    _abp(home, "run", "--date", D1.isoformat())
    t0 = time.monotonic()
    _abp(home, "run", "--date", D2.isoformat())
    seconds = time.monotonic() - t0
    snap = _snapshot(home)
    assert snap["counts"][GOLD_SUFFICIENT_STATS.qualified] > 0  # D1 was analysed
    return snap, seconds


UNFINISHED = {"NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def _kill_during_a_run(
    home: Path, args: list[str], rng: random.Random, span: tuple[float, float]
) -> int:
    """Start ``abp ARGS``, wait until it has a Dagster run, SIGKILL its process group at a
    random moment between ``span`` seconds (start, end) after. A kill that left no run
    unfinished (it came after the last run ended) does not count: again, at an earlier moment.
    Returns the pid."""
    for attempt in range(8):
        known = {r["run_id"] for r in _runs(home)}
        proc = _start(home, *args)
        deadline = time.monotonic() + 120
        while not any(r["pid"] == proc.pid for r in _runs(home) if r["run_id"] not in known):
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "abp run started no Dagster run in 120 s"
            time.sleep(0.05)
        time.sleep(rng.uniform(*span) / (attempt + 1))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if proc.returncode == -signal.SIGKILL and any(
            r["status"] in UNFINISHED for r in _runs(home) if r["pid"] == proc.pid
        ):
            return proc.pid
    pytest.fail("could not kill abp run while one of its runs was unfinished")


def _kill_and_recover(home: Path, args: list[str], kills: int, clean_snapshot, seconds, seed):
    """``kills`` times: kill a run, then run again. The moments are stratified: kill i falls in
    the i-th of ``kills`` equal slices of the first 80% of a clean run, so the kills cover the
    whole run (landing, checks, analysis, commits) and do not bunch as independent draws do."""
    rng = random.Random(seed)
    for i in range(kills):
        slice_ = 0.8 * seconds / kills
        pid = _kill_during_a_run(home, args, rng, (i * slice_, (i + 1) * slice_))
        t0 = time.monotonic()
        out = _abp(home, *args, timeout=max(120, 4 * seconds))
        took = time.monotonic() - t0
        # The kill happened: the killed process's unfinished run is now recorded failed,
        # by the run that followed it.
        killed = [r for r in _runs(home) if r["pid"] == pid]
        assert all(r["status"] in ("SUCCESS", "FAILURE") for r in killed), (i, killed)
        assert any(r["status"] == "FAILURE" for r in killed), (i, killed)
        assert "its process died" in out
        assert took < 3 * seconds + 30, f"kill {i}: the run after it took {took:.0f} s"
        assert _snapshot(home) == clean_snapshot, f"kill {i}: tables differ from a clean run"
        assert not _pool_holders(home)


def test_a_run_killed_at_random_moments_never_blocks_the_next(base, clean, tmp_path):
    clean_snapshot, seconds = clean
    home = _copy(base, tmp_path / "home")
    _abp(home, "run", "--date", D1.isoformat())
    _kill_and_recover(home, ["run", "--date", D2.isoformat()], 10, clean_snapshot, seconds, 21)


def test_a_backfill_killed_at_random_moments_never_blocks_the_next(base, clean, tmp_path):
    clean_snapshot, seconds = clean
    home = _copy(base, tmp_path / "home")
    args = ["run", "--from", D1.isoformat(), "--to", D2.isoformat()]
    _kill_and_recover(home, args, 3, clean_snapshot, 1.5 * seconds, 22)


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)
    return got


def test_a_stuck_holder_a_waiting_run_and_sigterm(base, clean, tmp_path):
    """A live but stuck run holds the pool: the next run fails after ABP_SLOT_WAIT_MINUTES
    naming it; SIGTERM stops a waiting run within 10 s (canceled); `abp runs --stuck` shows
    the holder and `abp runs --fail` closes it; then a run goes through."""
    home = _copy(base, tmp_path / "home")
    args = ["run", "--date", D1.isoformat()]
    holder = _start(home, *args)
    held = _wait_for(lambda: _pool_holders(home), 120, "pool slot held")
    os.killpg(holder.pid, signal.SIGSTOP)  # alive, holding the slot, doing nothing
    try:
        (held_run,) = held
        t0 = time.monotonic()
        out = _abp(home, *args, ok=False, timeout=120, ABP_SLOT_WAIT_MINUTES="0.1")
        assert time.monotonic() - t0 < 60
        assert "waited" in out and held_run in out and "abp runs --fail" in out, out[-2000:]
        assert "Traceback" not in out
        waiting = _start(home, *args)
        _wait_for(lambda: any(r["pid"] == waiting.pid for r in _runs(home)), 120, "waiting run")
        time.sleep(3)  # it is waiting for the slot now
        t0 = time.monotonic()
        os.kill(waiting.pid, signal.SIGTERM)
        out = _finish(waiting, 30)
        assert time.monotonic() - t0 < 10, out[-2000:]
        assert waiting.returncode != 0 and "canceled" in out
        statuses = {r["status"] for r in _runs(home) if r["pid"] == waiting.pid}
        assert statuses == {"CANCELED"}
        stuck = _abp(home, "runs", "--stuck")
        assert held_run in stuck and "holds spark" in stuck
        closed = _abp(home, "runs", "--fail", held_run)
        assert "marked failed" in closed or "stopped" in closed
        assert holder.wait(30) is not None
    finally:
        with_group = [signal.SIGCONT, signal.SIGKILL]
        for sig in with_group:
            try:
                os.killpg(holder.pid, sig)
            except ProcessLookupError:
                pass
        holder.communicate()
    assert not _pool_holders(home)
    _abp(home, *args, timeout=max(120, 4 * clean[1]))
    statuses = {r["run_id"]: r["status"] for r in _runs(home)}
    assert statuses[held_run] == "FAILURE"


def test_sigterm_stops_a_working_run_within_seconds(base, clean, tmp_path):
    home = _copy(base, tmp_path / "home")
    rng = random.Random(5)
    canceled = 0
    for _ in range(8):  # until two signals came while a run worked (a late one finds it done)
        if canceled >= 2:
            break
        proc = _start(home, "run", "--date", D1.isoformat())
        _wait_for(lambda: _pool_holders(home), 120, "a working step")
        time.sleep(rng.uniform(0, 1.5))
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        out = _finish(proc, 30)
        assert time.monotonic() - t0 < 12, out[-2000:]
        (run,) = [r for r in _runs(home) if r["pid"] == proc.pid]
        if run["status"] == "SUCCESS":
            continue  # the signal came after its run had ended
        assert run["status"] == "CANCELED" and proc.returncode in (130, 143), (run, out[-2000:])
        assert "recorded as canceled" in out, out[-2000:]
        assert not _pool_holders(home)
        canceled += 1
    assert canceled >= 2


DEMO = ["demo", "--days", "2", "--users", "500", "--history-days", "2"]


def test_the_demo_killed_at_random_moments_ends_as_a_clean_demo(tmp_path):
    """The demo driver (broker, connector, simulate, publish, land, analyse, day by day)
    killed anywhere, then run again, ends with the tables of a demo that was never killed (the
    history too): its embedded broker lost what the connector had not written, and the demo
    produced the unfinished day again."""
    clean_home = tmp_path / "clean"
    t0 = time.monotonic()
    _abp(clean_home, *DEMO)
    seconds = time.monotonic() - t0
    clean_snapshot = _snapshot(clean_home, files=False)
    rng = random.Random(23)
    home = tmp_path / "killed"
    # The first kill hits a first demo (history included), the second a demo run again.
    for span in (seconds, 0.6 * seconds):
        moment = rng.uniform(1, 0.9 * span)
        for _ in range(4):
            proc = _start(home, *DEMO)
            time.sleep(moment)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if proc.returncode == -signal.SIGKILL:
                break
            moment /= 2  # it ended before the kill: again, sooner
        assert proc.returncode == -signal.SIGKILL, "the demo always ended before the kill"
        _abp(home, *DEMO, timeout=max(120, 4 * seconds))
        assert _snapshot(home, files=False) == clean_snapshot, f"killed after {moment:.1f} s"
        assert not _pool_holders(home)
