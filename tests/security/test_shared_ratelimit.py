"""Rate limits shared by every worker through Redis (cad.security.ratelimit.SharedBuckets):
a client gets the configured rate across workers, not N times it; without Redis each worker
still limits on its own."""

from __future__ import annotations

import uuid

import httpx
from pydantic import SecretStr

from cad.security.ratelimit import SharedBuckets, TokenBucketLimiter
from cad.settings import Settings
from tests.support import running_app

API = "/api/v1"


async def test_two_workers_spend_one_budget(redis_url: str) -> None:
    ns = f"cad:rl:test:{uuid.uuid4().hex}"
    a, b = SharedBuckets.connect(redis_url, ns), SharedBuckets.connect(redis_url, ns)
    local_a = TokenBucketLimiter(rate_per_s=0.01, burst=5)
    local_b = TokenBucketLimiter(rate_per_s=0.01, burst=5)
    try:
        waits = [await (a if i % 2 else b).take("login", "10.1.2.3", local_a if i % 2 else local_b)
                 for i in range(7)]
        assert waits[:5] == [0.0] * 5
        assert all(w > 50 for w in waits[5:]), waits  # ~ (1 - tokens) / 0.01 s
        # another address, and another limit, have budgets of their own
        assert await a.take("login", "10.9.9.9", local_a) == 0.0
        assert await a.take("public", "10.1.2.3", local_a) == 0.0
        assert (a.fallbacks, b.fallbacks) == (0, 0)
        # the in-process buckets were not spent while Redis answered
        assert local_a.take("10.1.2.3") == 0.0
    finally:
        await a.close()
        await b.close()


async def test_without_redis_each_worker_still_limits() -> None:
    shared = SharedBuckets.connect("redis://127.0.0.1:1/0", "cad:rl:test:down")
    local = TokenBucketLimiter(rate_per_s=0.01, burst=3)
    try:
        waits = [await shared.take("login", "10.1.2.3", local) for _ in range(4)]
    finally:
        await shared.close()
    assert waits[:3] == [0.0] * 3 and waits[3] > 0
    assert shared.fallbacks == 1  # one failed attempt, then local until the retry time


async def test_login_limit_holds_across_two_workers(database_url: str, tmp_path, redis_url: str) -> None:
    channels = f"cad-test-{uuid.uuid4().hex[:8]}"

    def settings(n: int) -> Settings:
        d = tmp_path / f"w{n}"
        d.mkdir()
        return Settings(database_url=database_url, data_dir=d, log_format="json", db_pool_min=1,
                        db_pool_max=6, redis_url=redis_url, rate_limit_login_burst=3,
                        rate_limit_login_per_min=1, jwt_secret=SecretStr("s" * 40),
                        hub_channel_prefix=channels)  # this test's two workers only

    async with running_app(settings(1)) as w1, running_app(settings(2)) as w2, \
            httpx.AsyncClient() as c:
        codes = []
        for i in range(5):
            base = (w1 if i % 2 == 0 else w2).base_url
            r = await c.post(f"{base}{API}/auth/login", json={"username": "x", "password": "y"})
            codes.append(r.status_code)
        # per-worker buckets would have allowed 3 on each worker: all five would be 401
        assert codes == [401, 401, 401, 429, 429], codes
        assert int(r.headers["retry-after"]) >= 1
