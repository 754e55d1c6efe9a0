"""The raw dump layout on disk: where a day's files are, and a writer that produces them.

The names and the envelope are the contract's (:mod:`ab_pipelines.contracts.envelope`).

$ABP_HOME/raw/<topic>/date=YYYY-MM-DD/<topic>+<partition>+<first_offset>.jsonl[.gz]
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ab_pipelines.contracts.envelope import DUMP_SUFFIXES, day_dir, dump_name, envelope

__all__ = ["DumpFile", "day_folder", "list_day_files", "write_dump", "envelope"]


@dataclass(frozen=True)
class DumpFile:
    """One dump file of one arrival day; ``rel`` is its path under the raw folder."""

    path: Path
    rel: str
    topic: str
    arrival_date: dt.date
    size: int


def day_folder(raw: Path, topic: str, day: dt.date) -> Path:
    return raw / day_dir(topic, day)


def list_day_files(raw: Path, day: dt.date) -> list[DumpFile]:
    """Every dump file that arrived on ``day``, across all topic folders (known or not), sorted.

    Files of unknown topics are listed too, so their lines are quarantined rather than ignored.
    Names that are not dumps (a connector's temporary files, dot files) are skipped.
    """
    out = []
    if not raw.is_dir():
        return out
    for topic_dir in sorted(
        p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    ):
        folder = day_folder(raw, topic_dir.name, day)
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.name.endswith(DUMP_SUFFIXES):
                out.append(
                    DumpFile(
                        f, f.relative_to(raw).as_posix(), topic_dir.name, day, f.stat().st_size
                    )
                )
    return out


def write_dump(
    raw: Path,
    topic: str,
    day: dt.date,
    partition: int,
    first_offset: int,
    lines: Iterable[bytes | dict],
    gzipped: bool = False,
) -> Path:
    """Write one dump file atomically (temp name, then rename), as a sink connector does.

    ``lines`` are envelopes (dicts) or raw bytes (for deliberately malformed lines).
    """
    folder = day_folder(raw, topic, day)
    folder.mkdir(parents=True, exist_ok=True)
    name = dump_name(topic, partition, first_offset, gzipped)
    body = b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    if gzipped:
        body = gzip.compress(body, compresslevel=5, mtime=0)
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, folder / name)
    return folder / name
