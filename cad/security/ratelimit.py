"""Token buckets keyed by client address.

``TokenBucketLimiter`` lives in one worker. With several workers (``CAD_REDIS_URL`` set),
``SharedBuckets`` keeps the buckets in Redis instead, so a client gets the configured rate
across all workers and hosts, not N times it. While Redis is unreachable each worker falls back
to its own buckets (limits still hold, per worker) and retries Redis a few seconds later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("cad.security.ratelimit")

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


# One atomic step of a token bucket, on Redis's clock (workers' clocks may disagree). Returns
# the wait in seconds as a string (Lua numbers come back truncated to integers).
_TAKE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

RETRY_REDIS_AFTER_S = 5.0


class SharedBuckets:
    """Token buckets in Redis, one per (limit, client address), shared by every worker of one
    deployment: ``namespace`` names the database they serve, so deployments (and test
    databases) sharing a Redis do not share budgets."""

    def __init__(self, client: Any, namespace: str,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._script = client.register_script(_TAKE_LUA)
        self.namespace = namespace
        self._now = monotonic
        self._down_until = 0.0
        self.fallbacks = 0

    @classmethod
    def connect(cls, url: str, namespace: str) -> SharedBuckets:
        import redis.asyncio as aioredis

        # Short timeouts: a public request must not hang on a slow Redis; it falls back.
        return cls(aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5),
                   namespace)

    async def take(self, name: str, key: str, local: TokenBucketLimiter) -> float:
        """Spend one token of ``name`` for ``key``: 0.0 if allowed, else seconds to wait."""
        if self._now() < self._down_until:
            return local.take(key)
        try:
            wait = await self._script(keys=[f"{self.namespace}:{name}:{key}"],
                                      args=[repr(local.rate_per_s), local.burst])
            return float(wait)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: limit locally instead
            self.fallbacks += 1
            self._down_until = self._now() + RETRY_REDIS_AFTER_S
            log.warning("rate_limit_redis_unavailable", error=type(exc).__name__,
                        retry_in_s=RETRY_REDIS_AFTER_S)
            return local.take(key)

    async def close(self) -> None:
        await self._client.aclose()
