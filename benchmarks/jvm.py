"""JVM Spark for the benchmarks' third column: a Spark Connect server in ``local[2]``.

The same server the parity tests start (``tests/engines/jvm.py``: the full ``pyspark`` of the
client's version in ``.venv-peers/spark``), with the 3 GiB driver the JVM path used to get. One
server per benchmark process, started on first use and stopped (its whole process group) at exit.
"""

from __future__ import annotations

import atexit
import time

from ab_pipelines.lake.engine import SESSION_CONF
from ab_pipelines.settings import REPO_ROOT
from tests.engines.jvm import ConnectServer

__all__ = ["jvm_session", "jvm_startup_seconds", "server_pid"]

_state: dict = {}


def jvm_session():
    """A session on the benchmark's JVM Spark Connect server (started on first use)."""
    if "session" not in _state:
        from pyspark.sql import SparkSession

        t0 = time.perf_counter()
        server = ConnectServer(REPO_ROOT / ".bench-data" / "jvm-connect", driver_memory="3g")
        server.start()
        session = SparkSession.builder.remote(server.url).create()
        # The session before its server: a client whose server is gone hangs closing its
        # channel when the interpreter exits.
        atexit.register(lambda: (session.stop(), server.stop()))
        for key, value in SESSION_CONF.items():
            session.conf.set(key, value)
        session.sql("SELECT 1").collect()
        _state.update(server=server, session=session, startup=time.perf_counter() - t0)
    return _state["session"]


def jvm_startup_seconds() -> float:
    """Seconds from nothing to the first query on the JVM server (its start included)."""
    jvm_session()
    return _state["startup"]


def server_pid() -> int:
    """The JVM server's process id (its memory is sampled apart from the benchmark process)."""
    jvm_session()
    return _state["server"].proc.pid
