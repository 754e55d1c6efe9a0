"""The one Spark session of a process, configured for Delta-through-delta-rs and UTC.

``local[2]`` by default. The same code runs on a cluster (docs/deploy.md):

- ``ABP_SPARK_MASTER``: the master URL (``spark://host:7077``, ``k8s://https://...``, ``yarn``);
- ``ABP_SPARK_EXECUTOR_MEMORY`` / ``ABP_SPARK_EXECUTOR_CORES`` / ``ABP_SPARK_DRIVER_MEMORY``;
- ``ABP_SPARK_PYTHON``: the Python the executors run (a path on the workers), which needs only
  :data:`EXECUTOR_REQUIREMENTS`, never this project: on any master but ``local`` the project's code
  is zipped and shipped with the job (``addPyFile``);
- ``ABP_SPARK_CONF``: any other Spark setting, ``key=value`` pairs separated by ``;`` (it wins
  over everything above).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path

from ab_pipelines.executors import probe, project_zip, python_version
from ab_pipelines.settings import SetupError, check_java

__all__ = [
    "check_executors",
    "is_local",
    "spark_conf",
    "spark_log_level",
    "spark_master",
    "spark_session",
    "stop_spark",
]

_lock = threading.Lock()
_session = None

# Why each default: UTC everywhere (contract); micros, not INT96, so delta-rs reads timestamps
# right; few shuffle partitions for a small machine; no UI port fights between test processes;
# shuffled hash joins where Spark's size checks allow them (the analysis joins units to their
# metric events: hashing the units instead of sorting both sides made that step 1.7x faster,
# docs/benchmarks.md).
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.join.preferSortMergeJoin": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.sources.partitionColumnTypeInference.enabled": "true",
    "spark.driver.memory": "3g",
}

# Settings with a variable of their own: variable -> (Spark key, what a value looks like).
_MEMORY = re.compile(r"^[1-9][0-9]*([kmgtp]b?|b)?$", re.IGNORECASE)
_COUNT = re.compile(r"^[1-9][0-9]*$")
_NAMED = {
    "ABP_SPARK_EXECUTOR_MEMORY": ("spark.executor.memory", _MEMORY, "a size like 4g or 512m"),
    "ABP_SPARK_EXECUTOR_CORES": ("spark.executor.cores", _COUNT, "a whole number like 2"),
    "ABP_SPARK_DRIVER_MEMORY": ("spark.driver.memory", _MEMORY, "a size like 4g or 512m"),
}


_LOG_LEVELS = ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE")
# How long a cluster session waits for its first executor before saying why it might not come.
EXECUTOR_WAIT_S = float(os.environ.get("ABP_SPARK_EXECUTOR_WAIT", "300"))


def spark_log_level() -> str:
    level = os.environ.get("ABP_SPARK_LOG_LEVEL", "").strip().upper() or "ERROR"
    if level not in _LOG_LEVELS:
        raise SetupError(f"ABP_SPARK_LOG_LEVEL={level!r} is not one of {', '.join(_LOG_LEVELS)}.")
    return level


def spark_master() -> str:
    return os.environ.get("ABP_SPARK_MASTER", "").strip() or "local[2]"


def is_local(master: str) -> bool:
    """Driver and executors are one process (``local``, ``local[N]``, ``local[*]``)."""
    return master == "local" or master.startswith("local[")


def spark_conf() -> dict[str, str]:
    """DEFAULT_CONF, then the named variables, then ``ABP_SPARK_CONF`` ("k=v;k=v").

    Raises SetupError naming the variable on a malformed value.
    """
    conf = dict(DEFAULT_CONF)
    for var, (key, pattern, looks) in _NAMED.items():
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        if not pattern.match(value):
            raise SetupError(f"{var}={value!r} is not {looks}.")
        conf[key] = value
    for pair in filter(None, (p.strip() for p in os.environ.get("ABP_SPARK_CONF", "").split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SetupError(
                f"ABP_SPARK_CONF entry {pair!r} is not key=value; separate pairs with ';'."
            )
        conf[key.strip()] = value.strip()
    return conf


def _wait_for_executors(sc, timeout: float) -> None:
    """Block until one executor has registered; SetupError saying what to check when none does."""
    deadline = time.monotonic() + timeout
    while sc._jsc.sc().getExecutorIds().size() == 0:
        if time.monotonic() > deadline:
            host = sc.getConf().get("spark.driver.host", "?")
            raise SetupError(
                f"no Spark executor registered within {timeout:.0f} s at {sc.master}: either the "
                "cluster has no free cores or memory for an executor of "
                f"{sc.getConf().get('spark.executor.memory', '1g')}, or the workers cannot connect "
                f"back to the driver at {host} (set spark.driver.host in ABP_SPARK_CONF to an "
                "address they reach, and do not set SPARK_LOCAL_IP=127.0.0.1; docs/deploy.md)."
            )
        time.sleep(0.5)


def _first_cause(exc: Exception) -> str:
    """The line of a failed Spark job that says why (a Python version or import problem first)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for marker in ("different version", "ModuleNotFoundError", "ImportError", "Error"):
        found = [ln for ln in lines if marker in ln]
        if found:
            return found[-1][:300]
    return lines[0][:300] if lines else repr(exc)


