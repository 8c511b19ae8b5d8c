"""All SQL of feedback: ``feedback`` and ``feedback_notes`` (migrations 0016, 0020), which
this package owns; the retention sweep (cad.retention) runs ``erase_expired_contacts``. Staff
reads also look up, read only, the incident and the unit a submission names (``incidents``,
``units``), and whether an assignee may take a case (``users``). Whether an agency takes
feedback at all is ``incidents.public.repository.has_public_reviewer``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

# Deadlines passed while still open, computed by the database's clock.
_OVERDUE = """
ARRAY_REMOVE(ARRAY[
    CASE WHEN f.status = 'received' AND f.acknowledge_due_at <= clock_timestamp()
         THEN 'acknowledge' END,
    CASE WHEN f.status IN ('received', 'assigned', 'investigating')
          AND f.resolve_due_at <= clock_timestamp() THEN 'resolve' END], NULL) AS overdue
"""
_SUMMARY = ("f.id, f.agency, f.category, f.subcategory, f.status, f.assigned_to, f.received_at, "
            "f.acknowledged_at, f.acknowledge_due_at, f.resolve_due_at, f.resolved_at, "
            "f.closed_at, f.outcome, f.incident_number, f.unit_ref, f.version, " + _OVERDUE)
_OPEN_OVERDUE = ("(f.status = 'received' AND f.acknowledge_due_at <= clock_timestamp()) OR "
                 "(f.status IN ('received', 'assigned', 'investigating') "
                 "AND f.resolve_due_at <= clock_timestamp())")


async def insert(conn: asyncpg.Connection, *, values: dict[str, Any],
                 acknowledge_s: float, resolve_s: float) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO feedback (reference, agency, category, subcategory, description, "
        "incident_number, unit_ref, occurred_at, contact_name, contact_email, contact_phone, "
        "language, received_at, acknowledge_due_at, resolve_due_at) "
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, t, "
        "t + make_interval(secs => $13), t + make_interval(secs => $14) "
        "FROM (SELECT clock_timestamp() AS t) AS clock "
        "RETURNING id, reference, agency, category, status, received_at, acknowledge_due_at, "
        "resolve_due_at",
        values["reference"], values["agency"], values["category"], values["subcategory"],
        values["description"], values["incident_number"], values["unit_ref"],
        values["occurred_at"], values["name"], values["email"], values["phone"],
        values["language"], acknowledge_s, resolve_s)
    return row


async def by_reference(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str,
                       reference: str) -> asyncpg.Record | None:
    """What the holder of a reference may see (no description, contact, assignee or notes)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT reference, agency, category, subcategory, status, received_at, acknowledged_at, "
        "acknowledge_due_at, resolve_due_at, resolved_at, closed_at, outcome, "
        "public_response AS response FROM feedback WHERE agency = $1 AND reference = $2",
        agency, reference)
    return row


async def queue(conn: asyncpg.Connection | asyncpg.Pool, *, agencies: list[str] | None,
                statuses: Sequence[str] | None, category: str | None, assigned_to: str | None,
                overdue_only: bool, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {_SUMMARY} FROM feedback f "
        "WHERE ($1::text[] IS NULL OR f.agency = ANY($1)) "
        "AND ($2::text[] IS NULL OR f.status = ANY($2)) "
        "AND ($3::text IS NULL OR f.category = $3) "
        "AND ($4::text IS NULL OR f.assigned_to = $4) "
        f"AND (NOT $5 OR {_OPEN_OVERDUE}) "
        "ORDER BY f.resolve_due_at, f.id LIMIT $6",
        agencies, list(statuses) if statuses is not None else None, category, assigned_to,
        overdue_only, limit))


async def get(conn: asyncpg.Connection | asyncpg.Pool, *, feedback_id: int,
              agencies: list[str] | None, for_update: bool = False) -> asyncpg.Record | None:
    """One case in full, with the incident and unit it names if they exist in its agency."""
    lock = " FOR UPDATE OF f" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_SUMMARY}, f.reference, f.description, f.occurred_at, f.contact_name, "
        "f.contact_email, f.contact_phone, f.contact_erased_at, f.language, f.public_response, "
        "(SELECT i.id FROM incidents i WHERE i.agency = f.agency "
        " AND i.number = f.incident_number ORDER BY i.id LIMIT 1) AS incident_id, "
        "(SELECT u.id FROM units u WHERE u.agency = f.agency AND u.id = f.unit_ref) AS unit_id "
        "FROM feedback f WHERE f.id = $1 AND ($2::text[] IS NULL OR f.agency = ANY($2))"
        f"{lock}", feedback_id, agencies)
    return row


