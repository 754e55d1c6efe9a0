"""Land one arrival day of raw dumps into bronze, exactly once; the engine's workers parse.

1. The day's files are parsed one task per file where the engine's workers are
   (:func:`ab_pipelines.lake.engine.run_tasks`: worker processes here with the embedded
   engine, the cluster's executors with a remote one), by
   :func:`ab_pipelines.events.stage.stage_file`, which checks bytes and lines itself: every line
   becomes one row, a landing candidate or a quarantined line with its reason code. Rows go from
   Arrow straight to parquet files in each table's staging folder; only each file's counts and
   the dedupe keys of its candidates come back to the driver (about 70 bytes a candidate).
   A day is landed whole (its partitions replaced) or, on the streaming path, file by file
   (only files not yet in ``ops.landed_files``, appended).
2. Candidates are deduplicated on the driver, in Arrow, against each other and against the bronze
   rows of the arrival days within ``DEDUPE_WINDOW_DAYS`` on both sides: by (topic, partition,
   offset), then by ``event_id``. The copy that arrived first wins (earliest arrival day, then
   Kafka order), so the tables do not depend on the order in which days are landed or re-landed.
   Only the key columns of the window are scanned, and only the rows linked to a candidate are
   kept in memory. A candidate that loses leaves its staged file; when a re-landed earlier day
   wins over a copy already landed on a later day, that later partition is rewritten in the same
   transaction.
3. Each table replaces the partitions it touches in one Delta commit (idempotent re-runs).
4. The counts are checked per file against what was committed: read = landed + quarantined +
   duplicates, where landed and quarantined are read back from the tables.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ab_pipelines.events.dumps import list_day_files
from ab_pipelines.events.schema import DEDUPE_WINDOW_DAYS, PARSED_SCHEMA, TOPICS
from ab_pipelines.events.stage import (
    KEY_COLUMNS,
    QUARANTINE,
    StagedFile,
    Target,
    stage_file,
    staged_path,
    write_staged,
)
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.engine import run_tasks
from ab_pipelines.lake.tables import (
    BRONZE_EXPOSURES,
    BRONZE_METRIC_EVENTS,
    BRONZE_QUARANTINE,
    OPS_LANDED_FILES,
    TableSpec,
)

__all__ = [
    "FileCounts",
    "LandingError",
    "LandingReport",
    "format_summary",
    "land_day",
    "ledger_summary",
]

TOPIC_TABLES: dict[str, TableSpec] = {
    "exposures": BRONZE_EXPOSURES,
    "metric_events": BRONZE_METRIC_EVENTS,
}
# "First arrived": earliest arrival day, then Kafka order, then file and line.
_ORDER = ("arrival_date", "kafka_partition", "kafka_offset", "source_file", "source_line")


class LandingError(RuntimeError):
    """The landing's own accounting does not add up: something would be lost or doubled."""


@dataclass
class FileCounts:
    source_file: str
    topic: str
    bytes: int
    read: int = 0
    landed: int = 0
    quarantined: int = 0
    duplicates: int = 0

    @property
    def balanced(self) -> bool:
        return self.read == self.landed + self.quarantined + self.duplicates


@dataclass
class LandingReport:
    """What landing one arrival day did, file by file."""

    day: dt.date
    files: list[FileCounts] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)
    rewritten_days: list[dt.date] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    mode: str = "whole day"

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def totals(self) -> dict[str, int]:
        return {k: self.total(k) for k in ("read", "landed", "quarantined", "duplicates")}


# A day this small (compressed bytes) is parsed in this process: starting worker processes
# (about a second of imports each) would cost more than the parse.
SMALL_DAY_BYTES = 2 * 2**20
_STAGED: dict[str, TableSpec] = {**TOPIC_TABLES, QUARANTINE: BRONZE_QUARANTINE}
_OFFSET_KEY = ["kafka_partition", "kafka_offset"]
_ROW_ID = ["arrival_date", "source_file", "source_line"]  # one bronze row


def _stage_all(spark, files, known_variants, targets: dict[str, Target]) -> list[StagedFile]:
    """Parse every file and stage its rows, where the engine's workers are; the files' counts
    and keys."""
    known = dict(known_variants)
    tasks = [
        (i, str(f.path), f.rel, f.topic, f.arrival_date, known, targets)
        for i, f in enumerate(files)
    ]
    return run_tasks(spark, stage_file, tasks, small=sum(f.size for f in files) < SMALL_DAY_BYTES)


