"""The landing's executor task: one dump file in, its rows as staged parquet files out.

It runs on Spark executors, so it imports only the executor requirements (pyarrow, orjson; see
``ab_pipelines.executors``): the driver hands it the staging folders and the tables' file schemas.
Rows go from the parser's Arrow batches straight to parquet, never through Spark's row format;
what comes back to the driver is small: the file's counts and the dedupe keys of its landing
candidates (about 70 bytes a row).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ab_pipelines.events.parse import parse_dump_file
from ab_pipelines.events.schema import PARSED_SCHEMA, REPEATED_COLUMNS

__all__ = [
    "KEY_COLUMNS",
    "QUARANTINE",
    "StagedFile",
    "Target",
    "stage_file",
    "staged_path",
    "write_staged",
]

# What the dedupe needs of a landing candidate: its keys and its "first arrived" order.
KEY_COLUMNS = (
    "topic",
    "kafka_partition",
    "kafka_offset",
    "event_id",
    "arrival_date",
    "source_file",
    "source_line",
)
QUARANTINE = "quarantine"  # the target name of quarantined lines; the others are topics


@dataclass(frozen=True)
class Target:
    """Where one table's rows are staged: a folder (hive-partitioned by arrival_date) and the
    columns of its files (the table's schema without the partition column)."""

    folder: str
    schema: pa.Schema


@dataclass
class StagedFile:
    """What staging one dump file did: its counts, and the keys of its landing candidates."""

    index: int
    source_file: str
    read: int
    last_line: int
    ok: int
    keys: pa.Table  # KEY_COLUMNS of the rows with status "ok"


def staged_path(target: Target, arrival_date: dt.date, index: int) -> Path:
    """The file that dump file number ``index`` of arrival day ``arrival_date`` is staged to."""
    return Path(target.folder) / f"arrival_date={arrival_date.isoformat()}" / f"{index:06d}.parquet"


def write_staged(target: Target, path: Path, rows: pa.Table) -> None:
    """Write ``rows`` as the target's columns to ``path``, a file in the target's folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    names = target.schema.names
    # Dictionary pages only where values repeat: on ids they are tried, outgrow their limit and
    # are thrown away, which made the write 1.8x slower (and the files 25% bigger).
    pq.write_table(
        rows.select(names).cast(target.schema),
        tmp,
        use_dictionary=[c for c in REPEATED_COLUMNS if c in names],
    )
    os.replace(tmp, path)  # a retried task leaves one whole file, never a torn one


def stage_file(
    index: int,
    path: str,
    source_file: str,
    topic: str,
    arrival_date: dt.date,
    known_variants: Mapping[str, frozenset[str]],
    targets: Mapping[str, Target],
) -> StagedFile:
    """Parse one dump file; stage its candidates per topic and its quarantined lines.

    Every line becomes one row (``read`` = rows = ``last_line``, checked by the driver). A file
    writes at most one parquet file per target, named by ``index``, so a retried task overwrites
    its own output.
    """
    data = Path(path).read_bytes()
    parsed = pa.Table.from_batches(
        list(parse_dump_file(data, source_file, topic, arrival_date, known_variants)),
        schema=PARSED_SCHEMA,
    )
    ok_mask = pc.equal(parsed["status"], "ok")
    if pc.all(ok_mask).as_py() is not False:  # every line a candidate (or none): no filtering
        ok, quarantined = parsed, parsed.slice(0, 0)
    else:
        ok, quarantined = parsed.filter(ok_mask), parsed.filter(pc.invert(ok_mask))
    names = pc.unique(ok["topic"]).to_pylist()
    for name in names:
        target = targets[name]
        rows = ok if len(names) == 1 else ok.filter(pc.equal(ok["topic"], name))
        write_staged(target, staged_path(target, arrival_date, index), rows)
    if quarantined.num_rows:
        target = targets[QUARANTINE]
        write_staged(target, staged_path(target, arrival_date, index), quarantined)
    return StagedFile(
        index=index,
        source_file=source_file,
        read=parsed.num_rows,
        last_line=int(pc.max(parsed["source_line"]).as_py() or 0),
        ok=ok.num_rows,
        keys=ok.select(list(KEY_COLUMNS)),
    )
