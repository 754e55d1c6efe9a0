"""The sink connector (``abp connect``): Kafka topics into the raw dump files, exactly once.

A consumer group (``ABP_CONNECT_GROUP``) reads the topics and writes the layout of CONTRACTS
section 2, like Kafka Connect's S3 sink::

    $ABP_HOME/raw/<topic>/date=YYYY-MM-DD/<topic>+<partition>+<first_offset>.jsonl.gz

one envelope line per record, the date being the UTC day of the record's Kafka timestamp. Each
assigned partition has at most one open file; it is written when it holds ``max_records``
records or ``max_bytes`` bytes of JSON lines, when it has been open ``max_seconds``, when the
next record belongs to another day (a file never spans two days), when the partition is revoked
and when the connector stops.

Exactly once into files, without transactions:

- an open file is a dot-file (``.<name>.tmp``, invisible to landing) in its day's folder; it is
  written by completing its gzip stream, fsyncing it, renaming it to its name and fsyncing the
  folder, and only then are the offsets committed (synchronously);
- on every assignment, a partition's leftover temporary files are removed and it is read from
  one past the highest offset already in its files (the newest file's last line), or from the
  group's committed offset if that is further (``abp forget`` may rewrite a file without its
  last line): a crash between rename and commit neither duplicates nor loses a record, and the
  commit is repaired at once;
- while a connector owns a partition it holds ``raw/.connect/<topic>+<partition>.lock``
  (``flock``), so a member the group has already replaced cannot write that partition's files
  behind its successor's back (on one host: a raw folder shared by several hosts is not fenced);
- records already in files are skipped by offset, whatever the broker delivers again;
- the first record taken after an assignment must be the one the files end before: a record
  past it (fetched before the partition was lost and assigned again inside one consume call,
  the lost file's records in between) sends the partition back to its files' end instead of
  leaving a hole (``_take``; a real gap in the log survives three re-seeks and is accepted).

The files' offsets belong to one Kafka cluster: ``raw/.connect/cluster.json`` records its id.
When the broker is a new cluster (the embedded broker keeps its log in memory, so each start is
a new, empty one whose offsets begin at 0 again), the files already there are sealed (listed in
that file) and no longer count for the resume point, and each partition's dump offsets continue
after the highest one in its files (dump offset = broker offset + a shift recorded there), so no
file name and no (topic, partition, offset) of landing's dedupe is ever used twice; the connector
says so in its log. On a real cluster the shift is 0: the dumps' offsets are the broker's. A
connector whose broker becomes another cluster while it runs stops (KafkaSetupError) after
writing its open files; started again, it seals and shifts. A file name taken already is still
refused (DumpWriteError), never overwritten.

A record whose value is a JSON object is written with that object as the envelope's ``value``;
any other value (not JSON, not UTF-8, a JSON array, a null) is written as it came, as a string,
and landing quarantines it (``bad_json`` for text that is not JSON, ``bad_envelope`` for JSON
that is not an object, or a null, ``bad_encoding`` for bytes that are not UTF-8, which stay as
they came inside the string): nothing is dropped, and nothing is repaired into a landable event.

Settings (environment, read by :meth:`ConnectorSettings.from_env`; a malformed value is a
KafkaSetupError naming the variable):

- ``ABP_CONNECT_GROUP``: the consumer group (default ``abp-connect``);
- ``ABP_CONNECT_TOPICS``: comma-separated topics (default ``exposures,metric_events``);
- ``ABP_CONNECT_MAX_RECORDS``: records in a file before it is written (default 100000);
- ``ABP_CONNECT_MAX_BYTES``: bytes of JSON lines (before gzip) in a file (default 64 MiB);
- ``ABP_CONNECT_MAX_SECONDS``: seconds a file stays open after its first record (default 60);
- ``ABP_CONNECT_SESSION_TIMEOUT_MS``: the group session (default 1000 without
  ``ABP_KAFKA_BOOTSTRAP``, i.e. on the embedded broker; 10000 with it: Kafka brokers refuse less
  than 6000 by default); heartbeats every fifth;
- ``ABP_CONNECT_METRICS_PORT``: Prometheus metrics on ``127.0.0.1:<port>`` (default 0: off);
- ``ABP_CONNECT_GZIP_LEVEL``: 1 (fastest, the default) to 9;
- ``ABP_CONNECT_LOCK_WAIT_SECONDS``: how long an assignment waits for a partition's lock (30).

On the embedded broker (tansu 0.6.0) a group forms about ``max(1 s, session / 2)`` after a
member subscribes (23 s with librdkafka's default 45 s session), and a member killed without
leaving holds its partitions for about twice its session: hence the short default session there
(a connector restarted after SIGKILL has its partitions again ~1.3 s after its start). Static
membership (``group.instance.id``) made it slower on tansu (6 s per join), so it is not used.
tansu also holds an empty fetch for its whole wait, so the connector asks it for 50 ms
(``fetch.wait.max.ms``; ABP_KAFKA_CONF may say otherwise). Exactly once does not depend on the
group, only the time to resume does.

Metrics (prometheus_client's default registry): ``abp_connector_records_in_total`` (topic,
partition), ``abp_connector_records_out_total``, ``abp_connector_files_written_total``,
``abp_connector_bytes_written_total``, ``abp_connector_non_json_records_total`` (topic),
``abp_connector_lag`` (topic, partition: high watermark − position), ``abp_connector_errors_total``
(kind), ``abp_connector_rebalances_total`` (event).

Run it with :func:`run_connector` (``abp connect``, the demo), :func:`run_in_dagster` (a Dagster
op), or ``python -m ab_pipelines.events.connector [--home H] [--bootstrap B] [--drain SECONDS]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import re
import signal
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from ab_pipelines.contracts.envelope import dump_name
from ab_pipelines.events.dumps import day_folder
from ab_pipelines.events.kafka import (
    CONNECTOR_GROUP,
    TOPIC_NAMES,
    KafkaSettings,
    KafkaSetupError,
    check_conf,
    client_conf,
    ensure_topics,
    group_lag,
    resolve_bootstrap,
)
from ab_pipelines.settings import SetupError, env_number, paths

__all__ = [
    "ConnectorCounts",
    "ConnectorSettings",
    "DumpWriteError",
    "SinkConnector",
    "highest_offsets",
    "run_connector",
    "run_in_dagster",
]

log = logging.getLogger("ab_pipelines.connect")

_DAY_MS = 86_400_000
_EPOCH_DAY = dt.date(1970, 1, 1)
_CRASH_EXIT = 86  # the exit status of a crash planted by ABP_CONNECT_CRASH_AT (tests)
_POLL_MAX = 0.5  # seconds one consume() may wait when no file is due sooner
_BATCH = 10_000  # records asked of one consume()
_LAG_EVERY = 1.0  # seconds between two updates of the lag gauges
_CLUSTER_EVERY = 5.0  # seconds between two looks at the broker's cluster id
# How often a partition is sent back to its files' end for a first record past it (then a gap
# in the log is taken as real).
_MAX_RESEEKS = 3
_LINE = b'{"topic":%b,"partition":%d,"offset":%d,"timestamp":%d,"key":%b,"value":%b}\n'

# key -> (kind, name, help, labels); prometheus adds _total to a counter's name
_METRIC_SPECS = {
    "records_in": ("counter", "records_in", "Records consumed from Kafka.", ("topic", "partition")),
    "records_out": ("counter", "records_out", "Records in dump files written.", ("topic",)),
    "files": ("counter", "files_written", "Dump files written (renamed).", ("topic",)),
    "bytes": ("counter", "bytes_written", "Bytes (gzip) of dump files written.", ("topic",)),
    "non_json": (
        "counter",
        "non_json_records",
        "Records whose value is not a JSON object, written as a string (landing quarantines).",
        ("topic",),
    ),
    "lag": (
        "gauge",
        "lag",
        "Records after the connector's position (high watermark - position).",
        ("topic", "partition"),
    ),
    "errors": ("counter", "errors", "Errors met, by kind.", ("kind",)),
    "rebalances": ("counter", "rebalances", "Partitions assigned, revoked, lost.", ("event",)),
}
_METRICS: dict = {}
_METRICS_LOCK = threading.Lock()


def _metrics() -> dict:
    """The connector's metrics (prefix ``abp_connector_``) in prometheus_client's default
    registry, made on first use; ones registered already (this module run as ``__main__`` and
    imported too) are reused."""
    with _METRICS_LOCK:
        if not _METRICS:
            from prometheus_client import REGISTRY, Counter, Gauge

            known = REGISTRY._names_to_collectors  # noqa: SLF001 - no public lookup
            for key, (kind, name, help_, labels) in _METRIC_SPECS.items():
                name = f"abp_connector_{name}"
                cls = Counter if kind == "counter" else Gauge
                _METRICS[key] = known.get(name) or cls(name, help_, labels)
    return _METRICS


def _number(env: Mapping[str, str], var: str, default, kind: type, least: float):
    return env_number(env, var, default, kind, least, KafkaSetupError)


# ---- settings ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConnectorSettings:
    """How the connector consumes and rotates its files (the ``ABP_CONNECT_*`` variables).

    Attributes:
        group_id: the consumer group.
        topics: the topics to dump.
        max_records: records in a file before it is written.
        max_bytes: bytes of JSON lines (before gzip) in a file before it is written.
        max_seconds: seconds a file stays open after its first record.
        session_timeout_ms: the group session; None: 1000 on the embedded broker, else 10000.
        metrics_port: Prometheus metrics on 127.0.0.1 (0: off), served by :func:`run_connector`.
        gzip_level: 1 (fastest) to 9.
        lock_wait_seconds: how long an assignment waits for a partition's lock.
        crash_at: for tests (``ABP_CONNECT_CRASH_AT=before_rename:N`` or ``after_rename:N``):
            the process exits at once (status 86) at that point of its N-th file.
    """

    group_id: str = CONNECTOR_GROUP
    topics: tuple[str, ...] = TOPIC_NAMES
    max_records: int = 100_000
    max_bytes: int = 64 << 20
    max_seconds: float = 60.0
    session_timeout_ms: int | None = None
    metrics_port: int = 0
    gzip_level: int = 1
    lock_wait_seconds: float = 30.0
    crash_at: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> ConnectorSettings:
        """Read the variables (``overrides`` win); a KafkaSetupError names a malformed one."""
        env = os.environ if env is None else env
        d = cls()
        crash, crash_at = env.get("ABP_CONNECT_CRASH_AT", "").strip(), None
        if crash:
            point, _, n = crash.partition(":")
            if point not in ("before_rename", "after_rename") or not n.isdigit():
                raise KafkaSetupError(
                    f"ABP_CONNECT_CRASH_AT={crash!r} is not before_rename:N or after_rename:N."
                )
            crash_at = (point, int(n))
        topics = tuple(t.strip() for t in env.get("ABP_CONNECT_TOPICS", "").split(",") if t.strip())
        values = {
            "group_id": env.get("ABP_CONNECT_GROUP", "").strip() or d.group_id,
            "topics": topics or d.topics,
            "max_records": _number(env, "ABP_CONNECT_MAX_RECORDS", d.max_records, int, 1),
            "max_bytes": _number(env, "ABP_CONNECT_MAX_BYTES", d.max_bytes, int, 1),
            "max_seconds": _number(env, "ABP_CONNECT_MAX_SECONDS", d.max_seconds, float, 0.001),
            "session_timeout_ms": _number(env, "ABP_CONNECT_SESSION_TIMEOUT_MS", None, int, 1),
            "metrics_port": _number(env, "ABP_CONNECT_METRICS_PORT", 0, int, 0),
            "gzip_level": _number(env, "ABP_CONNECT_GZIP_LEVEL", d.gzip_level, int, 1),
            "lock_wait_seconds": _number(
                env, "ABP_CONNECT_LOCK_WAIT_SECONDS", d.lock_wait_seconds, float, 0
            ),
            "crash_at": crash_at,
            **overrides,
        }
        if not 1 <= values["gzip_level"] <= 9:
            raise KafkaSetupError(f"ABP_CONNECT_GZIP_LEVEL={values['gzip_level']} is not 1 to 9.")
        return cls(**values)


@dataclass(frozen=True)
class ConnectorCounts:
    """What one connector did since it was made: records consumed and in renamed files, files
    and their bytes, values that were not JSON objects, seconds."""

    records_in: int = 0
    records_out: int = 0
    files: int = 0
    bytes: int = 0
    non_json: int = 0
    seconds: float = 0.0


class DumpWriteError(SetupError):
    """A dump file that cannot be written (a full disk, a read-only folder, a name already
    taken); the connector stops, and resumes from the files when started again."""


_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\n", b"\\n"), (b"\r", b"\\r"))


def _as_string(value: bytes | None) -> bytes:
    """A record value that is not a JSON object, as the envelope's ``value``: a JSON string of
    its text (null for none). Bytes that are not UTF-8 stay as they came, inside the quotes
    (only quotes, backslashes and line breaks escaped): the line is then not UTF-8 and landing
    quarantines it as ``bad_encoding``. Replacing them would let a value that is JSON but for a
    bad byte land with U+FFFD in its ids."""
    if value is None:
        return b"null"
    try:
        return orjson.dumps(value.decode("utf-8"))
    except UnicodeDecodeError:
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
        return b'"' + value + b'"'


# ---- what the files hold -------------------------------------------------------------------
def _last_offset(path: Path, first: int) -> int:
    """The highest offset in a dump file: its last line that is an envelope, else ``first``
    (which its name promises); a damaged gzip gives what decompresses before the damage."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        d, parts = zlib.decompressobj(wbits=31), []
        for i in range(0, len(data), 1 << 16):
            try:
                parts.append(d.decompress(data[i : i + (1 << 16)]))
            except zlib.error as exc:
                log.warning("connector: %s is damaged (%s); reading what decompresses", path, exc)
                break
        data = b"".join(parts)
    for line in reversed(data.split(b"\n")):
        try:
            offset = orjson.loads(line).get("offset")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(offset, int) and not isinstance(offset, bool):
            return max(offset, first)
    return first


