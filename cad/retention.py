"""Retention of the tables that grow without bound (AVL breadcrumbs, idempotency keys) and of
the public's contact data (online reports and feedback cases).

At 2,000 units reporting once a second, ``unit_positions`` gains about 173 million rows a
day; an idempotency key is only useful while a device may still retry. The sweep deletes
what is past its retention in bounded batches, each its own short transaction, so it never
holds a long lock, writes a WAL burst or stalls the dispatch path; with several workers, only
the one that holds the sweep lock runs it (the others skip that round).

Contact data (name, phone, email) that the public left with an online report or a feedback
case is personal data kept for a purpose: reaching the person while the case is worked, and
for a while after (follow-up questions, appeals). ``contact_retention_days`` after the
decision (a report accepted or declined; a feedback case resolved or closed) the same sweep
sets those columns to NULL and stamps ``contact_erased_at`` (the UPDATE is the owning
repository's, handed in as a ``ContactEraser``); the case itself stays, and cases not yet
decided are never touched. A sweep that erased anything writes one audit record
(``contact.erase``, actor ``system:retention``) with the counts.

Kept for good: incidents, the event log, unit status history, recommendations, timer alerts
(records of what was done; their retention is an agency records policy, not a sweep). The
audit trail has its own chain-preserving prune (cad.security.audit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from cad.settings import Settings
from cad.uow import RequestContext, audit_now

log = structlog.get_logger("cad.retention")

SWEEP_LOCK = 0x43AD_0005  # session advisory lock: one sweeping worker at a time
DEFAULT_BATCH = 20_000
SYSTEM = RequestContext.system("system:retention")

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
class ContactEraser:
    """One table's contact erasure. The SQL lives with the table's owner (the repository of
    online reports, of feedback); ``cad.wiring`` hands the sweep the erasers of the packages
    it wires (``CONTACT_ERASERS``), so this module knows no domain table."""

    name: str  # the key of the counts in the audit record, the log and PruneResult
    # (conn, days, batch) -> rows erased: at most ``batch`` rows decided over ``days`` ago
    erase: Callable[[asyncpg.Connection, int, int], Awaitable[int]]


@dataclass(frozen=True)
class PruneResult:
    ran: bool  # False: another worker held the sweep lock
    unit_positions: int = 0
    idempotency_keys: int = 0
    # eraser name -> rows whose contact was erased (every eraser run, zeros included)
    contacts: dict[str, int] = field(default_factory=dict)


async def _batched(conn: asyncpg.Connection, sql: str, arg: float, batch: int) -> int:
    async def run(c: asyncpg.Connection, a: float, b: int) -> int:
        status = await c.execute(sql, a, b)
        return int(status.split()[-1])

    return await _repeat(conn, run, arg, batch)


async def _repeat(conn: asyncpg.Connection, step: Callable[[asyncpg.Connection, Any, int],
                                                           Awaitable[int]],
                  arg: Any, batch: int) -> int:
    """Run ``step`` (at most ``batch`` rows, its own transaction) until a batch comes back
    short."""
    total = 0
    while True:
        n = await step(conn, arg, batch)
        total += n
        if n < batch:
            return total
        await asyncio.sleep(0)  # let the rest of the worker run between batches


async def prune(pool: asyncpg.Pool, settings: Settings, *, erasers: Sequence[ContactEraser],
                batch: int = DEFAULT_BATCH) -> PruneResult:
    """Delete AVL breadcrumbs older than ``avl_retention_days`` (0 keeps them) and
    idempotency keys older than ``idempotency_retention_s``; erase, through ``erasers``, the
    contact data of cases decided more than ``contact_retention_days`` ago (0 keeps it)."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK):
            return PruneResult(ran=False)
        try:
            positions = 0
            if settings.avl_retention_days > 0:
                positions = await _batched(conn, _PRUNE_POSITIONS, settings.avl_retention_days, batch)
            keys = await _batched(conn, _PRUNE_KEYS, settings.idempotency_retention_s, batch)
            days = settings.contact_retention_days
            contacts = {e.name: 0 for e in erasers}
            if days > 0:
                for e in erasers:
                    contacts[e.name] = await _repeat(conn, e.erase, days, batch)
            if any(contacts.values()):
                # One record per sweep, after the batches: the rows themselves carry
                # contact_erased_at, so a worker dying in between leaves the erasure visible.
                await audit_now(conn, SYSTEM, "contact.erase",
                                details={**contacts, "retention_days": days})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)
    return PruneResult(ran=True, unit_positions=positions, idempotency_keys=keys,
                       contacts=contacts)


async def run_sweeper(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event, *,
                      erasers: Sequence[ContactEraser]) -> None:
    """Prune at start-up, then every ``retention_sweep_interval_s``, until ``stop`` is set."""
    while True:
        try:
            result = await prune(pool, settings, erasers=erasers)
            if result.unit_positions or result.idempotency_keys or any(result.contacts.values()):
                log.info("retention_pruned", unit_positions=result.unit_positions,
                         idempotency_keys=result.idempotency_keys,
                         contacts_erased=result.contacts)
        except Exception:  # retried next round; serving goes on
            log.exception("retention_sweep_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.retention_sweep_interval_s)
            return
        except TimeoutError:
            pass
