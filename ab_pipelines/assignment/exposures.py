"""Exposure sinks: where the client reports "this unit saw this variant" (CONTRACTS section 6).

``DumpExposureSink`` writes the Kafka dump format of CONTRACTS section 2, topic ``exposures``:

    raw_dir/exposures/date=YYYY-MM-DD/exposures+<partition>+<first_offset>.jsonl

one file per flush, the day being the UTC day of the flush (the arrival day). Offsets continue
across restarts: at start the sink finds the newest file of its partition and counts its lines.
A write that fails is logged once and its events stay buffered for the next flush, so a broken
disk never breaks ``assign``. The envelope, the file names and the event value come from
``ab_pipelines.contracts.envelope``, which landing reads them against.

``KafkaExposureSink`` produces the same events to the Kafka topic ``exposures`` through
``ab_pipelines.events.producer`` (confluent_kafka and orjson are imported when one is made: they
come with ``pip install 'ab-pipelines[kafka]'``).

Every sink gives an event the same value (``_event``, the contract's ``exposure_event``): an id from a per-process random prefix and
a counter, and a ``ts`` formatted from the epoch milliseconds that are also the record's
timestamp; the Kafka and file sinks format it off the caller's path.
"""

from __future__ import annotations

import atexit
import datetime as dt
import gzip
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ab_pipelines.contracts.envelope import (
    EXPOSURES,
    SDK_SOURCE,
    day_dir,
    dump_name,
    dump_name_pattern,
    envelope,
    exposure_event,
    iso_ms,
)
from ab_pipelines.events.producer import TopicProducer, next_event_id

__all__ = [
    "SOURCE",
    "TOPIC",
    "DumpExposureSink",
    "ExposureSink",
    "KafkaExposureSink",
    "ListExposureSink",
]

log = logging.getLogger("ab_pipelines.sdk")

TOPIC = EXPOSURES
SOURCE = SDK_SOURCE
_now = time.time


@runtime_checkable
class ExposureSink(Protocol):
    """Receives one call per first exposure; must not raise into ``assign`` (the client guards)."""

    def log(
        self,
        *,
        unit: str,
        user_id: str,
        experiment_id: str,
        variant: str,
        config_version: int,
        attributes: Mapping | None,
    ) -> None: ...

    def flush(self) -> None: ...


# The ``exposures`` value of CONTRACTS section 2 (also EventProducer's build for this topic).
_event = exposure_event


