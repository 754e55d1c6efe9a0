"""The SDK follows the edge: the SSE parser, backoff, and a streaming client against a real HTTP
server that speaks the edge's protocol (docs/edge.md) and can be told to misbehave."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import queue
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ab_pipelines.assignment import Client
from ab_pipelines.assignment.signing import sign_payload
from ab_pipelines.assignment.stream import SSEEvent, SSEParser, backoff_delay, stream_url_for
from tests.assignment import experiment, payload

SDK_LOG = "ab_pipelines.sdk"
USERS = [f"user-{i}" for i in range(50)]


def version(n: int, killed: bool = False) -> dict:
    """Odd versions and kills serve control to everyone, even running ones treatment."""
    status = "killed" if killed else "running"
    weights = (1.0, 0.0) if n % 2 else (0.0, 1.0)
    return payload({"hero": experiment("hero", weights=weights, status=status)}, version=n)


def signed(n: int, **kw) -> str:
    return json.dumps(sign_payload(version(n, **kw)))


def served(client: Client) -> set[str | None]:
    return {client.assign(u, "hero") for u in USERS}


def wait_for(predicate, timeout: float = 5.0, step: float = 0.002) -> float:
    """Seconds until ``predicate()`` held; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout} s: {predicate.__doc__ or predicate}")
        time.sleep(step)
    return time.monotonic() - t0


@pytest.fixture(autouse=True)
def no_follower_left():
    """Every follower thread a test starts has ended when it ends."""
    yield
    left = [t for t in threading.enumerate() if t.name.startswith("abp-edge-follower")]
    for t in left:
        t.join(3)
    assert not [t for t in left if t.is_alive()]


# ----------------------------------------------------------------- the parser


def events(*chunks: bytes) -> list[tuple[str, str, str]]:
    p = SSEParser()
    return [tuple(e) for c in chunks for e in p.feed(c)]


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"data: YHOO\ndata: +2\ndata: 10\n\n", [("message", "YHOO\n+2\n10", "")]),
        (  # the standard's example: id kept, an empty id resets it, one space stripped
            b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
            b"data:  third event\n\n",
            [
                ("message", "first event", "1"),
                ("message", "second event", ""),
                ("message", " third event", ""),
            ],
        ),
        (b"data\n\ndata\ndata\n\ndata:", [("message", "", ""), ("message", "\n", "")]),
        (b"data:test\n\ndata: test\n\n", [("message", "test", ""), ("message", "test", "")]),
        (b"event: config\r\nid: 7\r\ndata: {}\r\n\r\n", [("config", "{}", "7")]),
        (b"event: config\rid: 7\rdata: {}\r\r", [("config", "{}", "7")]),
        (b"data: a\r\ndata: b\rdata: c\n\r\n", [("message", "a\nb\nc", "")]),
        (b"id: 3\ndata: a\n\ndata: b\n\n", [("message", "a", "3"), ("message", "b", "3")]),
        (b"id: 3\n\nid: 4\x00\ndata: a\n\n", [("message", "a", "3")]),  # NUL: id ignored
        (b"event: config\n\ndata: a\n\n", [("message", "a", "")]),  # no data: type reset too
        (b"event\ndata: a\n\n", [("message", "a", "")]),
        (b"data: a\n: heartbeat 1732\ndata: b\n\n", [("message", "a\nb", "")]),
        (b"Data: a\ndata : b\nfoo: c\ndata: d\n\n", [("message", "d", "")]),  # fields exact
        (b"\xef\xbb\xbfdata: bom\n\n", [("message", "bom", "")]),
        (b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", []),  # only one BOM is stripped
        (b"data: caf\xc3\xa9 \xff\n\n", [("message", "caf\u00e9 \ufffd", "")]),
        (b"data: pending, never ended\n", []),  # discarded at the end of the stream
        (b"retry: 1000\n\n", []),
    ],
    ids=[
        "multi-line",
        "spec-example",
        "empty-data",
        "space-after-colon",
        "crlf",
        "cr",
        "mixed-ends",
        "id-persists",
        "id-with-nul",
        "event-without-data",
        "field-without-colon",
        "comment-between-data",
        "case-and-unknown-fields",
        "bom",
        "second-bom",
        "utf8-and-invalid",
        "unterminated",
        "retry-only",
    ],
)
def test_parser_follows_the_standard(stream, expected):
    assert events(stream) == expected
    # the same bytes one at a time: no event depends on how the stream was cut
    assert events(*(stream[i : i + 1] for i in range(len(stream)))) == expected


