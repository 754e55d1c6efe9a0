"""Delta tables through delta-rs: the only module that opens a table path.

Spark cannot load Delta's jars here (no Maven), so Spark writes plain parquet files into the table
folder and delta-rs commits them (``create_write_transaction``); Arrow tables take the same road
through pyarrow's writer. Either way a commit adds files and, when replacing partitions, removes the
files of those partitions, all in one Delta transaction: readers see the old or the new table, never
a half-written one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, Field, Schema
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from ab_pipelines.lake.tables import TableSpec
from ab_pipelines.processes import alive
from ab_pipelines.settings import Paths, settings

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "CRASH_ENV",
    "Lake",
    "partition_value",
    "retention_properties",
    "EngineReadError",
    "file_url",
    "remove_dead_staging",
]


def retention_properties(days: int | None = None) -> dict[str, str]:
    """The Delta table properties that make vacuum and log cleanup honour the time-travel promise:
    any version younger than ``days`` (default: ABP_TIME_TRAVEL_DAYS, 30) can be read back."""
    if days is None:
        days = settings().retention_days
    return {
        "delta.deletedFileRetentionDuration": f"interval {days} days",
        "delta.logRetentionDuration": f"interval {days} days",
    }


PartitionValues = Mapping[str, str]


def file_url(path: str | os.PathLike) -> str:
    """A local path as every engine reads it: ``file://`` + the absolute path, unescaped.

    Not ``file:/abs``: Sail reads that as no rows at all, silently (ENVIRONMENT.md). Not
    ``Path.as_uri()``: that percent-encodes the ``=`` of partition folders, which Hadoop then
    takes literally.
    """
    return "file://" + os.path.abspath(path)


class EngineReadError(RuntimeError):
    """The engine read fewer rows than the Delta log says the files hold: a silent failure made loud."""


def partition_value(v: object) -> str:
    """A partition value as Delta stores it in the log (dates as YYYY-MM-DD)."""
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return str(v)


# (session, table version, the files' URLs) -> the rows the engine read there, as the log says.
_VERIFIED: dict[tuple, int] = {}


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _add_actions(table: DeltaTable) -> list[dict]:
    return pa.table(table.get_add_actions(flatten=True)).to_pylist()


def _files_in(
    table: DeltaTable, spec: TableSpec, partitions: Iterable[PartitionValues] | None
) -> list[tuple[dict, dict[str, str]]]:
    """The snapshot's add actions (with their partition values) in the given partitions, or all."""
    wanted = None if partitions is None else {tuple(sorted(p.items())) for p in partitions}
    out = []
    for a in _add_actions(table):
        values = {k: partition_value(a[f"partition.{k}"]) for k in spec.partition_by}
        if wanted is None or tuple(sorted(values.items())) in wanted:
            out.append((a, values))
    return out


def _now_ms() -> int:
    return int(time.time() * 1000)


