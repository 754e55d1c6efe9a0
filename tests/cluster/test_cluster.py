"""The demo on a real Spark cluster through Spark Connect equals the demo on the embedded engine.

How real clusters serve Spark Connect: a standalone master and two workers (one core each) on
loopback with a bare environment, and a JVM Spark Connect server attached to the master. The
executors' Python is a venv holding only EXECUTOR_REQUIREMENTS, without this project, so the
landing's parse tasks (``mapInArrow``) work only because the project's code is shipped with the
session (a Spark Connect artifact). The embedded run is ``make demo`` itself, with Java hidden
from PATH: the default path needs no JVM. Both runs use the same seed; their gold tables must
agree, counts exactly and floats to a relative 1e-9. Wall times go to .cluster-test/last-run.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ab_pipelines.lake import TABLES, Lake
from ab_pipelines.settings import REPO_ROOT, paths
from tests.cluster.standalone import StandaloneCluster, worker_venv
from tests.compare import GOLD, differences, max_relative_difference
from tests.engines.jvm import ConnectServer, stop_all

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.jvm,
    pytest.mark.slow,
    pytest.mark.xdist_group("jvm"),
]

DAYS, USERS, HISTORY = 2, 1500, 2
DEMO_ARGS = f"--days {DAYS} --users {USERS} --history-days {HISTORY}"
STATE = REPO_ROOT / ".cluster-test"  # git-ignored: the worker venv (reused) and the last report


def _env(home: Path, **env: str) -> dict[str, str]:
    """This environment without the platform's and Dagster's settings, then ``home`` and ``env``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ABP_", "DAGSTER_"))}
    return {**full, "ABP_HOME": str(home), **env}


def _without_java(tmp_path: Path) -> str:
    """PATH with every folder that holds a ``java`` replaced by a copy without it."""
    out = []
    for i, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if folder and Path(folder, "java").exists():
            clean = tmp_path / f"path-without-java-{i}"
            clean.mkdir()
            for entry in Path(folder).iterdir():
                if entry.name != "java":
                    (clean / entry.name).symlink_to(entry)
            folder = str(clean)
        out.append(folder)
    return os.pathsep.join(out)


def _embedded_demo(home: Path, log: Path, tmp_path: Path) -> subprocess.Popen:
    """``make demo`` as a new user runs it, on a machine without Java."""
    env = _env(home, PATH=_without_java(tmp_path))
    env.pop("JAVA_HOME", None)
    assert shutil.which("java", path=env["PATH"]) is None
    cmd = ["make", "-s", "demo", f"DEMO_ARGS={DEMO_ARGS}"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _remote_demo(home: Path, log: Path, remote: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "jobs.cli", "demo", *DEMO_ARGS.split()]
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, env=_env(home, ABP_SPARK_REMOTE=remote), stdout=out, stderr=subprocess.STDOUT
        )


def _wait(proc: subprocess.Popen, started: float, log: Path) -> float:
    code = proc.wait(timeout=1800)
    took = time.monotonic() - started
    assert code == 0, f"the demo failed (exit {code}):\n{log.read_text()[-4000:]}"
    return took