def test_parser_cr_lf_split_across_chunks_is_one_line_end():
    # with the LF taken as a second line end, "a" would be dispatched alone
    assert events(b"data: a\r", b"\ndata: b\r\n\r\n") == [("message", "a\nb", "")]
    assert events(b"data: a\r", b"\r") == [("message", "a", "")]


def test_parser_retry_takes_only_ascii_digits():
    p = SSEParser()
    p.feed(b"retry: 1000\n")
    for bad in (
        b"retry: 1x\n",
        b"retry:\n",
        b"retry: -5\n",
        b"retry: 1.5\n",
        "retry: \u0661\n".encode(),
    ):
        p.feed(bad)
    assert p.retry == 1000
    p.feed(b"retry:250\n")
    assert p.retry == 250


def test_parser_refuses_an_endless_line():
    p = SSEParser(max_line_bytes=100)
    p.feed(b"data: " + b"x" * 90)
    with pytest.raises(ValueError, match="longer than 100"):
        p.feed(b"x" * 20)


def test_parser_reads_a_config_event():
    text = signed(2)
    ev = SSEParser().feed(f"id: 2\nevent: config\ndata: {text}\n\n".encode())
    assert ev == [SSEEvent("config", text, "2")]


# ----------------------------------------------------------------- backoff


def test_backoff_doubles_from_half_a_second_and_is_bounded():
    low = [backoff_delay(n, rng=lambda: 0.0) for n in range(10)]
    assert low == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    high = [backoff_delay(n, rng=lambda: 0.999) for n in range(10)]
    assert all(lo <= hi <= 30.0 for lo, hi in zip(low, high, strict=True))
    assert high[0] < 0.75 and high[5] < 24.0
    assert all(0.5 <= backoff_delay(n) <= 30.0 for n in range(2000))  # huge n: no overflow
    assert backoff_delay(0, floor=1.0, rng=lambda: 0.0) == 1.0  # the server's retry as floor
    assert backoff_delay(0, floor=3600.0) == 30.0  # a retry above the cap is capped


def test_stream_url_is_beside_the_config():
    assert stream_url_for("http://h:8088/config") == "http://h:8088/config/stream"
    assert stream_url_for("https://h/edge/config/?k=v") == "https://h/edge/config/stream?k=v"


# ----------------------------------------------------------------- the adversarial edge