def _dump_names(raw: Path, topic: str):
    """(``date=D/name``, partition, first offset, is a temporary file, path) of every file of
    ``topic`` named by the connector's pattern."""
    pattern = re.compile(rf"^(\.?){re.escape(topic)}\+(\d+)\+(\d+)\.jsonl(?:\.gz)?(\.tmp)?$")
    topic_dir = raw / topic
    if not topic_dir.is_dir():
        return
    for day_dir in topic_dir.iterdir():
        if not day_dir.name.startswith("date=") or not day_dir.is_dir():
            continue
        with os.scandir(day_dir) as it:
            for entry in it:
                m = pattern.match(entry.name)
                if m is not None:
                    temp = bool(m.group(1) or m.group(4))
                    rel = f"{day_dir.name}/{entry.name}"
                    yield rel, int(m.group(2)), int(m.group(3)), temp, Path(entry.path)


def highest_offsets(
    raw: Path,
    topic: str,
    partitions: set[int] | None = None,
    remove_temps: bool = False,
    sealed: frozenset[str] = frozenset(),
) -> dict[int, int]:
    """The highest offset already in the dump files of each partition of ``topic`` (all days).

    Args:
        raw: the raw folder.
        topic: the topic.
        partitions: only these (default: all found).
        remove_temps: delete these partitions' temporary files (``.<name>.tmp``, left by a
            killed connector); only the partitions' owner may.
        sealed: ``date=D/name`` of files from an earlier Kafka cluster, which do not count.
    """
    newest: dict[int, tuple[int, Path]] = {}
    for rel, part, first, temp, path in _dump_names(raw, topic):
        if partitions is not None and part not in partitions:
            continue
        if temp:
            if remove_temps and path.name.startswith(".") and path.name.endswith(".tmp"):
                log.info("connector: removing the unfinished file %s", path)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        elif rel not in sealed and (part not in newest or first > newest[part][0]):
            newest[part] = (first, path)
    return {p: _last_offset(path, first) for p, (first, path) in newest.items()}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    made = [folder, *[p for p in folder.parents if not p.exists()]]
    folder.mkdir(parents=True, exist_ok=True)
    for f in made:  # each new folder's name is durable in its parent
        _fsync_dir(f.parent)


