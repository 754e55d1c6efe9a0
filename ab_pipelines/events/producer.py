"""The SDK's Kafka producer: one delivery core for the topics ``exposures`` and ``metric_events``.

The caller's side is an append to a bounded in-memory queue: the epoch time, the record key and
the event's fields, nothing else (a few tenths of a µs). The queue holds them flat, ``2 + fields``
slots per event put in by one atomic ``deque.extend``, so that a queued event is no object the
garbage collector tracks: the callers' appends never trigger a collection, whose pause would land
on a caller (with a tuple per waiting event: one collection every few hundred calls, tens of µs
each, and a full one now and then over the whole queue). A daemon thread does the rest: it gives
each event its id, formats its ISO ``ts``, serializes it (orjson) and hands it to an idempotent
producer (``enable.idempotence``, ``acks=all``), whose record timestamp is the event time in
milliseconds, so a connector files each record by its day. Nothing on the caller's side blocks or raises:

- no broker yet (``ABP_KAFKA_BOOTSTRAP`` unset and no embedded broker of ``ABP_HOME`` running):
  events queue, the thread looks again every second, and delivers once a broker appears;
- the broker is down or the topic is missing: the Kafka client keeps retrying; a record it gives
  up on (a timeout, a purge) is queued again and counted in ``retried``;
- the queue is full (``max_queue`` events waiting): the new event is dropped and counted in
  ``dropped``, with a warning at most once a minute;
- a record Kafka refuses for good (too large, invalid) or that cannot be serialized is counted in
  ``failed`` and logged; so are the events still undelivered when ``close`` ends (at exit too).

So every accepted event is either ``sent`` (acknowledged by all in-sync replicas), still
``queued``, or ``failed``: ``accepted == sent + queued + failed`` at any moment. Delivery is
at least once: a record that timed out may have reached the broker before it is sent again, with
the same ``event_id``, by which landing drops the copy (CONTRACTS section 2).

Memory: at most ``max_queue`` events wait in the SDK's queue, and as many again inside the Kafka
client (``queue.buffering.max.messages``). ``flush(timeout)`` waits for delivery and returns how
many events are still undelivered; ``close()`` flushes and stops; both happen at interpreter exit.
The counters are in ``stats()`` and, where ``prometheus_client`` is installed, in its default
registry as ``abp_producer_{sent,retried,dropped,failed}_total`` and ``abp_producer_queued``,
labelled by topic.

Event ids are a random prefix (64 bits, drawn per producer, and per process for the file sinks'
``next_event_id``) and a counter, so an id costs no uuid4; timestamps are formatted from a
per-second cache. A forked child (a pre-forking web server) starts with an empty queue, new
prefixes and a Kafka client of its own: the parent delivers what was queued before the fork. A
child that ends with ``os._exit`` (multiprocessing's workers) must call ``close()`` itself.
librdkafka's own log lines go to the logger ``ab_pipelines.kafka``, each kind at most once a
minute.

Stdlib only at import time (``confluent_kafka``, ``orjson`` and ``prometheus_client`` are imported
when a producer is made), so ``ab_pipelines.assignment`` imports this module cheaply.

Example::

    from ab_pipelines.events.producer import Tracker
    tracker = Tracker()                      # ABP_KAFKA_BOOTSTRAP or the embedded broker
    tracker.track("user-42", "purchase", 19.99, {"currency": "EUR"})
"""

from __future__ import annotations

import atexit
import datetime as dt
import itertools
import json
import logging
import math
import numbers
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ab_pipelines.contracts.envelope import METRIC_EVENTS, MS_SUFFIX, iso_ms, metric_event
from ab_pipelines.contracts.envelope import second_stamp as _second_stamp
from ab_pipelines.events.kafka import (
    BOOTSTRAP_ENV,
    KafkaSettings,
    KafkaSetupError,
    client_conf,
    running_broker,
)

__all__ = [
    "METRIC_TOPIC",
    "EventProducer",
    "TopicProducer",
    "Tracker",
    "iso_ms",
    "metric_event",
    "next_event_id",
]

log = logging.getLogger("ab_pipelines.sdk")

