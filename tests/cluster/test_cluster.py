"""The demo's simulate -> land -> analyze on a real Spark standalone cluster equals a local[2] run.

A master and two workers (one core each) run on loopback with a bare environment; the executors'
Python is a venv holding only EXECUTOR_REQUIREMENTS, without this project, so the landing's parse
task works only because the project's code is shipped with the job. Both runs are
``abp demo`` subprocesses (one SparkContext per process) on the same seed; their gold tables must
agree, counts exactly and floats to a relative 1e-9. Wall times go to .cluster-test/last-run.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ab_pipelines.lake import TABLES, Lake
from ab_pipelines.settings import REPO_ROOT, paths
from tests.cluster.standalone import StandaloneCluster, worker_venv
from tests.compare import GOLD, differences, max_relative_difference

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.slow]

DAYS, USERS, HISTORY = 3, 2000, 3
STATE = REPO_ROOT / ".cluster-test"  # git-ignored: the worker venv (reused) and the last report


def _env(home: Path, **env: str) -> dict[str, str]:
    """This environment without the platform's and Dagster's settings, then ``home`` and ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ABP_", "DAGSTER_"))}
    return {**full, "ABP_HOME": str(home), **env}


def _demo(home: Path, log: Path, **env: str) -> subprocess.Popen:
    full = _env(home, ABP_SPARK_DRIVER_MEMORY="2g", **env)
    cmd = [sys.executable, "-m", "ab_pipelines.cli", "demo", "--days", str(DAYS)]
    cmd += ["--users", str(USERS), "--history-days", str(HISTORY)]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=full, stdout=out, stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, started: float, log: Path) -> float:
    code = proc.wait(timeout=1800)
    took = time.monotonic() - started
    assert code == 0, f"the demo failed (exit {code}):\n{log.read_text()[-4000:]}"
    return took


