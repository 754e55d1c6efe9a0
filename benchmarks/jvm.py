"""JVM Spark for the benchmarks' third column: a Spark Connect server in ``local[2]``.

The same server the parity tests start (``tests/engines/jvm.py``: the full ``pyspark`` of the
client's version in ``.venv-peers/spark``), with the 3 GiB driver the JVM path used to get. A
benchmark opens it with ``with JvmSpark() as jvm:`` after its project and peer measurements and
it is stopped (its whole process group) when the block ends, so an idle JVM never runs beside,
or is counted in the memory of, another measurement.
"""

from __future__ import annotations

import time

from ab_pipelines.lake.engine import SESSION_CONF
from ab_pipelines.settings import REPO_ROOT
from tests.engines.jvm import ConnectServer

__all__ = ["JvmSpark"]


class JvmSpark:
    """A session on a fresh JVM Spark Connect server; ``startup`` is the seconds from nothing
    to its first query's answer (the server's start included), ``pid`` the server's process."""

    def __enter__(self) -> JvmSpark:
        from pyspark.sql import SparkSession

        t0 = time.perf_counter()
        self.server = ConnectServer(REPO_ROOT / ".bench-data" / "jvm-connect", driver_memory="3g")
        self.server.start()
        try:
            self.session = SparkSession.builder.remote(self.server.url).create()
            for key, value in SESSION_CONF.items():
                self.session.conf.set(key, value)
            self.session.sql("SELECT 1").collect()
        except BaseException:
            self.server.stop()
            raise
        self.startup = time.perf_counter() - t0
        self.pid = self.server.proc.pid
        return self

    def __exit__(self, *exc) -> None:
        # The session before its server: a client whose server is gone hangs closing its
        # channel when the interpreter exits.
        try:
            self.session.stop()
        finally:
            self.server.stop()
