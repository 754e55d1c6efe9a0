"""The one Spark session of a process, configured for Delta-through-delta-rs and UTC.

``local[2]`` by default; ``ABP_SPARK_MASTER`` points the same code at a cluster, and
``ABP_SPARK_CONF`` (``key=value`` pairs separated by ``;``) adds any Spark setting.
"""

from __future__ import annotations

import os
import sys
import threading

from ab_pipelines.settings import SetupError, check_java

__all__ = ["spark_conf", "spark_master", "spark_session", "stop_spark"]

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


def spark_master() -> str:
    return os.environ.get("ABP_SPARK_MASTER", "local[2]")


def spark_conf() -> dict[str, str]:
    """DEFAULT_CONF plus ``ABP_SPARK_CONF`` ("k=v;k=v"); raise SetupError on a malformed pair."""
    conf = dict(DEFAULT_CONF)
    for pair in filter(None, (p.strip() for p in os.environ.get("ABP_SPARK_CONF", "").split(";"))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SetupError(
                f"ABP_SPARK_CONF entry {pair!r} is not key=value; separate pairs with ';'."
            )
        conf[key.strip()] = value.strip()
    return conf


def spark_session():
    """The process's SparkSession, created on first use (about 8 s), then shared."""
    from pyspark.sql import SparkSession

    global _session
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        check_java()
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # The workers must run this interpreter, or the first Python UDF cannot import us.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(spark_master()).appName("ab_pipelines")
        for key, value in spark_conf().items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel(os.environ.get("ABP_SPARK_LOG_LEVEL", "ERROR"))
        _session = spark
        return spark


def stop_spark() -> None:
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
