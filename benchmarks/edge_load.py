"""A bounded local HTTP/1.1 load generator: closed loop, C keep-alive connections, fixed time.

Each connection sends one request, reads the whole answer, and sends the next (closed loop): at
most C requests are in flight. The requests, each ``(method, path, headers, body)``, are cycled
(connection ``i`` starts at request ``i`` and steps by C), so a list of bodies with many user ids
spreads the users over all connections. After ``warmup`` seconds the window opens for
``seconds``; a request counts when it started and finished inside the window. Any status other
than 2xx or 304, a connection closed by the server and any socket error is an error; the first
few are described.

The generator runs in a process of its own (``python -m benchmarks.edge_load``: the spec as JSON
on stdin, the result as JSON on stdout), on asyncio with uvloop when it is installed, with a raw
``asyncio.Protocol`` per connection and a minimal HTTP/1.1 reader (status line, ``Content-Length``
or chunked bodies, no body for 304): no HTTP library on the hot path. Its own ceiling is measured
against a trivial server (``ceiling``), and each run reports the CPU the generator used, so a
reader can tell whether the generator or the server was the bottleneck.

Standard library (and uvloop, if present) only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

__all__ = ["LoadResult", "Request", "ceiling", "run_load", "trivial_server"]

Request = tuple[str, str, dict[str, str], bytes | str | None]  # method, path, headers, body
MAX_ERRORS_DESCRIBED = 5


@dataclass
class LoadResult:
    """One load run: throughput and latency over the measured window, and the errors."""

    requests: int  # completed inside the window
    seconds: float  # the window
    per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_samples: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    concurrency: int = 0
    generator_cpu: float = 0.0  # the generator's CPU seconds per window second (1.0 = one core)

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.requests > 0

    def describe(self) -> str:
        text = (
            f"{self.per_s:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, "
            f"{self.errors} errors"
        )
        if self.error_samples:
            text += " (" + "; ".join(self.error_samples) + ")"
        return text


def _percentile(ordered: list[int], q: float) -> float:
    if not ordered:
        return math.nan
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


# ---- the client side (runs in the generator's process) ----------------------------------------


class _Run:
    """State shared by the connections of one run."""

    def __init__(self, raw: list[bytes], concurrency: int, warmup: float, seconds: float):
        self.raw = raw
        self.concurrency = concurrency
        now = time.perf_counter_ns()
        self.window_start = now + int(warmup * 1e9)
        self.window_end = self.window_start + int(seconds * 1e9)
        self.stopping = False
        self.latencies: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.samples: list[str] = []
        self.open = 0
        self.all_closed: asyncio.Future | None = None

    def error(self, text: str, counted: bool) -> None:
        if counted:
            self.errors += 1
            if len(self.samples) < MAX_ERRORS_DESCRIBED:
                self.samples.append(text)


class _Conn(asyncio.Protocol):
    """One keep-alive connection: send, read the whole answer, send the next."""

    def __init__(self, run: _Run, index: int):
        self.run = run
        self.next = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.started = 0
        self.expect: int | None = None  # body bytes still to read after the headers, or None
        self.chunked = False
        self.status = 0
        self.closed_by_us = False

    # -- sending
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.run.open += 1
        self._send()

    def _send(self) -> None:
        run = self.run
        now = time.perf_counter_ns()
        if run.stopping or now >= run.window_end:
            run.stopping = True
            self.closed_by_us = True
            self.transport.close()
            return
        req = run.raw[self.next % len(run.raw)]
        self.next += run.concurrency
        self.started = now
        self.transport.write(req)

    # -- reading
    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.expect is None and not self.chunked:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                del buf[: end + 4]
                try:
                    self.status = int(head[9:12])
                except ValueError:
                    self._fail(f"bad status line {head[:40]!r}")
                    return
                if self.status == 304 or self.status == 204 or 100 <= self.status < 200:
                    self.expect = 0
                else:
                    i = head.find(b"\r\ncontent-length:")
                    if i >= 0:
                        j = head.find(b"\r\n", i + 2)
                        self.expect = int(head[i + 17 : j if j >= 0 else len(head)])
                    elif b"\r\ntransfer-encoding: chunked" in head:
                        self.chunked = True
                    else:
                        self._fail(f"status {self.status} without a length")
                        return
            if self.chunked:
                if not self._read_chunks():
                    return
            else:
                if len(buf) < self.expect:
                    return
                body = bytes(buf[: self.expect])
                del buf[: self.expect]
                self.expect = None
                self._done(body)
            if not buf:
                return

    def _read_chunks(self) -> bool:
        """Consume chunks; True when the last one (and its trailer) has been read."""
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return False
            size = int(bytes(buf[:eol]).split(b";")[0], 16)
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)
                if end < 0:
                    if buf[eol : eol + 4] == b"\r\n\r\n":
                        end = eol
                    else:
                        return False
                del buf[: end + 4]
                self.chunked = False
                self.expect = None
                self._done(b"")
                return True
            if len(buf) < eol + 2 + size + 2:
                return False
            del buf[: eol + 2 + size + 2]

    def _done(self, body: bytes) -> None:
        run = self.run
        now = time.perf_counter_ns()
        in_window = self.started >= run.window_start and now <= run.window_end
        status = self.status
        if in_window:
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if 200 <= status < 300 or status == 304:
                run.latencies.append(now - self.started)
            else:
                run.error(f"status {status}: {body[:160].decode('utf-8', 'replace')}", True)
        self._send()

    def _fail(self, text: str) -> None:
        self.run.error(text, self.started >= self.run.window_start)
        self.closed_by_us = True
        self.transport.close()

    def connection_lost(self, exc) -> None:
        run = self.run
        run.open -= 1
        if not self.closed_by_us and not run.stopping:
            run.error(f"connection lost: {exc or 'closed by the server'}", True)
            asyncio.get_running_loop().call_later(0.01, _reconnect, run, self.next)
        if run.open == 0 and run.stopping and run.all_closed and not run.all_closed.done():
            run.all_closed.set_result(None)


_TARGET: dict[str, object] = {}


def _reconnect(run: _Run, index: int) -> None:
    loop = asyncio.get_running_loop()
    task = loop.create_task(_connect(run, index))
    task.add_done_callback(lambda t: t.exception())


async def _connect(run: _Run, index: int) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.create_connection(
            lambda: _Conn(run, index), str(_TARGET["host"]), int(_TARGET["port"])
        )
    except OSError as exc:
        run.error(f"connect: {exc}", True)
        if time.perf_counter_ns() < run.window_end:
            loop.call_later(0.05, _reconnect, run, index)


def _raw_requests(host: str, port: int, requests: list[list]) -> list[bytes]:
    out = []
    for method, path, headers, body in requests:
        data = body.encode() if isinstance(body, str) else (body or b"")
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if data or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(data)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
    return out


async def _drive(spec: dict) -> dict:
    _TARGET.update(host=spec["host"], port=spec["port"])
    raw = _raw_requests(spec["host"], spec["port"], spec["requests"])
    c = int(spec["concurrency"])
    run = _Run(raw, c, float(spec["warmup"]), float(spec["seconds"]))
    run.all_closed = asyncio.get_running_loop().create_future()
    await asyncio.gather(*(_connect(run, i) for i in range(c)))
    cpu0 = None
    while time.perf_counter_ns() < run.window_start:
        await asyncio.sleep(0.01)
    cpu0 = time.process_time()
    while time.perf_counter_ns() < run.window_end:
        await asyncio.sleep(0.01)
    cpu = time.process_time() - cpu0
    run.stopping = True
    try:
        await asyncio.wait_for(asyncio.shield(run.all_closed), 10)
    except TimeoutError:
        run.error("requests still in flight 10 s after the window closed", True)
    seconds = float(spec["seconds"])
    lat = sorted(run.latencies)
    return asdict(
        LoadResult(
            requests=len(lat),
            seconds=seconds,
            per_s=len(lat) / seconds,
            p50_ms=_percentile(lat, 50) / 1e6,
            p99_ms=_percentile(lat, 99) / 1e6,
            max_ms=(lat[-1] / 1e6) if lat else math.nan,
            errors=run.errors,
            error_samples=run.samples,
            statuses={str(k): v for k, v in sorted(run.statuses.items())},
            concurrency=c,
            generator_cpu=cpu / seconds,
        )
    )


def _loop_runner():
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run


def _generator_main() -> None:
    spec = json.load(sys.stdin)
    result = _loop_runner()(_drive(spec))
    json.dump(result, sys.stdout)


# ---- the parent's side --------------------------------------------------------------------------


def dying_with_parent(cmd: list[str]) -> list[str]:
    from ab_pipelines.processes import dying_with_parent as wrap

    return wrap(cmd)


def _split(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host or rest, int(port or 80)


def run_load(
    url: str,
    requests: list[Request],
    concurrency: int = 32,
    seconds: float = 5.0,
    warmup: float = 1.0,
) -> LoadResult:
    """Drive ``url`` (``http://host:port``) from a process of its own; the result of the window."""
    host, port = _split(url)
    spec = {
        "host": host,
        "port": port,
        "concurrency": concurrency,
        "seconds": seconds,
        "warmup": warmup,
        "requests": [
            [m, p, h, b.decode() if isinstance(b, bytes) else b] for m, p, h, b in requests
        ],
    }
    proc = subprocess.Popen(
        dying_with_parent([sys.executable, "-m", "benchmarks.edge_load"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        out, err = proc.communicate(json.dumps(spec).encode(), timeout=warmup + seconds + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError("the load generator did not finish in time") from None
    if proc.returncode:
        raise RuntimeError(f"the load generator failed:\n{err.decode()[-2000:]}")
    return LoadResult(**json.loads(out))


# ---- a trivial server, for the generator's own ceiling -----------------------------------------

_TRIVIAL_BODY = b'{"ok":true}'
_TRIVIAL = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_TRIVIAL_BODY)).encode()
    + b"\r\n\r\n"
    + _TRIVIAL_BODY
)


class _TrivialServer(asyncio.Protocol):
    """Answers every request with the same small JSON: reads the head and Content-Length only."""

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        out = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = bytes(buf[:end]).lower()
            i = head.find(b"\r\ncontent-length:")
            n = 0
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                n = int(head[i + 17 : j if j >= 0 else len(head)])
            if len(buf) < end + 4 + n:
                break
            del buf[: end + 4 + n]
            out.append(_TRIVIAL)
        if out:
            self.transport.write(b"".join(out))


async def _serve_trivial() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TrivialServer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


def trivial_server() -> tuple[str, subprocess.Popen]:
    """Start the trivial server in a process group of its own; its URL and process."""
    proc = subprocess.Popen(
        dying_with_parent([sys.executable, "-m", "benchmarks.edge_load", "--trivial-server"]),
        stdout=subprocess.PIPE,
        start_new_session=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    port = int(proc.stdout.readline())
    return f"http://127.0.0.1:{port}", proc


def ceiling(
    requests: list[Request], concurrency: int = 32, seconds: float = 5.0, warmup: float = 1.0
) -> LoadResult:
    """The generator against the trivial server: the most it can drive here with these requests."""
    from ab_pipelines.processes import stop_group

    url, proc = trivial_server()
    try:
        return run_load(url, requests, concurrency, seconds, warmup)
    finally:
        stop_group(proc, grace=2)


if __name__ == "__main__":
    if sys.argv[1:] == ["--trivial-server"]:
        _loop_runner()(_serve_trivial())
    else:
        _generator_main()