async def notes(conn: asyncpg.Connection | asyncpg.Pool, *,
                feedback_id: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT id, author, text, created_at FROM feedback_notes WHERE feedback_id = $1 "
        "ORDER BY id", feedback_id))


async def add_note(conn: asyncpg.Connection, *, feedback_id: int, author: str,
                   text: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO feedback_notes (feedback_id, author, text) VALUES ($1, $2, $3) "
        "RETURNING id, author, text, created_at", feedback_id, author, text)
    return row


async def assignee_may_take(conn: asyncpg.Connection, *, username: str, agency: str) -> bool:
    """An enabled supervisor of the agency, or an admin."""
    ok: bool | None = await conn.fetchval(
        "SELECT true FROM users WHERE username = $1 AND NOT disabled AND "
        "(role = 'admin' OR (role = 'supervisor' AND $2 = ANY(agencies)))", username, agency)
    return bool(ok)


async def assign(conn: asyncpg.Connection, *, feedback_id: int, from_status: str,
                 to_status: str, assignee: str) -> bool:
    """Assign (or reassign); the first assignment acknowledges the case."""
    done = await conn.fetchval(
        "UPDATE feedback SET assigned_to = $4, assigned_at = clock_timestamp(), status = $3, "
        "acknowledged_at = coalesce(acknowledged_at, clock_timestamp()), version = version + 1 "
        "WHERE id = $1 AND status = $2 RETURNING id",
        feedback_id, from_status, to_status, assignee)
    return done is not None


async def transition(conn: asyncpg.Connection, *, feedback_id: int, from_status: str,
                     to_status: str, outcome: str | None, response: str | None) -> bool:
    """One status change of the table in incidents.feedback.service. Resolving or closing
    stamps its time; reopening (resolved -> investigating) clears the outcome."""
    done = await conn.fetchval(
        "UPDATE feedback SET status = $3, version = version + 1, "
        "outcome = CASE WHEN $3 IN ('resolved', 'closed') THEN coalesce($4, outcome) END, "
        "public_response = coalesce($5, public_response), "
        "resolved_at = CASE WHEN $3 = 'resolved' THEN clock_timestamp() "
        "                   WHEN $3 = 'investigating' THEN NULL ELSE resolved_at END, "
        "closed_at = CASE WHEN $3 = 'closed' THEN clock_timestamp() END "
        "WHERE id = $1 AND status = $2 RETURNING id",
        feedback_id, from_status, to_status, outcome, response)
    return done is not None


async def counts(conn: asyncpg.Connection | asyncpg.Pool, *, agencies: list[str] | None,
                 since: datetime, tz: str) -> list[asyncpg.Record]:
    """Exact counts per local month of receipt, category, subcategory and outcome."""
    return list(await conn.fetch(
        "SELECT to_char(f.received_at AT TIME ZONE $3, 'YYYY-MM') AS period, f.category, "
        "f.subcategory, coalesce(f.outcome, 'pending') AS outcome, count(*)::int AS count "
        "FROM feedback f WHERE ($1::text[] IS NULL OR f.agency = ANY($1)) "
        "AND f.received_at >= $2 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        agencies, since, tz))


# Resolved or closed cases that still hold contact data, decided more than $1 days ago: a case
# is decided at its resolution or closure (a resolved case closed afterwards: at the closure).
# The partial index feedback_contact_due_idx (migration 0020) finds exactly these, the cutoff
# an index condition (statement_timestamp() is stable, clock_timestamp() is not). The outer
# WHERE repeats the condition: under READ COMMITTED the UPDATE re-checks it on a row changed
# since the inner scan, so a case reopened meanwhile (resolved -> investigating) keeps its
# contact.
_CONTACT_DUE = """status IN ('resolved', 'closed')
AND coalesce(closed_at, resolved_at) < statement_timestamp() - make_interval(days => $1)
AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL)"""


async def erase_expired_contacts(conn: asyncpg.Connection, days: int, batch: int) -> int:
    """Erase (set NULL, stamp ``contact_erased_at``) the contact of at most ``batch`` cases
    resolved or closed more than ``days`` ago; how many. Open cases are never touched, however
    old; a case without contact is not stamped (it has nothing to erase)."""
    status = await conn.execute(
        "UPDATE feedback SET contact_name = NULL, contact_phone = NULL, contact_email = NULL,"
        " contact_erased_at = clock_timestamp()"
        f" WHERE id = ANY(ARRAY(SELECT id FROM feedback WHERE {_CONTACT_DUE} LIMIT $2))"
        f" AND {_CONTACT_DUE}", days, batch)
    return int(status.split()[-1])
