"""The SDK's face of the normative bucket function (CONTRACTS section 6).

Defined once in :mod:`ab_pipelines.contracts.hashing`, which the Spark side imports too.
"""

from __future__ import annotations

from ab_pipelines.contracts.hashing import (
    BUCKETS,
    bucket,
    in_layer,
    layer_buckets,
    pick_variant,
    variant_ranges,
)

__all__ = ["BUCKETS", "bucket", "in_layer", "layer_buckets", "pick_variant", "variant_ranges"]
