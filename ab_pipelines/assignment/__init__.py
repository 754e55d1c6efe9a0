"""Deterministic assignment (CONTRACTS section 6). Imports no Spark, Dagster or pandas."""

from ab_pipelines.assignment.hashing import bucket, in_layer, pick_variant, variant_ranges

__all__ = ["bucket", "in_layer", "pick_variant", "variant_ranges"]
