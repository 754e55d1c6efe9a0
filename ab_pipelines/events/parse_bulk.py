"""The bulk parser: a chunk of dump lines parsed and validated as whole columns by pyarrow.

pyarrow's JSON reader (C++, multi-threaded, releasing the GIL) reads the chunk against the
envelope's schema; every check of :func:`ab_pipelines.events.parse.parse_line` is then one
vectorized compute call per column. It accepts only chunks it can prove it reads exactly as the
per-line parser would, and gives up (None) on anything else, leaving the chunk to the slower
paths, which find each bad line's own reason. So it never decides a rejection, and the rows it
returns are the very rows the per-line parser would give (the parity tests compare them).

What makes it give up, beyond a line that would be rejected:

- a backslash anywhere (an escape: ``\\"``, ``\\u..``, lone surrogates that orjson refuses);
- ``}{`` (Arrow would read two rows from one line), or a line that does not start with ``{``:
  a blank line (Arrow skips it) or a top-level ``null`` (it crashes pyarrow 26's reader, with
  a segmentation fault);
- ``null`` anywhere, when an object column (``attributes``, ``properties``) has keys: Arrow
  reads a JSON null and a missing key alike, and the column's JSON text must tell them apart;
- a field of the envelope or the event that the schema does not know (the ``extra`` column);
- an ``attributes`` or ``properties`` value that is not a flat object of strings, integers and
  booleans (its JSON text is rebuilt column-wise; doubles and timestamps do not round-trip);
- a timestamp outside the strict ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` form.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ab_pipelines.contracts.envelope import ENVELOPE_INT_LIMITS
from ab_pipelines.events.schema import MAX_LINE_BYTES, TOPICS

__all__ = ["bulk_columns"]

_UTC = pa.timestamp("us", tz="UTC")
# What makes a text unprovable here (see the module docstring), found with substring searches
# and numpy over the newline positions (a regex with alternatives took 270 ms a 32,768-line
# chunk; these take about 20). A control byte needs no check: where orjson refuses one (inside
# a string), Arrow fails too, and where orjson takes one as whitespace, so does Arrow.
_TWO_OBJECTS = re.compile(rb"}[ \t\r]*{")
_OPEN = ord("{")


def _unsure(text: bytes) -> bool:
    """Refuse what could read differently: an escape, or lines that are not one object each."""
    return b"\\" in text or _TWO_OBJECTS.search(text) is not None or not _lines_open_objects(text)


def _lines_open_objects(text: bytes) -> bool:
    """Every line starts with "{" (no blank line, which Arrow skips; no top-level null, which
    crashes pyarrow 26's reader) and none is over the size limit."""
    if not text:
        return False
    chars = np.frombuffer(text, np.uint8)
    ends = np.flatnonzero(chars == 10)
    starts = np.concatenate([[0], ends + 1])
    if text.endswith(b"\n"):
        starts = starts[:-1]
    if not len(starts) or (chars[starts] != _OPEN).any():
        return False
    stops = np.concatenate([ends, [len(text)]])[: len(starts)]
    return bool((stops - starts).max() <= MAX_LINE_BYTES)


_TS = (
    r"^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_KINDS = {"str": pa.string(), "int": pa.int64(), "number": pa.float64()}


def _value_type(topic: str) -> pa.StructType:
    spec = TOPICS[topic]
    fields = [pa.field(f, pa.string()) for f in spec.required]
    fields += [pa.field(f, _KINDS[k]) for f, k in spec.optional.items() if k in _KINDS]
    return pa.struct(fields)


_SCHEMAS = {
    topic: pa.schema(
        [
            ("topic", pa.string()),
            ("partition", pa.int64()),
            ("offset", pa.int64()),
            ("timestamp", pa.int64()),
            ("key", pa.string()),
            ("value", _value_type(topic)),
        ]
    )
    for topic in TOPICS
}
_ENVELOPE_LIMITS = ENVELOPE_INT_LIMITS


def bulk_columns(
    text: bytes,
    lines: int,
    folder_topic: str,
    ts_window: tuple[int, int],
    known_variants: Mapping[str, frozenset[str]],
) -> dict[str, pa.Array] | None:
    """The event columns of ``text`` (``lines`` lines joined by newlines, one may end it) if
    every line lands and the text is provable; None otherwise.

    A line of spaces, which Arrow skips, makes the row count differ from ``lines``; the only way
    to make it up, two objects on one line, is refused before reading.
    """
    spec = TOPICS.get(folder_topic)
    if spec is None or not lines:
        return None
    try:
        text.decode("utf-8")  # Arrow's JSON reader does not check the bytes of strings
    except UnicodeDecodeError:
        return None
    if _unsure(text):
        return None
    try:
        table = pj.read_json(
            io.BytesIO(text),
            read_options=pj.ReadOptions(use_threads=True, block_size=4 << 20),
            parse_options=pj.ParseOptions(
                explicit_schema=_SCHEMAS[folder_topic], unexpected_field_behavior="infer"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != lines or table.column_names != _SCHEMAS[folder_topic].names:
        return None  # a line that was not one object, or an unknown envelope field
    try:
        return _checked(table.combine_chunks(), text, spec, folder_topic, ts_window, known_variants)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, _GiveUp):
        return None


class _GiveUp(Exception):
    pass


def _require(ok) -> None:
    if not ok:
        raise _GiveUp


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask).as_py()) if len(mask) else True


def _checked(table: pa.Table, text: bytes, spec, folder_topic, ts_window, known_variants) -> dict:
    n = table.num_rows
    cols: dict[str, pa.Array] = {}
    topic = table.column("topic").chunk(0)
    _require(topic.null_count == 0 and _all(pc.equal(topic, folder_topic)))
    cols["topic"] = topic
    for key, limit in _ENVELOPE_LIMITS.items():
        arr = table.column(key).chunk(0)
        _require(arr.null_count == 0)
        low, high = pc.min_max(arr).values()
        _require(low.as_py() >= 0 and high.as_py() < limit)
        cols["kafka_" + key] = arr
    cols["kafka_timestamp"] = pc.multiply(cols["kafka_timestamp"], 1000).cast(_UTC)
    cols["kafka_key"] = table.column("key").chunk(0)

    value = table.column("value").chunk(0)
    _require(value.null_count == 0)
    known = set(spec.required) | set(spec.optional)
    _require({value.type.field(i).name for i in range(value.type.num_fields)} <= known)
    fields = {value.type.field(i).name: value.field(i) for i in range(value.type.num_fields)}
    for f in spec.required:
        arr = fields[f]
        _require(arr.null_count == 0 and not pc.any(pc.equal(arr, "")).as_py())
        if f != "ts":
            cols[f] = arr
    for f, kind in spec.optional.items():
        arr = fields.get(f)
        if kind in _KINDS:
            cols[f] = arr if arr is not None else pa.nulls(n, _KINDS[kind])
        else:
            cols[f] = _object_text(arr, n, text)
    if spec.name == "metric_events":
        number = cols["value"]
        if number.null_count < n:
            _require(_all(pc.is_finite(number.drop_null())))  # Arrow reads NaN and Infinity
        cols["value"] = pc.fill_null(number, 1.0)

    stamps = fields["ts"]
    _require(_all(pc.match_substring_regex(stamps, _TS)))
    ts = pc.cast(stamps, _UTC)
    low, high = pc.min_max(ts.cast(pa.int64())).values()
    _require(ts_window[0] <= low.as_py() and high.as_py() < ts_window[1])
    cols["ts"] = ts

    if spec.name == "exposures":
        pairs = pc.unique(
            pc.binary_join_element_wise(cols["experiment_id"], cols["variant"], "\x1f")
        )
        for pair in pairs.to_pylist():
            exp, _, variant = pair.partition("\x1f")
            _require(variant in known_variants.get(exp, ()))
    cols["extra"] = pa.nulls(n, pa.string())
    return cols


def _object_text(arr: pa.Array | None, n: int, text: bytes) -> pa.Array:
    """A flat object column as the JSON text orjson writes with sorted keys (None stays None)."""
    if arr is None or arr.type == pa.null():
        return pa.nulls(n, pa.string())
    _require(pa.types.is_struct(arr.type))
    # A null child is a missing key or an explicit null, which the text must keep: give up if
    # the chunk has a null anywhere.
    _require(arr.type.num_fields == 0 or b"null" not in text)
    # Each present key gives '"k":v,'; absent keys give ''. (Not null_handling="skip": pyarrow
    # 26 drops the rows where every input is null from its output.)
    pieces = []
    for i in sorted(range(arr.type.num_fields), key=lambda i: arr.type.field(i).name):
        name = arr.type.field(i).name
        child = arr.field(i)
        if pa.types.is_string(child.type):
            text = pc.binary_join_element_wise(f'"{name}":"', child, '",', "")
        elif pa.types.is_integer(child.type) or pa.types.is_boolean(child.type):
            text = pc.binary_join_element_wise(f'"{name}":', child.cast(pa.string()), ",", "")
        else:  # a null-typed key had only nulls; nested, a list, a double or a timestamp:
            raise _GiveUp  # not rebuilt here
        pieces.append(pc.fill_null(text, ""))
    body = pc.binary_join_element_wise(*pieces, "") if pieces else pa.array([""] * n, pa.string())
    text = pc.binary_join_element_wise("{", pc.utf8_rtrim(body, characters=","), "}", "")
    return pc.if_else(arr.is_valid(), text, pa.scalar(None, pa.string()))
