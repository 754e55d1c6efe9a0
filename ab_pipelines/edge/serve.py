"""``abp serve``: the edge app on uvicorn, in one process or a parent supervising N workers.

The parent binds the listening socket itself (so ``--port 0`` gives one free port that every
worker shares), says where it listens (one line on stdout and ``$ABP_HOME/edge/serve.json``),
and hands the socket to uvicorn: served in-process with one worker, else by uvicorn's
``Multiprocess`` supervisor, whose workers are spawned processes that die with the parent
(PR_SET_PDEATHSIG, ``app_from_env``) and share one Prometheus multiprocess folder,
``$ABP_HOME/edge/prometheus/<host>-<parent pid>/``, made empty at start and removed at exit
(folders left by dead servers of this host are removed too). SIGTERM or Ctrl-C: the event
streams end, the in-flight requests finish (at most ``GRACEFUL_SECONDS``), each worker flushes
its Kafka producers, and the parent removes ``serve.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from ab_pipelines.edge.settings import EdgeSettings, EdgeSettingsError
from ab_pipelines.processes import HOST, alive
from ab_pipelines.settings import Paths

__all__ = ["GRACEFUL_SECONDS", "serve"]

log = logging.getLogger("ab_pipelines.edge")

GRACEFUL_SECONDS = 3  # uvicorn's wait for in-flight requests at shutdown
APP = "ab_pipelines.edge.app:app_from_env"


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise EdgeSettingsError(f"cannot listen on {host} (ABP_EDGE_HOST): {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EdgeSettingsError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port "
            "(ABP_EDGE_PORT), or 0 for a free one."
        ) from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _metrics_folder(home: Paths) -> Path:
    """This server's empty Prometheus multiprocess folder; those of dead servers are removed."""
    root = home.edge / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        owner, _, pid = old.name.rpartition("-")
        if owner == HOST and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"{HOST}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def _log_config() -> dict:
    """uvicorn's logging, with the platform's loggers on the same handler (each worker too)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["ab_pipelines"] = {
        "handlers": ["default"],
        "level": "INFO",
        "propagate": False,
    }
    config["loggers"]["ab_pipelines.kafka"] = {"level": "WARNING"}
    return config


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _say_where_kafka_is(home: Paths) -> None:
    from ab_pipelines.events.kafka import KafkaSettings, find_bootstrap

    bootstrap = find_bootstrap(home.home, KafkaSettings.from_env())
    if bootstrap is None:
        log.warning(
            "edge: no Kafka broker yet (ABP_KAFKA_BOOTSTRAP unset, no 'abp broker' running for "
            "ABP_HOME %s): exposures and events wait in each worker's bounded queue and are "
            "sent once a broker runs",
            home.home,
        )
    else:
        log.info("edge: exposures and events go to Kafka at %s", bootstrap)


def serve(settings: EdgeSettings, home: Paths, echo: Callable[[str], None] = print) -> None:
    """Run the edge until SIGTERM or SIGINT. Raises EdgeSettingsError (a bad setting, a port in
    use), KafkaSetupError (bad ABP_KAFKA_*) or SignatureError (no public key in prod)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ab_pipelines.assignment import signing
    from ab_pipelines.edge.app import PARENT_ENV
    from ab_pipelines.edge.metrics import MULTIPROC_ENV  # no metric is made in the parent

    signing.public_key()  # in prod without ABP_PUBLIC_KEY: refused here, not in each worker
    home.edge.mkdir(parents=True, exist_ok=True)
    workers = settings.workers
    folder = None
    if workers > 1:
        folder = _metrics_folder(home)
        os.environ[MULTIPROC_ENV] = str(folder)  # read by prometheus_client in each worker
        os.environ[PARENT_ENV] = str(os.getpid())
    config = uvicorn.Config(
        APP,
        factory=True,
        workers=workers,
        lifespan="on",
        access_log=False,
        log_config=_log_config(),
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        server_header=False,
    )
    _say_where_kafka_is(home)
    sock = _bind(settings.host, settings.port)
    url = _url(sock)
    record = home.edge / "serve.json"
    _write_json_atomic(
        record, {"url": url, "pid": os.getpid(), "workers": workers, "started": time.time()}
    )
    echo(f"edge: serving {url} ({workers} worker{'s' if workers > 1 else ''})")
    try:
        if workers == 1:
            _serve_here(config, sock)
        else:
            Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
        try:
            if json.loads(record.read_text()).get("pid") == os.getpid():
                record.unlink()
        except (OSError, ValueError):
            pass
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    echo("edge: stopped")


def _serve_here(config, sock: socket.socket) -> None:
    """One worker, in this process. uvicorn re-raises the signal that stopped it once it is
    done; a quiet handler here takes it, so the caller still cleans up."""
    import uvicorn

    stopped: list[int] = []
    saved = {
        sig: signal.signal(sig, lambda signum, frame: stopped.append(signum))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started and not stopped:
            raise EdgeSettingsError("the edge did not start; its log above says why.")
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
