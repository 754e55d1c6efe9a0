"""Forget a user: their lines leave the raw dumps and every table, with one audit entry.

``abp forget USER_ID --by EMAIL`` (a data-subject erasure request):

1. Every raw dump file is read; a line belongs to the user when its event's ``user_id`` or its
   Kafka ``key`` is the user id, or, for a line that cannot be parsed, when it holds the id as a
   JSON string. Files holding such lines are rewritten without them (atomically; gzip stays
   gzip; a corrupt gzip tail is kept as it was, so it is still reported).
2. The arrival days of those files are re-landed from the rewritten files (their ledger rows
   are dropped first, since the files changed on purpose), so bronze, quarantine and the ledger
   are exactly what landing the rewritten files gives, and still balance.
3. Bronze and quarantine are then vacuumed with no retention: the older versions' files that
   held the user are deleted. Forgetting overrides time travel for those tables.
4. One row in ``ops.audit_log`` (action ``forget``) records who, when and what was rewritten.

Silver and gold tables hold counts and sums per variant, never a user's row; the user's share of
a past day's sums goes when that day is re-analysed (``abp run --from D1 --to D2``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.events.dumps import list_day_files
from ab_pipelines.events.landing import TOPIC_TABLES, _land_day
from ab_pipelines.events.parse import read_lines
from ab_pipelines.lake.delta import Lake
from ab_pipelines.lake.tables import BRONZE_QUARANTINE, OPS_AUDIT_LOG, OPS_LANDED_FILES
from ab_pipelines.settings import now

__all__ = ["ForgetReport", "forget_user", "line_holds_user"]


@dataclass
class ForgetReport:
    user_id: str
    files: dict[str, int] = field(default_factory=dict)  # rewritten file -> lines removed
    days: list[dt.date] = field(default_factory=list)  # arrival days re-landed
    files_vacuumed: int = 0

    @property
    def lines(self) -> int:
        return sum(self.files.values())


def line_holds_user(line: bytes, user_id: str) -> bool:
    """Whether one raw line belongs to ``user_id`` (see the module docstring)."""
    quoted = orjson.dumps(user_id)
    if quoted not in line and user_id.encode("utf-8", "surrogatepass") not in line:
        return False  # fast path: the id is nowhere in the line, in any JSON spelling we write
    try:
        env = orjson.loads(line)
    except orjson.JSONDecodeError:
        return quoted in line
    if not isinstance(env, dict):
        return quoted in line
    value = env.get("value")
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return quoted in line
    if env.get("key") == user_id:
        return True
    return isinstance(value, dict) and value.get("user_id") == user_id


def _rewrite(path: Path, user_id: str) -> int:
    """Rewrite one dump file without the user's lines; returns how many were removed."""
    data = path.read_bytes()
    gzipped = path.name.endswith(".gz")
    lines, corrupt = read_lines(data, gzipped)
    keep = [ln for ln in lines if not line_holds_user(ln, user_id)]
    removed = len(lines) - len(keep)
    tail = corrupt.tail if corrupt is not None else b""
    if corrupt is not None and line_holds_user(tail, user_id):
        tail, removed = b"", removed + 1
    if not removed:
        return 0
    body = b"".join(ln + b"\n" for ln in keep)
    if gzipped and (body or not tail):
        body = gzip.compress(body)
    tmp = path.with_name(f".{path.name}.forget")
    tmp.write_bytes(body + tail)
    os.replace(tmp, path)
    return removed


def _arrival_days(raw: Path) -> list[dt.date]:
    days = set()
    if raw.is_dir():
        for folder in raw.glob("*/date=*"):
            try:
                days.add(dt.date.fromisoformat(folder.name.split("=", 1)[1]))
            except ValueError:
                continue
    return sorted(days)


def forget_user(
    spark,
    lake: Lake,
    raw: Path,
    user_id: str,
    by: str,
    known_variants: Mapping[str, frozenset[str]],
) -> ForgetReport:
    """Remove ``user_id`` from the raw dumps and the lake; see the module docstring."""
    if not user_id:
        raise ValueError("the user id is empty")
    report = ForgetReport(user_id)
    with lake.lock("landing"):
        for day in _arrival_days(raw):
            for f in list_day_files(raw, day):
                n = _rewrite(f.path, user_id)
                if n:
                    report.files[f.rel] = n
                    if day not in report.days:
                        report.days.append(day)
        for day in report.days:
            part = [{"arrival_date": day.isoformat()}]
            lake.write_arrow(OPS_LANDED_FILES, OPS_LANDED_FILES.schema.empty_table(), replace=part)
            _land_day(spark, lake, raw, day, known_variants, False)
        for spec in (*TOPIC_TABLES.values(), BRONZE_QUARANTINE):
            # Rows whose raw file is gone from raw/ could not be re-landed: dropped in place.
            _drop_rows(lake, spec, user_id)
            if lake.exists(spec):
                gone = lake.table(spec).vacuum(
                    retention_hours=0, dry_run=False, enforce_retention_duration=False
                )
                report.files_vacuumed += len(gone)
        detail = (
            f"forgot user {user_id!r}: removed {report.lines} line(s) from "
            f"{len(report.files)} raw file(s) ({', '.join(sorted(report.files)) or 'none'}); "
            f"re-landed {', '.join(d.isoformat() for d in report.days) or 'no days'}; "
            f"vacuumed {report.files_vacuumed} old bronze file(s)"
        )
        row = {
            "at": now(),
            "actor": by,
            "action": "forget",
            "experiment_id": None,
            "detail": detail,
        }
        lake.write_arrow(OPS_AUDIT_LOG, pa.Table.from_pylist([row], schema=OPS_AUDIT_LOG.schema))
    return report


def _mentions(table: pa.Table, spec, user_id: str) -> pa.ChunkedArray:
    if spec is BRONZE_QUARANTINE:  # a raw line: the id as a JSON string anywhere in it
        quoted = orjson.dumps(user_id).decode()
        return pc.fill_null(pc.match_substring(table.column("raw"), quoted), False)
    return pc.fill_null(
        pc.or_(
            pc.equal(table.column("user_id"), user_id),
            pc.equal(table.column("kafka_key"), user_id),
        ),
        False,
    )


def _drop_rows(lake: Lake, spec, user_id: str) -> None:
    """Rewrite the partitions of ``spec`` holding the user's rows without them."""
    if not lake.exists(spec):
        return
    table = lake.read_arrow(spec)
    hit = _mentions(table, spec, user_id)
    days = sorted(set(table.filter(hit).column("arrival_date").to_pylist()))
    if not days:
        return
    on_days = pc.is_in(table.column("arrival_date"), pa.array(days, pa.date32()))
    keep = table.filter(pc.and_(on_days, pc.invert(hit)))
    lake.write_arrow(spec, keep, replace=[{"arrival_date": d.isoformat()} for d in days])


def rows_mentioning(lake: Lake, user_id: str) -> dict[str, int]:
    """Rows of every table whose string columns mention the user id (for checks and tests)."""
    from ab_pipelines.lake.tables import TABLES

    out = {}
    for spec in TABLES.values():
        if not lake.exists(spec):
            continue
        t = lake.read_arrow(spec)
        hits = 0
        for name in t.column_names:
            col = t.column(name)
            if pa.types.is_string(col.type):
                hits += pc.sum(pc.match_substring(col, user_id).cast(pa.int64())).as_py() or 0
        if hits:
            out[spec.qualified] = hits
    return out