class Lake:
    """The Delta tables under one ABP_HOME."""

    def __init__(self, home: Paths):
        self.home = home

    # ---- locating and reading ------------------------------------------------------------
    def path(self, spec: TableSpec) -> Path:
        return self.home.table(spec.tier, spec.name)

    def exists(self, spec: TableSpec) -> bool:
        return DeltaTable.is_deltatable(str(self.path(spec)))

    def table(self, spec: TableSpec, version: int | None = None) -> DeltaTable:
        return DeltaTable(str(self.path(spec)), version=version)

    def version(self, spec: TableSpec) -> int | None:
        return self.table(spec).version() if self.exists(spec) else None

    def history(self, spec: TableSpec) -> dict[int, dt.datetime]:
        """Every version still readable (within the retention), with its commit time (UTC)."""
        if not self.exists(spec):
            return {}
        out = {}
        for entry in self.table(spec).history():
            v, ms = entry.get("version"), entry.get("timestamp")
            if v is not None and ms is not None:
                out[int(v)] = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        return dict(sorted(out.items()))

    def version_at(self, spec: TableSpec, when: dt.datetime) -> int | None:
        """The table's version as it was at ``when`` (the last commit at or before it), or None."""
        before = [v for v, t in self.history(spec).items() if t <= when]
        return max(before) if before else None

    def dataset(self, spec: TableSpec, version: int | None = None) -> pds.Dataset:
        """A pyarrow dataset of the current snapshot (or ``version``).

        The explicit local SubTreeFileSystem avoids the abort at interpreter exit seen with
        ``to_pyarrow_table()`` (ENVIRONMENT.md).
        """
        root = str(self.path(spec))
        fs = pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())
        return self.table(spec, version).to_pyarrow_dataset(filesystem=fs)

    def read_arrow(
        self,
        spec: TableSpec,
        filter: pc.Expression | None = None,
        columns: Sequence[str] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Rows of a table as Arrow, in the spec's column order; empty if the table is missing."""
        if not self.exists(spec):
            empty = spec.schema.empty_table()
            return empty.select(list(columns)) if columns else empty
        wanted = list(columns or spec.schema.names)
        ds = self.dataset(spec, version)
        stored = set(ds.schema.names)
        out = ds.to_table(filter=filter, columns=[n for n in wanted if n in stored])
        # A column the spec gained after this snapshot was written reads as nulls.
        for n in wanted:
            if n not in stored:
                field = spec.schema.field(n)
                out = out.append_column(field, pa.nulls(out.num_rows, field.type))
        schema = pa.schema([spec.schema.field(n) for n in wanted])
        return out.select(wanted).cast(schema)

    def file_uris(
        self, spec: TableSpec, partitions: Iterable[PartitionValues] | None = None
    ) -> list[str]:
        """The data files of the current snapshot, optionally only those of some partitions."""
        if not self.exists(spec):
            return []
        dt_ = self.table(spec)
        if partitions is None:
            return dt_.file_uris()
        root = str(self.path(spec))
        return [os.path.join(root, a["path"]) for a, _ in _files_in(dt_, spec, partitions)]

    def read_spark(
        self,
        spark,
        spec: TableSpec,
        partitions: Iterable[PartitionValues] | None = None,
        columns: Sequence[str] | None = None,
    ):
        """A Spark DataFrame of the current snapshot (optionally some partitions and columns).

        The engine reads the data files the Delta log lists, by ``file://`` URL. Partition
        columns, when asked for, are the log's values, added as literals, one scan per partition
        (Sail ignores ``basePath`` and would leave them NULL, silently); without them the files
        are one scan. Before the frame is handed out its rows are counted against the log's
        record counts: an engine that read fewer (a path it read as empty, a file it skipped)
        fails here, loudly, with :class:`EngineReadError`.
        """
        from pyspark.sql import functions as F

        schema = _spark_schema(spec.schema)
        data = _spark_schema(spec.data_schema)
        names = list(columns) if columns is not None else schema.names
        groups: dict[tuple, list[str]] = {}
        expected: int | None = 0
        root = str(self.path(spec))
        version = None
        if self.exists(spec):
            table = self.table(spec)
            version = table.version()
            for a, values in _files_in(table, spec, partitions):
                key = tuple(values[k] for k in spec.partition_by)
                groups.setdefault(key, []).append(file_url(os.path.join(root, a["path"])))
                n = a.get("num_records")
                expected = None if expected is None or n is None else expected + int(n)
        if not groups:
            return spark.createDataFrame([], schema).select(*names)
        if not set(names) & set(spec.partition_by):
            urls = [u for _, urls in sorted(groups.items()) for u in urls]
            df = spark.read.schema(data).parquet(*urls).select(*names)
        else:
            frames = []
            for key, urls in sorted(groups.items()):
                frame = spark.read.schema(data).parquet(*urls)
                for col, value in zip(spec.partition_by, key, strict=True):
                    frame = frame.withColumn(col, F.lit(value).cast(schema[col].dataType))
                frames.append(frame.select(*names))
            df = frames[0]
            for frame in frames[1:]:
                df = df.unionByName(frame)
        # A snapshot read once by this session is not counted again (the analysis reads the
        # same bronze partitions for each experiment of a day).
        key = (
            spark.session_id,
            version,
            tuple(sorted(u for urls in groups.values() for u in urls)),
        )
        if expected is not None and _VERIFIED.get(key) != expected:
            got = df.count()
            if got != expected:
                raise EngineReadError(
                    f"the engine read {got} rows of {spec.qualified} where the Delta log lists "
                    f"{expected} in {sum(map(len, groups.values()))} files; refusing to go on "
                    "with a partial input (docs/engines.md, 'Known limits of Sail')"
                )
            _VERIFIED[key] = got
        return df

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lake-wide lock ``name`` (an flock under ``$ABP_HOME/locks``) while inside.

        It serializes runs on this machine, threads and processes alike; the holder's death
        releases it. Landing takes it, because the dedupe of one arrival day reads its
        neighbours: two days landed at once could each keep a copy of the same event.
        """
        folder = self.home.home / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for the %s lock (%s), held by another run", name, f.name)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ---- writing ---------------------------------------------------------------------------
    def write_arrow(
        self,
        spec: TableSpec,
        data: pa.Table,
        replace: Iterable[PartitionValues] | None = None,
        overwrite_all: bool = False,
    ) -> int:
        """Append ``data`` (or replace the partitions in ``replace`` with it); returns the version.

        Partitions named in ``replace`` that have no rows in ``data`` end up empty.
        """
        data = data.select(spec.schema.names).cast(spec.schema)
        adds: list[AddAction] = []
        root = self.path(spec)
        tag = uuid.uuid4().hex
        groups = self._split_by_partition(spec, data)
        for values, part in groups:
            folder = root.joinpath(*(f"{k}={values[k]}" for k in spec.partition_by))
            folder.mkdir(parents=True, exist_ok=True)
            file = folder / f"part-{tag}.parquet"
            pq.write_table(part.select(spec.data_schema.names), file, compression="snappy")
            adds.append(self._add_action(root, file, values, part.num_rows))
        return self._commit(spec, adds, replace, overwrite_all)

    def commit_files(
        self,
        spec: TableSpec,
        staging: Path,
        replace: Iterable[PartitionValues] | None = None,
        overwrite_all: bool = False,
    ) -> int:
        """Commit the parquet files a Spark job wrote under ``staging`` (hive-partitioned).

        Files move from the staging folder into the table's partition folders, then one Delta
        transaction adds them; a crash before the commit leaves only unreferenced files, which
        readers never see and vacuum removes.
        """
        root = self.path(spec)
        adds = []
        tag = uuid.uuid4().hex[:12]
        for file in sorted(staging.rglob("*.parquet")):
            rel = file.relative_to(staging)
            values = dict(p.split("=", 1) for p in rel.parts[:-1])
            if set(values) != set(spec.partition_by):
                raise ValueError(f"{file} is not partitioned by {spec.partition_by}")
            dest = root.joinpath(*rel.parts[:-1], f"{tag}-{rel.name}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, dest)
            nrows = pq.ParquetFile(dest).metadata.num_rows
            adds.append(self._add_action(root, dest, values, nrows))
        shutil.rmtree(staging, ignore_errors=True)
        return self._commit(spec, adds, replace, overwrite_all)

    def staging_dir(self, spec: TableSpec) -> Path:
        """A fresh folder inside the table to write into before a commit, named by this process.

        Folders left by processes that died (a kill between staging and commit) go first.
        """
        root = self.path(spec) / "_staging"
        remove_dead_staging(root)
        d = root / f"{os.getpid()}-{uuid.uuid4().hex}"
        root.mkdir(parents=True, exist_ok=True)
        return d

    def merge_arrow(self, spec: TableSpec, source: pa.Table) -> dict:
        """Upsert ``source`` by the spec's keys: matched rows are updated, others inserted.

        Running it twice with the same source leaves the same table (idempotent). The target is
        pruned to the source's partitions, so the cost follows the source, not the history.
        """
        source = source.select(spec.schema.names).cast(spec.schema)
        if not self.exists(spec):
            self.write_arrow(spec, source)
            return {"num_target_rows_inserted": source.num_rows}
        conds = [f"t.{k} = s.{k}" for k in spec.keys]
        for col in spec.partition_by:
            vals = sorted({partition_value(v) for v in source.column(col).to_pylist()})
            if vals:
                conds.append(f"t.{col} IN ({', '.join(repr(v) for v in vals)})")
        # A fresh snapshot each attempt; a concurrent commit to the same rows retries.
        return _retrying(
            lambda: (
                self.table(spec)
                .merge(source, predicate=" AND ".join(conds), source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )
        )

    # ---- internals -------------------------------------------------------------------------
    @staticmethod
    def _split_by_partition(spec: TableSpec, data: pa.Table) -> list[tuple[dict, pa.Table]]:
        if not spec.partition_by:
            return [({}, data)] if data.num_rows else []
        keys = data.select(list(spec.partition_by)).group_by(list(spec.partition_by)).aggregate([])
        out = []
        for row in keys.to_pylist():
            mask = None
            for k, v in row.items():
                m = pc.equal(data.column(k), pa.scalar(v, data.schema.field(k).type))
                mask = m if mask is None else pc.and_(mask, m)
            out.append(({k: partition_value(v) for k, v in row.items()}, data.filter(mask)))
        return out

    @staticmethod
    def _add_action(root: Path, file: Path, values: Mapping[str, str], nrows: int) -> AddAction:
        st = file.stat()
        return AddAction(
            path=file.relative_to(root).as_posix(),
            size=st.st_size,
            partition_values=dict(values),
            modification_time=int(st.st_mtime * 1000),
            data_change=True,
            stats=json.dumps({"numRecords": nrows}),
        )

    def _commit(
        self,
        spec: TableSpec,
        adds: list[AddAction],
        replace: Iterable[PartitionValues] | None,
        overwrite_all: bool,
    ) -> int:
        """One Delta transaction: the adds, plus removes of the replaced partitions' files.

        Runs may write the same table at once (a backfill next to the daily run). delta-rs checks
        each commit against those made since its snapshot; on a conflict the snapshot is reloaded,
        the removes are recomputed and the commit is tried again (up to ``COMMIT_ATTEMPTS``).
        Commits replacing different partitions never conflict: the transaction names the
        partitions it read. Two runs replacing the same partition both commit, one after the
        other, and the partition holds the last one's rows only, never both.
        """
        replace = None if replace is None else [dict(p) for p in replace]

        def attempt() -> int:
            if not self.exists(spec):
                _fault_point(spec)
                create_table_with_add_actions(
                    str(self.path(spec)),
                    Schema.from_arrow(spec.schema),
                    adds,
                    mode="error",
                    partition_by=list(spec.partition_by) or None,
                    name=spec.qualified,
                    description=spec.description,
                    configuration=retention_properties(),
                )
                return self.table(spec).version()
            return self._commit_once(spec, adds, replace, overwrite_all)

        return _retrying(attempt)

    def _commit_once(
        self,
        spec: TableSpec,
        adds: list[AddAction],
        replace: list[dict] | None,
        overwrite_all: bool,
    ) -> int:
        table = self.table(spec)
        if _add_missing_columns(table, spec):
            table = self.table(spec)
        removes: list[RemoveAction] = []
        if overwrite_all or replace is not None:
            now = _now_ms()
            for a, values in _files_in(table, spec, None if overwrite_all else replace):
                removes.append(
                    RemoveAction(
                        a["path"], True, now, size=a["size_bytes"], partition_values=values
                    )
                )
        if not adds and not removes:
            return table.version()
        _fault_point(spec)
        table.create_write_transaction(
            [*adds, *removes],
            mode="append",
            schema=spec.schema,
            partition_by=list(spec.partition_by) or None,
            partition_filters=_read_predicate(spec, replace, overwrite_all),
        )
        return self.table(spec).version()


def _add_missing_columns(table: DeltaTable, spec: TableSpec) -> bool:
    """Schema evolution: add the spec's columns the table lacks (nullable; old rows read null).

    A table written before a column joined its spec keeps its files; only the log's schema grows.
    Returns whether columns were added.
    """
    stored = set(table.schema().to_arrow().names)
    missing = [f for f in spec.schema if f.name not in stored]
    if not missing:
        return False
    fields = Schema.from_arrow(pa.schema(missing)).fields
    table.alter.add_columns([Field(f.name, f.type, nullable=True) for f in fields])
    return True


COMMIT_ATTEMPTS = 20
# Fault injection for the crash tests: the process SIGKILLs itself just before committing to the
# table named here (its files are written, its commit is not), e.g. bronze.metric_events.
CRASH_ENV = "ABP_CRASH_BEFORE_COMMIT"


def _fault_point(spec: TableSpec) -> None:
    if settings().crash_before_commit == spec.qualified:
        log.warning("%s=%s: killing this process before the commit", CRASH_ENV, spec.qualified)
        os.kill(os.getpid(), signal.SIGKILL)


def _retrying(attempt: Callable[[], T]) -> T:
    """``attempt()``, run again after a jittered backoff while it fails on a commit conflict."""
    for k in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return attempt()
        except (CommitFailedError, DeltaError) as exc:
            if k == COMMIT_ATTEMPTS or not _is_conflict(exc):
                raise
            time.sleep(min(0.05 * 2**k, 2.0) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or "already exists" in text or "conflict" in text


def _read_predicate(spec: TableSpec, replace: list[dict] | None, overwrite_all: bool):
    """The partitions a commit read, for delta-rs's conflict check (None: the whole table)."""
    if overwrite_all or not replace or len(spec.partition_by) != 1:
        return None
    (col,) = spec.partition_by
    return [(col, "in", sorted({p[col] for p in replace}))]


def remove_dead_staging(root: Path, older_than: float | None = None) -> int:
    """Remove the staging folders under ``root`` whose process is gone; with ``older_than``
    (epoch seconds) also unnamed ones last changed before it. Returns how many went."""
    if not root.is_dir():
        return 0
    removed = 0
    for d in root.iterdir():
        pid, _, rest = d.name.partition("-")
        if pid.isdigit() and rest:
            dead = not alive(int(pid), d.stat().st_mtime)
        else:
            dead = older_than is not None and d.stat().st_mtime < older_than
        if dead:
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed
