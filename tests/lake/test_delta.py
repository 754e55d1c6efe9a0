"""Delta tables through delta-rs: append, partition replace, MERGE, Spark-written commits."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from ab_pipelines.lake import Lake, write_spark
from ab_pipelines.lake.tables import OPS_LANDED_FILES

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)


def ledger(rows):
    names = OPS_LANDED_FILES.schema.names
    return pa.Table.from_pylist(
        [dict(zip(names, (f, "exposures", 10, n, n, 0, 0, d), strict=True)) for f, n, d in rows],
        schema=OPS_LANDED_FILES.schema,
    )


def content(lake: Lake, spec=OPS_LANDED_FILES):
    return sorted(tuple(r.values()) for r in lake.read_arrow(spec).to_pylist())


def test_missing_table_reads_empty(home):
    lake = Lake(home)
    assert not lake.exists(OPS_LANDED_FILES)
    assert lake.read_arrow(OPS_LANDED_FILES).num_rows == 0
    assert lake.version(OPS_LANDED_FILES) is None


def test_append_then_replace_one_partition_in_one_commit(home):
    lake = Lake(home)
    v0 = lake.write_arrow(OPS_LANDED_FILES, ledger([("a", 1, D1), ("b", 2, D1), ("c", 3, D2)]))
    v1 = lake.write_arrow(
        OPS_LANDED_FILES, ledger([("a2", 5, D1)]), replace=[{"arrival_date": D1.isoformat()}]
    )
    assert (v0, v1) == (0, 1)
    assert [r[0] for r in content(lake)] == ["a2", "c"]
    # time travel keeps the previous version readable
    old = lake.read_arrow(OPS_LANDED_FILES, version=0).column("source_file").to_pylist()
    assert sorted(old) == ["a", "b", "c"]
    # replacing with nothing empties the partition
    lake.write_arrow(OPS_LANDED_FILES, ledger([]), replace=[{"arrival_date": D2.isoformat()}])
    assert [r[0] for r in content(lake)] == ["a2"]


def test_merge_is_idempotent(home):
    lake = Lake(home)
    lake.write_arrow(OPS_LANDED_FILES, ledger([("a", 1, D1), ("b", 2, D1)]))
    src = ledger([("b", 9, D1), ("c", 3, D2)])
    lake.merge_arrow(OPS_LANDED_FILES, src)
    once = content(lake)
    lake.merge_arrow(OPS_LANDED_FILES, src)
    assert content(lake) == once
    assert [(r[0], r[3]) for r in once] == [("a", 1), ("b", 9), ("c", 3)]


@pytest.mark.spark
def test_spark_written_files_are_committed_by_delta_rs(home, spark):
    lake = Lake(home)
    lake.write_arrow(OPS_LANDED_FILES, ledger([("a", 1, D1), ("c", 3, D2)]))
    df = lake.read_spark(spark, OPS_LANDED_FILES)
    assert df.count() == 2
    bumped = df.filter(df.arrival_date == D2).withColumn("read", df.read + 10)
    write_spark(lake, OPS_LANDED_FILES, bumped, replace=[{"arrival_date": D2.isoformat()}])
    assert [(r[0], r[3]) for r in content(lake)] == [("a", 1), ("c", 13)]
    assert not any((lake.path(OPS_LANDED_FILES) / "_staging").iterdir())
    only_d2 = lake.read_spark(spark, OPS_LANDED_FILES, [{"arrival_date": D2.isoformat()}]).collect()
    assert [r["source_file"] for r in only_d2] == ["c"]
    assert only_d2[0]["arrival_date"] == D2
