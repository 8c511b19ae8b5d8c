"""In-process token buckets keyed by client address.

Per worker: with N workers a client gets up to N times the configured rate. That is the
documented limitation (docs/security.md); put a shared limiter in the reverse proxy when
running several workers or hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Above this many tracked clients, full (idle) buckets are forgotten; bounds memory under a
# spray of source addresses.
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    def __init__(self, *, rate_per_s: float, burst: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._now = monotonic
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one token for ``key``. Returns 0.0 if allowed, else seconds until allowed."""
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst),
                                bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_per_s

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate_per_s
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_TRACKED_CLIENTS:
            self._buckets.clear()
