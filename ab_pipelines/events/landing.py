"""Land one arrival day of raw dumps into bronze, exactly once, in Spark.

1. The day's files are parsed in Spark executors (``mapInArrow``, one task per few files) by
   :func:`parse_dump_file`, which checks bytes and lines itself: every line becomes one row, a
   landing candidate or a quarantined line with its reason code.
   A day is landed whole (its partitions replaced) or, on the streaming path, file by file
   (only files not yet in ``ops.landed_files``, appended).
2. Candidates are deduplicated against each other and against the bronze rows of the arrival days
   within ``DEDUPE_WINDOW_DAYS`` on both sides: by (topic, partition, offset), then by ``event_id``.
   The copy that arrived first wins (earliest arrival day, then Kafka order), so the tables do
   not depend on the order in which days are landed or re-landed. When a re-landed earlier day
   wins over a copy already landed on a later day, that later partition is rewritten in the same
   transaction.
3. Each table replaces the partitions it touches in one Delta commit (idempotent re-runs).
4. The counts are checked per file against what was committed: read = landed + quarantined +
   duplicates, where landed and quarantined are read back from the tables.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.events.dumps import list_day_files
from ab_pipelines.events.parse import parse_dump_file
from ab_pipelines.events.schema import DEDUPE_WINDOW_DAYS, PARSED_SCHEMA, TOPICS
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.spark_io import arrow_to_spark_schema, write_spark
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


def _parse_task(known_variants: Mapping[str, frozenset[str]]):
    """The mapInArrow function: file rows in, PARSED_SCHEMA rows out (runs on executors)."""

    def run(batches):
        for batch in batches:
            for row in batch.to_pylist():
                data = Path(row["path"]).read_bytes()
                yield from parse_dump_file(
                    data, row["rel"], row["topic"], row["arrival_date"], known_variants
                )

    return run


def _dedupe(df):
    """Keep the first-arrived copy by (partition, offset), then by event_id; adds nothing else."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = [F.col(c).asc() for c in _ORDER]
    by_offset = Window.partitionBy("kafka_partition", "kafka_offset").orderBy(*order)
    by_event = Window.partitionBy("event_id").orderBy(*order)
    first = df.withColumn("_r", F.row_number().over(by_offset)).filter("_r = 1").drop("_r")
    return first.withColumn("_r", F.row_number().over(by_event)).filter("_r = 1").drop("_r")


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
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

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

    if files:
        file_rows = [(str(f.path), f.rel, f.topic, f.arrival_date) for f in files]
        files_df = spark.createDataFrame(
            file_rows, "path string, rel string, topic string, arrival_date date"
        )
        n_tasks = max(1, min(len(files), spark.sparkContext.defaultParallelism * 2))
        parsed = (
            files_df.repartition(n_tasks)
            .mapInArrow(_parse_task(dict(known_variants)), arrow_to_spark_schema(PARSED_SCHEMA))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
    else:
        parsed = spark.createDataFrame([], arrow_to_spark_schema(PARSED_SCHEMA))

    try:
        per_file = (
            parsed.groupBy("source_file")
            .agg(
                F.count("*").alias("n"),
                F.max("source_line").alias("last_line"),
                F.sum(F.when(F.col("status") == "ok", 1).otherwise(0)).alias("ok"),
            )
            .collect()
        )
        for r in per_file:
            if r["n"] != r["last_line"]:
                raise LandingError(f"{r['source_file']}: {r['n']} rows for {r['last_line']} lines")
            counts[r["source_file"]].read = r["n"]

        # Whole-day mode replaces the day, so it compares with the other days only; the
        # streaming mode appends, so the day's own rows are compared too.
        window = [
            day + dt.timedelta(days=k)
            for k in range(-DEDUPE_WINDOW_DAYS, DEDUPE_WINDOW_DAYS + 1)
            if k or new_files_only
        ]
        for topic, spec in TOPIC_TABLES.items():
            cand = parsed.filter((F.col("status") == "ok") & (F.col("topic") == topic))
            existing = lake.read_spark(
                spark, spec, [{"arrival_date": d.isoformat()} for d in window]
            )
            cols = spec.schema.names
            both = (
                cand.select(*cols)
                .withColumn("_new", F.lit(True))
                .unionByName(existing.select(*cols).withColumn("_new", F.lit(False)))
            )
            kept = _dedupe(both).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                for r in kept.filter(F.col("_new")).groupBy("source_file").count().collect():
                    counts[r["source_file"]].landed = r["count"]  # checked against the commit below
                # Days whose landed rows lost to a copy from these files: their partitions are rewritten.
                lost = (
                    existing.select("arrival_date", "source_file", "source_line")
                    .join(
                        kept.filter(~F.col("_new")),
                        ["arrival_date", "source_file", "source_line"],
                        "left_anti",
                    )
                    .select("arrival_date")
                    .distinct()
                    .collect()
                )
                rewritten = sorted({r["arrival_date"] for r in lost})
                to_write = kept.filter(F.col("_new") | F.col("arrival_date").isin(rewritten))
                replace = ([] if new_files_only else day_part) + [
                    {"arrival_date": d.isoformat()} for d in rewritten
                ]
                report.versions[spec.qualified] = write_spark(
                    lake, spec, to_write.drop("_new"), replace=replace
                )
            finally:
                kept.unpersist()
            report.rewritten_days = sorted(set(report.rewritten_days) | set(rewritten) - {day})

        quarantine = parsed.filter(F.col("status") == "quarantined")
        report.versions[BRONZE_QUARANTINE.qualified] = write_spark(
            lake, BRONZE_QUARANTINE, quarantine, replace=None if new_files_only else day_part
        )
    finally:
        parsed.unpersist()

    candidates = {r["source_file"]: r["ok"] for r in per_file}
    for c in counts.values():
        c.duplicates = candidates.get(c.source_file, 0) - c.landed
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


def _landed_per_file(lake: Lake, days: list[dt.date]) -> Counter:
    """Rows in bronze per source file, over the arrival days given."""
    on_days = pc.field("arrival_date").isin(pa.array(days, pa.date32()))
    landed: Counter = Counter()
    for spec in TOPIC_TABLES.values():
        got = lake.read_arrow(spec, filter=on_days, columns=["source_file"])
        landed.update(got.column("source_file").to_pylist())
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
