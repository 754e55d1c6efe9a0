"""Following the edge: the config stream (Server-Sent Events) and conditional polling of /config.

``Client.from_url(url, stream=True)`` builds an ``EdgeFollower``: one daemon thread that holds
``GET <url>/stream`` (docs/edge.md), hands every ``config`` event to the client, and, while the
stream is down, polls ``url`` with ``If-None-Match`` every few seconds and reconnects with capped
exponential backoff. ``assign`` never waits for it: the thread decodes a payload off the lock and
the client swaps it in under its swap lock.

``SSEParser`` reads the event-stream wire format as the WHATWG HTML standard says (section 9.2.6,
"Interpreting an event stream"): CRLF, LF or CR line ends, comments, multi-line ``data``, ``id``
(kept across events, ignored when it holds NUL), ``retry`` (ASCII digits only), a leading BOM, and
an unterminated event at the end of the stream discarded.

Only the standard library: http.client for the stream (its socket can be shut down from
``close``), urllib for ``GET /config`` (file: URLs, proxies and redirects work there).
"""

from __future__ import annotations

import http.client
import logging
import math
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ab_pipelines.assignment.client import Client

__all__ = [
    "ConfigFetcher",
    "EdgeFollower",
    "SSEEvent",
    "SSEParser",
    "StreamStats",
    "backoff_delay",
    "stream_url_for",
]

log = logging.getLogger("ab_pipelines.sdk")

STREAMING, POLLING, CLOSED = "streaming", "polling", "closed"
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0
_EOL = re.compile(rb"\r\n?|\n")
_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``message`` when unnamed), data, and the last event id."""

    type: str
    data: str
    id: str


class SSEParser:
    """Incremental parser of a ``text/event-stream`` body: ``feed`` bytes, get complete events.

    >>> p = SSEParser()
    >>> p.feed(b"retry: 1000\\n: heartbeat\\nid: 7\\nevent: config\\ndata: {}\\n\\n")
    [SSEEvent(type='config', data='{}', id='7')]
    >>> p.retry
    1000
    """

    def __init__(self, max_line_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_line_bytes = max_line_bytes
        self.last_event_id = ""
        self.retry: int | None = None  # milliseconds, from the last valid ``retry`` field
        self._buf = b""
        self._started = False  # past a possible leading BOM
        self._skip_lf = False  # the last chunk ended in CR: an LF right after it ends no line
        self._data: list[str] = []
        self._type = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf = self._buf + chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        events: list[SSEEvent] = []
        start = 0
        for m in _EOL.finditer(buf):
            if m.group() == b"\r" and m.end() == len(buf):
                self._skip_lf = True  # CR LF may be split across two chunks
            event = self._line(buf[start : m.start()].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = m.end()
        self._buf = buf[start:]
        if len(self._buf) > self.max_line_bytes:
            raise ValueError(f"an event-stream line is longer than {self.max_line_bytes} bytes")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line[0] == ":":
            return None  # a comment: the heartbeat
        field, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._type = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None  # any other field is ignored

    def _dispatch(self) -> SSEEvent | None:
        data, kind = self._data, self._type or "message"
        self._data, self._type = [], ""
        if not data:
            return None  # no data line: nothing is dispatched
        return SSEEvent(kind, "\n".join(data), self.last_event_id)


def backoff_delay(
    failures: int,
    floor: float = 0.0,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds before reconnecting after ``failures`` failed attempts in a row: ``base`` doubling,
    up to 50% jitter added (so replicas' clients do not reconnect in step), never above ``cap``,
    never below the server's ``retry`` (``floor``, itself capped at ``cap``).

    >>> [backoff_delay(n, rng=lambda: 0.0) for n in (0, 1, 2, 6, 7, 50)]
    [0.5, 1.0, 2.0, 30.0, 30.0, 30.0]
    """
    nominal = base * 2.0 ** min(failures, 64)
    return max(min(floor, cap), min(cap, nominal * (1.0 + 0.5 * rng())))