def _write_json(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(value))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class _OpenFile:
    """One partition's file being filled: a gzip stream into ``.<name>.tmp`` in its day."""

    __slots__ = ("topic", "partition", "day", "first", "last", "records", "size", "deadline")
    __slots__ += ("final", "tmp", "pending", "_fh", "_zip")

    def __init__(self, raw, topic, partition, day_no, first, deadline, level) -> None:
        self.topic, self.partition, self.day, self.first = topic, partition, day_no, first
        self.last, self.records, self.size, self.deadline = first, 0, 0, deadline
        folder = day_folder(raw, topic, _EPOCH_DAY + dt.timedelta(days=day_no))
        _ensure_folder(folder)
        name = dump_name(topic, partition, first, gzipped=True)
        self.final, self.tmp = folder / name, folder / f".{name}.tmp"
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by finish() or discard()
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: a gzip stream
        self.pending: list[bytes] = []  # lines not yet compressed (see spill)

    def spill(self) -> None:
        """Compress the lines added since the last spill into the temporary file."""
        if self.pending:
            self._fh.write(self._zip.compress(b"".join(self.pending)))
            self.pending.clear()

    def finish(self) -> int:
        """Complete the gzip stream, fsync and close; the file's size."""
        self.spill()
        self._fh.write(self._zip.flush())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        size = self._fh.tell()
        self._fh.close()
        return size

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