class FakeEdge:
    """The edge's /config (ETag, 304) and /config/stream (SSE, chunked) on 127.0.0.1, as a real
    HTTP server; the tests change ``config_mode``/``stream_mode`` ("ok", "500", "hang"), turn
    heartbeats off, push bad events or raw bytes, drop connections, and stop and restart it."""

    def __init__(self, text: str, heartbeat: float = 0.1, retry_ms: int = 100) -> None:
        self.heartbeat, self.retry_ms = heartbeat, retry_ms
        self.heartbeats = True
        self.config_mode = self.stream_mode = "ok"
        self.stream_requests: list[str | None] = []  # the Last-Event-ID of each
        self.config_ok = self.not_modified = 0
        self.if_none_match: list[str | None] = []
        self._subscribers: list[queue.Queue] = []
        self._lock = threading.Lock()
        self.publish(text, push=False)
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/config"

    def publish(self, text: str, push: bool = True) -> None:
        """A new /config body (any text: the fake edge verifies nothing), pushed if asked."""
        try:
            env = json.loads(text)
            p = json.loads(env["payload"])
            self.version, sha = str(p["version"]), p["content_sha"]
        except (ValueError, KeyError, TypeError):
            self.version, sha = "0", hashlib.sha256(text.encode()).hexdigest()
        self.text, self.etag = text, f'"{self.version}-{sha[:16]}"'
        if push:
            self.send(f"id: {self.version}\nevent: config\ndata: {text}\n\n".encode())

    def push_event(self, data: str, event_id: str = "9") -> None:
        """An event that does not change /config (a tampered or stale payload)."""
        self.send(f"id: {event_id}\nevent: config\ndata: {data}\n\n".encode())

    def send(self, raw: bytes) -> None:
        with self._lock:
            for q in self._subscribers:
                q.put(raw)

    def drop(self) -> None:
        """Close every stream connection (mid-event if raw bytes were just sent)."""
        self.send(None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def start(self) -> None:
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = False  # server_close() joins every handler
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Refuse connections from now on; every handler ends (server_close joins them)."""
        self.stopping.set()
        self.drop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def _handler(self):
        edge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 5  # no handler waits longer for a request

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/config/stream"):
                    self.stream()
                elif self.path.startswith("/config"):
                    self.config()
                else:
                    self.send_error(404)

            def hang(self):
                edge.stopping.wait(30)
                self.close_connection = True

            def config(self):
                if edge.config_mode == "hang":
                    return self.hang()
                if edge.config_mode == "500":
                    return self.send_error(500)
                tag = self.headers.get("If-None-Match")
                edge.if_none_match.append(tag)
                self.send_response(304 if tag == edge.etag else 200)
                self.send_header("ETag", edge.etag)
                if tag == edge.etag:
                    edge.not_modified += 1
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                edge.config_ok += 1
                body = edge.text.encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def stream(self):
                last_id = self.headers.get("Last-Event-ID")
                edge.stream_requests.append(last_id)
                if edge.stream_mode == "500":
                    return self.send_error(500)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                if edge.stream_mode == "hang":
                    return self.hang()
                q: queue.Queue = queue.Queue()
                self.chunk(b"retry: %d\n\n" % edge.retry_ms)
                if last_id != edge.version:
                    self.chunk(f"id: {edge.version}\nevent: config\ndata: {edge.text}\n\n".encode())
                with edge._lock:
                    edge._subscribers.append(q)
                try:
                    while not edge.stopping.is_set():
                        try:
                            raw = q.get(timeout=edge.heartbeat)
                        except queue.Empty:
                            if edge.heartbeats:
                                self.chunk(b": heartbeat %d\n\n" % time.time())
                            continue
                        if raw is None:
                            return  # no last chunk: the client sees the stream cut
                        self.chunk(raw)
                except OSError:
                    return  # the client went away
                finally:
                    with edge._lock:
                        edge._subscribers.remove(q)

        return Handler


@pytest.fixture
def edge():
    e = FakeEdge(signed(1))
    yield e
    e.stop()


@pytest.fixture
def follow(edge):
    """Streaming clients of ``edge`` (fast timeouts); each one closed and its thread ended."""
    made: list[Client] = []

    def make(**kw) -> Client:
        options = {"refresh_seconds": 0.1, "stream_timeout": 0.5, "request_timeout": 1.0}
        client = Client.from_url(edge.url, stream=True, **(options | kw))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
    for client in made:
        client._follower.thread.join(3)
        assert not client._follower.thread.is_alive(), "a follower thread outlived its test"


def streaming(client: Client) -> bool:
    """the client follows the stream"""
    return client.stream_state == "streaming"


def test_a_pushed_version_reaches_assign_within_half_a_second(edge, follow, capsys):
    client = follow()
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    assert served(client) == {"control"}
    latencies = []
    for n in range(2, 42):  # kills alternating with republishes
        kill = n % 4 == 0
        want = "control" if kill or n % 2 else "treatment"
        t0 = time.perf_counter()
        edge.publish(signed(n, killed=kill))
        while client.assign("user-7", "hero") != want or client.config_version != n:
            if time.perf_counter() - t0 > 2:
                pytest.fail(f"version {n} not served within 2 s")
            time.sleep(0.0002)
        latencies.append(time.perf_counter() - t0)
    wait_for(lambda: client.stream_stats.stream_versions == 40)
    stats = client.stream_stats
    assert stats.poll_versions == 0 and stats.reconnects == 0
    assert max(latencies) < 0.5
    with capsys.disabled():
        print(
            f"\npush-to-assign over {len(latencies)} versions: p50 "
            f"{statistics.median(latencies) * 1e3:.2f} ms, max {max(latencies) * 1e3:.2f} ms"
        )


def _tampered(text: str) -> str:
    env = json.loads(text)
    env["signature"] = ("A" if env["signature"][0] != "A" else "B") + env["signature"][1:]
    return json.dumps(env)


def _edited(text: str) -> str:
    env = json.loads(text)
    env["payload"] = env["payload"].replace("10000", "9999")  # the signature no longer holds
    return json.dumps(env)


BAD_PAYLOADS = {
    "tampered-signature": lambda: _tampered(signed(3)),
    "payload-edited-after-signing": lambda: _edited(signed(3)),
    "lower-version": lambda: signed(1),
    "same-version-other-content": lambda: json.dumps(
        sign_payload(payload({"hero": experiment("other-salt")}, version=2))
    ),
    "garbage": lambda: "garbage }{",
    "unsigned": lambda: json.dumps(version(3)),
    "bad-schema": lambda: json.dumps(sign_payload({**version(3), "schema": 2})),
}


@pytest.mark.parametrize("make_bad", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS)
def test_a_bad_pushed_payload_is_refused_and_the_old_config_served(edge, follow, caplog, make_bad):
    edge.publish(signed(2), push=False)
    client = follow()
    wait_for(lambda: client.config_version == 2 and streaming(client) and edge.subscribers == 1)
    before = served(client)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger=SDK_LOG):
        for i in range(3):  # the same refusal again is counted, not logged again
            edge.push_event(make_bad())
            wait_for(lambda i=i: client.stream_stats.refused == i + 1)
    errors = [r.getMessage() for r in caplog.records if r.name == SDK_LOG]
    assert len(errors) == 1, errors
    assert "refused" in errors[0] and "keeping version 2" in errors[0]
    assert client.config_version == 2 and served(client) == before
    assert streaming(client) and client.stream_stats.reconnects == 0
    edge.publish(signed(3))  # a good version after the bad ones is installed
    wait_for(lambda: client.stream_stats.stream_versions == 1)  # counted after the install
    assert client.config_version == 3


def test_a_connection_cut_mid_event_installs_nothing_and_reconnects(edge, follow):
    client = follow()
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    half = f"id: 2\nevent: config\ndata: {signed(2)}"
    edge.send(half[: len(half) // 2].encode())
    edge.drop()
    wait_for(lambda: client.stream_stats.reconnects == 1 and streaming(client))
    assert client.config_version == 1 and client.stream_stats.refused == 0
    edge.publish(signed(2))
    wait_for(lambda: client.config_version == 2)


def test_stream_break_falls_back_to_conditional_polling_until_the_stream_is_back(edge, follow):
    client = follow(refresh_seconds=0.05)
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    assert edge.stream_requests == ["1"]
    edge.stream_mode = "500"
    edge.drop()
    wait_for(lambda: client.stream_state == "polling")
    wait_for(lambda: edge.not_modified >= 3)  # polls answered 304: nothing downloaded
    assert edge.config_ok == 1 and set(edge.if_none_match[1:]) == {edge.etag}
    edge.publish(signed(2), push=False)  # only /config knows: the poll brings it
    wait_for(lambda: client.stream_stats.poll_versions == 1)
    assert client.config_version == 2 and served(client) == {"treatment"}
    edge.stream_mode = "ok"
    wait_for(lambda: streaming(client) and edge.subscribers == 1, timeout=10)
    assert edge.stream_requests[-1] == "2"  # Last-Event-ID: the version held
    polls = client.stream_stats.polls
    time.sleep(0.4)
    assert client.stream_stats.polls == polls  # polling stopped with the stream back
    stats = client.stream_stats
    assert stats.reconnects == 1 and stats.stream_versions == 0
    assert stats.not_modified >= 3 and stats.polls > stats.not_modified


def test_last_event_id_on_reconnect_and_no_resend_of_the_held_version(edge, follow):
    client = follow()
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    edge.publish(signed(2))
    wait_for(lambda: client.config_version == 2)
    edge.drop()
    wait_for(lambda: client.stream_stats.reconnects == 1 and edge.subscribers == 1)
    assert edge.stream_requests == ["1", "2"]
    assert client.stream_stats.stream_versions == 1  # nothing sent again on reconnect
    edge.drop()
    edge.publish(signed(3), push=False)  # missed while disconnected: sent on reconnect
    wait_for(lambda: client.config_version == 3)
    assert edge.stream_requests[-1] == "2"


def test_a_silent_stream_is_declared_dead_and_heartbeats_keep_it_alive(edge, follow):
    client = follow(stream_timeout=0.3)
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    time.sleep(0.8)  # heartbeats every 0.1 s
    assert client.stream_stats.reconnects == 0 and len(edge.stream_requests) == 1
    edge.heartbeats = False
    wait_for(lambda: client.stream_stats.reconnects >= 1)
    assert client.stream_stats.polls >= 1  # polled once the stream was declared dead


def test_reconnects_back_off(edge, follow):
    edge.stream_mode = "500"
    client = follow(refresh_seconds=0.2)
    time.sleep(3.0)
    # attempts at 0, then after 0.5-0.75 s, 1-1.5 s more, 2-3 s more: three in the first 3 s
    assert len(edge.stream_requests) == 3, edge.stream_requests
    assert client.stream_state == "polling" and client.stream_stats.not_modified >= 5
    edge.stream_mode = "ok"
    wait_for(lambda: streaming(client), timeout=5)


def test_refused_connections_fall_back_to_polling_and_the_stream_comes_back(edge, follow):
    client = follow(refresh_seconds=0.1)
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    edge.stop()  # connections refused from now on
    wait_for(lambda: client.stream_state == "polling")
    time.sleep(1.0)
    assert served(client) == {"control"} and client.config_version == 1
    edge.publish(signed(2), push=False)
    edge.start()  # on the same port
    wait_for(lambda: client.stream_stats.poll_versions == 1, timeout=2)  # the next poll
    assert client.config_version == 2
    wait_for(lambda: streaming(client), timeout=5)  # the next reconnection (after 2-3 s)
    assert edge.stream_requests[-1] == "2"


def test_close_ends_the_thread_within_a_second(edge, follow):
    client = follow(stream_timeout=60)
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    t0 = time.monotonic()
    client.close()
    assert not client._follower.thread.is_alive() and time.monotonic() - t0 < 1.0
    assert client.stream_state == "closed"
    assert client.assign("user-1", "hero") == "control"  # still answers from what it holds
    polling_client = follow(refresh_seconds=60)
    edge.stream_mode = "500"
    edge.drop()
    # How soon it falls back to polling is not what this test is about (a loaded CI machine
    # took over 5 s once); closing promptly from that state is.
    wait_for(lambda: polling_client.stream_state == "polling", timeout=30)
    t0 = time.monotonic()
    with polling_client:  # closed on leaving, while it waits out the backoff
        pass
    assert not polling_client._follower.thread.is_alive() and time.monotonic() - t0 < 1.0


def test_a_dropped_client_ends_its_thread(edge):
    def dropped_client() -> threading.Thread:
        client = Client.from_url(edge.url, stream=True, stream_timeout=60)
        wait_for(lambda: streaming(client) and edge.subscribers == 1)
        return client._follower.thread

    thread = dropped_client()
    gc.collect()
    thread.join(1.0)
    assert not thread.is_alive()


def test_assign_stays_fast_while_the_edge_hangs(edge, follow):
    client = follow(stream_timeout=0.3, request_timeout=1.0, refresh_seconds=0.05)
    wait_for(lambda: streaming(client) and edge.subscribers == 1)
    edge.stream_mode = edge.config_mode = "hang"
    edge.drop()
    wait_for(lambda: len(edge.stream_requests) >= 2)  # reconnected into a hanging server
    times = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        client.assign("user-1", "hero")
        times.append(time.perf_counter() - t0)
    times.sort()
    assert client._follower.thread.is_alive() and client.config_version == 1
    assert times[len(times) // 2] < 20e-6 and times[int(len(times) * 0.999)] < 5e-3, (
        f"p50 {times[len(times) // 2] * 1e6:.1f} us, max {times[-1] * 1e3:.2f} ms"
    )
    edge.stopping.set()  # release the hanging handlers before the follower is closed


def test_plain_from_url_polls_conditionally(edge):
    client = Client.from_url(edge.url, refresh_seconds=30)
    assert client.stream_state is None and client.stream_stats is None
    for _ in range(3):
        assert client.refresh() is False
    assert (edge.config_ok, edge.not_modified) == (1, 3)
    edge.publish(signed(2), push=False)
    assert client.refresh() is True and client.config_version == 2
    assert edge.if_none_match[-1] is not None


def test_a_failing_first_load_raises(edge):
    from ab_pipelines.assignment import ConfigError

    edge.config_mode = "500"
    with pytest.raises(ConfigError, match="cannot read"):
        Client.from_url(edge.url, stream=True)


# ----------------------------------------------------------------- the real edge

_REAL_EDGE = (Path(__file__).parents[1] / "edge" / "__init__.py").exists()


@pytest.mark.xdist_group("edge-serve")
def test_the_real_edge_pushes_to_a_streaming_client_within_a_second(tmp_path, capsys):
    from tests.edge import start_edge, write_config

    write_config(tmp_path, version(1))
    env = {"ABP_EDGE_HEARTBEAT_SECONDS": "0.2", "ABP_EDGE_EXPOSURES": "none"}
    with start_edge(tmp_path, **env) as (url, _):
        client = Client.from_url(f"{url}/config", stream=True, stream_timeout=1.0)
        try:
            wait_for(lambda: streaming(client))
            time.sleep(0.3)  # subscribed (the first heartbeat has come)
            latencies = []
            for n in range(2, 12):  # kills (control) alternating with republishes (treatment)
                kill = n % 2 == 1
                written = time.perf_counter()
                write_config(tmp_path, version(n, killed=kill))
                want = "control" if kill else "treatment"
                wait_for(lambda n=n: client.config_version == n, timeout=2, step=0.0005)
                assert served(client) == {want}
                latencies.append(time.perf_counter() - written)
            assert max(latencies) < 1.0, latencies
            wait_for(lambda: client.stream_stats.stream_versions == 10)
            stats = client.stream_stats
            assert stats.refused == 0 and stats.reconnects == 0 and stats.poll_versions == 0
        finally:
            client.close()
    with capsys.disabled():
        print(
            f"\nreal edge, file written to assign: p50 {statistics.median(latencies) * 1e3:.1f} ms,"
            f" max {max(latencies) * 1e3:.1f} ms"
        )
