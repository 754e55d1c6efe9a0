"""Read one dump file and classify every line: a landing candidate or a quarantined line.

Bytes are checked here, before any engine sees them (Spark's JSON reader silently replaces invalid
UTF-8 and silently cuts truncated gzip): every line of a file comes out as exactly one row, so
``read = landed + quarantined + duplicates`` can be proven per file downstream.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter, itemgetter

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ab_pipelines.contracts.envelope import ENVELOPE_FIELDS, ENVELOPE_INT_LIMITS
from ab_pipelines.events.parse_bulk import bulk_columns
from ab_pipelines.events.schema import (
    MAX_LINE_BYTES,
    PARSED_SCHEMA,
    TOPICS,
    TS_MAX_AFTER_DAYS,
    TS_MAX_BEFORE_DAYS,
)

__all__ = [
    "Rejected",
    "parse_dump_file",
    "parse_line",
    "parse_ts",
    "read_lines",
    "read_text",
    "split_lines",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ENVELOPE = ENVELOPE_FIELDS
_ENVELOPE_INT_LIMITS = ENVELOPE_INT_LIMITS
_INT64 = 1 << 63  # an event's integer fields are int64 too


class Rejected(Exception):
    """A line that cannot be landed: one reason code and a human detail naming the field."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class _Corrupt:
    tail: bytes
    message: str


_GZIP_CHUNK = 1 << 14


def _gunzip(data: bytes) -> tuple[bytes, _Corrupt | None]:
    """Decompress every gzip member, in chunks, keeping all output produced before a break."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        start, produced = pos, sum(map(len, out))
        d = zlib.decompressobj(wbits=31)  # one gzip member; concatenated members are legal
        try:
            while pos < len(data) and not d.eof:
                chunk = data[pos : pos + _GZIP_CHUNK]
                saved = d.copy()
                try:
                    out.append(d.decompress(chunk))
                except zlib.error:
                    # zlib drops a failing call's output: replay the chunk byte by byte from the
                    # saved state so every byte decompressed before the break is kept.
                    for k in range(len(chunk)):
                        out.append(saved.decompress(chunk[k : k + 1]))
                    raise
                pos += len(chunk)
            out.append(d.flush())
        except zlib.error as exc:
            # With no text out of this member (say, not gzip at all), keep its bytes as the tail.
            tail = data[start:] if sum(map(len, out)) == produced else b""
            return b"".join(out), _Corrupt(tail, f"gzip stream is corrupt near byte {pos}: {exc}")
        if not d.eof:
            return b"".join(out), _Corrupt(
                b"", "gzip stream ends before its end marker (truncated file)"
            )
        pos -= len(d.unused_data)
        if not data[pos:].strip(b"\x00"):  # some writers pad with zeros
            break
    return b"".join(out), None


def read_text(data: bytes, gzipped: bool) -> tuple[bytes, _Corrupt | None]:
    """A file's text (decompressed); a gzip that ends early or breaks yields a corrupt tail.

    For a broken gzip, the text decompressed before the break is kept up to its last complete
    line, and everything after it becomes the corrupt tail, so nothing is silently cut.
    """
    if not gzipped:
        return data, None
    text, corrupt = _gunzip(data)
    if corrupt is not None:
        cut = text.rfind(b"\n") + 1
        text, tail = text[:cut], text[cut:]
        corrupt.tail = tail or corrupt.tail
    return text, corrupt


def split_lines(text: bytes) -> list[bytes]:
    """Lines end at b"\\n" (a trailing b"\\r" is dropped); the last line needs no newline."""
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]


def read_lines(data: bytes, gzipped: bool) -> tuple[list[bytes], _Corrupt | None]:
    """Split a file's bytes into lines (:func:`split_lines` of :func:`read_text`)."""
    text, corrupt = read_text(data, gzipped)
    return split_lines(text), corrupt


