"""Metadata every materialization reports: where the table is, its version, schema, rows, a preview."""

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from dagster import MetadataValue, TableColumn, TableSchema

from ab_pipelines.lake import Lake, TableSpec

__all__ = ["table_metadata"]

PREVIEW_ROWS = 5


def _cell(v) -> str:
    text = "" if v is None else str(v)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def table_metadata(lake: Lake, spec: TableSpec, days: list[dt.date] | None = None) -> dict:
    """Path, Delta version, schema, and the row count and a preview of the given days' partitions."""
    meta = {
        "path": MetadataValue.path(str(lake.path(spec))),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(f.name, str(f.type)) for f in spec.schema]
        ),
    }
    version = lake.version(spec)
    if version is None:
        return meta
    meta["delta_version"] = MetadataValue.int(version)
    flt = None
    day_col = spec.partition_by[0] if spec.partition_by else None
    if days is not None and day_col and spec.schema.field(day_col).type == pa.date32():
        flt = pc.field(day_col).isin(pa.array(days, pa.date32()))
    ds = lake.dataset(spec)
    meta["dagster/row_count"] = MetadataValue.int(ds.count_rows(filter=flt))
    head = (
        ds.head(PREVIEW_ROWS, filter=flt).to_pylist()
        if flt is not None
        else ds.head(PREVIEW_ROWS).to_pylist()
    )
    if head:
        cols = list(head[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in head]
        meta["preview"] = MetadataValue.md("\n".join(lines))
    return meta
