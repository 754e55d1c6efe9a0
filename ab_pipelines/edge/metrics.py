"""The edge's Prometheus metrics, in prometheus_client's default registry.

With several workers ``abp serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start
(prometheus_client reads it at import), so every worker writes its values to files there and
``/metrics`` from any worker reads them all: the whole server's numbers. The producers' own
counters (``abp_producer_*_total{topic="exposures"|"metric_events"}``: sent, dropped, failed,
retried, and the ``abp_producer_queued`` gauge) come from ``ab_pipelines.events.producer``.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "ASSIGNMENTS",
    "CONFIG_REFUSED",
    "CONFIG_VERSION",
    "CONTENT_TYPE_LATEST",
    "EVENTS",
    "LATENCY",
    "REQUESTS",
    "SUBSCRIBERS",
    "metrics_text",
    "worker_stopped",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "abp_edge_requests", "HTTP requests answered, by route and status.", ["route", "status"]
)
LATENCY = Histogram(
    "abp_edge_request_seconds",
    "Time from request to the end of the response, by route and status (not /config/stream).",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# One series per live worker (label pid): a worker still on an old version shows.
CONFIG_VERSION = Gauge(
    "abp_edge_config_version",
    "The config version a worker serves (0: none verified yet).",
    multiprocess_mode="liveall",
)
SUBSCRIBERS = Gauge(
    "abp_edge_sse_subscribers",
    "Open /config/stream connections.",
    multiprocess_mode="livesum",
)
CONFIG_REFUSED = Counter(
    "abp_edge_config_refused",
    "config.json files refused (signature, schema, or version going back); the last good "
    "version kept serving.",
)
ASSIGNMENTS = Counter("abp_edge_assignments", "Experiments evaluated by /assign.")
EVENTS = Counter(
    "abp_edge_events", "Metric events taken by /events, by outcome.", ["outcome"]
)  # outcome: queued (to the producer) or dropped (its queue was full)


def metrics_text() -> bytes:
    """The exposition text: every worker's values in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def worker_stopped() -> None:
    """A worker's live gauges leave the sums and series (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())