METRIC_TOPIC = METRIC_EVENTS
# What a producer needs beyond the SDK's own dependencies, and how to get it.
KAFKA_EXTRA_HINT = "pip install 'ab-pipelines[kafka]'"
LOG_EVERY = 60.0  # seconds between two log lines about the same trouble
RESOLVE_EVERY = 1.0  # seconds between two looks for a broker when none is known
IDLE_POLL = 0.02  # seconds the thread waits for delivery reports when the queue is empty
PUMP_BATCH = 20_000  # records moved into the client between two polls for delivery reports

# librdkafka settings of every SDK producer; ABP_KAFKA_CONF and ``conf`` come after them.
PRODUCER_DEFAULTS = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 10,
    # Only failures are reported back: a success is counted from the client's own queue length,
    # which saves a Python callback per record on the thread that shares the caller's GIL.
    "delivery.report.only.error": True,
    "partitioner": "murmur2_random",  # the Java client's partitioning, so keys agree
    "allow.auto.create.topics": False,  # topics come from ensure_topics, with their partitions
    "reconnect.backoff.max.ms": 1000,  # a broker that comes back is found within a second
}

# Delivery errors about the record itself: sending it again cannot help.
_PERMANENT = frozenset({2, 4, 10, 18, 87, -199, -186})  # INVALID_MSG(_SIZE), MSG_SIZE_TOO_LARGE,
# RECORD_LIST_TOO_LARGE, INVALID_RECORD, _BAD_MSG, _INVALID_ARG
_FATAL = -150
_now = time.time
_popleft = deque.popleft


# ---- event ids and timestamps --------------------------------------------------------------
def _new_id_prefix() -> None:
    global _id_prefix, _next_seq
    _id_prefix = secrets.token_hex(8) + "-"  # 64 random bits per process
    _next_seq = itertools.count(1).__next__  # atomic under the GIL


_id_prefix = ""
_next_seq: Callable[[], int] = itertools.count(1).__next__
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


def next_event_id() -> str:
    """A new event id, unique across processes: ``<16 random hex digits>-<counter>``."""
    return f"{_id_prefix}{_next_seq()}"


# ---- prometheus ----------------------------------------------------------------------------
_metrics_lock = threading.Lock()
_metrics: dict | None = None


def _prometheus() -> dict:
    """The producers' counters in prometheus_client's default registry ({} without it)."""
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            try:
                from prometheus_client import Counter, Gauge
            except ImportError:
                _metrics = {}
                return _metrics
            helps = {
                "sent": "Events acknowledged by Kafka (acks=all).",
                "retried": "Records queued again after a delivery error.",
                "dropped": "Events refused because the producer's queue was full or closed.",
                "failed": "Events given up: refused by Kafka, unserializable, or undelivered "
                "at close.",
            }
            _metrics = {k: Counter(f"abp_producer_{k}", h, ["topic"]) for k, h in helps.items()}
            _metrics["queued"] = Gauge(
                "abp_producer_queued", "Events accepted and not yet sent or failed.", ["topic"]
            )
        return _metrics


# ---- the producer --------------------------------------------------------------------------
_live: weakref.WeakSet[EventProducer] = weakref.WeakSet()
_forked_clients: list = []  # librdkafka handles inherited by a forked child: never destroyed


def _after_fork_in_child() -> None:
    for producer in list(_live):
        producer._restart_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Every:
    """True at most once per ``seconds`` (the first time at once): rate-limited log lines."""

    def __init__(self, seconds: float = LOG_EVERY) -> None:
        self.seconds = seconds
        self.last = -math.inf

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False


class _QuietLogger:
    """librdkafka's log lines to the logger ``ab_pipelines.kafka``, each kind (level and
    facility, e.g. FAIL for a refused connection) at most once a minute, with how many were
    left out: a broker that is down for an hour is a few dozen lines, not thousands."""

    def __init__(self) -> None:
        self._logger = logging.getLogger("ab_pipelines.kafka")
        self._kinds: dict[tuple[int, str], list] = {}  # kind -> [last time, left out]

    def log(self, level: int, fmt: str, *args) -> None:
        fac = str(args[0]) if args else ""
        seen = self._kinds.setdefault((level, fac), [-math.inf, 0])
        now = time.monotonic()
        if now - seen[0] < LOG_EVERY:
            seen[1] += 1
            return
        if seen[1]:
            fmt += f" ({seen[1]} more like it in the last minute)"
        seen[0], seen[1] = now, 0
        self._logger.log(level, fmt, *args)