def stream_url_for(config_url: str) -> str:
    """The edge's stream beside its config: ``<path>/stream``, the query string kept.

    >>> stream_url_for("http://127.0.0.1:8088/config?env=prod")
    'http://127.0.0.1:8088/config/stream?env=prod'
    """
    parts = urlsplit(config_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/stream"))


class ConfigFetcher:
    """``GET /config`` with ``If-None-Match: <the ETag of the last 200>``: ``get`` gives the body,
    or None for a 304 (no download, no parse). Network errors are OSError."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.etag: str | None = None

    def get(self) -> bytes | None:
        etag = self.etag
        request = urllib.request.Request(self.url, headers={"If-None-Match": etag} if etag else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                body = resp.read()
                new_etag = resp.headers.get("ETag")
        except urllib.error.HTTPError as exc:  # urllib raises for every status outside 2xx
            exc.close()
            if exc.code == 304:
                return None
            raise
        except http.client.HTTPException as exc:  # IncompleteRead and the like
            raise OSError(f"{type(exc).__name__}: {exc}") from None
        self.etag = new_etag
        return body


@dataclass(frozen=True)
class StreamStats:
    """What an ``EdgeFollower`` has done so far (a snapshot)."""

    state: str  # "streaming" | "polling" | "closed"
    stream_versions: int  # versions installed from the stream
    poll_versions: int  # versions installed from a poll of /config
    refused: int  # payloads refused (signature, schema, version), from either
    reconnects: int  # stream connections made after the first
    polls: int  # answered polls, 304s included
    not_modified: int  # polls answered 304


class _StreamBroken(Exception):
    """The stream ended or answered something that is not an event stream."""


class EdgeFollower:
    """The daemon thread of a streaming client (see the module docstring).

    It holds the client weakly: a client dropped without ``close`` ends its thread too.
    """

    def __init__(
        self,
        client: Client,
        *,
        stream_url: str,
        fetcher: ConfigFetcher,
        poll_seconds: float,
        read_timeout: float,
        request_timeout: float,
    ) -> None:
        self._client = weakref.ref(client)
        self.stream_url = stream_url
        self._fetcher = fetcher
        self.poll_seconds = poll_seconds
        self.read_timeout = read_timeout
        self.request_timeout = request_timeout
        self._stop = threading.Event()
        self._sock_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._retry_floor = 0.0  # seconds, from the server's ``retry`` field
        self._connections = 0
        self._state = POLLING
        self._counts = dict.fromkeys(("stream", "poll", "refused", "polls", "not_modified"), 0)
        self.thread = threading.Thread(
            target=self._run, name=f"abp-edge-follower {stream_url}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    @property
    def state(self) -> str:
        return self._state

    def stats(self) -> StreamStats:
        c = self._counts
        return StreamStats(
            self._state,
            c["stream"],
            c["poll"],
            c["refused"],
            max(0, self._connections - 1),
            c["polls"],
            c["not_modified"],
        )

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread: wake it from its wait, or shut its stream socket (a read blocked on
        it returns at once), then join it for up to ``timeout`` seconds. A poll of /config in
        flight cannot be interrupted: the daemon thread then ends within ``request_timeout``."""
        self._stop.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        self._state = CLOSED

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        attempts = 0  # reconnections since the stream last delivered anything
        next_stream, next_poll = 0.0, math.inf  # no polling while the stream is up
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_stream:
                    delivered = self._follow_stream()
                    if self._stop.is_set():
                        break
                    attempts = 0 if delivered else attempts
                    next_stream = time.monotonic() + backoff_delay(attempts, self._retry_floor)
                    attempts += 1
                    if next_poll == math.inf:
                        next_poll = 0.0  # a version may have been missed: poll at once
                if time.monotonic() >= next_poll:
                    self._poll()
                    next_poll = time.monotonic() + self.poll_seconds
                self._stop.wait(max(0.0, min(next_stream, next_poll) - time.monotonic()))
        finally:
            self._state = CLOSED

    def _offer(self, raw: str | bytes, source: str, via: str) -> None:
        client = self._client()
        if client is None:  # the client was dropped without close()
            self._stop.set()
            return
        outcome = client._offer(raw, source, log_once=True)
        if outcome is None:
            self._counts["refused"] += 1
        elif outcome:
            self._counts[via] += 1

    def _held_version(self) -> int | None:
        client = self._client()
        return None if client is None else client.config_version

    def _poll(self) -> None:
        try:
            raw = self._fetcher.get()
        except OSError as exc:
            log.debug("poll of %s failed: %s", self._fetcher.url, exc)
            return
        self._counts["polls"] += 1
        if raw is None:
            self._counts["not_modified"] += 1
        else:
            self._offer(raw, self._fetcher.url, "poll")

    def _follow_stream(self) -> bool:
        """Hold one stream connection until it breaks; True if it delivered any bytes."""
        parser = SSEParser()
        delivered = False
        conn = resp = None
        try:
            conn, resp = self._open_stream()
            self._connections += 1
            if self._state != STREAMING:
                log.info("following the config stream %s", self.stream_url)
            self._state = STREAMING
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    raise _StreamBroken("the server ended the stream")
                delivered = True
                for event in parser.feed(chunk):
                    if event.type == "config":
                        self._offer(event.data, self.stream_url, "stream")
                if parser.retry is not None:
                    self._retry_floor = parser.retry / 1000
        except (OSError, http.client.HTTPException, ValueError, _StreamBroken) as exc:
            if not self._stop.is_set():
                was = self._state
                self._state = POLLING
                level = logging.WARNING if was == STREAMING else logging.DEBUG
                log.log(
                    level,
                    "config stream %s broken (%s: %s); polling every %s s while reconnecting",
                    self.stream_url,
                    type(exc).__name__,
                    exc,
                    self.poll_seconds,
                )
        finally:
            with self._sock_lock:
                self._sock = None
            if resp is not None:
                resp.close()
            if conn is not None:
                conn.close()
        return delivered

    def _open_stream(self) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parts = urlsplit(self.stream_url)
        kind = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = kind(parts.hostname or "localhost", parts.port, timeout=self.request_timeout)
        try:
            return conn, self._request_stream(conn, parts.path or "/", parts.query)
        except BaseException:
            conn.close()
            raise

    def _request_stream(
        self, conn: http.client.HTTPConnection, path: str, query: str
    ) -> http.client.HTTPResponse:
        conn.connect()
        with self._sock_lock:  # close() may have run while connecting, before the socket existed
            self._sock = conn.sock
            if self._stop.is_set():
                raise _StreamBroken("closed")
        sock = conn.sock  # kept: a close-delimited response takes it off ``conn``
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        version = self._held_version()
        if version is not None:
            headers["Last-Event-ID"] = str(version)
        conn.request("GET", urlunsplit(("", "", path, query, "")), None, headers)
        resp = conn.getresponse()
        kind_of_body = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if resp.status != 200 or kind_of_body != "text/event-stream":
            resp.close()
            raise _StreamBroken(f"HTTP {resp.status} {kind_of_body or 'without a Content-Type'}")
        sock.settimeout(self.read_timeout)  # silence this long (about 3 heartbeats): dead
        return resp
