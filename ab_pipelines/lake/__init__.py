"""The one owner of Delta tables and of the engine (the Spark Connect session)."""

from ab_pipelines.lake.delta import EngineReadError, Lake, partition_value
from ab_pipelines.lake.engine import engine_tags, run_tasks, spark_session, stop_spark
from ab_pipelines.lake.tables import TABLES, TableSpec, table_spec

__all__ = [
    "TABLES",
    "EngineReadError",
    "Lake",
    "TableSpec",
    "engine_tags",
    "partition_value",
    "run_tasks",
    "spark_session",
    "stop_spark",
    "table_spec",
]
