"""The engine seam: its settings, the embedded Sail session, and Python tasks where it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ab_pipelines.lake import engine as engine_module
from ab_pipelines.lake.engine import SESSION_CONF, EngineSettings, engine_tags, run_tasks
from ab_pipelines.settings import REPO_ROOT, SetupError


def test_defaults_are_sail_embedded():
    s = EngineSettings.from_env({})
    assert s.embedded and s.remote is None
    assert s.conf == SESSION_CONF and s.conf["spark.sql.session.timeZone"] == "UTC"
    assert s.sail_memory is None and s.task_workers >= 1


def test_a_remote_url_and_extra_session_settings():
    s = EngineSettings.from_env(
        {
            "ABP_SPARK_REMOTE": "sc://spark-connect:15002/;token=abc;use_ssl=true",
            "ABP_SPARK_CONF": "spark.sql.shuffle.partitions=64; spark.sql.ansi.enabled=false",
            "ABP_SAIL_MEMORY": "6g",
            "ABP_TASK_WORKERS": "3",
        }
    )
    assert not s.embedded and s.remote.startswith("sc://spark-connect:15002")
    assert s.conf["spark.sql.shuffle.partitions"] == "64"
    assert s.conf["spark.sql.ansi.enabled"] == "false"
    assert s.sail_memory == 6 << 30 and s.task_workers == 3


@pytest.mark.parametrize(
    ("var", "value", "says"),
    [
        ("ABP_SPARK_REMOTE", "spark://master:7077", "not a Spark Connect URL"),
        ("ABP_SPARK_CONF", "spark.sql.shuffle.partitions", "not key=value"),
        ("ABP_SAIL_MEMORY", "lots", "not a size"),
        ("ABP_SAIL_MEMORY", "4 GB", "not a size"),
        ("ABP_TASK_WORKERS", "0", "not a whole number"),
        ("ABP_SPARK_MASTER", "local[2]", "no longer read"),
        ("ABP_SPARK_DRIVER_MEMORY", "3g", "no longer read"),
        ("ABP_SPARK_PYTHON", "/usr/bin/python3", "no longer read"),
    ],
)
def test_bad_or_retired_settings_name_the_variable(var, value, says):
    with pytest.raises(SetupError, match=f"{var}.*{says}"):
        EngineSettings.from_env({var: value})


@pytest.mark.spark
def test_the_embedded_engine_is_sail_in_this_process(spark):
    tags = engine_tags(spark)
    assert (
        tags["abp/spark_engine"].startswith("sail 0.7") and "(embedded)" in tags["abp/spark_engine"]
    )
    assert tags["abp/spark_remote"].startswith("sc://127.0.0.1:")
    assert tags["abp/spark_session"] == spark.session_id
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.sql("SELECT CAST('2026-11-01 00:00:00' AS TIMESTAMP) AS t").toArrow().num_rows == 1


def _where(x: int) -> tuple[int, int, int]:
    import threading

    return x * x, os.getpid(), threading.get_ident()


@pytest.mark.spark
def test_tasks_run_in_worker_processes_with_the_embedded_engine(spark):
    got = run_tasks(spark, _where, [(i,) for i in range(12)])
    assert [g[0] for g in got] == [i * i for i in range(12)]  # in order
    workers = {g[1] for g in got}
    assert os.getpid() not in workers and 1 <= len(workers) <= (os.cpu_count() or 1)
    assert run_tasks(spark, _where, [(5,)])[0][1] == os.getpid()  # one task runs here


@pytest.mark.spark
def test_tasks_through_map_in_arrow_give_the_same_answers(spark):
    """The remote path (one task a row through mapInArrow) on whatever engine is at hand: same
    results, same order; on Sail it runs in this process too."""
    got = engine_module.run_remote(spark, _where, [(i,) for i in range(7)])
    assert [g[0] for g in got] == [i * i for i in range(7)]


def test_the_client_imports_from_python_c_without_a_spark_home(tmp_path):
    """PySpark 4.2's pure client exits with a page of text when imported from ``python -c``
    unless it finds a SPARK_HOME; the engine seam gives it one before importing it."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_HOME", "PYTHONPATH")}
    env["ABP_HOME"] = str(tmp_path)
    code = "from ab_pipelines.lake import spark_session; print(spark_session().range(3).count())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr[-2000:]
    assert not any((tmp_path / "engine").glob("sail-*")), "the scratch folder outlived the process"


