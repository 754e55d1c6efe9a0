"""A real Spark standalone cluster on loopback: one master and N workers from the pip package.

The workers run with a bare environment (no project venv on PATH, no PYTHONPATH): the executors'
Python is a separate venv holding only ``EXECUTOR_REQUIREMENTS``, so anything the project's code
needs on an executor must come with the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.engines.jvm import bare_env, built_once, free_port, spark_home

__all__ = ["StandaloneCluster", "worker_venv"]


def worker_venv(folder: Path) -> Path:
    """A venv with only the executors' requirements (pinned to the driver's versions): its python.

    Reused when it already holds exactly those requirements.
    """
    with built_once(folder):
        return _worker_venv(folder)


def _worker_venv(folder: Path) -> Path:
    from ab_pipelines.executors import executor_requirements

    reqs = executor_requirements()
    python = folder / "bin" / "python"
    stamp = folder / "requirements.txt"
    if python.exists() and stamp.exists() and stamp.read_text().split() == reqs:
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(folder)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *reqs],
        check=True,
    )
    stamp.write_text("\n".join(reqs) + "\n")
    return python


@dataclass
class StandaloneCluster:
    """``with StandaloneCluster(folder, workers=2) as c: c.url`` (every process stopped on exit)."""

    folder: Path
    workers: int = 2
    cores: int = 1
    memory: str = "2g"
    port: int = field(default_factory=free_port)
    ui_port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str, **env: str) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        cmd = [str(spark_home() / "bin" / "spark-class"), *args]
        self.procs.append(
            subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=bare_env(**env),
                cwd=self.folder,
                start_new_session=True,  # its own process group, stopped as one
            )
        )
        log.close()

    def state(self) -> dict:
        """The master's JSON state. Right after it starts, the master has answered /json/ with
        an HTML page once (Spark 4.2, seen in CI): a page that is not JSON is asked again."""
        for attempt in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
                body = r.read()
            try:
                return json.loads(body)
            except ValueError:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def start(self, timeout: float = 120) -> StandaloneCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        master = "org.apache.spark.deploy.master.Master"
        self._start(
            "master", master, "--host", "127.0.0.1", "--port", str(self.port),
            "--webui-port", str(self.ui_port),
        )  # fmt: skip
        for i in range(self.workers):
            work = self.folder / f"worker{i}"
            self._start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                "--webui-port", str(free_port()), "--work-dir", str(work), self.url,
                SPARK_LOCAL_DIRS=str(work / "local"),
            )  # fmt: skip
        try:
            return self._wait_up(timeout)
        except BaseException:  # whatever went wrong, the cluster's processes must not outlive it
            self.stop()
            raise

    def _wait_up(self, timeout: float) -> StandaloneCluster:
        deadline = time.monotonic() + timeout
        while True:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a cluster process exited early; see {self.folder}/*.log")
            try:
                alive = [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) == self.workers:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not come up in {timeout} s; see {self.folder}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop every process started (and their children: executors), whole process groups."""
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
