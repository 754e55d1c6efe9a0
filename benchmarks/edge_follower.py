"""The other process of the kill-propagation benchmark: a streaming SDK client that reports when
it serves a new config.

``python -m benchmarks.edge_follower <config url>`` holds ``Client.from_url(url, stream=True)``
and answers one line on stdout for each line on stdin:

- ``arm <experiment> <user> <version>``: wait until the client serves config ``version`` (or a
  later one) and ``assign(user, experiment)`` is not the baseline; answer ``armed <variant>``.
  Then, at once, poll ``assign`` every ``POLL_SECONDS`` until it returns the baseline, and answer
  ``served <time.monotonic()> <time.time()> <config version>`` (CLOCK_MONOTONIC is one clock for
  every process on Linux, so the parent subtracts the moment its kill returned; the wall clock is
  compared with the config file's mtime).
- ``version <n>``: poll until the client serves version ``n`` or later; ``served ...`` as above.
- ``quit``: close the client and exit.

Beside the client, a raw subscriber of ``<url>/stream`` (http.client on a thread) notes the wall
time each version's event arrives; ``served`` lines end with that time for the version served
(``nan`` if none arrived), so the parent can tell the edge's share (file written to event sent)
from the client's.

Waiting longer than ``TIMEOUT_SECONDS`` answers ``timeout <what the client serves>``.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import sys
import threading
import time
from urllib.parse import urlsplit

from ab_pipelines.assignment import Client

POLL_SECONDS = 0.0005
TIMEOUT_SECONDS = 30.0


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


class _RawStream:
    """``GET <url>/stream`` read line by line on a daemon thread: version -> wall time of its
    ``id:`` line."""

    def __init__(self, config_url: str) -> None:
        parts = urlsplit(config_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.conn.request("GET", parts.path.rstrip("/") + "/stream")
        self.response = self.conn.getresponse()
        self.arrivals: dict[int, float] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError, http.client.HTTPException):
            while line := self.response.readline():
                if line.startswith(b"id: "):
                    self.arrivals.setdefault(int(line[4:]), time.time())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(2)
        self.conn.close()


RAW: _RawStream | None = None


def _served(client) -> None:
    mono, wall, version = time.monotonic(), time.time(), client.config_version
    deadline = mono + 2.0  # the raw subscriber may hold the other worker's stream, a bit later
    while RAW and version not in RAW.arrivals and time.monotonic() < deadline:
        time.sleep(0.001)
    raw = RAW.arrivals.get(version, math.nan) if RAW else math.nan
    _say(f"served {mono!r} {wall!r} {version} {raw!r}")


def _until(check) -> bool:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _version(client: Client, want: int) -> None:
    if _until(lambda: (client.config_version or 0) >= want):
        _served(client)
    else:
        _say(f"timeout version {client.config_version}")


def _arm(client: Client, exp_id: str, user: str, want: int) -> None:
    def armed() -> bool:
        if (client.config_version or 0) < want or exp_id not in client.config.experiments:
            return False
        return client.assign(user, exp_id) not in (None, _baseline(client, exp_id))

    if not _until(armed):
        _say(f"timeout arm {client.config_version} {client.assign(user, exp_id)}")
        return
    baseline = _baseline(client, exp_id)
    _say(f"armed {client.assign(user, exp_id)}")
    if _until(lambda: client.assign(user, exp_id) == baseline):
        _served(client)
    else:
        _say(f"timeout kill {client.config_version}")


def _baseline(client: Client, exp_id: str) -> str:
    return client.config.experiments[exp_id].baseline


def main(url: str) -> None:
    global RAW
    client = Client.from_url(url, stream=True)
    RAW = _RawStream(url)
    _say(f"ready {client.config_version}")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] == "version":
            _version(client, int(words[1]))
        elif words[0] == "arm":
            _arm(client, words[1], words[2], int(words[3]))
        else:
            _say(f"unknown {words[0]}")
    RAW.close()
    client.close()


if __name__ == "__main__":
    main(sys.argv[1])
