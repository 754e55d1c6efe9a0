"""``abp simulate --to-kafka``: the simulated traffic produced into Kafka instead of dump files.

The records go through an idempotent producer (``acks=all``), keyed by user, each with its
arrival time as the record time, so the sink connector files it under its arrival day. A record
the broker does not acknowledge stops the simulation with the broker's reason: a simulated day is
either all in Kafka or the command failed (and can be run again: landing dedupes by event id).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ab_pipelines.events.kafka import (
    KafkaSettings,
    KafkaSetupError,
    client_conf,
    ensure_topics,
    resolve_bootstrap,
)

__all__ = ["KafkaDelivery"]


class KafkaDelivery:
    """A ``RecordSink`` for ``deliver_day``: produces, counts, and fails loudly on loss.

    Example::

        with KafkaDelivery(home) as sink:
            deliver_day(raw, day, seed, events, sink=sink)
        sink.produced  # {"exposures": n, "metric_events": m}
    """

    def __init__(
        self,
        home: Path,
        bootstrap: str | None = None,
        settings: KafkaSettings | None = None,
        conf: Mapping[str, object] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        self.settings = settings or KafkaSettings.from_env()
        self.bootstrap = bootstrap or resolve_bootstrap(home, self.settings)
        ensure_topics(self.bootstrap, self.settings)
        self.produced: dict[str, int] = {}
        self.failed: list[str] = []
        self._producer = Producer(
            client_conf(
                self.bootstrap,
                self.settings,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 20,
                    "batch.num.messages": 10_000,
                    "queue.buffering.max.messages": 200_000,
                    "message.timeout.ms": 60_000,
                    **(conf or {}),
                },
            )
        )

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err.str()}")

    def produce(self, topic: str, timestamp_ms: int, key: str | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, timestamp=timestamp_ms, on_delivery=self._delivered
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
        self.produced[topic] = self.produced.get(topic, 0) + 1
        self._producer.poll(0)

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every record's acknowledgement; KafkaSetupError if any was not delivered."""
        left = self._producer.flush(timeout)
        if left or self.failed:
            reasons = "; ".join(sorted(set(self.failed))[:3]) or "no acknowledgement"
            raise KafkaSetupError(
                f"{left + len(self.failed)} simulated records were not delivered to Kafka at "
                f"{self.bootstrap} within {timeout:.0f} s ({reasons}); run the command again "
                "once the broker is healthy (landing skips what arrives twice)."
            )

    def __enter__(self) -> KafkaDelivery:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.flush()
        else:
            self._producer.flush(10)
