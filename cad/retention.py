"""Retention of the tables that grow without bound: AVL breadcrumbs and idempotency keys.

At 2,000 units reporting once a second, ``unit_positions`` gains about 173 million rows a
day; an idempotency key is only useful while a device may still retry. The sweep deletes
what is past its retention in bounded batches, each its own short transaction, so it never
holds a long lock, writes a WAL burst or stalls the dispatch path; with several workers, only
the one that holds the sweep lock runs it (the others skip that round).

Kept for good: incidents, the event log, unit status history, recommendations, timer alerts
(records of what was done; their retention is an agency records policy, not a sweep). The
audit trail has its own chain-preserving prune (cad.security.audit).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg
import structlog

from cad.settings import Settings

log = structlog.get_logger("cad.retention")

SWEEP_LOCK = 0x43AD_0005  # session advisory lock: one sweeping worker at a time
DEFAULT_BATCH = 20_000

# ctid batches: the inner scan uses the BRIN index on received_at (an age-ordered, append-only
# table), and LIMIT bounds each transaction.
_PRUNE_POSITIONS = """
DELETE FROM unit_positions WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM unit_positions
     WHERE received_at < clock_timestamp() - make_interval(days => $1) LIMIT $2))
"""
_PRUNE_KEYS = """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys
     WHERE created_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2))
"""


@dataclass(frozen=True)
class PruneResult:
    ran: bool  # False: another worker held the sweep lock
    unit_positions: int = 0
    idempotency_keys: int = 0


async def _batched(conn: asyncpg.Connection, sql: str, arg: float, batch: int) -> int:
    total = 0
    while True:
        status = await conn.execute(sql, arg, batch)
        n = int(status.split()[-1])
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0)  # let the rest of the worker run between batches


async def prune(pool: asyncpg.Pool, settings: Settings, *, batch: int = DEFAULT_BATCH) -> PruneResult:
    """Delete AVL breadcrumbs older than ``avl_retention_days`` (0 keeps them) and
    idempotency keys older than ``idempotency_retention_s``."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK):
            return PruneResult(ran=False)
        try:
            positions = 0
            if settings.avl_retention_days > 0:
                positions = await _batched(conn, _PRUNE_POSITIONS, settings.avl_retention_days, batch)
            keys = await _batched(conn, _PRUNE_KEYS, settings.idempotency_retention_s, batch)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)
    return PruneResult(ran=True, unit_positions=positions, idempotency_keys=keys)


async def run_sweeper(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Prune at start-up, then every ``retention_sweep_interval_s``, until ``stop`` is set."""
    while True:
        try:
            result = await prune(pool, settings)
            if result.unit_positions or result.idempotency_keys:
                log.info("retention_pruned", unit_positions=result.unit_positions,
                         idempotency_keys=result.idempotency_keys)
        except Exception:  # retried next round; serving goes on
            log.exception("retention_sweep_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.retention_sweep_interval_s)
            return
        except TimeoutError:
            pass