def _related(lake: Lake, spec: TableSpec, days: list[dt.date], new: pa.Table) -> pa.Table:
    """The landed rows of ``days`` in a dedupe group with a candidate of ``new`` (keys only).

    A group is every row linked to a candidate by (partition, offset) or event_id, directly or
    through other landed rows, so the dedupe below decides exactly as it would over all the rows
    of ``days``. The key columns are scanned batch by batch (memory follows the candidates, not
    the window); one more scan per link found, usually none.
    """
    cols = list(KEY_COLUMNS[1:])
    found = spec.schema.empty_table().select(cols)
    if not days or not new.num_rows or not lake.exists(spec):
        return found
    in_days = pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    offsets, event_ids = new.select(_OFFSET_KEY), new["event_id"]
    dataset = lake.dataset(spec)
    while True:
        parts = [found]
        for batch in dataset.to_batches(filter=in_days, columns=cols):
            t = pa.Table.from_batches([batch]).cast(found.schema)
            parts.append(t.join(offsets, _OFFSET_KEY, join_type="left semi"))
            parts.append(t.filter(pc.is_in(t["event_id"], value_set=event_ids)))
        got = pa.concat_tables(parts).group_by(cols).aggregate([]).select(cols)
        if got.num_rows == found.num_rows:
            return found
        found = got
        offsets = (
            pa.concat_tables([offsets, got.select(_OFFSET_KEY)]).group_by(_OFFSET_KEY).aggregate([])
        )
        event_ids = pc.unique(pa.chunked_array([event_ids, got["event_id"]]).combine_chunks())


def _offsets_distinct(t: pa.Table) -> bool:
    """No two rows share (partition, offset): one sort of a packed integer, about three times
    faster than Arrow's grouping (False when the values do not pack: then the grouping decides)."""
    part, off = t["kafka_partition"], t["kafka_offset"]
    if not t.num_rows or part.null_count or off.null_count:
        return not t.num_rows
    p, o = part.to_numpy().astype(np.int64), off.to_numpy().astype(np.int64)
    if p.min() < 0 or p.max() >= 1 << 23 or o.min() < 0 or o.max() >= 1 << 40:
        return False
    packed = np.sort((p << 40) | o)
    return not bool((packed[1:] == packed[:-1]).any())


def _first_per_group(t: pa.Table, keys: list[str]) -> pa.Table:
    """One row per value of ``keys``: the first arrived (``_ORDER``). Only clashing rows sort."""
    if keys == _OFFSET_KEY and _offsets_distinct(t):
        return t
    counts = t.group_by(keys).aggregate([([], "count_all")])
    clashing = counts.filter(pc.greater(counts["count_all"], 1)).select(keys)
    if not clashing.num_rows:
        return t
    rest = t.join(clashing, keys, join_type="left anti")
    clash = t.join(clashing, keys, join_type="left semi").sort_by(
        [(c, "ascending") for c in _ORDER]
    )
    clash = clash.append_column("_pos", pa.array(np.arange(clash.num_rows)))
    first = clash.group_by(keys, use_threads=False).aggregate([("_pos", "min")])
    winners = clash.take(first["_pos_min"]).drop_columns(["_pos"])
    return pa.concat_tables([rest.select(t.column_names), winners.select(t.column_names)])


def _dedupe(new: pa.Table, existing: pa.Table) -> pa.Table:
    """The rows kept: the first-arrived copy by (partition, offset), then by event_id.

    ``new`` and ``existing`` are key rows (KEY_COLUMNS but topic); the result has a ``_new``
    column saying which side a kept row came from.
    """
    existing = existing.select(new.column_names).cast(new.schema)
    both = pa.concat_tables(
        [
            new.append_column("_new", pa.repeat(True, new.num_rows)),
            existing.append_column("_new", pa.repeat(False, existing.num_rows)),
        ]
    )
    return _first_per_group(_first_per_group(both, _OFFSET_KEY), ["event_id"])


