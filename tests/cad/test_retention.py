"""Retention sweep (cad.retention): old AVL breadcrumbs and idempotency keys go, in bounded
batches, and nothing younger than the retention is touched."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from cad import retention
from cad.settings import Settings
from cad.wiring import CONTACT_ERASERS
from tests.support import running_app

NO_CONTACTS = {"public_reports": 0, "feedback": 0}  # nothing seeded there


async def _seed(pool: asyncpg.Pool, *, old: int, young: int, days: int = 90) -> None:
    now = datetime.now(UTC)
    rows = []
    for i in range(old):  # a minute or more past the retention
        t = now - timedelta(days=days, minutes=1 + i)
        rows.append((f"OLD{i % 3}", t, t, 37.7, -122.4, None, None, None))
    for i in range(young):  # a minute or more inside it
        t = now - timedelta(days=days) + timedelta(minutes=1 + i)
        rows.append((f"NEW{i % 3}", t, t, 37.7, -122.4, None, None, None))
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("unit_positions", records=rows, columns=[
            "unit_id", "fix_time", "received_at", "lat", "lon", "heading_deg", "speed_mps",
            "accuracy_m"])
        await conn.executemany(
            "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response, created_at) "
            "VALUES ('s', $1, 'h', 200, 'null'::jsonb, $2)",
            [(f"old-{i}", now - timedelta(days=2, minutes=i)) for i in range(5)]
            + [(f"new-{i}", now - timedelta(hours=1)) for i in range(4)])


async def _left(pool: asyncpg.Pool) -> tuple[set[str], set[str]]:
    units = {r["unit_id"][:3] for r in await pool.fetch("SELECT DISTINCT unit_id FROM unit_positions")}
    keys = {r["key"].split("-")[0] for r in await pool.fetch("SELECT key FROM idempotency_keys")}
    return units, keys


async def test_prune_deletes_exactly_what_is_past_retention_in_batches(pool, settings):
    await _seed(pool, old=53, young=11)
    # a batch smaller than the backlog: the sweep loops until a batch comes back short
    result = await retention.prune(pool, settings, erasers=CONTACT_ERASERS, batch=10)
    assert result == retention.PruneResult(ran=True, unit_positions=53, idempotency_keys=5,
                                           contacts=NO_CONTACTS)
    assert await pool.fetchval("SELECT count(*) FROM unit_positions") == 11
    assert await _left(pool) == ({"NEW"}, {"new"})
    again = await retention.prune(pool, settings, erasers=CONTACT_ERASERS, batch=10)
    assert again == retention.PruneResult(ran=True, unit_positions=0, idempotency_keys=0,
                                          contacts=NO_CONTACTS)


async def test_zero_avl_retention_keeps_every_breadcrumb(pool, settings):
    await _seed(pool, old=7, young=3)
    keep = settings.model_copy(update={"avl_retention_days": 0})
    result = await retention.prune(pool, keep, erasers=CONTACT_ERASERS)
    assert (result.unit_positions, result.idempotency_keys) == (0, 5)
    assert await pool.fetchval("SELECT count(*) FROM unit_positions") == 10


async def test_only_one_worker_sweeps_at_a_time(pool, settings):
    await _seed(pool, old=4, young=1)
    async with pool.acquire() as other:  # another worker is mid-sweep
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", retention.SWEEP_LOCK)
        try:
            result = await retention.prune(pool, settings, erasers=CONTACT_ERASERS)
            assert result == retention.PruneResult(ran=False)
            assert await pool.fetchval("SELECT count(*) FROM unit_positions") == 5
        finally:
            await other.execute("SELECT pg_advisory_unlock($1)", retention.SWEEP_LOCK)
    assert (await retention.prune(pool, settings, erasers=CONTACT_ERASERS)).unit_positions == 4


async def test_sweeper_prunes_at_start_and_stops_when_told(pool, settings):
    await _seed(pool, old=6, young=2)
    stop = asyncio.Event()
    stop.set()  # one round, then return
    await asyncio.wait_for(retention.run_sweeper(pool, settings, stop, erasers=CONTACT_ERASERS),
                           timeout=30)
    assert await _left(pool) == ({"NEW"}, {"new"})


async def test_the_server_runs_the_sweeper(settings):
    async with running_app(settings) as running:
        tasks = {t.get_name(): t for t in running.runtime.tasks}
        assert "retention-sweeper" in tasks and not tasks["retention-sweeper"].done()
    off = Settings(**{**settings.model_dump(), "retention_sweep_interval_s": 0})
    async with running_app(off) as running:
        assert "retention-sweeper" not in {t.get_name() for t in running.runtime.tasks}


async def test_cli_prune_reports_what_it_deleted(pool, database_url):
    await _seed(pool, old=12, young=2)
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cad", "db", "prune", "--batch", "100", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert "pruned 12 AVL breadcrumbs (older than 90 days) and 5 idempotency keys" in " ".join(
        stdout.decode().split())
    assert await pool.fetchval("SELECT count(*) FROM unit_positions") == 2


def test_advisory_lock_keys_are_distinct() -> None:
    from cad.db import MIGRATION_LOCK_KEY
    from cad.security.audit import AUDIT_CHAIN_LOCK_KEY
    from cad.security.service import BOOTSTRAP_LOCK_KEY

    event_log_key = 0x43AD_0002  # taken in SQL by the event-log trigger (0001_foundation.sql)
    keys = [MIGRATION_LOCK_KEY, event_log_key, AUDIT_CHAIN_LOCK_KEY, BOOTSTRAP_LOCK_KEY,
            retention.SWEEP_LOCK]
    assert len(set(keys)) == len(keys)
