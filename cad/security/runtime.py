"""Per-app security runtime, built in the lifespan (key file I/O, hasher) and held by
``cad.security.state.SecurityState``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cad.security.passwords import Passwords
from cad.security.ratelimit import SharedBuckets, TokenBucketLimiter
from cad.security.tokens import load_or_create_secret
from cad.settings import Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SecurityRuntime:
    settings: Settings
    secret: str
    passwords: Passwords
    login_limiter: TokenBucketLimiter
    public_limiter: TokenBucketLimiter
    # Every lockout / idle / expiry decision reads this; tests inject a shifted clock.
    clock: Callable[[], datetime] = field(default=utc_now)
    # Buckets in Redis shared by all workers (set in the lifespan when CAD_REDIS_URL is).
    shared_buckets: SharedBuckets | None = None

    async def rate_limit(self, name: str, local: TokenBucketLimiter, key: str) -> float:
        """0.0 if ``key`` may go on, else seconds until it may."""
        if self.shared_buckets is not None:
            return await self.shared_buckets.take(name, key, local)
        return local.take(key)

    @classmethod
    def build(cls, settings: Settings) -> SecurityRuntime:
        secret = load_or_create_secret(
            settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            settings.data_dir,
        )
        return cls(
            settings=settings,
            secret=secret,
            passwords=Passwords(time_cost=settings.argon2_time_cost,
                                memory_kib=settings.argon2_memory_kib,
                                parallelism=settings.argon2_parallelism),
            login_limiter=TokenBucketLimiter(rate_per_s=settings.rate_limit_login_per_min / 60.0,
                                             burst=settings.rate_limit_login_burst),
            public_limiter=TokenBucketLimiter(rate_per_s=settings.rate_limit_public_per_s,
                                              burst=settings.rate_limit_public_burst),
        )