def _restage_without(target: Target, day: dt.date, index: int, lines: pa.Array) -> None:
    """Drop ``lines`` (source_line values) from a staged file: they lost to an earlier copy."""
    path = staged_path(target, day, index)
    rows = pq.read_table(path, schema=target.schema)
    rows = rows.filter(pc.invert(pc.is_in(rows["source_line"], value_set=lines)))
    if rows.num_rows:
        write_staged(target, path, rows)
    else:
        path.unlink()


def _restage_days(
    lake: Lake, spec: TableSpec, target: Target, days: list[dt.date], lost: pa.Table
) -> None:
    """Stage the landed rows of ``days`` again, without ``lost`` (rows that lost to a candidate)."""
    in_days = pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    rows = lake.read_arrow(spec, filter=in_days).join(lost, _ROW_ID, join_type="left anti")
    for d in days:
        part = rows.filter(pc.equal(rows["arrival_date"], pa.scalar(d, pa.date32())))
        path = Path(target.folder) / f"arrival_date={d.isoformat()}" / "rewritten.parquet"
        write_staged(target, path, part)


def land_day(
    spark,
    lake: Lake,
    raw: Path,
    day: dt.date,
    known_variants: Mapping[str, frozenset[str]],
    new_files_only: bool = False,
) -> LandingReport:
    """Land the dump files of arrival day ``day`` into bronze; idempotent. See module docstring.

    By default the whole day is (re)landed: its partitions are replaced. With ``new_files_only``
    (the streaming path) only files not yet in ``ops.landed_files`` are landed and appended; if a
    run died after committing some of them, the whole day is re-landed instead, so nothing doubles.

    Landings of one lake take turns (``Lake.lock("landing")``): a day's dedupe reads the days
    around it, so two days landed at once could each keep a copy of one event.
    """
    with lake.lock("landing"):
        return _land_day(spark, lake, raw, day, known_variants, new_files_only)


