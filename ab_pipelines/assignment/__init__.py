"""Deterministic assignment (CONTRACTS section 6). Imports no Spark, Dagster or pandas."""

from ab_pipelines.assignment.client import Client, ConfigError
from ab_pipelines.assignment.exposures import DumpExposureSink, ExposureSink, ListExposureSink
from ab_pipelines.assignment.hashing import bucket, in_layer, pick_variant, variant_ranges
from ab_pipelines.assignment.sticky import MemoryStickyStore, SqliteStickyStore, StickyStore

__all__ = [
    "Client",
    "ConfigError",
    "DumpExposureSink",
    "ExposureSink",
    "ListExposureSink",
    "MemoryStickyStore",
    "SqliteStickyStore",
    "StickyStore",
    "bucket",
    "in_layer",
    "pick_variant",
    "variant_ranges",
]
