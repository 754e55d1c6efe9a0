"""Spark DataFrames in and out of the lake's Delta tables (through delta-rs commits)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from ab_pipelines.lake.delta import Lake, PartitionValues, spark_uri
from ab_pipelines.lake.tables import TableSpec

__all__ = ["arrow_to_spark_schema", "conform", "write_spark"]


def arrow_to_spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def conform(df, spec: TableSpec):
    """Select the spec's columns in order, cast to its types (missing columns fail loudly)."""
    from pyspark.sql import functions as F

    target = arrow_to_spark_schema(spec.schema)
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in target.fields])


def write_spark(
    lake: Lake,
    spec: TableSpec,
    df,
    replace: Iterable[PartitionValues] | None = None,
    overwrite_all: bool = False,
) -> int:
    """Spark writes parquet into the table's staging folder; delta-rs commits it. Returns the version."""
    staging = lake.staging_dir(spec)
    writer = conform(df, spec).write.mode("overwrite")
    if spec.partition_by:
        writer = writer.partitionBy(*spec.partition_by)
    # A file: URI: on YARN or EMR a bare path would mean HDFS (fs.defaultFS).
    writer.parquet(spark_uri(staging))
    return lake.commit_files(spec, staging, replace=replace, overwrite_all=overwrite_all)