_ORPHAN_SCRIPT = """
import os, sys
from ab_pipelines.lake.engine import run_tasks, spark_session
from tests.lake.test_engine import _where

if __name__ == "__main__":
    workers = {g[1] for g in run_tasks(spark_session(), _where, [(i,) for i in range(8)])}
    print(" ".join(map(str, workers)), flush=True)
    sys.stdin.read()  # until killed
"""


@pytest.mark.spark
def test_task_workers_die_with_a_killed_parent(tmp_path):
    """SIGKILL to the process that started the pool leaves no worker behind (PR_SET_PDEATHSIG)."""
    from ab_pipelines.processes import alive

    script = tmp_path / "land.py"
    script.write_text(_ORPHAN_SCRIPT)
    env = {**os.environ, "ABP_HOME": str(tmp_path / "abp"), "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        workers = [int(w) for w in proc.stdout.readline().split()]
        assert workers and proc.pid not in workers and all(alive(w) for w in workers)
    finally:
        proc.kill()
        proc.communicate()
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(w) for w in workers)


def test_scratch_folders_of_dead_engines_go(tmp_path):
    """An engine killed mid-query leaves its scratch folder; the next start removes it."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    dead = tmp_path / f"sail-{gone}-0123abcd" / "checkpoint"
    dead.mkdir(parents=True)
    mine = tmp_path / f"sail-{os.getpid()}-89abcdef"
    mine.mkdir()
    engine_module._remove_dead_scratch(tmp_path)
    assert not dead.parent.exists() and mine.exists()


@pytest.mark.spark
def test_fetch_arrow_gives_what_to_arrow_gives_in_one_call(spark, monkeypatch):
    from ab_pipelines.lake.engine import fetch_arrow

    query = (
        "SELECT id, CAST(id AS DOUBLE) / 3 AS x, CAST(id AS STRING) AS s, "
        "ARRAY(CAST(id AS DOUBLE), CAST(NULL AS DOUBLE)) AS a, "
        "CAST(NULL AS ARRAY<DOUBLE>) AS none, DATE'2026-11-01' AS d, "
        "TIMESTAMP'2026-11-01 10:00:00' AS t, id % 2 = 0 AS b FROM range(5)"
    )
    expected = spark.sql(query).toArrow()
    df = spark.sql(query)  # a new frame: a frame keeps the schema it was told
    analyses = []
    analyze = type(spark.client)._analyze
    monkeypatch.setattr(
        type(spark.client),
        "_analyze",
        lambda self, method, **kw: analyses.append(method) or analyze(self, method, **kw),
    )
    got = fetch_arrow(df)
    # the same names, types and values (the analysed schema may call a column nullable that the
    # executed one does not: the callers cast to their table's schema)
    assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in expected.schema]
    assert got.cast(expected.schema).equals(expected)
    assert analyses == []  # the schema came with the rows: the query was planned once
    assert fetch_arrow(df.where("id > 9")).num_rows == 0


@pytest.mark.spark
def test_released_checkpoints_are_let_go_now_without_a_collection(spark, monkeypatch):
    """release_checkpoints drops the kept frames at once: the client's release (the plan's
    finalizer) runs and Sail's files go; the garbage is collected only for a plan held in a
    reference cycle, which a collection frees."""
    from pyspark.sql.connect.plan import CachedRemoteRelation

    from ab_pipelines.lake.engine import checkpoint, release_checkpoints

    released, collections = [], []
    finalize = CachedRemoteRelation.__del__
    monkeypatch.setattr(
        CachedRemoteRelation,
        "__del__",
        lambda self: released.append(self._relation_id) or finalize(self),
    )
    collect = engine_module.gc.collect
    monkeypatch.setattr(
        engine_module.gc, "collect", lambda *a: collections.append(a) or collect(*a)
    )
    scratch = engine_module._engine.scratch / "checkpoint" / spark.session_id

    plain, cycled = checkpoint(spark.range(7)), checkpoint(spark.range(9))
    ids = [plain._plan._relation_id, cycled._plan._relation_id]
    assert all((scratch / i).exists() for i in ids)  # Sail keeps the rows in files
    counts = (plain.count(), cycled.count())  # (not in an assert: pytest keeps its operands)
    assert counts == (7, 9)

    frames = [plain]
    del plain
    release_checkpoints(frames)
    assert frames == [] and released == ids[:1] and collections == []
    assert not (scratch / ids[0]).exists()

    cycled._plan.loop = cycled._plan  # reference counting alone never frees it
    frames = [cycled]
    del cycled
    release_checkpoints(frames)
    assert released == ids and len(collections) == 1
    assert not (scratch / ids[1]).exists()
    release_checkpoints([])  # nothing kept: nothing to do
    assert len(collections) == 1
