"""The normative bucket function and range picking of CONTRACTS section 6, written once.

``bucket(salt, unit) = mmh3.hash(f"{salt}:{unit}".encode(), seed=0, signed=False) % 10000``.
Every implementation (the SDK, the Spark assigner, the publisher, the simulator, the corpus
generator) goes through these functions. Standard library plus ``mmh3``: the SDK's one hashing
dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

__all__ = ["BUCKETS", "bucket", "in_layer", "layer_buckets", "pick_variant", "variant_ranges"]

BUCKETS = 10_000


def bucket(salt: str, unit: str) -> int:
    """The user's bucket in [0, 10000) for one salt.

    >>> 0 <= bucket("checkout_cta", "user-42") < 10000
    True
    """
    # surrogatepass: an id with a lone surrogate (from a bad client) still hashes, never raises
    return mmh3.hash(f"{salt}:{unit}".encode("utf-8", "surrogatepass"), 0, False) % BUCKETS


def layer_buckets(layer_range: Sequence[float]) -> tuple[int, int]:
    """The half-open bucket bounds [round(10000·lo), round(10000·hi)) of a ``layer_range``.

    >>> layer_buckets((0.0, 0.5))
    (0, 5000)
    """
    return round(BUCKETS * layer_range[0]), round(BUCKETS * layer_range[1])


def in_layer(layer: str, layer_range: tuple[float, float], unit: str) -> bool:
    """Whether ``unit`` falls in the half-open ``layer_range`` of the layer's buckets."""
    lo, hi = layer_buckets(layer_range)
    return lo <= bucket(layer, unit) < hi


def variant_ranges(weights: Sequence[float], allocation: float = 1.0) -> list[tuple[int, int]]:
    """Bucket ranges [C_i, C_i + round(10000·allocation·w_i)) with C_i = round(10000·Σ_{j<i} w_j).

    The start of each range does not depend on the allocation, so raising it never moves a user.

    >>> variant_ranges([0.5, 0.5], 0.5)
    [(0, 2500), (5000, 7500)]
    """
    out, acc = [], 0.0
    for w in weights:
        start = round(BUCKETS * acc)
        out.append((start, start + round(BUCKETS * allocation * w)))
        acc += w
    return out


def pick_variant(ranges: Sequence[tuple[int, int]], b: int) -> int | None:
    """Index of the range that holds bucket ``b``, or None."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= b < hi:
            return i
    return None