def parse_ts(value: object, field: str) -> int:
    """ISO-8601 with a zone (``Z`` or an offset) to epoch microseconds, or Rejected."""
    if not isinstance(value, str):
        raise Rejected("wrong_type", f"field '{field}' must be an ISO-8601 string")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(
            "bad_timestamp", f"field '{field}' is not ISO-8601: {value[:40]!r}"
        ) from None
    if t.tzinfo is None:
        raise Rejected("bad_timestamp", f"field '{field}' has no zone (add Z or an offset)")
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _json_object_text(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejected("wrong_type", f"field '{field}' must be an object")
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parse_line(
    line: bytes,
    folder_topic: str,
    ts_window: tuple[int, int],
    known_variants: Mapping[str, frozenset[str]],
) -> dict:
    """One line to a dict of PARSED_SCHEMA's event columns, or raise Rejected."""
    if len(line) > MAX_LINE_BYTES:
        raise Rejected("too_large", f"line is {len(line)} bytes, over the 1 MiB limit")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected("bad_encoding", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        env = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise Rejected("bad_json", f"not JSON: {exc}") from None
    if not isinstance(env, dict):
        raise Rejected("bad_envelope", "a record must be a JSON object")
    for key in ("topic", "partition", "offset", "timestamp", "value"):
        if key not in env or env[key] is None:
            raise Rejected("bad_envelope", f"envelope field '{key}' is missing")
    topic = env["topic"]
    if not isinstance(topic, str):
        raise Rejected("bad_envelope", "envelope field 'topic' must be a string")
    for key, limit in _ENVELOPE_INT_LIMITS.items():
        v = env[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < limit:
            raise Rejected(
                "bad_envelope", f"envelope field '{key}' must be an integer in [0, {limit})"
            )
    key = env.get("key")
    if key is not None and not isinstance(key, str):
        key = orjson.dumps(key).decode()
    spec = TOPICS.get(topic)
    if spec is None:
        raise Rejected("unknown_topic", f"topic '{topic}' is not one of {sorted(TOPICS)}")
    if topic != folder_topic:
        raise Rejected("bad_envelope", f"topic '{topic}' found in the '{folder_topic}' folder")
    value = env["value"]
    if isinstance(value, str):  # kcat style: the event as a string holding JSON
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Rejected("bad_json", f"envelope 'value' string is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Rejected("bad_envelope", "envelope field 'value' must be an object")

    row: dict = {
        "topic": topic,
        "kafka_partition": env["partition"],
        "kafka_offset": env["offset"],
        "kafka_timestamp": env["timestamp"] * 1000,
        "kafka_key": key,
    }
    for f in spec.required:
        v = value.get(f)
        if v is None or v == "":
            raise Rejected("missing_field", f"field '{f}' is missing")
        if f != "ts" and not isinstance(v, str):
            raise Rejected("wrong_type", f"field '{f}' must be a string, got {type(v).__name__}")
        row[f] = v
    for f, kind in spec.optional.items():
        v = value.get(f)
        if v is None:
            row[f] = None
        elif kind == "str":
            if not isinstance(v, str):
                raise Rejected("wrong_type", f"field '{f}' must be a string")
            row[f] = v
        elif kind == "int":
            if not isinstance(v, int) or isinstance(v, bool) or not -_INT64 <= v < _INT64:
                raise Rejected("wrong_type", f"field '{f}' must be a 64-bit integer")
            row[f] = v
        elif kind == "number":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise Rejected("wrong_type", f"field '{f}' must be a finite number")
            row[f] = float(v)
        else:
            row[f] = _json_object_text(v, f)
    if spec.name == "metric_events" and row["value"] is None:
        row["value"] = 1.0
    ts = parse_ts(row["ts"], "ts")
    if not ts_window[0] <= ts < ts_window[1]:
        raise Rejected(
            "ts_out_of_range",
            f"field 'ts' {row['ts']} is more than {TS_MAX_BEFORE_DAYS} days before or "
            f"{TS_MAX_AFTER_DAYS} day after its arrival day",
        )
    row["ts"] = ts
    if spec.name == "exposures":
        variants = known_variants.get(row["experiment_id"])
        if variants is None:
            raise Rejected(
                "unknown_experiment", f"experiment '{row['experiment_id']}' is not in the registry"
            )
        if row["variant"] not in variants:
            raise Rejected(
                "unknown_variant",
                f"variant '{row['variant']}' is not a variant of '{row['experiment_id']}'",
            )
    row["extra"] = _extra_text(env, value, spec.known)
    return row


def _extra_text(env: dict, value: dict, known: frozenset[str]) -> str | None:
    """Unknown event fields, and unknown envelope fields under ``_envelope``, as sorted JSON."""
    extra = {k: v for k, v in value.items() if k not in known}
    env_extra = {k: v for k, v in env.items() if k not in _ENVELOPE}
    if env_extra:
        extra["_envelope"] = env_extra
    return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode() if extra else None


def ts_window_for(arrival_date: dt.date) -> tuple[int, int]:
    """Epoch-µs bounds [D − 7 days, D + 2 days) of the timestamps accepted on arrival day D."""
    start = dt.datetime.combine(arrival_date, dt.time(), tzinfo=dt.UTC)
    lo = start - dt.timedelta(days=TS_MAX_BEFORE_DAYS)
    hi = start + dt.timedelta(days=1 + TS_MAX_AFTER_DAYS)
    to_us = lambda t: int((t - _EPOCH).total_seconds()) * 1_000_000  # noqa: E731
    return to_us(lo), to_us(hi)


def _raw_text(b: bytes) -> tuple[str, int]:
    # At most 1 MiB of raw text is kept in quarantine; the whole file stays in raw/.
    return b[:MAX_LINE_BYTES].decode("utf-8", errors="replace"), len(b)


_FAST_CHUNK = 4096
_BULK_CHUNK = 32768
_ENVELOPE_KEYS = frozenset(_ENVELOPE)


class _NotFast(Exception):
    """Some line of the chunk needs the per-line parser (it may be rejected, or be unusual)."""


def _fast_columns(
    lines: list[bytes],
    folder_topic: str,
    ts_window: tuple[int, int],
    known_variants: Mapping[str, frozenset[str]],
) -> dict[str, pa.Array] | None:
    """The event columns of a chunk of lines, column by column, if every line would be landed.

    This is :func:`parse_line` done a column at a time: it gives the very same values for lines
    it accepts, and gives up (returns None) on the first line that is rejected or unusual in any
    way, leaving the chunk to the per-line parser, which then finds each line's exact reason.
    """
    if folder_topic not in TOPICS or max(map(len, lines)) > MAX_LINE_BYTES:
        return None
    # The chunk's thousands of new dicts would trigger the cyclic GC again and again (a third of
    # the time); they hold no cycles, so it is paused while they are built.
    paused = gc.isenabled()
    gc.disable()
    try:
        b"\n".join(lines).decode("utf-8")
        envs = list(map(orjson.loads, lines))
        return _fast_checked(envs, folder_topic, ts_window, known_variants)
    except (
        _NotFast,
        Rejected,  # from the helpers shared with parse_line
        KeyError,
        UnicodeDecodeError,
        orjson.JSONDecodeError,
        pa.ArrowException,
        OverflowError,
    ):
        return None
    finally:
        if paused:
            gc.enable()


def _strings(col: list, required: bool) -> pa.Array:
    arr = pa.array(col, pa.string())  # raises ArrowTypeError on anything but str and None
    if required and (arr.null_count or pc.any(pc.equal(arr, "")).as_py()):
        raise _NotFast
    return arr


def _int64s(col: list, lo: int, hi: int, nullable: bool) -> pa.Array:
    arr = pa.array(col)  # ints infer int64; a bool, a float or an overflow does not
    if arr.type == pa.null() and nullable:
        return arr.cast(pa.int64())
    if arr.type != pa.int64() or (arr.null_count and not nullable):
        raise _NotFast
    low, high = pc.min_max(arr).values()
    if low.is_valid and (low.as_py() < lo or high.as_py() >= hi):
        raise _NotFast
    return arr


def _numbers(col: list) -> pa.Array:
    # pyarrow infers double from the first number and then takes a later True as 1.0 (and
    # int64, then refuses it): booleans are not numbers here, so any bool is the slow path's.
    if bool in set(map(type, col)):
        raise _NotFast
    arr = pa.array(col)  # ints and floats infer double (or int64 if all ints)
    if arr.type == pa.int64():
        arr = arr.cast(pa.float64())  # safe cast: refuses ints that a double cannot hold exactly
    elif arr.type == pa.null():
        return arr.cast(pa.float64())
    elif arr.type != pa.float64():
        raise _NotFast
    if arr.null_count < len(arr) and not pc.all(pc.is_finite(arr)).as_py():
        raise _NotFast
    return arr


_UTC = pa.timestamp("us", tz="UTC")
_ENVELOPE_GET = itemgetter("topic", *_ENVELOPE_INT_LIMITS, "value")
_TZINFO = attrgetter("tzinfo")


def _fast_checked(envs, folder_topic, ts_window, known_variants) -> dict[str, pa.Array]:
    n = len(envs)
    if set(map(type, envs)) != {dict}:
        raise _NotFast
    spec = TOPICS[folder_topic]
    # Transposed at C speed; a missing key raises KeyError, which leaves the chunk to parse_line.
    topics, *ints, values = zip(*map(_ENVELOPE_GET, envs), strict=True)
    if topics.count(folder_topic) != n:
        raise _NotFast
    cols: dict[str, pa.Array] = {"topic": pa.array(topics, pa.string())}
    for (key, limit), col in zip(_ENVELOPE_INT_LIMITS.items(), ints, strict=True):
        cols["kafka_" + key] = _int64s(col, 0, limit, nullable=False)
    cols["kafka_timestamp"] = pc.multiply(cols["kafka_timestamp"], 1000).cast(_UTC)
    keys = [e.get("key") for e in envs]
    if set(map(type, keys)) - {str, type(None)}:
        keys = [k if k is None or type(k) is str else orjson.dumps(k).decode() for k in keys]
    cols["kafka_key"] = pa.array(keys, pa.string())
    if set(map(type, values)) != {dict}:
        values = [orjson.loads(v) if type(v) is str else v for v in values]
        if set(map(type, values)) != {dict}:
            raise _NotFast
    required = zip(*map(itemgetter(*spec.required), values), strict=True)
    for f, col in zip(spec.required, required, strict=True):
        if f != "ts":
            cols[f] = _strings(col, required=True)
        else:
            stamps = col
    for f, kind in spec.optional.items():
        col = [v.get(f) for v in values]
        if kind == "str":
            cols[f] = _strings(col, required=False)
        elif kind == "int":
            cols[f] = _int64s(col, -_INT64, _INT64, nullable=True)
        elif kind == "number":
            cols[f] = _numbers(col)
        else:
            cols[f] = pa.array([_json_object_text(x, f) for x in col], pa.string())
    if spec.name == "metric_events":
        cols["value"] = pc.fill_null(cols["value"], 1.0)
    if set(map(type, stamps)) != {str} or "" in stamps:
        raise _NotFast
    try:
        stamps = list(map(dt.datetime.fromisoformat, stamps))
    except ValueError:
        raise _NotFast from None
    if None in map(_TZINFO, stamps):
        raise _NotFast
    ts = pa.array(stamps, _UTC)  # aware datetimes are converted to UTC, to the microsecond
    low, high = pc.min_max(ts.cast(pa.int64())).values()
    if low.as_py() < ts_window[0] or high.as_py() >= ts_window[1]:
        raise _NotFast
    cols["ts"] = ts
    if spec.name == "exposures":
        pairs = set(
            zip(cols["experiment_id"].to_pylist(), cols["variant"].to_pylist(), strict=True)
        )
        if any(var not in known_variants.get(exp, ()) for exp, var in pairs):
            raise _NotFast
    known = spec.known
    extra: list = [None] * n
    if not (all(map(known.issuperset, values)) and all(map(_ENVELOPE_KEYS.issuperset, envs))):
        extra = [_extra_text(e, v, known) for e, v in zip(envs, values, strict=True)]
    cols["extra"] = pa.array(extra, pa.string())
    return cols


def _bulk(lines: list[bytes], folder_topic, window, known_variants) -> dict[str, pa.Array] | None:
    return bulk_columns(b"\n".join(lines), len(lines), folder_topic, window, known_variants)


def parse_dump_file(
    data: bytes,
    source_file: str,
    folder_topic: str,
    arrival_date: dt.date,
    known_variants: Mapping[str, frozenset[str]],
    batch_rows: int = 65_536,
    fast: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Every line of one dump file as rows of PARSED_SCHEMA, in batches.

    ``source_file`` is the path relative to the raw folder (``<topic>/date=D/<name>``); it names
    the file in bronze lineage columns and in quarantine.

    Three parsers give the same rows, fastest first: the whole file goes to the bulk parser
    (:func:`ab_pipelines.events.parse_bulk.bulk_columns`: pyarrow's JSON reader and vectorized
    checks, about 2 µs a line); a file it cannot prove is taken in chunks of 32,768 lines, each
    tried in bulk, then in chunks of 4,096, each tried in bulk, then a column at a time
    (:func:`_fast_columns`, about 3.5 µs a line); a chunk with a line that does not land goes
    line by line with :func:`parse_line`, which gives each rejected line its reason.
    ``fast=False`` forces the per-line parser; the tests compare them.
    """
    text, corrupt = read_text(data, source_file.endswith(".gz"))
    window = ts_window_for(arrival_date)
    names = PARSED_SCHEMA.names
    cols: dict[str, list] = {n: [] for n in names}
    const = {"source_file": source_file, "arrival_date": arrival_date}

    def emit() -> pa.RecordBatch:
        n = len(cols["source_line"])
        for k, v in const.items():
            cols[k] = [v] * n
        batch = pa.RecordBatch.from_pydict(cols, schema=PARSED_SCHEMA)
        for k in names:
            cols[k] = []
        return batch

    def add(row: dict) -> None:
        for n in names:
            if n not in const:
                cols[n].append(row.get(n))

    def columns_batch(got: dict[str, pa.Array], start: int, n: int) -> pa.RecordBatch:
        got["source_line"] = pa.array(range(start + 1, start + n + 1), pa.int64())
        got["status"] = pa.repeat("ok", n)
        for k, v in const.items():
            got[k] = pa.repeat(pa.scalar(v, PARSED_SCHEMA.field(k).type), n)
        arrays = [got[f.name] if f.name in got else pa.nulls(n, f.type) for f in PARSED_SCHEMA]
        return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)

    def chunks(begin: int, end: int, size: int):
        return ((a, lines[a : min(a + size, end)]) for a in range(begin, end, size))

    if fast and corrupt is None and text:
        n = text.count(b"\n") + (not text.endswith(b"\n"))
        got = bulk_columns(text, n, folder_topic, window, known_variants)
        if got is not None:  # the whole file at once, the common case
            yield columns_batch(got, 0, n)
            return
    lines = split_lines(text)
    big_step = _BULK_CHUNK if fast else max(1, len(lines))
    for big_start, big in chunks(0, len(lines), big_step):
        got = _bulk(big, folder_topic, window, known_variants) if fast else None
        if got is not None:
            if cols["source_line"]:
                yield emit()
            yield columns_batch(got, big_start, len(big))
            continue
        step = _FAST_CHUNK if fast else len(big)
        for start, chunk in chunks(big_start, big_start + len(big), step):
            got = None
            if fast:  # a smaller bulk chunk, then the column-at-a-time parser
                if len(big) > len(chunk):
                    got = _bulk(chunk, folder_topic, window, known_variants)
                if got is None:
                    got = _fast_columns(chunk, folder_topic, window, known_variants)
            if got is not None:
                if cols["source_line"]:
                    yield emit()
                yield columns_batch(got, start, len(chunk))
                continue
            for i, line in enumerate(chunk, start=start + 1):
                try:
                    row = parse_line(line, folder_topic, window, known_variants)
                    row["status"], row["source_line"] = "ok", i
                except Rejected as rej:
                    raw, nbytes = _raw_text(line)
                    row = {
                        "status": "quarantined",
                        "source_line": i,
                        "reason": rej.reason,
                        "detail": rej.detail,
                        "raw": raw,
                        "raw_bytes": nbytes,
                        "topic": folder_topic,
                    }
                add(row)
                if len(cols["source_line"]) >= batch_rows:
                    yield emit()
    if corrupt is not None:
        raw, nbytes = _raw_text(corrupt.tail)
        add(
            {
                "status": "quarantined",
                "source_line": len(lines) + 1,
                "reason": "corrupt_file",
                "detail": corrupt.message,
                "raw": raw,
                "raw_bytes": nbytes,
                "topic": folder_topic,
            }
        )
    if cols["source_line"]:
        yield emit()
