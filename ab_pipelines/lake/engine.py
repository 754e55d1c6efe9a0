"""The engine seam: the process's one Spark session, always through Spark Connect.

Two engines, one code path (docs/engines.md):

- ``ABP_SPARK_REMOTE`` unset (the default): **Sail** (PyPI ``pysail``, a Spark Connect server in
  Rust on Apache DataFusion), started inside this process on loopback on a free port. No Java,
  about a second from nothing to the first query.
- ``ABP_SPARK_REMOTE=sc://host:15002[/;token=...;use_ssl=true]``: any Spark Connect server (a
  Spark 4 cluster's Connect server on standalone, Kubernetes or YARN, a managed platform, a Sail
  server of its own). The URL's parameters are Spark Connect's: ``token`` (a bearer token, which
  needs TLS), ``use_ssl``, ``user_id``.

The rest of the code never asks which engine runs. It gets a session from :func:`spark_session`
and sends it SQL and DataFrame calls that both engines run the same way; the engine only reads
(the parquet files the Delta log lists, ``Lake.read_spark``) and computes: Delta tables are read
and written by delta-rs alone. Python work that is not SQL (the landing's parse of dump files)
goes through :func:`run_tasks`, which runs it where the engine's workers are: worker processes on
this machine when the engine is embedded, the cluster's executors (``mapInArrow``) when it is
remote.

Nothing here uses the JVM-only parts of PySpark (SparkContext, RDDs, ``_jdf``, ``addPyFile``,
static confs set from the client): they do not exist in Spark Connect.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import pickle
import shutil
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ab_pipelines.executors import probe, project_zip, python_version
from ab_pipelines.processes import alive, die_with_parent
from ab_pipelines.settings import SetupError, env_number

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "EngineSettings",
    "checkpoint",
    "engine_tags",
    "fetch_arrow",
    "release_checkpoints",
    "run_tasks",
    "spark_session",
    "stop_spark",
]

REMOTE_ENV = "ABP_SPARK_REMOTE"
CONF_ENV = "ABP_SPARK_CONF"
WORKERS_ENV = "ABP_TASK_WORKERS"
WAIT_ENV = "ABP_SPARK_EXECUTOR_WAIT"
SAIL_MEMORY_ENV = "ABP_SAIL_MEMORY"

# Settings of the JVM-local era: they configured a JVM this process no longer starts. Each now
# belongs to the Spark Connect server; a left-over value is refused rather than ignored.
RETIRED = {
    "ABP_SPARK_MASTER": "the master is the Connect server's (its --master)",
    "ABP_SPARK_EXECUTOR_MEMORY": "executor sizes are the Connect server's (spark.executor.memory)",
    "ABP_SPARK_EXECUTOR_CORES": "executor sizes are the Connect server's (spark.executor.cores)",
    "ABP_SPARK_DRIVER_MEMORY": "the driver is the Connect server (spark.driver.memory)",
    "ABP_SPARK_PYTHON": "the workers' Python is the Connect server's (spark.pyspark.python)",
}

# Session settings sent to every engine (runtime confs: Spark Connect cannot set static ones).
# UTC everywhere (contract); few shuffle partitions for a small machine and hashed joins where
# the size checks allow (JVM Spark; Sail plans its own partitions and joins).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.join.preferSortMergeJoin": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


@dataclass(frozen=True)
class EngineSettings:
    """What the environment says about the engine (every field a variable; docs/engines.md).

    Attributes:
        remote: ``ABP_SPARK_REMOTE``, a Spark Connect URL; None means Sail embedded.
        conf: SESSION_CONF, then ``ABP_SPARK_CONF`` (``key=value;key=value``), sent with
            ``spark.conf.set`` to the session (runtime settings only).
        task_workers: ``ABP_TASK_WORKERS`` (default: the cores), worker processes of
            :func:`run_tasks` when the engine is embedded.
        executor_wait: ``ABP_SPARK_EXECUTOR_WAIT`` seconds (default 300) a remote engine has to
            run the first probe task before the session is refused with the likely reasons.
        sail_memory: ``ABP_SAIL_MEMORY`` (e.g. ``6g``), the embedded engine's memory pool;
            beyond it Sail spills or fails the query. Unset: Sail's default (no limit).
    """

    remote: str | None = None
    conf: dict[str, str] = field(default_factory=lambda: dict(SESSION_CONF))
    task_workers: int = max(1, os.cpu_count() or 1)
    executor_wait: float = 300.0
    sail_memory: int | None = None

    @property
    def embedded(self) -> bool:
        return self.remote is None

    def check(self) -> EngineSettings:
        """A remote engine must be reachable (seconds, not the client's minutes of retries)."""
        if self.remote is not None:
            _reachable(self.remote)
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EngineSettings:
        """Read the variables; SetupError naming the variable for a malformed or retired one."""
        env = dict(os.environ if env is None else env)
        for var, why in RETIRED.items():
            if env.get(var, "").strip():
                raise SetupError(
                    f"{var} is no longer read: every Spark call goes through Spark Connect and "
                    f"{why}; unset it, and set {REMOTE_ENV}=sc://host:15002 to use a cluster "
                    "(docs/engines.md)."
                )
        remote = env.get(REMOTE_ENV, "").strip() or None
        if remote is not None and not remote.startswith("sc://"):
            raise SetupError(
                f"{REMOTE_ENV}={remote!r} is not a Spark Connect URL; use sc://host:port "
                "(e.g. sc://spark-connect:15002), or unset it for the embedded engine."
            )
        conf = dict(SESSION_CONF)
        for pair in filter(None, (p.strip() for p in env.get(CONF_ENV, "").split(";"))):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise SetupError(
                    f"{CONF_ENV} entry {pair!r} is not key=value; separate pairs with ';'."
                )
            conf[key.strip()] = value.strip()
        return cls(
            remote=remote,
            conf=conf,
            task_workers=env_number(env, WORKERS_ENV, max(1, os.cpu_count() or 1)),
            executor_wait=float(env_number(env, WAIT_ENV, 300)),
            sail_memory=_size(env, SAIL_MEMORY_ENV),
        )


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(env: dict[str, str], var: str) -> int | None:
    """A size like 6g, 512m or 4gb, in bytes (None when unset)."""
    raw = env.get(var, "").strip().lower()
    if not raw:
        return None
    number = raw.rstrip("kmgtb")
    unit = raw[len(number) :].removesuffix("b")
    if not number.isdigit() or int(number) < 1 or unit not in _UNITS:
        raise SetupError(f"{var}={raw!r} is not a size like 6g or 512m.")
    return int(number) * _UNITS[unit]


# ---- the process's engine ------------------------------------------------------------------
@dataclass
class _Engine:
    session: Any
    settings: EngineSettings
    url: str
    name: str  # what runs: "sail 0.7.2 (embedded)", "spark connect 4.2.0"
    server: Any = None  # the embedded SparkConnectServer
    scratch: Path | None = None  # the embedded engine's checkpoint folder
    pool: concurrent.futures.ProcessPoolExecutor | None = None


_lock = threading.Lock()
_engine: _Engine | None = None


def spark_session(home: Path | None = None):
    """The process's Spark Connect session, started on first use, then shared.

    ``home`` is the ABP_HOME whose ``engine/`` folder holds the embedded engine's scratch files
    (default: the environment's) and that a remote engine's executors must be able to write.
    """
    return _the_engine(home).session


def _client_home() -> None:
    """Give the PySpark client a SPARK_HOME before it is imported.

    PySpark 4.2's client imported from ``python -c`` (no ``__main__.__file__``) takes itself for
    a doctest run and looks for a Spark installation, which a pure client does not have: it
    prints a page and exits. Its own folder satisfies it; nothing else reads it here.
    """
    if "SPARK_HOME" not in os.environ:
        import importlib.util

        spec = importlib.util.find_spec("pyspark")
        if spec is not None and spec.origin:
            os.environ["SPARK_HOME"] = os.path.dirname(spec.origin)


def _the_engine(home: Path | None = None) -> _Engine:
    global _engine
    with _lock:
        if _engine is not None and not _engine.session.client.is_closed:
            return _engine
        settings = EngineSettings.from_env()
        _client_home()
        from ab_pipelines.settings import paths

        home = Path(home) if home is not None else paths().home
        _engine = _start_sail(settings, home) if settings.embedded else _connect(settings, home)
        return _engine


def _configure(session, settings: EngineSettings) -> None:
    for key, value in settings.conf.items():
        try:
            session.conf.set(key, value)
        except Exception as exc:  # noqa: BLE001 - the server's refusal, told in one sentence
            reason = str(exc).splitlines()[0][:200]
            raise SetupError(
                f"the Spark Connect server refused the setting {key}={value} ({reason}); a "
                f"static setting must be set on the server itself, not in {CONF_ENV}."
            ) from None


def _start_sail(settings: EngineSettings, home: Path) -> _Engine:
    """Sail in this process, on loopback: its scratch folder under ``$ABP_HOME/engine``."""
    import pysail
    from pysail.spark import SparkConnectServer
    from pyspark.sql import SparkSession

    scratch = home / "engine" / f"sail-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _remove_dead_scratch(home / "engine")
    for sub in ("checkpoint", "spill"):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    # Sail reads its settings from the environment when the server is created (pysail's own
    # keys, SAIL_ + the key with "." as "__"; docs/engines.md lists the ones set here).
    sail = {
        # Local checkpoints are parquet files here (a file:/// URL: file:/ reads as nothing).
        "SAIL_EXECUTION__CHECKPOINT__PATH": "file://" + str(scratch / "checkpoint"),
        # Spills of joins and sorts go under ABP_HOME too, not to the system's /tmp.
        "SAIL_RUNTIME__TEMPORARY_FILES__PATHS": json.dumps([str(scratch / "spill")]),
        # The session is this process's own: it must not expire while a notebook sits idle.
        "SAIL_SPARK__SESSION_TIMEOUT_SECS": str(7 * 86400),
    }
    if settings.sail_memory is not None:
        sail["SAIL_RUNTIME__MEMORY_POOL__TYPE"] = "fair"
        sail["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] = str(settings.sail_memory)
    os.environ.update(sail)
    os.environ.setdefault("RUST_LOG", "error")  # Sail logs each session at INFO otherwise
    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    host, port = server.listening_address
    url = f"sc://{host}:{port}"
    session = SparkSession.builder.remote(url).create()
    _configure(session, settings)
    version = getattr(pysail, "__version__", "") or _dist_version("pysail")
    engine = _Engine(session, settings, url, f"sail {version} (embedded)", server, scratch)
    atexit.register(_stop, engine)
    return engine


def _remove_dead_scratch(folder: Path) -> None:
    """Scratch folders of embedded engines whose process is gone (a kill leaves them)."""
    if not folder.is_dir():
        return
    for d in folder.glob("sail-*-*"):
        pid = d.name.split("-")[1]
        if pid.isdigit() and not alive(int(pid), d.stat().st_mtime):
            shutil.rmtree(d, ignore_errors=True)


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _connect(settings: EngineSettings, home: Path) -> _Engine:
    """A remote Spark Connect server: connect, ship the project's code, probe the executors."""
    from pyspark.sql import SparkSession

    url = settings.remote
    assert url is not None
    _reachable(url)
    try:
        session = SparkSession.builder.remote(url).create()
        version = session.version
    except Exception as exc:  # noqa: BLE001 - unreachable, refused, wrong version: say which
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise SetupError(
            f"cannot reach the Spark Connect server at {url} ({reason}); check that it runs and "
            f"that {REMOTE_ENV} names its host and port (docs/engines.md)."
        ) from None
    engine = _Engine(session, settings, url, f"spark connect {version}")
    try:
        _configure(session, settings)
        _ship_project(session, home)
        check_executors(session, home, settings.executor_wait, url)
    except SetupError:
        session.stop()
        raise
    return engine


def _reachable(url: str, timeout: float = 10.0) -> None:
    """Fail in seconds, not after the client's minutes of retries, when nothing listens there."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url.split(";", 1)[0].replace("sc://", "http://", 1))
    host, port = parsed.hostname or "", parsed.port or 15002
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise SetupError(
            f"cannot reach the Spark Connect server at {url} ({exc.strerror or exc}); check "
            f"that it runs and that {REMOTE_ENV} names its host and port (docs/engines.md)."
        ) from None


def _ship_project(session, home: Path) -> None:
    """Send the project's code with the session, as Spark Connect artifacts (a Python zip).

    A server that cannot take artifacts (Sail) must have the project installed where its
    Python runs; the probe then says whether it has.
    """
    zipped = project_zip(home / "engine" / "artifacts")
    try:
        session.addArtifacts(str(zipped), pyfile=True)
    except Exception as exc:  # noqa: BLE001 - the server's refusal; the probe decides
        log.warning(
            "the Spark Connect server did not take the project's code (%s); its workers must "
            "have ab_pipelines installed",
            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
        )


def _first_cause(exc: BaseException) -> str:
    """The line of a failed Spark job that says why (a Python version or import problem first)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for marker in ("different version", "ModuleNotFoundError", "ImportError", "Error"):
        found = [ln for ln in lines if marker in ln]
        if found:
            return found[-1][:300]
    return lines[0][:300] if lines else repr(exc)


PROBE_TASKS = 4


def check_executors(session, home: Path, timeout: float, url: str = "the server") -> None:
    """Run the probe on the executors once; a SetupError names each host's problem and its fix.

    It catches at session start, not deep inside a landing: no executor at all within
    ``timeout`` seconds (no room on the cluster, or workers that cannot reach the server), a
    worker Python of another minor version than this one, a missing requirement, a lake folder
    the executors cannot write.
    """
    where = str(home)
    want = python_version()
    done: dict[str, Any] = {}

    def probe_all():
        try:
            done["reports"] = _probe_remote(session, where)
        except BaseException as exc:  # noqa: BLE001 - reported below
            done["error"] = exc

    worker = threading.Thread(target=probe_all, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        try:
            session.interruptAll()
        except Exception:  # noqa: BLE001, S110 - the session is refused anyway
            pass
        raise SetupError(
            f"no Spark executor ran a task within {timeout:.0f} s: either the cluster behind "
            f"{url} has no free cores or memory for an "
            "executor, or its workers cannot start (see the server's log; docs/engines.md)."
        )
    if "error" in done:
        cause = _first_cause(done["error"])
        if "No module named 'ab_pipelines'" in cause:
            raise SetupError(
                f"the project's code did not reach the Spark executors ({cause}): it is shipped "
                "as a Spark Connect artifact; a server that takes no artifacts needs "
                "ab_pipelines installed beside its workers' Python (docs/engines.md)."
            ) from None
        raise SetupError(
            f"the Spark executors could not run the project's Python ({cause}); give the "
            f"server's workers a Python {want} with the packages 'abp executor-requirements' "
            "lists (spark.pyspark.python on the server; docs/engines.md)."
        ) from None
    problems = []
    for r in done["reports"]:
        if r["missing"]:
            problems.append(
                f"{r['host']}: the executors' Python lacks {', '.join(r['missing'])} "
                "(install what 'abp executor-requirements' lists)"
            )
        if not r["sees_home"]:
            problems.append(
                f"{r['host']}: the executors cannot write ABP_HOME {where} "
                "(mount the same shared folder at the same path on every worker)"
            )
    if problems:
        problems = list(dict.fromkeys(problems))
        raise SetupError("the Spark cluster is not ready: " + "; ".join(problems) + ".")


def _probe_remote(session, where: str) -> list[dict]:
    """:func:`probe` in a few tasks on the executors, through a plain (pickled, not Arrow)
    Python UDF: it needs nothing but the standard library there, so it can say what is missing."""
    from pyspark.sql import functions as F

    @F.udf("string", useArrow=False)
    def run(_):
        return json.dumps(probe(where))

    frame = session.range(0, PROBE_TASKS, 1, PROBE_TASKS).select(run("id").alias("report"))
    return [json.loads(r["report"]) for r in frame.collect()]


def engine_tags(spark) -> dict[str, str]:
    """What ran a step, for Dagster run tags and metadata: the engine, its URL, the session."""
    e = _engine
    if e is not None and e.session is spark:
        name, url = e.name, e.url
    else:
        name, url = f"spark connect {spark.version}", f"sc://{getattr(spark.client, 'host', '?')}"
    return {
        "abp/spark_engine": name,
        "abp/spark_remote": url,
        "abp/spark_session": spark.session_id,
    }


def stop_spark() -> None:
    """Stop the process's engine (the embedded server too); the next call starts a new one."""
    global _engine
    with _lock:
        if _engine is not None:
            _stop(_engine)
            _engine = None


def _stop(engine: _Engine) -> None:
    if engine.pool is not None:
        # Tasks of an interrupted landing may still run there: they are not waited for (the
        # workers die with this process; a task's output is only ever committed from here).
        engine.pool.shutdown(wait=False, cancel_futures=True)
        engine.pool = None
    try:
        engine.session.stop()
    except Exception:  # noqa: BLE001, S110 - stopping a session that already broke
        pass
    finally:
        # A client left open calls its server again at interpreter exit, retrying for
        # minutes once the server below is gone: it counts as closed whatever stop() did.
        with contextlib.suppress(Exception):
            engine.session.client._closed = True
    if engine.server is not None and engine.server.running:
        engine.server.stop()
    if engine.scratch is not None:
        shutil.rmtree(engine.scratch, ignore_errors=True)


# ---- results ---------------------------------------------------------------------------------
def fetch_arrow(df):
    """``df.toArrow()`` in one call to the engine.

    PySpark's ``toArrow`` first asks the server for the frame's schema (a call that plans the
    query), then runs it (which plans it again): for a large plan, such as an experiment's
    ``sufficient_stats`` with its interaction cells, the first call alone cost 0.3 s of a day's
    analysis at 100,000 users. The schema sent with the results is used instead, and the table
    cast to it as ``toArrow`` does: the same names, types and values (only nullability may differ:
    the executed plan knows more columns to be non-null than the analysed one).
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    table, schema = df._to_table()  # pyspark-client 4.2 (pinned)
    if schema is None:  # a server that sends no schema with its results: ask for it
        schema = df.schema
    arrow = to_arrow_schema(schema, error_on_duplicated_field_names_in_struct=True, timezone="UTC")
    return table.cast(arrow)


# ---- frames the engine keeps ----------------------------------------------------------------
def checkpoint(df):
    """``df`` computed now, once, and kept by the engine with its lineage cut (an eager local
    checkpoint), so the queries that read it scan the kept rows.

    No storage level (Sail refuses one; both engines keep the rows by default). PySpark's client
    binds the kept frame to the thread's *active* session, not to ``df``'s: ``df``'s session is
    made the active one for the call, so a process with two sessions (the parity tests) keeps
    each frame in its own.
    """
    session = df.sparkSession
    local = type(session)._active_session
    before = getattr(local, "session", None)
    local.session = session
    try:
        return df.localCheckpoint(eager=True)
    finally:
        local.session = before


def release_checkpoints(frames: list[Any]) -> None:
    """Let the engine drop what it keeps for checkpointed ``frames``, now; empties the list.

    A JVM server drops a kept frame when the client lets go of it: the client's release runs in
    the finalizer of the frame's plan, so the references in ``frames`` are dropped here, and the
    garbage is collected only if a plan outlives them (held in a reference cycle; a collection
    costs 0.2 s in a process with Dagster loaded, once per experiment, and the plans measured
    never needed it). A frame still referenced elsewhere (e.g. a frame derived from it) stays
    kept until that goes. Sail ignores the release and keeps the files until the session ends,
    which for the embedded engine is the end of the process: a backfill of many days would fill
    the disk, so its files are removed here.
    """
    e = _engine
    plans = [weakref.ref(df._plan) for df in frames]
    kept = [(df.sparkSession, getattr(df._plan, "_relation_id", None)) for df in frames]
    frames.clear()
    for session, relation in kept:
        if e is not None and e.scratch is not None and session is e.session and relation:
            folder = e.scratch / "checkpoint" / e.session.session_id / relation
            shutil.rmtree(folder, ignore_errors=True)
    if any(p() is not None for p in plans):
        gc.collect()


# ---- Python tasks where the engine's workers are ------------------------------------------
def run_tasks(spark, fn: Callable[..., T], args: Sequence[tuple], small: bool = False) -> list[T]:
    """``[fn(*a) for a in args]``, in parallel where the engine's workers are, in order.

    Embedded engine: a pool of worker processes on this machine (``ABP_TASK_WORKERS``, spawned
    on first use, kept for the process's life, killed with it); threads would not do, since
    the parse holds the GIL for a third of its time (bytes scans, UTF-8 checks), and a Python UDF
    on Sail runs under this process's GIL too. Remote engine: one task per item on the cluster's
    executors (``mapInArrow``). Either way ``fn`` must be a module-level function (it is sent by
    reference), its arguments and result picklable, and it runs where ``$ABP_HOME`` is the same
    folder. ``small`` (the caller's estimate: a few MB in all) runs the tasks here, in order,
    unless the workers are already up.
    """
    e = _engine
    if e is not None and e.session is spark and e.settings.embedded:
        if len(args) <= 1 or e.settings.task_workers == 1 or (small and e.pool is None):
            # Work this small costs less here than starting the workers (about a second of
            # imports each); once they run, they take everything.
            return [fn(*a) for a in args]
        for attempt in (1, 2):
            if e.pool is None:
                import multiprocessing

                # Spawned, not forked (this process runs Sail's and gRPC's threads); each
                # worker dies with the thread that started it (as with any spawned process, a
                # script that lands data needs the `if __name__ == "__main__":` guard).
                e.pool = concurrent.futures.ProcessPoolExecutor(
                    e.settings.task_workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=die_with_parent,
                )
            try:
                return list(e.pool.map(_call, [(fn, a) for a in args]))
            except concurrent.futures.process.BrokenProcessPool:
                # A worker died: killed, out of memory, or its starting thread ended. The tasks
                # are idempotent (a retried one overwrites its own output): once more, anew.
                e.pool = None
                if attempt == 2:
                    raise
    return run_remote(spark, fn, args)


def _call(task: tuple[Callable[..., T], tuple]) -> T:
    fn, args = task
    return fn(*args)


def run_remote(spark, fn: Callable[..., T], args: Sequence[tuple]) -> list[T]:
    """``run_tasks`` on the executors: one row (and partition) per item through ``mapInArrow``."""
    import pyarrow as pa

    if not args:
        return []
    table = pa.table(
        {
            "i": pa.array(range(len(args)), pa.int64()),
            "task": pa.array([pickle.dumps(a) for a in args], pa.binary()),
        }
    )
    frame = spark.createDataFrame(table).repartitionByRange(len(args), "i")

    def run(batches: Iterable[pa.RecordBatch]):  # on an executor
        for batch in batches:
            index = batch.column("i").to_pylist()
            out = [pickle.dumps(fn(*pickle.loads(t))) for t in batch.column("task").to_pylist()]
            yield pa.RecordBatch.from_arrays(
                [pa.array(index, pa.int64()), pa.array(out, pa.binary())], ["i", "result"]
            )

    got = frame.mapInArrow(run, "i long, result binary").toArrow()
    if got.num_rows != len(args):
        raise RuntimeError(f"{got.num_rows} results came back for {len(args)} tasks")
    order = sorted(range(got.num_rows), key=got.column("i").to_pylist().__getitem__)
    results = got.column("result").to_pylist()
    return [pickle.loads(results[k]) for k in order]
