"""A token bucket per caller (a client key's name, or a client IP), per worker process."""

from __future__ import annotations

import math
import time

__all__ = ["TokenBuckets", "retry_after"]

_MAX_CALLERS = 100_000  # beyond this many callers, the idle ones are forgotten


class TokenBuckets:
    """``rate`` requests per second per caller with a burst of ``burst_seconds`` worth; a
    ``rate`` of 0 means no limit.

    ``take(caller)`` is 0.0 when the request may go, else the seconds until a token is back
    (the ``Retry-After``)."""

    def __init__(self, rate: float, burst_seconds: float = 2.0) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self._buckets: dict[str, list[float]] = {}  # caller -> [tokens, monotonic time]

    def take(self, caller: str) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= _MAX_CALLERS:
                self._forget_idle(now)
            bucket = self._buckets[caller] = [self.capacity, now]
        tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop the callers whose bucket has refilled: forgetting them changes nothing."""
        full_after = self.capacity / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= _MAX_CALLERS:  # all busy: start over rather than grow
            self._buckets.clear()


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
