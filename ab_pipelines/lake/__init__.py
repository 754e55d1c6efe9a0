"""The one owner of Delta tables and of the Spark session."""

from ab_pipelines.lake.delta import Lake, partition_value
from ab_pipelines.lake.spark import spark_session, stop_spark
from ab_pipelines.lake.spark_io import write_spark
from ab_pipelines.lake.tables import TABLES, TableSpec, table_spec

__all__ = [
    "TABLES",
    "Lake",
    "TableSpec",
    "partition_value",
    "spark_session",
    "stop_spark",
    "table_spec",
    "write_spark",
]
