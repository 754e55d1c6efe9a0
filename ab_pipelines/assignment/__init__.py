"""Deterministic assignment (CONTRACTS section 6). Imports no Spark, Dagster or pandas.

``KafkaExposureSink`` and ``Tracker`` import confluent_kafka only when one is made.
"""

from ab_pipelines.assignment.client import Client, ConfigError
from ab_pipelines.assignment.exposures import (
    DumpExposureSink,
    ExposureSink,
    KafkaExposureSink,
    ListExposureSink,
)
from ab_pipelines.assignment.hashing import bucket, in_layer, pick_variant, variant_ranges
from ab_pipelines.assignment.sticky import MemoryStickyStore, SqliteStickyStore, StickyStore
from ab_pipelines.events.producer import Tracker

__all__ = [
    "Client",
    "ConfigError",
    "DumpExposureSink",
    "ExposureSink",
    "KafkaExposureSink",
    "ListExposureSink",
    "MemoryStickyStore",
    "SqliteStickyStore",
    "StickyStore",
    "Tracker",
    "bucket",
    "in_layer",
    "pick_variant",
    "variant_ranges",
]