class EventProducer:
    """Delivers events of one topic to Kafka from a daemon thread; ``send`` never blocks.

    Args:
        topic: the Kafka topic (``exposures`` or ``metric_events``).
        build: ``build(event_id, ts, fields) -> dict``, the event value from what ``send`` was
            given (``ts`` is the ISO time); runs on the producer's thread.
        fields: how many fields every event has (``len(fields)`` of each ``send``).
        bootstrap: ``host:port[,...]``; default ``ABP_KAFKA_BOOTSTRAP``, else the embedded
            broker recorded for ``home`` (looked for every second until one runs).
        home: the ABP_HOME whose embedded broker to use; default ``$ABP_HOME``.
        settings: KafkaSettings; default ``KafkaSettings.from_env()``.
        max_queue: events waiting before new ones are dropped (and counted).
        conf: librdkafka settings over ``PRODUCER_DEFAULTS`` and ``ABP_KAFKA_CONF``.
        exit_timeout: seconds spent delivering at interpreter exit.

    Raises:
        KafkaSetupError: a malformed ``ABP_KAFKA_*`` variable or a setting librdkafka refuses
            (at construction only; a missing broker is not an error).
    """

    def __init__(
        self,
        topic: str,
        build: Callable[[str, str, tuple], dict],
        *,
        fields: int,
        bootstrap: str | None = None,
        home: str | os.PathLike | None = None,
        settings: KafkaSettings | None = None,
        max_queue: int = 100_000,
        conf: Mapping[str, Any] | None = None,
        exit_timeout: float = 10.0,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if fields < 0:
            raise ValueError("fields must be at least 0")
        self.topic = topic
        self.max_queue = max_queue
        self.exit_timeout = exit_timeout
        self._build = build
        self.settings = settings if settings is not None else KafkaSettings.from_env()
        self._explicit = bootstrap or self.settings.bootstrap
        self._home = Path(home) if home is not None else None
        self._extra = {
            **PRODUCER_DEFAULTS,
            "queue.buffering.max.messages": min(max_queue, 10_000_000),
            **(conf or {}),
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            "logger": _QuietLogger(),
        }
        # The hot path's state: the callers extend, the thread pops. An event is ``width``
        # slots (epoch_s, key, *fields), put in by one extend(), which is atomic under the GIL;
        # the deque is never replaced (KafkaExposureSink.log holds it), only cleared.
        self._fields = fields
        self.width = 2 + fields
        self._pending: deque = deque()
        self._max_slots = max_queue * self.width  # 0 once closed: every later event is dropped
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._reset_delivery_state()
        self._closed = False
        self._stop = threading.Event()
        try:
            import orjson
            from confluent_kafka import KafkaException, Producer
        except ImportError as exc:
            raise ImportError(
                f"the SDK's Kafka producers (KafkaExposureSink, Tracker) need {exc.name}, which "
                f"is not installed: {KAFKA_EXTRA_HINT}"
            ) from exc

        self._Producer, self._KafkaException = Producer, KafkaException
        self._dumps, self._dumps_option = orjson.dumps, orjson.OPT_NON_STR_KEYS
        self._metrics = _prometheus()
        self._validate_conf()
        self._thread = self._start_thread()
        _live.add(self)
        atexit.register(self._at_exit)

    # ---- the caller's side (hot path) ------------------------------------------------------
    def send(self, key: str, fields: tuple, epoch_s: float | None = None) -> bool:
        """Queue one event (key = the record key, ``fields`` for ``build``, the event time in
        epoch seconds, default now); False when the queue is full and the event was dropped."""
        q = self._pending
        if len(q) < self._max_slots:
            if len(fields) != self._fields:  # a programming error: it would shift the queue
                raise ValueError(f"{self.topic} events have {self._fields} fields, not {fields!r}")
            q.extend((epoch_s or _now(), key) + fields)
            return True
        return self.drop()

    def drop(self) -> bool:
        """Count one event refused because the queue is full or closed; False."""
        with self._drop_lock:
            self._dropped += 1
        return False

    # ---- counters --------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """``accepted``, ``sent``, ``queued``, ``retried``, ``dropped``, ``failed`` (events;
        ``retried`` counts sending attempts). ``accepted == sent + queued + failed``."""
        # Read before _taken, which the thread increments before it pops a record's first slot:
        # a record in between counts twice, never zero times, so flush never returns early.
        waiting = len(self._pending) // self.width
        taken = self._taken
        sent, failed, retried = self._published
        return {
            "accepted": waiting + taken,
            "sent": sent,
            "queued": waiting + taken - sent - failed,
            "retried": retried,
            "dropped": self._dropped,
            "failed": failed,
        }

    @property
    def bootstrap(self) -> str | None:
        """The servers the producer talks to now (None while no broker is known)."""
        return self._bootstrap

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for every event queued so far to be sent or failed;
        the number still undelivered (0 when all went)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.stats()["queued"]
            if not left or time.monotonic() >= deadline or not self._thread.is_alive():
                return left
            time.sleep(0.005)

    def close(self, timeout: float = 10.0) -> int:
        """Flush for up to ``timeout`` seconds, then stop; events still undelivered are counted
        as failed and logged. Later ``send`` calls drop (and count) their events. Returns the
        number of events that failed at close."""
        if self._closed:
            return 0
        self.flush(timeout)
        self._max_slots = 0
        self._closed = True
        self._stop.set()
        self._thread.join(max(5.0, timeout))
        _live.discard(self)
        atexit.unregister(self._at_exit)
        if self._thread.is_alive():  # a wedged client call: leave it, count what is left
            left = self.stats()["queued"]
            self._fail(left, "undelivered when close() gave up waiting for the producer thread")
            self._sync_metrics()
            return left
        where = f"Kafka at {self._bootstrap}" if self._bootstrap else "no Kafka broker known"
        self._retire(purge=True)
        waiting = len(self._pending) // self.width
        left = waiting + len(self._retry)
        self._taken += waiting
        self._pending.clear()
        self._retry.clear()
        self._fail(left, f"undelivered at close ({where})")
        self._publish()
        self._sync_metrics()
        return left

    def _at_exit(self) -> None:
        self.close(self.exit_timeout)

    def __repr__(self) -> str:
        return f"EventProducer({self.topic!r}, bootstrap={self._bootstrap!r})"

    # ---- the producer's thread -------------------------------------------------------------
    def _reset_delivery_state(self) -> None:
        self._retry: deque = deque()  # (key, value, timestamp ms): formatted, to send again
        self._taken = 0  # records taken from _pending, incremented before the pop
        self._produced = 0  # produce() calls accepted by the current client
        self._errored = 0  # delivery errors reported by the current client
        self._sent_before = 0  # records acknowledged by earlier clients
        self._failed = 0
        self._retried = 0
        self._published = (0, 0, 0)  # (sent, failed, retried), as stats() reads them
        self._bootstrap: str | None = None
        self._client = None
        self._fatal = None
        self._backoff_until = 0.0
        self._last_resolve = -math.inf
        self._last_progress = (time.monotonic(), 0)  # (when, sent): to notice a stuck client
        self._id_prefix = secrets.token_hex(8) + "-"  # per producer; a forked child draws anew
        self._id_seq = 0
        self._stamp = (-1, "")  # (epoch second, its formatted stamp)
        self._synced = dict.fromkeys(("sent", "retried", "dropped", "failed", "queued"), 0)
        self._log_drops, self._log_down, self._log_retry = _Every(), _Every(), _Every()
        self._log_failed, self._log_broken = _Every(), _Every()
        self._dropped_logged = 0

    def _start_thread(self) -> threading.Thread:
        t = threading.Thread(target=self._run, name=f"abp-producer-{self.topic}", daemon=True)
        t.start()
        return t

    def _restart_after_fork(self) -> None:
        """In a forked child: the parent delivers what was queued; the child starts empty."""
        if self._client is not None:
            _forked_clients.append(self._client)  # destroying it would wait for dead threads
        self._pending.clear()  # in place: KafkaExposureSink.log holds this deque
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._reset_delivery_state()
        self._stop = threading.Event()
        if not self._closed:
            self._thread = self._start_thread()

    def _run(self) -> None:
        next_sync = 0.0
        while not self._stop.is_set():
            try:
                if self._client is None and not self._connect():
                    self._stop.wait(RESOLVE_EVERY / 10)
                else:
                    if self._fatal is not None:
                        self._restart(f"fatal error: {self._fatal}")
                        continue
                    moved = self._pump()
                    self._client.poll(0 if moved else IDLE_POLL)
                    self._publish()
                now = time.monotonic()
                if now >= next_sync:
                    next_sync = now + 1.0
                    self._housekeeping()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any surprise
                if self._log_broken():
                    log.exception("producer %s: unexpected error (%s); retrying", self, exc)
                self._stop.wait(0.5)

    def _connect(self) -> bool:
        """Find the broker and make the client; False (and try again later) when none is known."""
        now = time.monotonic()
        if now - self._last_resolve < RESOLVE_EVERY:
            return False
        self._last_resolve = now
        bootstrap = self._explicit or running_broker(self._home_path())
        if bootstrap is None:
            if self._log_down():
                log.warning(
                    "producer %s: no Kafka broker for ABP_HOME %s yet (start one with 'abp "
                    "broker' or set %s); %d events queued, looking again every second",
                    self.topic,
                    self._home_path(),
                    BOOTSTRAP_ENV,
                    self.stats()["queued"],
                )
            return False
        self._client = self._Producer(client_conf(bootstrap, self.settings, **self._extra))
        self._bootstrap = bootstrap
        self._last_progress = (time.monotonic(), self._published[0])
        log.info("producer %s: delivering to Kafka at %s", self.topic, bootstrap)
        return True

    def _home_path(self) -> Path:
        from ab_pipelines.settings import paths

        return paths(self._home).home

    def _validate_conf(self) -> None:
        """Make a client now, so a bad setting fails the constructor, not the thread."""
        bootstrap = self._explicit or ""  # none yet: a client that contacts nobody
        try:
            client = self._Producer(client_conf(bootstrap, self.settings, **self._extra))
        except (self._KafkaException, ValueError, TypeError) as exc:
            err = exc.args[0] if exc.args else exc
            raise KafkaSetupError(
                f"the Kafka producer for topic {self.topic} refuses its settings "
                f"({getattr(err, 'str', lambda: err)()}); check ABP_KAFKA_CONF and the conf "
                "argument (librdkafka's setting names)."
            ) from None
        if self._explicit:
            self._client, self._bootstrap = client, self._explicit
            self._last_progress = (time.monotonic(), 0)
        else:
            client.purge()

    def _pump(self) -> int:
        """Move records into the Kafka client until it is full or our queues are empty.

        The loop runs under the GIL that the callers share, so the event is built inline:
        the id from this producer's prefix and counter, ``ts`` from the cached second."""
        if time.monotonic() < self._backoff_until:
            return 0
        produce, topic, moved = self._client.produce, self.topic, 0
        retry = self._retry
        while retry:
            key, value, ts = retry[0]
            if not self._produce(produce, topic, key, value, ts):
                return moved
            retry.popleft()
            moved += 1
        pending = self._pending
        width = self.width
        if len(pending) < width:
            return moved
        build, dumps, option = self._build, self._dumps, self._dumps_option
        prefix, seq, (sec, stamp) = self._id_prefix, self._id_seq, self._stamp
        popleft, n, rest = pending.popleft, self._fields, (pending,) * self._fields
        produced = 0
        try:
            while len(pending) >= width and moved < PUMP_BATCH:
                self._taken += 1  # before the pops: stats() never misses the record
                epoch_s = popleft()
                key = popleft()
                # explicit pops for the topics' widths: twice as fast as the generic map()
                if n == 5:  # exposures
                    fields = (popleft(), popleft(), popleft(), popleft(), popleft())
                elif n == 4:  # metric events
                    fields = (popleft(), popleft(), popleft(), popleft())
                else:
                    fields = tuple(map(_popleft, rest))  # in order: map calls left to right
                try:
                    ts = int(epoch_s * 1000)
                    if ts // 1000 != sec:
                        sec = ts // 1000
                        stamp = _second_stamp(sec)
                    seq += 1
                    event = build(f"{prefix}{seq}", stamp + MS_SUFFIX[ts % 1000], fields)
                    try:
                        value = dumps(event)
                    except TypeError:
                        value = _dumps_odd(event, dumps, option)
                except Exception as exc:  # noqa: BLE001 - one bad event must not stop the rest
                    self._fail(1, f"cannot be serialized ({type(exc).__name__}: {exc})")
                    continue
                try:
                    produce(topic, value, key, timestamp=ts)
                except Exception:  # noqa: BLE001 - the slow path sorts it out
                    if type(key) is str:
                        key = key.encode("utf-8", "backslashreplace")
                    if not self._produce(produce, topic, key, value, ts):
                        retry.appendleft((key, value, ts))  # formatted: its event_id is kept
                        break
                    moved += 1
                    continue
                produced += 1
                moved += 1
        finally:
            self._id_seq, self._stamp = seq, (sec, stamp)
            self._produced += produced
        return moved

    def _produce(self, produce, topic, key, value, ts) -> bool:
        """One produce(); True when the record is done with (in the client, or failed for
        good), False when it must wait (the client is full, the topic unknown)."""
        try:
            produce(topic, value, key, timestamp=ts)
        except BufferError:  # the client's own queue is full: serve reports first
            return False
        except (TypeError, ValueError) as exc:
            self._fail(1, f"refused by the Kafka client ({exc})")
            return True
        except self._KafkaException as exc:
            err = exc.args[0]
            code = err.code()
            if code in _PERMANENT:
                self._fail(1, f"refused by the Kafka client ({err.str()})")
                return True
            if code == _FATAL:
                self._fatal = err
                return False
            # an unknown topic (not created yet) or another passing trouble: wait a second
            self._retried += 1
            self._backoff_until = time.monotonic() + 1.0
            if self._log_retry():
                log.warning(
                    "producer %s: Kafka at %s: %s; %d events queued, trying again",
                    self.topic,
                    self._bootstrap,
                    err.str(),
                    self.stats()["queued"],
                )
            return False
        self._produced += 1
        return True

    def _on_delivery(self, err, msg) -> None:  # on this thread, inside poll()
        if err is None:
            return  # counted from the client's queue length (delivery.report.only.error)
        self._errored += 1
        if err.code() in _PERMANENT:
            self._fail(1, f"refused by Kafka ({err.str()})")
            return
        self._retried += 1
        self._retry.append((msg.key(), msg.value(), msg.timestamp()[1]))
        if self._client is not None and self._log_retry():  # None: being retired, not news
            log.warning(
                "producer %s: delivery to %s failed (%s); sending again",
                self.topic,
                self._bootstrap,
                err.str(),
            )

    def _on_error(self, err) -> None:  # client-level errors, on this thread inside poll()
        if err.fatal():
            self._fatal = err
        elif self._log_down():
            log.warning(
                "producer %s: Kafka at %s: %s; %d events queued",
                self.topic,
                self._bootstrap,
                err.str(),
                self.stats()["queued"],
            )

    def _fail(self, n: int, why: str) -> None:
        if n <= 0:
            return
        self._failed += n
        if self._log_failed():
            log.error("producer %s: %d event(s) failed: %s", self.topic, n, why)

    def _publish(self) -> None:
        """Publish (sent, failed, retried) for stats(), computed where they change.

        The client's length also counts its callbacks not yet served (a log line, an error), so
        the difference is never above the records acknowledged and equals it once they are
        served; the maximum keeps the count from going back meanwhile."""
        in_client = len(self._client) if self._client is not None else 0
        sent = self._sent_before + self._produced - self._errored - in_client
        self._published = (max(sent, self._published[0]), self._failed, self._retried)

    def _retire(self, purge: bool) -> None:
        """Drop the current client after getting back what it still holds (into _retry)."""
        client, self._client = self._client, None
        if client is None:
            return
        if purge:
            client.purge(in_queue=True, in_flight=True, blocking=True)
        deadline = time.monotonic() + 5.0
        while len(client) and time.monotonic() < deadline:
            client.poll(0.05)
        lost = len(client)  # reports that never came: their fate is unknown
        self._sent_before += self._produced - self._errored - lost
        self._produced = self._errored = 0
        self._fail(lost, "the Kafka client was replaced before reporting on them")
        self._fatal = None
        self._bootstrap = None

    def _restart(self, why: str) -> None:
        log.error("producer %s: %s; making a new Kafka client", self.topic, why)
        self._retire(purge=True)
        self._publish()
        self._last_resolve = -math.inf

    def _housekeeping(self) -> None:
        """Once a second: the drop warning, the embedded broker's address, prometheus."""
        dropped = self._dropped
        if dropped != self._dropped_logged and self._log_drops():
            log.warning(
                "producer %s: %d events dropped so far (queue full at max_queue=%d, or closed); "
                "%d queued",
                self.topic,
                dropped,
                self.max_queue,
                self.stats()["queued"],
            )
            self._dropped_logged = dropped
        if self._client is not None and not self._explicit:
            # an embedded broker restarted elsewhere: follow it when nothing moves
            at, sent = self._last_progress
            now = time.monotonic()
            if self._published[0] != sent or not self.stats()["queued"]:
                self._last_progress = (now, self._published[0])
            elif now - at > 10.0:
                self._last_progress = (now, sent)
                found = running_broker(self._home_path())
                if found is not None and found != self._bootstrap:
                    self._restart(f"the embedded broker moved to {found}")
        self._sync_metrics()

    def _sync_metrics(self) -> None:
        if not self._metrics:
            return
        now = self.stats()
        for k, v in now.items():
            if k in self._synced and v != self._synced[k]:
                self._metrics[k].labels(topic=self.topic).inc(v - self._synced[k])
                self._synced[k] = v


