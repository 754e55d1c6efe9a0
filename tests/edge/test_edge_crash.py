"""The edge killed (docs/reliability.md, the crash matrix): its workers die with it, and a
streaming SDK client keeps serving its last good config while the edge is away, then gets the
version it missed (a kill published meanwhile) when an edge is back on the same address."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ab_pipelines.assignment import Client
from tests.assignment import experiment, payload
from tests.edge import request, start_edge, write_config

pytestmark = [pytest.mark.slow]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead too
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def _payload(version: int, status: str = "running") -> dict:
    return payload({"checkout": experiment("checkout", status=status)}, version)


def test_the_workers_die_with_a_killed_edge(tmp_path):
    write_config(tmp_path, _payload(1))
    with start_edge(tmp_path, workers=2, ABP_EDGE_EXPOSURES="none") as (url, proc):
        pids: set[int] = set()
        deadline = time.monotonic() + 10
        with ThreadPoolExecutor(8) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                answers = pool.map(lambda _: request(url, "GET", "/healthz")[2], range(40))
                pids |= {json.loads(a)["pid"] for a in answers}
        assert len(pids) == 2
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, not its group
        proc.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids):
            assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_streaming_client_rides_out_a_killed_edge_and_gets_the_kill_it_missed(tmp_path):
    write_config(tmp_path, _payload(1))
    port = _free_port()
    users = [f"user-{i}" for i in range(200)]
    with start_edge(tmp_path, port=port, ABP_EDGE_EXPOSURES="none") as (url, proc):
        client = Client.from_url(f"{url}/config", stream=True, refresh_seconds=0.5)
        try:
            deadline = time.monotonic() + 10
            while client.stream_state != "streaming":
                assert time.monotonic() < deadline, client.stream_state
                time.sleep(0.05)
            before = {u: client.assign(u, "checkout") for u in users}
            assert set(before.values()) == {"control", "treatment"}
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            # the edge is away: a kill is published; the client serves what it has
            write_config(tmp_path, _payload(2, status="killed"))
            time.sleep(1.0)
            assert client.config_version == 1
            assert {u: client.assign(u, "checkout") for u in users} == before
        except BaseException:
            client.close()
            raise
    try:
        # an edge back on the same address: the client has the kill within seconds
        with start_edge(tmp_path, port=port, ABP_EDGE_EXPOSURES="none"):
            deadline = time.monotonic() + 40  # the reconnect backoff is capped at 30 s
            while client.config_version != 2:
                assert time.monotonic() < deadline, "the kill did not reach the client"
                time.sleep(0.05)
            assert {client.assign(u, "checkout") for u in users} == {"control"}
    finally:
        client.close()
