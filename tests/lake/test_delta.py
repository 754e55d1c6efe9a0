"""Delta tables through delta-rs: append, partition replace, MERGE; the engine's reads of them."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from ab_pipelines.lake import EngineReadError, Lake
from ab_pipelines.lake import delta as delta_module
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
def test_the_engine_reads_the_snapshot_with_partition_values_from_the_log(home, spark):
    lake = Lake(home)
    lake.write_arrow(OPS_LANDED_FILES, ledger([("a", 1, D1), ("c", 3, D2)]))
    lake.write_arrow(
        OPS_LANDED_FILES, ledger([("c", 13, D2)]), replace=[{"arrival_date": D2.isoformat()}]
    )
    rows = sorted(lake.read_spark(spark, OPS_LANDED_FILES).collect())
    assert [(r["source_file"], r["read"], r["arrival_date"]) for r in rows] == [
        ("a", 1, D1),
        ("c", 13, D2),
    ]
    only_d2 = lake.read_spark(spark, OPS_LANDED_FILES, [{"arrival_date": D2.isoformat()}]).collect()
    assert [(r["source_file"], r["arrival_date"]) for r in only_d2] == [("c", D2)]
    assert lake.read_spark(spark, OPS_LANDED_FILES, [{"arrival_date": "2020-01-01"}]).count() == 0


@pytest.mark.spark
def test_a_read_the_engine_silently_cuts_fails_loudly(home, spark, monkeypatch):
    """Sail reads a ``file:/abs`` path as no rows without an error: the row count from the Delta
    log catches it (and would catch any engine that reads a file short)."""
    lake = Lake(home)
    lake.write_arrow(OPS_LANDED_FILES, ledger([("a", 1, D1), ("c", 3, D2)]))
    assert lake.read_spark(spark, OPS_LANDED_FILES).count() == 2
    monkeypatch.setattr(delta_module, "file_url", lambda p: "file:" + str(p))
    with pytest.raises(EngineReadError, match=r"read 0 rows of ops.landed_files .* lists 2"):
        lake.read_spark(spark, OPS_LANDED_FILES)