class ListExposureSink:
    """Keeps the exposure events in memory (``events``), for tests and the simulator."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock or time.time
        self.events: list[dict] = []

    def log(self, *, unit, user_id, experiment_id, variant, config_version, attributes) -> None:
        attrs = dict(attributes) if attributes else None
        ev = _event(
            next_event_id(),
            iso_ms(int(self.clock() * 1000)),
            (user_id, experiment_id, variant, config_version, attrs),
        )
        ev["unit"] = unit
        self.events.append(ev)

    def flush(self) -> None:
        pass


def _count_lines(path: Path) -> int:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _flush_at_exit(ref: weakref.ref) -> None:
    sink = ref()
    if sink is not None:
        sink.flush()


class DumpExposureSink:
    """Buffered writer of ``exposures`` dump files for one partition number of its own.

    Args:
        raw_dir: the raw folder (``$ABP_HOME/raw``).
        partition: this writer's partition; no two writers may share one.
        flush_every: events buffered before a file is written.
        clock: epoch seconds, for tests; defaults to ``time.time``.
        max_buffer: events kept while writes fail; the oldest are dropped beyond it (logged).
        flush_interval: seconds after which the next logged exposure flushes the buffer.
    """

    def __init__(
        self,
        raw_dir: str | Path,
        partition: int,
        flush_every: int = 1000,
        clock: Callable[[], float] | None = None,
        max_buffer: int = 1_000_000,
        flush_interval: float = 60.0,
    ) -> None:
        if partition < 0:
            raise ValueError("partition must be >= 0")
        self.raw_dir = Path(raw_dir)
        self.partition = partition
        self.flush_every = max(1, flush_every)
        self.max_buffer = max(self.flush_every, max_buffer)
        self.clock = clock or time.time
        # A quiet client still delivers within a minute, well inside late_arrival_days.
        self.flush_interval = flush_interval
        self._last_flush = self.clock()
        self._lock = threading.RLock()
        # (key, timestamp ms, event id, fields of _event): the event is built when written
        self._buffer: list[tuple[str, int, str, tuple]] = []
        self._failing = False
        self.dropped = 0
        self.next_offset = self._scan_next_offset()
        atexit.register(_flush_at_exit, weakref.ref(self))

    def _scan_next_offset(self) -> int:
        """One past the highest offset already written for this partition, or 0."""
        pattern = dump_name_pattern(TOPIC, self.partition)
        newest: tuple[int, Path] | None = None
        try:
            for day in (self.raw_dir / TOPIC).glob("date=*"):
                for f in day.iterdir():
                    m = pattern.match(f.name)
                    if m and (newest is None or int(m.group(1)) > newest[0]):
                        newest = (int(m.group(1)), f)
            return 0 if newest is None else newest[0] + _count_lines(newest[1])
        except OSError as exc:
            log.error("exposure sink %s: cannot scan for offsets (%s); starting at 0", self, exc)
            return 0

    def __repr__(self) -> str:
        return f"DumpExposureSink({str(self.raw_dir)!r}, partition={self.partition})"

    def log(self, *, unit, user_id, experiment_id, variant, config_version, attributes) -> None:
        now = self.clock()
        attrs = dict(attributes) if attributes else None
        fields = (user_id, experiment_id, variant, config_version, attrs)
        with self._lock:
            self._buffer.append((unit, int(now * 1000), next_event_id(), fields))
            if (
                len(self._buffer) >= self.flush_every
                or now - self._last_flush >= self.flush_interval
            ):
                self._last_flush = now
                self.flush()

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        """Write the buffer as one dump file; on failure log once and keep it for the next try."""
        with self._lock:
            if not self._buffer:
                return
            batch = self._buffer
            first = self.next_offset
            try:
                path = self._write(batch, first)
            except Exception as exc:  # noqa: BLE001 - a sink failure must never reach assign
                if not self._failing:
                    log.error(
                        "exposure sink %s: write failed, %d events kept for retry: %s",
                        self,
                        len(batch),
                        exc,
                    )
                self._failing = True
                if len(batch) > self.max_buffer:
                    drop = len(batch) - self.max_buffer
                    del batch[:drop]
                    self.dropped += drop
                    log.error("exposure sink %s: buffer full, dropped %d oldest events", self, drop)
                return
            if self._failing:
                log.warning("exposure sink %s: writing again (%s)", self, path.name)
            self._failing = False
            self._buffer = []
            self.next_offset = first + len(batch)

    def _write(self, batch: list[tuple[str, int, str, tuple]], first: int) -> Path:
        day = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        folder = self.raw_dir / day_dir(TOPIC, day)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, (key, ts_ms, event_id, fields) in enumerate(batch):
            env = envelope(
                TOPIC,
                self.partition,
                first + i,
                ts_ms,
                key,
                _event(event_id, iso_ms(ts_ms), fields),
            )
            # ASCII escapes, so an id holding a lone surrogate cannot break the whole batch
            lines.append(json.dumps(env, separators=(",", ":"), default=str) + "\n")
        name = dump_name(TOPIC, self.partition, first)
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
        return folder / name


class KafkaExposureSink(TopicProducer):
    """Exposures to Kafka (topic ``exposures``, key = the unit, the value of CONTRACTS section 2)
    through an idempotent producer on a thread of its own (``ab_pipelines.events.producer``).

    ``log`` only appends to a bounded queue (a few tenths of a µs, and no object the garbage
    collector tracks): it never blocks nor raises, with the broker down, unknown yet, or the
    queue full (the event is then dropped and counted). The counters (``stats()``: sent, queued,
    retried, dropped, failed) account for every exposure; ``flush`` waits for delivery and
    ``close`` stops, as at interpreter exit.

    Args:
        bootstrap: ``host:port[,...]``; default ``ABP_KAFKA_BOOTSTRAP``, else the embedded broker
            of ``home`` (``abp broker``), waited for in the background when none runs yet.
        home: ABP_HOME; default ``$ABP_HOME``.
        max_queue: exposures waiting before new ones are dropped.
        topic, settings, conf, exit_timeout: as for ``EventProducer``.

    Raises:
        KafkaSetupError: malformed Kafka settings (``ABP_KAFKA_*`` or ``conf``).

    Example::

        sink = KafkaExposureSink()
        client = Client.from_file(config_path, exposure_sink=sink)
    """

    def __init__(self, *, topic: str = TOPIC, **producer_args: Any) -> None:
        super().__init__(topic, _event, 5, **producer_args)
        self._extend = self.producer._pending.extend

    def log(self, *, unit, user_id, experiment_id, variant, config_version, attributes) -> None:
        # EventProducer.send inlined (the caller's hot path): one atomic extend of the event's
        # slots (epoch_s, key, the 5 fields of _event), no tuple left in the queue for the gc.
        producer = self.producer
        if len(producer._pending) < producer._max_slots:
            self._extend(
                (
                    _now(),
                    unit,
                    user_id,
                    experiment_id,
                    variant,
                    config_version,
                    dict(attributes) if attributes else None,
                )
            )
        else:
            producer.drop()
