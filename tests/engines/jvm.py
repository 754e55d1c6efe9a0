"""JVM Spark for the parity and cluster tests: the full ``pyspark`` in a venv of its own.

The project's venv holds only the Spark Connect client (``pyspark-client``, no jars, no Java).
JVM Spark, which the parity and cluster tests start to prove that the embedded engine (Sail)
answers like it, comes from the ``pyspark`` package of the same version in
``.venv-peers/spark`` (git-ignored, built on first use from PyPI, about a minute). It needs
Java 17: a missing Java is said in one sentence (``make test`` checks it first).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from ab_pipelines.settings import REPO_ROOT, check_java

__all__ = ["ConnectServer", "bare_env", "built_once", "free_port", "spark_home", "stop_all"]

VENV = REPO_ROOT / ".venv-peers" / "spark"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def built_once(folder: Path):
    """Hold a lock beside ``folder`` while it is checked and built (test processes run at once)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def spark_home() -> Path:
    """The full pyspark (jars, scripts) of the client's version, installed on first use."""
    with built_once(VENV):
        return _spark_home()


def _spark_home() -> Path:
    want = version("pyspark-client")
    python = VENV / "bin" / "python"
    home = next(iter(VENV.glob("lib/python3*/site-packages/pyspark")), None)
    stamp = VENV / "pyspark-version"
    if home is None or not stamp.exists() or stamp.read_text().strip() != want:
        print(f"building {VENV} with pyspark=={want} for the JVM tests", file=sys.stderr)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"pyspark=={want}"],
            check=True,
            timeout=1800,
        )  # fmt: skip
        stamp.write_text(want + "\n")
        home = next(VENV.glob("lib/python3*/site-packages/pyspark"))
    for script in (home / "bin").iterdir():  # pip does not keep the scripts executable
        script.chmod(0o755)
    return home


def bare_env(**extra: str) -> dict[str, str]:
    """The environment of a machine that has Java and Spark, and not this project's venv."""
    env = {
        "PATH": os.pathsep.join(
            p
            for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if not Path(p, "python").exists() or not Path(p, "activate").exists()
        ),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "LANG": "C.UTF-8",
    }
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    env.update(extra)
    return env


@dataclass
class ConnectServer:
    """``with ConnectServer(folder) as s: s.url``: a JVM Spark Connect server on loopback.

    ``master`` is ``local[2]`` or a standalone cluster's ``spark://`` URL (how real clusters
    serve Spark Connect: a server attached to the cluster's master). ``python`` is the workers'
    interpreter (``spark.pyspark.python``). It runs in its own process group and is stopped by
    that group's id, executors and Python workers with it.
    """

    folder: Path
    master: str = "local[2]"
    python: str = sys.executable
    driver_memory: str = "2g"
    name: str = "abp-connect"
    conf: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "connect-server.log"

    def start(self, timeout: float = 240) -> ConnectServer:
        return self.launch().wait(timeout)

    def launch(self) -> ConnectServer:
        """Start the server's process and return at once (:meth:`wait` until it serves)."""
        check_java()
        home = spark_home()
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.ui.enabled": "false",
            "spark.pyspark.python": self.python,
            "spark.sql.session.timeZone": "UTC",
            "spark.app.name": self.name,
            "spark.local.dir": str(self.folder / "local"),
            **self.conf,
        }
        cmd = [
            str(home / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--name", self.name, "--master", self.master,
            "--driver-memory", self.driver_memory,
        ]  # fmt: skip
        for k, v in conf.items():
            cmd += ["--conf", f"{k}={v}"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=bare_env(PYSPARK_PYTHON=self.python),
                cwd=self.folder,
                start_new_session=True,  # its own process group, stopped as one
            )
        return self

    def wait(self, timeout: float = 240) -> ConnectServer:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Connect server exited early:\n{self._tail()}")
            if "Spark Connect server started" in self.log.read_text(errors="replace"):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the Connect server did not start in {timeout} s:\n{self._tail()}"
                )
            time.sleep(0.3)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_all([self])

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def __enter__(self) -> ConnectServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all(servers: list[ConnectServer], grace: float = 30) -> None:
    """Stop servers together: SIGTERM to each process group, then SIGKILL to what outlives
    ``grace`` seconds (a JVM's shutdown hooks take a few seconds each; in turn they add up)."""
    for s in servers:
        s._signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for s in servers:
        if s.proc is None:
            continue
        try:
            s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            s._signal(signal.SIGKILL)
            s.proc.wait(timeout=30)