def _leftovers(cluster: StandaloneCluster, servers: list[ConnectServer]) -> list[str]:
    """Processes still alive that belong to the cluster or its Connect servers."""
    marks = [f"127.0.0.1:{cluster.port}", *(f"binding.port={s.port}" for s in servers)]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(cluster.folder)) or any(m in cmdline for m in marks):
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _session_in_subprocess(home: Path, remote: str, **env: str) -> subprocess.CompletedProcess:
    """Start (only) a Spark session in a process of its own against ``remote``."""
    code = "from ab_pipelines.lake import spark_session; spark_session()"
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_env(home, ABP_SPARK_REMOTE=remote, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _wait_for_cores(cluster: StandaloneCluster, app: str, cores: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apps = [a for a in cluster.state()["activeapps"] if a["name"] == app]
        if apps and apps[0].get("cores", 0) >= cores:
            return
        time.sleep(0.5)
    raise AssertionError(f"{app} got no executor within {timeout} s: {cluster.state()}")


def _run_tags(home: Path) -> list[dict[str, str]]:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(paths(home).dagster_home)) as instance:
        return [dict(r.dagster_run.tags) for r in instance.get_run_records()]


def test_demo_through_spark_connect_on_a_cluster_equals_the_embedded_engine(tmp_path):
    python = worker_venv(STATE / "worker-venv")
    # The workers' Python really lacks the project (and Spark: pyspark.zip comes from SPARK_HOME).
    probe = subprocess.run(
        [str(python), "-c", "import ab_pipelines"], capture_output=True, cwd=tmp_path, env={}
    )
    assert probe.returncode != 0 and b"No module named 'ab_pipelines'" in probe.stderr
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)

    on_cluster, embedded = tmp_path / "on-cluster", tmp_path / "embedded"
    logs = {name: tmp_path / f"{name}.log" for name in ("cluster", "embedded")}
    cluster = StandaloneCluster(tmp_path / "spark", workers=2, cores=1, memory="2g")
    executors = {"spark.executor.memory": "1g", "spark.executor.cores": "1"}
    servers = {
        # executors bigger than any worker: none can start
        "too_big": ConnectServer(
            tmp_path / "too-big", cluster.url, str(python), name="abp-too-big",
            conf={"spark.executor.memory": "8g"},
        ),
        # a worker Python without the requirements, on one core
        "bare": ConnectServer(
            tmp_path / "bare", cluster.url, str(bare / "bin" / "python"), name="abp-bare",
            conf={**executors, "spark.cores.max": "1"},
        ),
        "demo": ConnectServer(
            tmp_path / "demo", cluster.url, str(python), name="abp-demo", conf=executors
        ),
    }  # fmt: skip
    # make demo on the embedded engine runs while the cluster and its servers start.
    embedded_started = time.monotonic()
    here = _embedded_demo(embedded, logs["embedded"], tmp_path)
    t0 = time.monotonic()
    with cluster:
        up = time.monotonic() - t0
        assert len(cluster.state()["workers"]) == 2
        try:
            # The refused sessions' servers first, the bare one on one core; the demo's server
            # starts once the bare one holds its executor (it would take every core), and comes
            # up while the refusals are checked.
            for name in ("too_big", "bare"):
                servers[name].launch()
            for name in ("too_big", "bare"):
                servers[name].wait()
            served = time.monotonic() - t0
            _wait_for_cores(cluster, "abp-bare", 1)
            servers["demo"].launch()
            too_big = _session_in_subprocess(
                tmp_path / "h-too-big", servers["too_big"].url, ABP_SPARK_EXECUTOR_WAIT="5"
            )
            assert too_big.returncode != 0
            assert "no Spark executor ran a task within 5 s" in too_big.stderr, too_big.stderr[
                -2000:
            ]
            refused = _session_in_subprocess(
                tmp_path / "h-bare", servers["bare"].url, ABP_SPARK_EXECUTOR_WAIT="120"
            )
            assert refused.returncode != 0
            assert "lacks pyarrow, orjson, pandas, numpy, mmh3" in refused.stderr, refused.stderr[
                -2000:
            ]
            stop_all([servers["too_big"], servers["bare"]])  # the bare one's core goes to the demo
            servers["demo"].wait()

            started = time.monotonic()
            remote = _remote_demo(on_cluster, logs["cluster"], servers["demo"].url)
            cluster_wall = _wait(remote, started, logs["cluster"])
            state = cluster.state()
        finally:
            stop_all(list(servers.values()))
    assert not _leftovers(cluster, list(servers.values())), _leftovers(cluster, servers.values())
    embedded_wall = _wait(here, embedded_started, logs["embedded"])

    counts, problems = differences(on_cluster, embedded, [*GOLD, TABLES["silver.exposure_counts"]])
    assert not problems, "\n".join(problems[:20])
    # every table has rows but gold.heterogeneity: in these two demo days no experiment with
    # segment attributes runs yet (search_speed starts on the third), so no test is possible
    assert all(a > 0 for name, (a, _) in counts.items() if name != "gold.heterogeneity"), counts
    for name in ("bronze.exposures", "bronze.metric_events", "bronze.quarantine"):
        spec = TABLES[name]
        n = [Lake(paths(h)).read_arrow(spec, columns=[]).num_rows for h in (on_cluster, embedded)]
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
    tags = [t for t in _run_tags(on_cluster) if "abp/spark_engine" in t]
    assert tags and all(t["abp/spark_remote"] == servers["demo"].url for t in tags), tags
    assert all(t["abp/spark_engine"].startswith("spark connect 4.2") for t in tags), tags
    embedded_tags = [t for t in _run_tags(embedded) if "abp/spark_engine" in t]
    assert embedded_tags and all("(embedded)" in t["abp/spark_engine"] for t in embedded_tags)
    # The demo's application ran the landing's parse tasks (mapInArrow: MapInBatch) on both
    # workers' executors.
    (app,) = [a for a in state["activeapps"] + state["completedapps"] if a["name"] == "abp-demo"]
    ran = {
        log.parent.parent.parent.name
        for log in (tmp_path / "spark").glob(f"worker*/{app['id']}/*/stderr")
        if re.search(r"MapInBatch\S*: Starting Python task", log.read_text(errors="replace"))
    }
    assert ran == {"worker0", "worker1"}, (app["id"], ran)

    report = {
        "days": DAYS,
        "users": USERS,
        "history_days": HISTORY,
        "cluster_start_s": round(up, 1),
        "connect_servers_up_s": round(served, 1),
        "cluster_wall_s": round(cluster_wall, 1),
        "embedded_wall_s (while the cluster started)": round(embedded_wall, 1),
        "rows": {k: list(v) for k, v in counts.items()},
        "max_relative_difference": {
            spec.qualified: max_relative_difference(on_cluster, embedded, spec) for spec in GOLD
        },
    }
    STATE.mkdir(exist_ok=True)
    (STATE / "last-run.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
