"""Row + event + audit in one transaction: the one easy path for every state change.

    async with unit_of_work(pool, ctx) as uow:
        row = await repo.set_status(uow.conn, unit_id, ...)   # the row
        uow.emit("unit.status_changed", aggregate=("unit", unit_id), data={...})
        uow.audit("unit.status.change", target=f"unit:{unit_id}")
    # committed: uow.event_ids holds the new event ids, in commit order

Events and audit records are buffered and written at the end, just before COMMIT, in one
round trip each, so the event log's commit-order lock is held for as short a time as
possible. If the block raises, nothing is written; audit records the block declared are then
written with outcome "failure" (or "denied") in a transaction of their own, so refused actions
leave a trace too.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import asyncpg
import structlog

from cad.errors import CADError, Forbidden, Unauthorized

log = structlog.get_logger("cad.uow")


@dataclass(frozen=True)
class RequestContext:
    """Who is acting, through which request, from where."""

    actor: str
    request_id: str | None = None
    client_addr: str | None = None
    source: str = "api"  # console | mdt | api | system | import
    agency: str | None = None

    @classmethod
    def system(cls, what: str = "system") -> RequestContext:
        return cls(actor=what, source="system")


@dataclass
class _Event:
    type: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]
    agency: str | None


@dataclass
class AuditRecord:
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]


_INSERT_EVENTS = """
INSERT INTO event_log (type, aggregate_type, aggregate_id, agency, actor, request_id, data)
SELECT t, at, aid, ag, $5, $6, d
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $7::jsonb[]) AS u(t, at, aid, ag, d)
RETURNING id
"""

# Audit details of an action on a training agency's data (an event of one) or by a trainee
# (the actor's home agency is one) are marked "training": true before they are hashed
# (cad_training_marks, migrations/0017_training.sql).
# Appends to the hash-chained audit log (migrations/0002_security.sql): takes the chain lock
# 0x43AD0003 until COMMIT, reads the chain head, hashes and inserts each record. Needs READ
# COMMITTED; under REPEATABLE READ or SERIALIZABLE a concurrent append makes this transaction
# fail on the unique seq (it never forks the chain), and such callers retry anyway.
_INSERT_EVENTS_AND_AUDIT = """
WITH a AS MATERIALIZED (
    SELECT audit_append($5, $6, $8, $9::text[], $10::text[], $11::text[],
                        cad_training_marks($12::jsonb[], $4::text[] || $13::text)) AS done
)
INSERT INTO event_log (type, aggregate_type, aggregate_id, agency, actor, request_id, data)
SELECT t, at, aid, ag, $5, $6, d
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $7::jsonb[]) AS u(t, at, aid, ag, d)
CROSS JOIN a
RETURNING id
"""

_APPEND_AUDIT = ("SELECT audit_append($1, $2, $3, $4::text[], $5::text[], $6::text[],"
                 " cad_training_marks($7::jsonb[], ARRAY[$8::text]))")

# Counts audit records written while handling one HTTP request: the security middleware
# records a generic entry for a write that recorded none itself.
request_audit_count: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "request_audit_count", default=None)


@dataclass
class UnitOfWork:
    conn: asyncpg.Connection
    ctx: RequestContext
    _events: list[_Event] = field(default_factory=list)
    _audits: list[AuditRecord] = field(default_factory=list)
    event_ids: list[int] = field(default_factory=list)
    _after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def emit(self, type: str, *, aggregate: tuple[str, Any], data: dict[str, Any] | None = None,
             agency: str | None = None) -> None:
        agg_type, agg_id = aggregate
        self._events.append(_Event(type, agg_type, str(agg_id), data or {}, agency or self.ctx.agency))

    def audit(self, action: str, *, target: str | None = None, outcome: str = "success",
              details: dict[str, Any] | None = None) -> AuditRecord:
        """Declare the audit record (before acting, so a failure is recorded too). The
        returned record may still be completed, e.g. with the id of what was created."""
        record = AuditRecord(action, target, outcome, details or {})
        self._audits.append(record)
        return record

    def after_commit(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(fn)

    async def _flush(self) -> None:
        if self._audits and self._events:
            # Both in one round trip. The event-log trigger takes the event lock as the INSERT
            # starts, then the materialised CTE appends the audit chain: event lock before
            # audit lock, and no transaction takes them the other way round.
            ev, au = self._events, self._audits
            rows = await self.conn.fetch(
                _INSERT_EVENTS_AND_AUDIT,
                [e.type for e in ev], [e.aggregate_type for e in ev],
                [e.aggregate_id for e in ev], [e.agency for e in ev],
                self.ctx.actor, self.ctx.request_id, [e.data for e in ev],
                self.ctx.client_addr, [a.action for a in au], [a.target for a in au],
                [a.outcome for a in au], [a.details for a in au], self.ctx.agency,
            )
            self.event_ids = [r["id"] for r in rows]
            counter = request_audit_count.get()
            if counter is not None:
                counter[0] += len(au)
            return
        if self._audits:
            await write_audit(self.conn, self.ctx, self._audits)
        if self._events:
            ev = self._events
            rows = await self.conn.fetch(
                _INSERT_EVENTS,
                [e.type for e in ev], [e.aggregate_type for e in ev],
                [e.aggregate_id for e in ev], [e.agency for e in ev],
                self.ctx.actor, self.ctx.request_id, [e.data for e in ev],
            )
            self.event_ids = [r["id"] for r in rows]


async def write_audit(conn: asyncpg.Connection, ctx: RequestContext, records: list[AuditRecord]) -> None:
    args = (_APPEND_AUDIT, ctx.actor, ctx.request_id, ctx.client_addr,
            [r.action for r in records], [r.target for r in records],
            [r.outcome for r in records], [r.details for r in records], ctx.agency)
    if conn.is_in_transaction():
        await conn.execute(*args)
    else:
        # The chain lock is transaction-scoped: without a transaction it would end before the
        # insert is visible.
        async with conn.transaction():
            await conn.execute(*args)
    counter = request_audit_count.get()
    if counter is not None:
        counter[0] += len(records)


async def audit_now(pool_or_conn: asyncpg.Pool | asyncpg.Connection, ctx: RequestContext,
                    action: str, *, target: str | None = None, outcome: str = "success",
                    details: dict[str, Any] | None = None) -> None:
    """A stand-alone audit record (reads of personal data, logins, refused requests)."""
    rec = [AuditRecord(action, target, outcome, details or {})]
    if isinstance(pool_or_conn, asyncpg.Pool):
        async with pool_or_conn.acquire() as conn:
            await write_audit(conn, ctx, rec)
    else:
        await write_audit(pool_or_conn, ctx, rec)


@contextlib.asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool, ctx: RequestContext, *,
                       isolation: str = "read_committed") -> AsyncIterator[UnitOfWork]:
    async with pool.acquire() as conn:
        uow = UnitOfWork(conn, ctx)
        tx = conn.transaction(isolation=isolation)
        await tx.start()
        try:
            yield uow
            await uow._flush()
        except BaseException as exc:
            await tx.rollback()
            if uow._audits and isinstance(exc, Exception):
                await _audit_failure(conn, ctx, uow._audits, exc)
            raise
        await tx.commit()
    for fn in uow._after_commit:
        try:
            await fn()
        except Exception:  # the change is committed; a failed notification must not undo it
            log.exception("after_commit_failed")


async def _audit_failure(conn: asyncpg.Connection, ctx: RequestContext,
                         declared: list[AuditRecord], exc: Exception) -> None:
    outcome = "denied" if isinstance(exc, (Forbidden, Unauthorized)) else "failure"
    reason = exc.detail if isinstance(exc, CADError) else type(exc).__name__
    records = [AuditRecord(a.action, a.target, outcome, {**a.details, "reason": reason}) for a in declared]
    try:
        await write_audit(conn, ctx, records)
    except Exception:
        log.exception("audit_failure_record_failed")


P = ParamSpec("P")
R = TypeVar("R")

# Attempts of an action whose transaction lost a deadlock or a serialization check. Locks are
# taken in one global order (docs/architecture.md), so this is the residue: two attempts
# more absorbed every case the concurrency test drives (tests/incidents/dispatch).
TRANSIENT_ATTEMPTS = 3


def retry_transient(action: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a service action again when PostgreSQL aborted its transaction as a deadlock
    victim or a serialization failure: nothing of the attempt was committed, so running it
    again is safe (idempotency keys included: the claim rolled back with it). The last
    failure propagates (answered 503 with Retry-After by cad.errors)."""

    @functools.wraps(action)
    async def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
        for n in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                return await action(*args, **kwargs)
            except asyncpg.TransactionRollbackError as exc:
                if n == TRANSIENT_ATTEMPTS:
                    raise
                log.warning("transaction_retried", action=action.__qualname__, attempt=n,
                            error=type(exc).__name__)
                # Jitter, so the two colliding transactions do not meet again in step.
                await asyncio.sleep(random.uniform(0.0, 0.005 * n))
        raise AssertionError("unreachable")

    return attempt


async def event_log_head(conn: asyncpg.Connection) -> int:
    """The newest committed event id (0 for an empty log)."""
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM event_log"))