def _dumps_odd(event: dict, dumps, option) -> bytes:
    """JSON of an event orjson refused as it is: other values as ``str``, non-string keys, and
    (a lone surrogate, a huge int) the standard library's encoder with ASCII escapes."""
    try:
        return dumps(event, default=str, option=option)
    except TypeError:
        return json.dumps(event, default=str, separators=(",", ":")).encode()


class TopicProducer:
    """What the SDK's producers of one topic share: an :class:`EventProducer` (its arguments),
    its counters, ``flush`` and ``close``; subclasses add the call that builds their events."""

    def __init__(
        self, topic: str, build: Callable[[str, str, tuple], dict], fields: int, **producer_args
    ):
        self.producer = EventProducer(topic, build, fields=fields, **producer_args)
        self._send = self.producer.send

    def stats(self) -> dict[str, int]:
        return self.producer.stats()

    def flush(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` seconds for delivery; the number still undelivered."""
        return self.producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then stop; the number of events that could not be delivered (failed)."""
        return self.producer.close(timeout)

    def __repr__(self) -> str:
        p = self.producer
        return f"{type(self).__name__}({p.topic!r}, bootstrap={p.bootstrap!r})"


class Tracker(TopicProducer):
    """Metric events (``purchase``, ``page_view`` ...) to the ``metric_events`` topic, keyed by
    user id, with the delivery guarantees of :class:`EventProducer` (same arguments).

    ``track`` checks its arguments and raises ValueError for a bad one (a programming error,
    unlike a Kafka problem, which never reaches the caller).
    """

    def __init__(self, *, topic: str = METRIC_TOPIC, **producer_args) -> None:
        super().__init__(topic, metric_event, 4, **producer_args)

    def track(
        self,
        user_id: str,
        event: str,
        value: float = 1,
        properties: Mapping[str, Any] | None = None,
        ts: float | dt.datetime | None = None,
    ) -> bool:
        """Queue one metric event; False if it was dropped (queue full, counted).

        Args:
            user_id: a non-empty string (an int is taken as its decimal string).
            event: the event name, a non-empty string.
            value: a finite int or float, not a bool; default 1.
            properties: a JSON-able mapping, copied now.
            ts: when it happened: epoch seconds or an aware datetime; default now.

        Raises:
            ValueError: naming the bad argument.
        """
        if type(user_id) is not str:
            if not isinstance(user_id, int) or isinstance(user_id, bool):
                raise ValueError(f"user_id must be a string, not {type(user_id).__name__}")
            user_id = str(user_id)
        if not user_id:
            raise ValueError("user_id must not be empty")
        if type(event) is not str or not event:
            raise ValueError(f"event must be a non-empty string, not {event!r}")
        if type(value) is not int and type(value) is not float:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"value must be a finite number, not {type(value).__name__} {value!r}"
                )
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"value must be a finite number, not {value!r}")
        if properties is not None and not isinstance(properties, Mapping):
            raise ValueError(f"properties must be a mapping, not {type(properties).__name__}")
        if ts is not None:
            if isinstance(ts, dt.datetime):
                if ts.tzinfo is None:
                    raise ValueError("ts must be timezone-aware (e.g. datetime.now(UTC))")
                ts = ts.timestamp()
            elif type(ts) not in (int, float) or not math.isfinite(ts) or ts <= 0:
                raise ValueError(f"ts must be epoch seconds or an aware datetime, not {ts!r}")
        return self._send(
            user_id, (user_id, event, value, dict(properties) if properties else None), ts
        )