def check_executors(spark, home: Path, timeout: float | None = None) -> None:
    """Probe the executors once; a SetupError names each host's problem and its fix.

    It catches at session start, not deep inside a landing: no executor at all (no room, or the
    workers cannot reach the driver), a worker Python of another minor version than the
    driver's, a missing requirement, a lake folder the executors cannot write.
    """
    sc = spark.sparkContext
    _wait_for_executors(sc, EXECUTOR_WAIT_S if timeout is None else timeout)
    slots = max(2, sc.defaultParallelism)
    where = str(home)
    want = python_version()
    try:
        reports = sc.parallelize(range(slots), slots).map(lambda _: probe(where)).collect()
    except Exception as exc:
        cause = _first_cause(exc)
        if "No module named 'ab_pipelines'" in cause:
            raise SetupError(
                f"the project's code did not reach the Spark executors ({cause}): it is shipped "
                "with the job (SparkContext.addPyFile); check that nothing in ABP_SPARK_CONF "
                "replaces spark.submit.pyFiles and that the workers can fetch files from the driver."
            ) from None
        raise SetupError(
            f"the Spark executors could not run the project's Python ({cause}); set "
            f"ABP_SPARK_PYTHON to a Python {want} on the workers that has the packages "
            "'abp executor-requirements' lists (docs/deploy.md)."
        ) from None
    problems = []
    for r in reports:
        if r["missing"]:
            problems.append(
                f"{r['host']}: the executors' Python lacks {', '.join(r['missing'])} "
                "(install what 'abp executor-requirements' lists)"
            )
        if not r["sees_home"]:
            problems.append(
                f"{r['host']}: the executors cannot write ABP_HOME {where} "
                "(mount the same shared folder at the same path on every worker)"
            )
    if problems:
        problems = list(dict.fromkeys(problems))
        raise SetupError("the Spark cluster is not ready: " + "; ".join(problems) + ".")


def spark_session(home: Path | None = None):
    """The process's SparkSession, created on first use (about 8 s), then shared.

    ``home`` is the ABP_HOME the executors must see (default: the environment's). Without
    ``ABP_SPARK_MASTER``, a session a platform already started in this process is used as it is.
    """
    from pyspark.sql import SparkSession

    global _session
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        check_java()
        master = spark_master()
        conf = spark_conf()
        level = spark_log_level()
        given = bool(os.environ.get("ABP_SPARK_MASTER", "").strip())
        platform_session = not given and SparkSession.getActiveSession() is not None
        ours_local = is_local(master) and not platform_session
        if ours_local:
            # Loopback: nothing else must reach a local session (and a hostname may not resolve).
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The executors' interpreter is the driver's PYSPARK_PYTHON (PySpark sends it with every
        # Python function). Locally it must be this interpreter, or the first UDF cannot import us.
        worker_python = os.environ.get("ABP_SPARK_PYTHON", "").strip()
        if worker_python:
            os.environ["PYSPARK_PYTHON"] = worker_python
        elif ours_local:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.appName("ab_pipelines")
        if not platform_session:
            builder = builder.master(master)
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(level)
        if not is_local(spark.sparkContext.master):
            # Executors get the project with the job, as on any real cluster.
            from ab_pipelines.settings import paths

            home = Path(home) if home is not None else paths().home
            spark.sparkContext.addPyFile(str(project_zip(home / "spark")))
            try:
                check_executors(spark, home)
            except SetupError:
                if not platform_session:
                    spark.stop()
                raise
        _session = spark
        return spark


def stop_spark() -> None:
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