class _Owned:
    """A partition this member owns: its lock, the next offset it takes, its open file, and
    whether it has taken a record since it was assigned (``fresh`` until then; ``reseeks``: how
    often a record past ``next_offset`` sent it back there, see ``SinkConnector._take``)."""

    __slots__ = ("lock_fd", "next_offset", "file", "taken", "fresh", "reseeks")

    def __init__(self, lock_fd: int, next_offset: int) -> None:
        self.lock_fd, self.next_offset, self.file, self.taken = lock_fd, next_offset, None, 0
        self.fresh, self.reseeks = True, 0


# ---- the connector -------------------------------------------------------------------------
class SinkConnector:
    """A member of the connector's consumer group, writing its partitions' dump files.

    Args:
        home: the ABP_HOME whose ``raw`` folder receives the files (default ``$ABP_HOME``).
        bootstrap: ``host:port[,...]``; default ``ABP_KAFKA_BOOTSTRAP`` or the embedded broker
            recorded for ``home``.
        settings: default ``ConnectorSettings.from_env()``.
        kafka: default ``KafkaSettings.from_env()``.

    Use it as a context manager (or call :meth:`close`): closing writes the open files, commits
    and leaves the group, so its partitions pass to another member at once.

    Example::

        with SinkConnector(home) as connector:
            counts = connector.drain(timeout=60)
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        bootstrap: str | None = None,
        settings: ConnectorSettings | None = None,
        kafka: KafkaSettings | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.kafka = kafka if kafka is not None else KafkaSettings.from_env()
        self.settings = settings if settings is not None else ConnectorSettings.from_env()
        self.raw = paths(home).raw
        self.bootstrap = bootstrap or resolve_bootstrap(paths(home).home, self.kafka)
        session = self.settings.session_timeout_ms or (1000 if self.kafka.embedded else 10_000)
        # tansu holds an empty fetch for its whole wait, even when records arrive meanwhile
        fetch_wait = {"fetch.wait.max.ms": 50} if self.kafka.embedded else {}
        conf = client_conf(
            self.bootstrap,
            self.kafka,
            **{
                "group.id": self.settings.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": session,
                "heartbeat.interval.ms": max(100, session // 5),
                "error_cb": self._on_error,
                **{k: v for k, v in fetch_wait.items() if k not in self.kafka.conf},
            },
        )
        check_conf(conf)
        ensure_topics(self.bootstrap, self.kafka, self.settings.topics)
        self._state = self.raw / ".connect"
        _ensure_folder(self._state)
        self._owned: dict[tuple[str, int], _Owned] = {}
        self._full: list[_OpenFile] = []  # finished by count, bytes or day; not yet written
        self._broken: DumpWriteError | None = None
        self._crash_count = 0
        self._rebalances = 0  # rebalance callbacks served so far (see step)
        self._counts = dict.fromkeys(("records_in", "records_out", "files", "bytes", "non_json"), 0)
        self._started = time.monotonic()
        self._next_lag = 0.0
        self._next_cluster_check = time.monotonic() + _CLUSTER_EVERY
        self._closed = False
        self._consumer = Consumer(conf)
        try:
            self._cluster, self._sealed, self._bases = self._check_cluster()
            self._consumer.subscribe(
                list(self.settings.topics),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        except BaseException:
            self._consumer.close()
            raise

    # ---- public ----------------------------------------------------------------------------
    @property
    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns now."""
        return set(self._owned)

    def counts(self) -> ConnectorCounts:
        return ConnectorCounts(**self._counts, seconds=time.monotonic() - self._started)

    def run(self, stop: threading.Event | None = None) -> ConnectorCounts:
        """Consume and write until ``stop`` is set, then write the open files and commit (the
        group is left by :meth:`close`)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.step()
        self.write_all()
        return self.counts()

    def step(self, max_wait: float = _POLL_MAX) -> int:
        """One consume call (at most ``max_wait`` seconds, less when a file is due sooner), its
        records into the open files, the files due written and committed; the records taken."""
        if self._broken is not None:
            raise self._broken
        now = time.monotonic()
        due_at = min((o.file.deadline for o in self._owned.values() if o.file), default=now + 60)
        # consume(n, t) waits for n records or t: wait for the first record only, then take what
        # is there, so a record is not held back while a batch fills
        consume = self._consumer.consume
        msgs = consume(_BATCH, 0) or consume(1, max(0.0, min(max_wait, due_at - now)))
        if len(msgs) == 1:
            seen = self._rebalances
            more = consume(_BATCH - 1, 0)
            # A rebalance served inside that call (revoke, lost, assign) makes the record got
            # before it stale: after a lost partition is assigned again from its files, taking it
            # first would skip the records between the files' end and it. Dropped, it is read
            # again by whoever owns its partition now.
            msgs = more if self._rebalances != seen else msgs + more
        taken = self._take(msgs) if msgs else 0
        now = time.monotonic()
        due = [o.file for o in self._owned.values() if o.file and o.file.deadline <= now]
        for f in due:
            self._owned[(f.topic, f.partition)].file = None
        files, self._full = self._full + due, []
        self._write(files)
        if now >= self._next_lag:
            self._next_lag = now + _LAG_EVERY
            self._update_lag()
        if now >= self._next_cluster_check:
            self._next_cluster_check = now + _CLUSTER_EVERY
            self._same_cluster()
        return taken

    def write_all(self) -> None:
        """Write every open file now, and commit."""
        files = self._full + [o.file for o in self._owned.values() if o.file]
        self._full = []
        for o in self._owned.values():
            o.file = None
        self._write(files)

    def drain(self, timeout: float = 120.0) -> ConnectorCounts:
        """Consume until every partition of the topics is in files up to its high watermark of
        when ``drain`` began, as the group's committed offsets show (so other members'
        partitions count too); write the open files; return the counts.

        Raises:
            TimeoutError: naming the partitions still behind after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        # A fetch's high watermark, not ListOffsets': tansu 0.6 answers "latest" short of the end.
        lag = group_lag(
            self.bootstrap, self.kafka, self.settings.group_id, self.settings.topics, timeout
        )
        behind = {tp: at + lag.records[tp] for tp, at in lag.committed.items() if lag.records[tp]}
        next_check = 0.0
        while behind and time.monotonic() < deadline:
            self.step(max_wait=0.2)
            if any(self._position(tp) < behind[tp] for tp in self._owned if tp in behind):
                continue
            if time.monotonic() < next_check:
                continue
            next_check = time.monotonic() + 0.25
            self.write_all()
            self._commit({tp: self._position(tp) for tp in self._owned})
            behind = self._behind(behind)
        if behind:
            raise TimeoutError(
                f"the connector did not drain in {timeout:g} s: "
                + ", ".join(f"{t}[{p}] committed below {h}" for (t, p), h in sorted(behind.items()))
            )
        self.write_all()
        return self.counts()

    def close(self) -> None:
        """Write the open files, commit, release the locks and leave the group."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._broken is None:
                self.write_all()
        finally:
            for tp in list(self._owned):
                self._release(tp)
            self._consumer.close()

    def __enter__(self) -> SinkConnector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- records into files ----------------------------------------------------------------
    def _take(self, msgs) -> int:
        owned, full, s, raw, bases = self._owned, self._full, self.settings, self.raw, self._bases
        loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
        line_of = _LINE.__mod__
        topics: dict[str, bytes] = {}
        touched: dict[tuple[str, int], _Owned] = {}
        non_json: dict[str, int] = {}
        stale: set[tuple[str, int]] = set()
        for m in msgs:
            err = m.error()
            if err is not None:
                self._count_error("consume", err.str())
                continue
            tp = (topic, part) = (m.topic(), m.partition())
            o = owned.get(tp)
            offset = m.offset()
            if o is None or offset < o.next_offset:
                continue  # not ours (any more), or in files already
            if o.fresh and offset > o.next_offset and o.reseeks < _MAX_RESEEKS:
                # The first record since the partition was assigned lies past where its files
                # end: fetched before a loss and a new assignment served inside the same
                # consume call (the lost partition's unwritten records, dropped by _on_lost,
                # sit in between). Taking it would leave those records out of every file for
                # good (seen once: 130 records missing after SIGKILLs on a loaded machine).
                # Read the partition again from its files' end; a real gap in the log (a
                # transaction marker, compaction) survives the re-seek and is then accepted.
                stale.add(tp)
                continue
            o.fresh = False
            kind, ts = m.timestamp()
            if kind == 0 or ts < 0:  # no timestamp: the arrival time
                ts = int(time.time() * 1000)
            key, value = m.key(), m.value()
            key = b"null" if key is None else dumps(key.decode("utf-8", "replace"))
            try:
                obj = loads(value) if value is not None else None
            except decode_error:
                obj = None
            if type(obj) is dict:
                if b"\n" in value:  # pretty-printed: one line, please
                    value = dumps(obj)
            else:  # as it came, a string, for landing to quarantine
                value = _as_string(value)
                non_json[topic] = non_json.get(topic, 0) + 1
            name = topics.get(topic) or topics.setdefault(topic, dumps(topic))
            shown = offset + bases.get(tp, 0)  # the dump's offset (see _check_cluster)
            line = line_of((name, part, shown, ts, key, value))
            day = ts // _DAY_MS
            f = o.file
            if f is None or f.day != day:  # a file never spans two days
                if f is not None:
                    full.append(f)
                deadline = time.monotonic() + s.max_seconds
                f = o.file = _OpenFile(raw, topic, part, day, shown, deadline, s.gzip_level)
            f.pending.append(line)
            f.last = offset
            f.records += 1
            f.size += len(line)
            o.next_offset = offset + 1
            o.taken += 1
            touched[tp] = o
            if f.records >= s.max_records or f.size >= s.max_bytes:
                full.append(f)
                o.file = None
        if stale:
            self._reseek(stale)
        for f in full:
            f.spill()
        taken = 0
        for (topic, part), o in touched.items():
            if o.file is not None:
                o.file.spill()
            _metrics()["records_in"].labels(topic, str(part)).inc(o.taken)
            taken += o.taken
            o.taken = 0
        for topic, n in non_json.items():
            _metrics()["non_json"].labels(topic).inc(n)
            self._counts["non_json"] += n
        self._counts["records_in"] += taken
        return taken

    def _reseek(self, partitions: set[tuple[str, int]]) -> None:
        """Fetch ``partitions`` again from their next offset (see ``_take``)."""
        from confluent_kafka import KafkaException, TopicPartition

        for tp in sorted(partitions):
            o = self._owned[tp]
            o.reseeks += 1
            log.warning(
                "connector: %s[%d] delivered a record past its files' end (offset %d expected "
                "first) after an assignment: reading it again from there",
                *tp,
                o.next_offset,
            )
            try:
                self._consumer.seek(TopicPartition(*tp, o.next_offset))
            except KafkaException as exc:  # not fetching yet: assign every partition anew
                self._count_error("seek", exc.args[0].str())
                self._consumer.assign(
                    [TopicPartition(t, p, x.next_offset) for (t, p), x in self._owned.items()]
                )

    def _write(self, files: list[_OpenFile]) -> None:
        """Finish, rename and fsync ``files`` (in offset order within a partition), then commit
        their partitions' ends.

        A file that cannot be written stops the connector with a DumpWriteError after dropping
        every file not yet renamed, so nothing after it is written: the next start reads its
        partition again from that file's first offset."""
        if not files:
            return
        ends: dict[tuple[str, int], int] = {}
        for i, f in enumerate(files):
            try:
                self._crash_point("before_rename", count=True)
                size = f.finish()
                if f.final.exists():
                    raise FileExistsError(
                        f"{f.final.name} exists already (from an earlier Kafka cluster? see "
                        f"{self._state / 'cluster.json'})"
                    )
                os.rename(f.tmp, f.final)
                _fsync_dir(f.final.parent)
            except OSError as exc:
                self._count_error("write", exc)
                self._broken = DumpWriteError(
                    f"the sink connector cannot write {f.final} ({exc}); fix that and start it "
                    "again: it resumes from the files already written."
                )
                for g in files[i:] + [o.file for o in self._owned.values() if o.file]:
                    g.discard()
                for o in self._owned.values():
                    o.file = None
                self._commit(ends)
                raise self._broken from exc
            self._crash_point("after_rename")
            ends[(f.topic, f.partition)] = f.last + 1
            for key, n in (("records_out", f.records), ("files", 1), ("bytes", size)):
                self._counts[key] += n
                _metrics()[key].labels(f.topic).inc(n)
        self._commit(ends)

    def _crash_point(self, point: str, count: bool = False) -> None:
        crash = self.settings.crash_at
        if crash is None:
            return
        self._crash_count += count
        if crash == (point, self._crash_count):
            log.error("connector: crashing %s of file %d (ABP_CONNECT_CRASH_AT)", point, crash[1])
            logging.shutdown()
            os._exit(_CRASH_EXIT)

    # ---- offsets ---------------------------------------------------------------------------
    def _commit(self, ends: Mapping[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items() if o >= 0]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # the files are the truth: the next owner reads them
            self._count_error("commit", exc.args[0].str())

    def _position(self, tp: tuple[str, int]) -> int:
        from confluent_kafka import TopicPartition

        o = self._owned.get(tp)
        (pos,) = self._consumer.position([TopicPartition(*tp)])
        return max(o.next_offset if o else -1, pos.offset)

    def _behind(self, targets: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            got = self._consumer.committed([TopicPartition(*tp) for tp in targets], timeout=5)
        except KafkaException as exc:
            self._count_error("committed", exc.args[0].str())
            return dict(targets)
        return {
            (tp.topic, tp.partition): targets[(tp.topic, tp.partition)]
            for tp in got
            if tp.offset < targets[(tp.topic, tp.partition)]
        }

    def _update_lag(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        for tp in self._owned:
            try:  # the last fetch's high watermark (ListOffsets' is short on tansu 0.6)
                _, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                continue
            if high is not None and high >= 0:
                _metrics()["lag"].labels(tp[0], str(tp[1])).set(max(0, high - self._position(tp)))

    def _count_error(self, kind: str, what) -> None:
        _metrics()["errors"].labels(kind).inc()
        log.warning("connector: %s error: %s", kind, what)

    def _on_error(self, err) -> None:  # client-level errors (a broker down ...), in consume()
        self._count_error("kafka", err.str())
        if err.fatal():
            raise KafkaSetupError(f"the Kafka consumer failed for good: {err.str()}")

    # ---- the cluster the offsets belong to -------------------------------------------------
    def _cluster_id(self) -> str:
        return self._consumer.list_topics(timeout=10).cluster_id or ""

    def _same_cluster(self) -> None:
        """Stop (KafkaSetupError) if the broker became another cluster while we ran: its offsets
        start again, so the resume point must be found again, by a new start."""
        from confluent_kafka import KafkaException

        try:
            now = self._cluster_id()
        except KafkaException:
            return  # the broker is away: librdkafka retries, the next look tells
        if now != self._cluster:
            raise KafkaSetupError(
                f"Kafka at {self.bootstrap} became cluster {now} (it was {self._cluster}): a "
                "restarted embedded broker is a new, empty log. Start the connector again: it "
                "seals the files of the old cluster and reads the new one from its start."
            )

    def _check_cluster(
        self,
    ) -> tuple[str, dict[str, frozenset[str]], dict[tuple[str, int], int]]:
        """Record the cluster id; on a new cluster, seal the files already there and shift the
        new cluster's offsets past theirs. The id, the sealed files (``date=D/name``) of each
        topic, and each partition's shift.

        A new cluster's offsets begin at 0 again; written as they are, they would take names
        of files already there and, worse, repeat (topic, partition, offset) triples that
        landing has seen, which it would drop as duplicates. So the dump offsets of a partition
        continue after the highest one already in its files: dump offset = broker offset +
        shift, the shift fixed when the cluster is first seen (0 on the first cluster, so on a
        real cluster the dumps' offsets are the broker's)."""
        cluster = self._cluster_id()
        path = self._state / "cluster.json"
        fd = os.open(self._state / "cluster.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                state = orjson.loads(path.read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                # The first start in this raw folder: files already there were written by
                # someone else (the simulator, a file sink, an older connector): sealed and
                # shifted past, like a previous cluster's.
                state = {"cluster_id": None, "sealed": {}, "shifts": {}}
            if state.get("cluster_id") != cluster:
                sealed = state.get("sealed", {})
                shifts: dict[str, dict[str, int]] = {}
                for topic in self.settings.topics:
                    names = {rel for rel, *_, temp, _ in _dump_names(self.raw, topic) if not temp}
                    sealed[topic] = sorted(names | set(sealed.get(topic, ())))
                    highest = highest_offsets(self.raw, topic)  # every file, sealed ones too
                    shifts[topic] = {str(p): off + 1 for p, off in highest.items()}
                if any(sealed.values()):
                    log.warning(
                        "connector: Kafka at %s is cluster %s, not the one whose offsets the "
                        "dump files hold (%s; a restarted embedded broker starts a new, empty "
                        "log); those files are sealed in %s, the topics are read from the "
                        "group's offsets or the start, and each partition's dump offsets "
                        "continue after the files' (shifts %s)",
                        self.bootstrap,
                        cluster,
                        state.get("cluster_id") or "files not written by this connector",
                        path,
                        shifts,
                    )
                state = {"cluster_id": cluster, "sealed": sealed, "shifts": shifts}
                _write_json(path, state)
        finally:
            os.close(fd)
        bases = {
            (t, int(p)): n for t, per in state.get("shifts", {}).items() for p, n in per.items()
        }
        return cluster, {t: frozenset(rels) for t, rels in state.get("sealed", {}).items()}, bases

    # ---- rebalances ------------------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        """Lock each new partition, remove its temporary files, and read it from one past the
        highest offset in its files (or from the committed offset, if further)."""
        self._rebalances += 1
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        if self._closed:  # an assignment served while leaving the group: not taken
            return
        _metrics()["rebalances"].labels("assign").inc()
        new = [(tp.topic, tp.partition) for tp in partitions]
        new = [tp for tp in new if tp not in self._owned]
        self._same_cluster()
        fds: dict[tuple[str, int], int] = {}
        try:
            for tp in new:
                fds[tp] = self._lock(tp)
            starts = self._starts(consumer, new)
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            raise
        for tp, nxt in starts.items():
            self._owned[tp] = _Owned(fds[tp], nxt)
            log.info("connector: assigned %s[%d] from offset %d", *tp, nxt)
        consumer.assign(
            [
                TopicPartition(t, p, o.next_offset or OFFSET_BEGINNING)
                for (t, p), o in self._owned.items()
            ]
        )

    def _starts(self, consumer, new: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset of each newly assigned partition; where the committed offset is
        behind the files (a crash between rename and commit), it is committed now."""
        from confluent_kafka import TopicPartition

        on_disk: dict[tuple[str, int], int] = {}
        for topic in {t for t, _ in new}:
            parts = {p for t, p in new if t == topic}
            sealed = self._sealed.get(topic, frozenset())
            found = highest_offsets(self.raw, topic, parts, remove_temps=True, sealed=sealed)
            on_disk.update(
                {(topic, p): off + 1 - self._bases.get((topic, p), 0) for p, off in found.items()}
            )
        committed = {
            (tp.topic, tp.partition): tp.offset
            for tp in consumer.committed([TopicPartition(*tp) for tp in new], timeout=10)
        }
        starts = {tp: max(on_disk.get(tp, 0), committed.get(tp, -1), 0) for tp in new}
        self._commit({tp: n for tp, n in starts.items() if n > committed.get(tp, -1) and n > 0})
        return starts

    def _on_revoke(self, consumer, partitions) -> None:
        """Write the revoked partitions' files and commit, then let them go."""
        self._rebalances += 1
        _metrics()["rebalances"].labels("revoke").inc()
        gone = {(tp.topic, tp.partition) for tp in partitions} & set(self._owned)
        files = [f for f in self._full if (f.topic, f.partition) in gone]
        files += [self._owned[tp].file for tp in gone if self._owned[tp].file]
        self._full = [f for f in self._full if (f.topic, f.partition) not in gone]
        for tp in gone:
            self._owned[tp].file = None
        try:
            self._write(files)
        finally:
            for tp in gone:
                self._release(tp)

    def _on_lost(self, consumer, partitions) -> None:
        """The group gave the partitions away already: drop their unwritten files (the new
        owner reads those records again, after the files), then let them go."""
        self._rebalances += 1
        _metrics()["rebalances"].labels("lost").inc()
        gone = {(tp.topic, tp.partition) for tp in partitions} & set(self._owned)
        for f in [f for f in self._full if (f.topic, f.partition) in gone]:
            f.discard()
            self._full.remove(f)
        for tp in gone:
            self._release(tp)

    def _lock(self, tp: tuple[str, int]) -> int:
        path = self._state / f"{tp[0]}+{tp[1]}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.settings.lock_wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise KafkaSetupError(
                    f"partition {tp[1]} of {tp[0]} is being written by another process (pid "
                    f"{holder} holds {path}): is a connector of another group writing "
                    f"{self.raw}? Stop it, or give this one another ABP_HOME."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd

    def _release(self, tp: tuple[str, int]) -> None:
        """Let a partition go: its unwritten file is dropped, its lock released."""
        o = self._owned.pop(tp, None)
        if o is None:
            return
        if o.file is not None:
            o.file.discard()
        with contextlib.suppress(KeyError):
            _metrics()["lag"].remove(tp[0], str(tp[1]))
        os.close(o.lock_fd)


# ---- running it ----------------------------------------------------------------------------
def run_connector(
    home: str | os.PathLike | None = None,
    bootstrap: str | None = None,
    settings: ConnectorSettings | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    drain: float | None = None,
) -> ConnectorCounts:
    """Run a connector until SIGTERM or SIGINT (or ``stop``), then close it cleanly: its open
    files written, offsets committed, the group left.

    Args:
        home: the ABP_HOME (default ``$ABP_HOME``).
        bootstrap: Kafka servers (default ``ABP_KAFKA_BOOTSTRAP`` or the embedded broker).
        settings: default ``ConnectorSettings.from_env()``; its ``metrics_port`` is served.
        stop: an event that stops it when set (from another thread).
        handle_signals: SIGTERM and SIGINT set ``stop`` (in the main thread only; the previous
            handlers are put back on return).
        drain: instead of running until stopped, drain (within this many seconds) and return.
    """
    settings = settings or ConnectorSettings.from_env()
    stop = stop or threading.Event()
    previous = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    server = None
    try:
        if settings.metrics_port:
            from prometheus_client import start_http_server

            server, _ = start_http_server(settings.metrics_port, addr="127.0.0.1")
        with SinkConnector(home, bootstrap, settings) as connector:
            return connector.drain(drain) if drain is not None else connector.run(stop)
    finally:
        if server is not None:
            server.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_in_dagster(
    home: str | os.PathLike | None = None,
    drain: bool = True,
    group: str = CONNECTOR_GROUP,
    timeout: float = 600.0,
) -> dict:
    """The connector as a Dagster op's work: drain (``timeout`` seconds) or run until the run
    is terminated (SIGTERM/SIGINT: the open files are written and committed first); the counts
    as a JSON-able dict for the op's metadata."""
    settings = ConnectorSettings.from_env(group_id=group)
    counts = run_connector(home, settings=settings, drain=timeout if drain else None)
    return {**dataclasses.asdict(counts), "group": group, "drained": drain}


def main(argv: list[str] | None = None) -> int:
    """``python -m ab_pipelines.events.connector [--home H] [--bootstrap B] [--drain SECONDS]``:
    run (or drain) one connector; the counts are printed as JSON at the end."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ab_pipelines.events.connector")
    parser.add_argument("--home", default=None, help="ABP_HOME (default $ABP_HOME)")
    parser.add_argument("--bootstrap", default=None, help="Kafka servers (host:port[,...])")
    parser.add_argument("--drain", type=float, default=None, help="drain within SECONDS, exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("ab_pipelines.kafka").setLevel(logging.WARNING)
    counts = run_connector(args.home, args.bootstrap, drain=args.drain)
    print(json.dumps(dataclasses.asdict(counts)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
