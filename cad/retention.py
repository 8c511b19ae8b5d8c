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
sets those columns to NULL and stamps ``contact_erased_at``; the case itself stays, and cases
not yet decided are never touched. A sweep that erased anything writes one audit record
(``contact.erase``, actor ``system:retention``) with the counts.

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

# Contact erasure, by id batches found through the partial indexes of migration 0020 (decided
# rows that still hold contact data). The outer WHERE repeats the condition: under READ
# COMMITTED an UPDATE re-checks it on a row changed meanwhile, so a feedback case reopened
# (resolved -> investigating) between the inner scan and the update keeps its contact.
_DECIDED_REPORT = """
decided_at IS NOT NULL AND decided_at < clock_timestamp() - make_interval(days => $1)
AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL)
"""
_ERASE_REPORTS = f"""
UPDATE public_reports
   SET contact_name = NULL, contact_phone = NULL, contact_email = NULL,
       contact_erased_at = clock_timestamp()
 WHERE id = ANY(ARRAY(SELECT id FROM public_reports WHERE {_DECIDED_REPORT} LIMIT $2))
   AND {_DECIDED_REPORT}
"""
# A case is decided at its resolution or closure (the later, when a resolved case was closed).
_DECIDED_FEEDBACK = """
status IN ('resolved', 'closed')
AND coalesce(closed_at, resolved_at) < clock_timestamp() - make_interval(days => $1)
AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL)
"""
_ERASE_FEEDBACK = f"""
UPDATE feedback
   SET contact_name = NULL, contact_phone = NULL, contact_email = NULL,
       contact_erased_at = clock_timestamp()
 WHERE id = ANY(ARRAY(SELECT id FROM feedback WHERE {_DECIDED_FEEDBACK} LIMIT $2))
   AND {_DECIDED_FEEDBACK}
"""


@dataclass(frozen=True)
class PruneResult:
    ran: bool  # False: another worker held the sweep lock
    unit_positions: int = 0
    idempotency_keys: int = 0
    report_contacts: int = 0    # online reports whose contact was erased
    feedback_contacts: int = 0  # feedback cases whose contact was erased


async def _batched(conn: asyncpg.Connection, sql: str, arg: float, batch: int) -> int:
    """Run ``sql`` (a DELETE or UPDATE of at most ``batch`` rows) until a batch is short."""
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
    idempotency keys older than ``idempotency_retention_s``; erase the contact data of reports
    and feedback cases decided more than ``contact_retention_days`` ago (0 keeps it)."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK):
            return PruneResult(ran=False)
        try:
            positions = 0
            if settings.avl_retention_days > 0:
                positions = await _batched(conn, _PRUNE_POSITIONS, settings.avl_retention_days, batch)
            keys = await _batched(conn, _PRUNE_KEYS, settings.idempotency_retention_s, batch)
            reports = feedback = 0
            days = settings.contact_retention_days
            if days > 0:
                reports = await _batched(conn, _ERASE_REPORTS, days, batch)
                feedback = await _batched(conn, _ERASE_FEEDBACK, days, batch)
            if reports or feedback:
                # One record per sweep, after the batches: the rows themselves carry
                # contact_erased_at, so a worker dying in between leaves the erasure visible.
                await audit_now(conn, SYSTEM, "contact.erase", details={
                    "public_reports": reports, "feedback": feedback, "retention_days": days})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SWEEP_LOCK)
    return PruneResult(ran=True, unit_positions=positions, idempotency_keys=keys,
                       report_contacts=reports, feedback_contacts=feedback)


async def run_sweeper(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Prune at start-up, then every ``retention_sweep_interval_s``, until ``stop`` is set."""
    while True:
        try:
            result = await prune(pool, settings)
            if (result.unit_positions or result.idempotency_keys or result.report_contacts
                    or result.feedback_contacts):
                log.info("retention_pruned", unit_positions=result.unit_positions,
                         idempotency_keys=result.idempotency_keys,
                         report_contacts_erased=result.report_contacts,
                         feedback_contacts_erased=result.feedback_contacts)
        except Exception:  # retried next round; serving goes on
            log.exception("retention_sweep_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=settings.retention_sweep_interval_s)
            return
        except TimeoutError:
            pass
