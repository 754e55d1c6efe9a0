"""Tests of ab_pipelines.edge against a real `abp serve` process, and the helpers they share.

``start_edge(home, workers=1, **env)`` starts ``abp serve --port 0`` in a process group of its own
(dying with the test), waits until it answers ``/healthz``, yields ``(url, proc)`` and stops it by
its group id. ``env`` adds environment variables (``ABP_EDGE_HEARTBEAT_SECONDS="0.2"``).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from ab_pipelines.processes import dying_with_parent, stop_group
from ab_pipelines.settings import Paths

ABP = str(Path(sys.executable).with_name("abp"))


def _folder(home) -> Path:
    """ABP_HOME from a folder or the ``home`` fixture's Paths."""
    return home.home if isinstance(home, Paths) else Path(home)


START_SECONDS = 30.0


@contextlib.contextmanager
def start_edge(
    home: Path, workers: int = 1, port: int = 0, **env: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A running ``abp serve --port PORT --workers N`` for ABP_HOME ``home`` (a folder, or the
    ``home`` fixture's Paths; port 0: a free one); its output goes to
    ``<home>/edge/serve-<ns>.log``."""
    home = _folder(home)
    record = home / "edge" / "serve.json"
    (home / "edge").mkdir(parents=True, exist_ok=True)
    log_path = home / "edge" / f"serve-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "ABP_HOME": str(home), **{k: str(v) for k, v in env.items()}}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            dying_with_parent([ABP, "serve", "--port", str(port), "--workers", str(workers)]),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
        )
    try:
        url = _wait_until_serving(proc, record, log_path)
        yield url, proc
    finally:
        stop_group(proc, grace=10.0)


def _wait_until_serving(proc: subprocess.Popen, record: Path, log_path: Path) -> str:
    deadline = time.monotonic() + START_SECONDS
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"abp serve exited ({proc.returncode}): {log_path.read_text()}")
        if url is None:
            with contextlib.suppress(OSError, ValueError):
                rec = json.loads(record.read_text())
                if rec.get("pid") == proc.pid:
                    url = rec["url"]
        if url is not None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if request(url, "GET", "/healthz", timeout=2)[0] == 200:
                    return url
        time.sleep(0.05)
    raise RuntimeError(f"abp serve did not answer in {START_SECONDS} s: {log_path.read_text()}")


def request(
    url: str,
    method: str,
    path: str,
    body: bytes | str | dict | list | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One HTTP request on a new connection: (status, headers, body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def write_config(home: Path, payload: dict) -> Path:
    """Sign ``payload`` and put it at ``<home>/edge/config.json`` atomically, as publish does."""
    from ab_pipelines.assignment.signing import sign_payload

    home = _folder(home)
    path = home / "edge" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".config.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(sign_payload(payload)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``, in exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        sample, _, rest = series.partition("{")
        if sample != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


class Subscriber:
    """A ``/config/stream`` connection read on a thread: ``lines`` holds (monotonic time, line)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, query: str = "") -> None:
        import threading

        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.conn.request("GET", "/config/stream" + query, headers=headers or {})
        self.response = self.conn.getresponse()
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException, AttributeError):
            while True:
                line = self.response.readline()
                if not line:
                    return
                self.lines.append((time.monotonic(), line.decode().rstrip("\n")))

    def events(self) -> list[tuple[float, int, dict]]:
        """(arrival, id, envelope) of each complete config event so far."""
        out, current = [], None
        for at, line in list(self.lines):
            if line.startswith("id: "):
                current = int(line[4:])
            elif line.startswith("data: ") and current is not None:
                out.append((at, current, json.loads(line[6:])))
                current = None
        return out

    def wait_for(self, version: int, timeout: float = 5.0) -> float:
        """The arrival time of the event of ``version``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, v, _ in self.events():
                if v == version:
                    return at
            time.sleep(0.005)
        raise AssertionError(f"version {version} not received; got {self.lines}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(2)
        self.conn.close()