def _leftovers(cluster: StandaloneCluster) -> list[str]:
    """Processes still alive that belong to the cluster (by working folder or master port)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(cluster.folder)) or f"127.0.0.1:{cluster.port}" in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _session_in_subprocess(home: Path, **env: str) -> subprocess.CompletedProcess:
    """Start (only) a Spark session in a process of its own with these settings."""
    full = _env(home, **env)
    code = "from ab_pipelines.lake import spark_session; spark_session()"
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=600
    )


def _finished_apps(cluster: StandaloneCluster, expected: int) -> list[dict]:
    """The master's completed applications, once ``expected`` of them are (drivers that exit
    are noticed within a few seconds)."""
    deadline = time.monotonic() + 60
    while True:
        state = cluster.state()
        if len(state["completedapps"]) >= expected or time.monotonic() > deadline:
            return state["completedapps"]
        time.sleep(1)


def _run_tags(home: Path) -> list[dict[str, str]]:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(paths(home).dagster_home)) as instance:
        return [dict(r.dagster_run.tags) for r in instance.get_run_records()]


def test_demo_on_a_standalone_cluster_equals_local(tmp_path):
    python = worker_venv(STATE / "worker-venv")
    # The workers' Python really lacks the project (and Spark: pyspark.zip comes from SPARK_HOME).
    probe = subprocess.run(
        [str(python), "-c", "import ab_pipelines"], capture_output=True, cwd=tmp_path, env={}
    )
    assert probe.returncode != 0 and b"No module named 'ab_pipelines'" in probe.stderr

    on_cluster, local = tmp_path / "on-cluster", tmp_path / "local"
    logs = {name: tmp_path / f"{name}.log" for name in ("cluster", "local")}
    cluster = StandaloneCluster(tmp_path / "spark", workers=2, cores=1, memory="2g")
    t0 = time.monotonic()
    with cluster:
        up = time.monotonic() - t0
        assert len(cluster.state()["workers"]) == 2
        # A worker Python without the requirements is refused at session start, by name.
        bare = tmp_path / "bare-venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        refused = _session_in_subprocess(
            tmp_path / "refused",
            ABP_SPARK_MASTER=cluster.url,
            ABP_SPARK_PYTHON=str(bare / "bin" / "python"),
        )
        assert refused.returncode != 0
        expected = "lacks pyarrow, orjson, pandas, numpy, mmh3"
        assert expected in refused.stderr, refused.stderr[-2000:]
        # Executors that cannot start (bigger than any worker) are reported, not waited on forever.
        too_big = _session_in_subprocess(
            tmp_path / "too-big",
            ABP_SPARK_MASTER=cluster.url,
            ABP_SPARK_PYTHON=str(python),
            ABP_SPARK_EXECUTOR_MEMORY="8g",
            ABP_SPARK_EXECUTOR_WAIT="5",
        )
        assert too_big.returncode != 0
        assert "no Spark executor registered within 5 s" in too_big.stderr, too_big.stderr[-2000:]
        started = time.monotonic()
        remote = _demo(
            on_cluster,
            logs["cluster"],
            ABP_SPARK_MASTER=cluster.url,
            ABP_SPARK_PYTHON=str(python),
            ABP_SPARK_EXECUTOR_MEMORY="1g",
            ABP_SPARK_EXECUTOR_CORES="1",
        )
        cluster_wall = _wait(remote, started, logs["cluster"])
        # One after the other, so each wall time is its own (2 cores).
        local_started = time.monotonic()
        here = _demo(local, logs["local"], ABP_SPARK_MASTER="local[2]")
        local_wall = _wait(here, local_started, logs["local"])
        apps = _finished_apps(cluster, expected=3)
    # The two refused sessions (bare Python, executors too big) and the demo all ended cleanly.
    assert [a["state"] for a in apps] == ["FINISHED"] * 3, apps
    assert not _leftovers(cluster), _leftovers(cluster)

    counts, problems = differences(on_cluster, local, [*GOLD, TABLES["silver.exposure_counts"]])
    assert not problems, "\n".join(problems[:20])
    assert all(a > 0 for a, _ in counts.values()), counts
    for name in ("bronze.exposures", "bronze.metric_events", "bronze.quarantine"):
        spec = TABLES[name]
        n = [Lake(paths(h)).read_arrow(spec, columns=[]).num_rows for h in (on_cluster, local)]
        assert n[0] == n[1], (name, n)
        counts[name] = tuple(n)

    # Every file of every table is under the table's folder, committed by delta-rs; nothing
    # was left in a staging folder.
    lake = Lake(paths(on_cluster))
    for spec in TABLES.values():
        if lake.exists(spec):
            root = lake.path(spec).resolve()
            for uri in lake.file_uris(spec):
                assert Path(uri.removeprefix("file://")).resolve().is_relative_to(root), uri
            assert not list((root / "_staging").rglob("*.parquet"))

    # The Dagster UI shows where each Spark run ran.
    tags = _run_tags(on_cluster)
    assert tags and all(t.get("abp/spark_master") == cluster.url for t in tags), tags
    # Every Spark run of the demo ran Python tasks (the parse task) on both workers' executors.
    demo_apps = {t["abp/spark_app_id"] for t in tags}
    assert demo_apps <= {a["id"] for a in apps}, (demo_apps, apps)
    for app in demo_apps:
        ran = {
            log.parent.parent.parent.name
            for log in (tmp_path / "spark").glob(f"worker*/{app}/*/stderr")
            if "Starting Python task execution" in log.read_text(errors="replace")
        }
        assert ran == {"worker0", "worker1"}, (app, ran)
    assert all(t.get("abp/spark_master") == "local[2]" for t in _run_tags(local))

    report = {
        "days": DAYS,
        "users": USERS,
        "history_days": HISTORY,
        "cluster_start_s": round(up, 1),
        "cluster_wall_s": round(cluster_wall, 1),
        "local_wall_s": round(local_wall, 1),
        "rows": {k: list(v) for k, v in counts.items()},
        "max_relative_difference": {
            spec.qualified: max_relative_difference(on_cluster, local, spec) for spec in GOLD
        },
    }
    STATE.mkdir(exist_ok=True)
    (STATE / "last-run.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