def _land_day(spark, lake, raw, day, known_variants, new_files_only) -> LandingReport:
    all_files = list_day_files(raw, day)
    ledger_files = _refuse_missing_files(lake, day, all_files)
    report = LandingReport(day=day)
    if new_files_only:
        on_day = pc.field("arrival_date") == pa.scalar(day, pa.date32())
        seen = set(_landed_per_file(lake, [day])) | set(
            lake.read_arrow(BRONZE_QUARANTINE, filter=on_day, columns=["source_file"])
            .column("source_file")
            .to_pylist()
        )
        new_files_only = seen <= ledger_files  # rows of unledgered files: a run died midway
    files = [f for f in all_files if f.rel not in ledger_files] if new_files_only else all_files
    report.mode = "new files" if new_files_only else "whole day"
    if new_files_only and not files:
        return report
    counts = {f.rel: FileCounts(f.rel, f.topic, f.size) for f in files}
    day_part = [{"arrival_date": day.isoformat()}]
    targets = {
        name: Target(str(lake.staging_dir(spec)), spec.data_schema)
        for name, spec in _STAGED.items()
    }
    staged = _stage_all(spark, files, known_variants, targets) if files else []
    for f in staged:
        if f.read != f.last_line:
            raise LandingError(f"{f.source_file}: {f.read} rows for {f.last_line} lines")
        counts[f.source_file].read = f.read
    index = {f.source_file: f.index for f in staged}
    keys = pa.concat_tables(
        [PARSED_SCHEMA.empty_table().select(list(KEY_COLUMNS))] + [f.keys for f in staged]
    )

    # Whole-day mode replaces the day, so it compares with the other days only; the streaming
    # mode appends, so the day's own rows are compared too.
    window = [
        day + dt.timedelta(days=k)
        for k in range(-DEDUPE_WINDOW_DAYS, DEDUPE_WINDOW_DAYS + 1)
        if k or new_files_only
    ]

    def decide(topic: str) -> tuple[pa.Table, pa.Table, pa.Table]:
        new = keys.filter(pc.equal(keys["topic"], topic)).drop_columns(["topic"])
        existing = _related(lake, TOPIC_TABLES[topic], window, new)
        return new, existing, _dedupe(new, existing)

    # The topics' dedupes are independent Arrow work (the GIL released): side by side.
    with concurrent.futures.ThreadPoolExecutor(len(TOPIC_TABLES)) as pool:
        decided = dict(zip(TOPIC_TABLES, pool.map(decide, TOPIC_TABLES), strict=True))
    for topic, spec in TOPIC_TABLES.items():
        target = targets[topic]
        new, existing, kept = decided[topic]
        kept_new = kept.filter(kept["_new"])
        for name, n in _value_counts(kept_new["source_file"]).items():
            counts[name].landed = n  # checked against the commit below
        # Candidates that lost to an earlier copy leave their staged files (none, usually:
        # then the join that finds them is skipped).
        dropped = (
            new.join(
                kept_new.select(["source_file", "source_line"]),
                ["source_file", "source_line"],
                join_type="left anti",
            )
            if kept_new.num_rows < new.num_rows
            else new.slice(0, 0)
        )
        for name in pc.unique(dropped["source_file"]).to_pylist():
            lines = dropped.filter(pc.equal(dropped["source_file"], name))["source_line"]
            _restage_without(target, day, index[name], lines.combine_chunks())
        # Days whose landed rows lost to a copy from these files: their partitions are rewritten.
        lost = existing.join(
            kept.filter(pc.invert(kept["_new"])).select(_ROW_ID), _ROW_ID, join_type="left anti"
        )
        rewritten = sorted(set(lost["arrival_date"].to_pylist()))
        if rewritten:
            _restage_days(lake, spec, target, rewritten, lost.select(_ROW_ID))
        replace = ([] if new_files_only else day_part) + [
            {"arrival_date": d.isoformat()} for d in rewritten
        ]
        report.versions[spec.qualified] = lake.commit_files(
            spec, Path(target.folder), replace=replace
        )
        report.rewritten_days = sorted(set(report.rewritten_days) | set(rewritten) - {day})

    report.versions[BRONZE_QUARANTINE.qualified] = lake.commit_files(
        BRONZE_QUARANTINE,
        Path(targets[QUARANTINE].folder),
        replace=None if new_files_only else day_part,
    )

    for f in staged:
        counts[f.source_file].duplicates = f.ok - counts[f.source_file].landed
    _check_committed(lake, day, counts, report)
    report.files = sorted(counts.values(), key=lambda c: c.source_file)
    ledger = pa.Table.from_pylist(
        [{**c.__dict__, "arrival_date": day} for c in report.files], schema=OPS_LANDED_FILES.schema
    )
    if new_files_only:
        report.versions[OPS_LANDED_FILES.qualified] = lake.write_arrow(OPS_LANDED_FILES, ledger)
    else:
        report.versions[OPS_LANDED_FILES.qualified] = lake.write_arrow(
            OPS_LANDED_FILES, ledger, replace=day_part
        )
    # Other days may have lost rows to these copies (now, or in a run that died before its
    # ledger update): recount their ledger rows from bronze, so a re-run repairs them.
    _reconcile_ledger(
        lake,
        [
            day + dt.timedelta(days=k)
            for k in range(0 if new_files_only else 1, DEDUPE_WINDOW_DAYS + 1)
        ],
    )
    return report


def _value_counts(column) -> dict:
    """value -> how many times (Arrow's count, not a million Python strings)."""
    counted = pc.value_counts(column).flatten()
    return dict(zip(counted[0].to_pylist(), counted[1].to_pylist(), strict=True))


def _landed_per_file(lake: Lake, days: list[dt.date]) -> Counter:
    """Rows in bronze per source file, over the arrival days given."""
    on_days = pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    landed: Counter = Counter()
    for spec in TOPIC_TABLES.values():
        got = lake.read_arrow(spec, filter=on_days, columns=["source_file"])
        landed.update(_value_counts(got.column("source_file")))
    return landed


def _refuse_missing_files(lake: Lake, day: dt.date, files) -> set[str]:
    """The files already landed for ``day``; refuse if any is now gone or changed.

    Re-landing a day whose landed files are gone or changed would silently drop rows.
    """
    on_day = pc.field("arrival_date") == pa.scalar(day, pa.date32())
    before = lake.read_arrow(OPS_LANDED_FILES, filter=on_day, columns=["source_file", "bytes"])
    now = {f.rel: f.size for f in files}
    bad = [
        f"{r['source_file']} ({r['bytes']} bytes when landed, "
        + (f"{now[r['source_file']]} now)" if r["source_file"] in now else "now missing)")
        for r in before.to_pylist()
        if now.get(r["source_file"]) != r["bytes"]
    ]
    if bad:
        raise LandingError(
            f"arrival day {day} was landed from files that are now missing or changed: "
            + "; ".join(bad)
            + ". Restore them in raw/ before re-landing; landing never drops landed rows."
        )
    return set(before.column("source_file").to_pylist())


