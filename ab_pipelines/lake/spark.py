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
from pathlib import Path

from ab_pipelines.executors import probe, project_zip, python_version
from ab_pipelines.settings import SetupError, check_java

__all__ = [
    "check_executors",
    "is_local",
    "spark_conf",
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
_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)
_COUNT = re.compile(r"^[1-9][0-9]*$")
_NAMED = {
    "ABP_SPARK_EXECUTOR_MEMORY": ("spark.executor.memory", _MEMORY, "a size like 4g or 512m"),
    "ABP_SPARK_EXECUTOR_CORES": ("spark.executor.cores", _COUNT, "a whole number like 2"),
    "ABP_SPARK_DRIVER_MEMORY": ("spark.driver.memory", _MEMORY, "a size like 4g or 512m"),
}


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


def check_executors(spark, home: Path) -> None:
    """Probe the executors once; a SetupError names each host's problem and its fix.

    It catches at session start, not deep inside a landing: a worker Python of another minor
    version than the driver's, a missing requirement, a lake folder the executors cannot write.
    """
    sc = spark.sparkContext
    slots = max(2, sc.defaultParallelism)
    where = str(home)
    want = python_version()
    try:
        reports = sc.parallelize(range(slots), slots).map(lambda _: probe(where)).collect()
    except Exception as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in reversed(lines) if "Error" in ln), lines[0] if lines else "")
        raise SetupError(
            f"the Spark executors could not run the project's Python ({detail[:300]}); set "
            f"ABP_SPARK_PYTHON to a Python {want} on the workers that has the packages "
            "'abp executor-requirements' lists (docs/deploy.md)."
        ) from None
    problems = []
    for r in reports:
        if r["python"] != want:
            problems.append(
                f"{r['host']}: the executors run Python {r['python']}, the driver {want}"
            )
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


def spark_session():
    """The process's SparkSession, created on first use (about 8 s), then shared."""
    from pyspark.sql import SparkSession

    global _session
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        check_java()
        master = spark_master()
        conf = spark_conf()
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The executors' interpreter is the driver's PYSPARK_PYTHON (PySpark sends it with every
        # Python function). Locally it must be this interpreter, or the first UDF cannot import us.
        worker_python = os.environ.get("ABP_SPARK_PYTHON", "").strip()
        if worker_python:
            os.environ["PYSPARK_PYTHON"] = worker_python
        elif is_local(master):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(master).appName("ab_pipelines")
        for key, value in conf.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("ABP_SPARK_LOG_LEVEL", "ERROR"))
        if not is_local(master):
            # Executors get the project with the job, as on any real cluster.
            from ab_pipelines.settings import paths

            home = paths().home
            spark.sparkContext.addPyFile(str(project_zip(home / "spark")))
            try:
                check_executors(spark, home)
            except SetupError:
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