def _check_committed(
    lake: Lake, day: dt.date, counts: dict[str, FileCounts], report: LandingReport
) -> None:
    """Read landed and quarantined rows per file back from the commits; every file must balance.

    ``read`` comes from the parser's line numbers, ``duplicates`` from the dedupe, ``landed`` and
    ``quarantined`` from the tables as committed: a row lost or doubled on the way fails here.
    """
    landed = _landed_per_file(lake, [day])
    on_day = pc.field("arrival_date") == pa.scalar(day, pa.date32())
    q = lake.read_arrow(BRONZE_QUARANTINE, filter=on_day, columns=["source_file", "reason"])
    mine = [r for r in q.to_pylist() if r["source_file"] in counts]
    quarantined = Counter(r["source_file"] for r in mine)
    report.by_reason = dict(sorted(Counter(r["reason"] for r in mine).items()))
    bad = []
    for c in counts.values():
        if landed[c.source_file] != c.landed:
            bad.append(
                f"{c.source_file}: {c.landed} rows to land but {landed[c.source_file]} committed"
            )
        c.landed, c.quarantined = landed[c.source_file], quarantined[c.source_file]
        if not c.balanced or c.duplicates < 0:
            bad.append(
                f"{c.source_file}: read {c.read} != landed {c.landed} + quarantined {c.quarantined}"
                f" + duplicates {c.duplicates}"
            )
    if bad:
        raise LandingError(f"landing of {day} does not add up: " + "; ".join(bad))


def _reconcile_ledger(lake: Lake, days: list[dt.date]) -> None:
    """Set landed (from bronze) and duplicates (the rest) of the ledger rows of ``days``."""
    ledger = lake.read_arrow(
        OPS_LANDED_FILES, filter=pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    )
    if not ledger.num_rows:
        return
    landed = _landed_per_file(lake, sorted(set(ledger.column("arrival_date").to_pylist())))
    rows = []
    for r in ledger.to_pylist():
        n = landed[r["source_file"]]
        if n != r["landed"]:
            rows.append({**r, "landed": n, "duplicates": r["read"] - n - r["quarantined"]})
    if rows:
        lake.merge_arrow(
            OPS_LANDED_FILES, pa.Table.from_pylist(rows, schema=OPS_LANDED_FILES.schema)
        )


_SUMMARY = ("files", "read", "landed", "quarantined", "duplicates")


def ledger_summary(lake: Lake, days: list[dt.date]) -> list[dict]:
    """Per arrival day: files, read, landed, quarantined, duplicates (from ops.landed_files)."""
    ledger = lake.read_arrow(
        OPS_LANDED_FILES, filter=pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    )
    rows = {d: dict.fromkeys(_SUMMARY, 0) for d in days}
    for r in ledger.to_pylist():
        acc = rows[r["arrival_date"]]
        acc["files"] += 1
        for k in _SUMMARY[1:]:
            acc[k] += r[k]
    return [{"arrival_day": d, **rows[d]} for d in days]


def format_summary(rows: list[dict], markdown: bool = False, header: bool = True) -> str:
    """The per-day landing table, as text for a terminal or as Markdown for Dagster metadata."""
    names = ("arrival day", *_SUMMARY)
    lines = []
    if markdown:
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    elif header:
        lines.append(f"{names[0]:<12}" + "".join(f" {n:>11}" for n in names[1:]))
    for r in rows:
        values = [r[k] for k in _SUMMARY]
        ok = r["read"] == r["landed"] + r["quarantined"] + r["duplicates"]
        if markdown:
            lines.append(f"| {r['arrival_day']} | " + " | ".join(map(str, values)) + " |")
        else:
            flag = "" if ok else "  <- does not add up"
            lines.append(
                f"{r['arrival_day'].isoformat():<12}" + "".join(f" {v:>11}" for v in values) + flag
            )
    return "\n".join(lines)


assert set(TOPIC_TABLES) == set(TOPICS)
