"""All SQL of online reports: the only writer of ``public_reports``. The contact columns are
read by one function (``contact``), which the service audits, and erased by one
(``erase_expired_contacts``), which the retention sweep runs (cad.retention). Whether an agency takes
reports at all is ``incidents.public.repository.has_public_reviewer``."""

from __future__ import annotations

from datetime import datetime

import asyncpg

# Every column but the contact: what staff lists and views are made of.
_COLUMNS = """id, tracking, agency, report_type, description, location_text, lat, lon,
occurred_at, language, via, status, submitted_at, decided_at, decided_by, accepted_as,
incident_id, public_reason, staff_note, contact_erased_at,
(contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL)
  AS has_contact"""


async def insert_report(conn: asyncpg.Connection, *, tracking: str, agency: str,
                        report_type: str, description: str, location_text: str | None,
                        lat: float | None, lon: float | None, occurred_at: datetime | None,
                        language: str, contact: dict[str, str | None], via: str
                        ) -> asyncpg.Record | None:
    """None when the tracking number is taken (the caller draws another)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO public_reports (tracking, agency, report_type, description, location_text,"
        " lat, lon, occurred_at, language, contact_name, contact_phone, contact_email, via)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        f" ON CONFLICT (tracking) DO NOTHING RETURNING {_COLUMNS}",
        tracking, agency, report_type, description, location_text, lat, lon, occurred_at,
        language, contact.get("name"), contact.get("phone"), contact.get("email"), via)
    return row


async def public_status(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str,
                        tracking: str) -> asyncpg.Record | None:
    """Only what the reporter may see."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT tracking, report_type, status, submitted_at, decided_at, public_reason"
        " FROM public_reports WHERE agency = $1 AND tracking = $2", agency, tracking)
    return row


async def list_reports(conn: asyncpg.Connection | asyncpg.Pool, *, agencies: list[str] | None,
                       status: str | None, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT {_COLUMNS} FROM public_reports"
        " WHERE ($1::text[] IS NULL OR agency = ANY($1)) AND ($2::text IS NULL OR status = $2)"
        " ORDER BY submitted_at, id LIMIT $3", agencies, status, limit))


async def get_report(conn: asyncpg.Connection | asyncpg.Pool, *, report_id: int,
                     agencies: list[str] | None, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM public_reports WHERE id = $1"
        " AND ($2::text[] IS NULL OR agency = ANY($2))" + (" FOR UPDATE" if lock else ""),
        report_id, agencies)
    return row


async def contact(conn: asyncpg.Connection | asyncpg.Pool, *, report_id: int,
                  agencies: list[str] | None) -> asyncpg.Record | None:
    """The reporter's personal data, and when the retention sweep erased it (cad.retention):
    the service audits every call."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, contact_name, contact_phone, contact_email, contact_erased_at"
        " FROM public_reports"
        " WHERE id = $1 AND ($2::text[] IS NULL OR agency = ANY($2))", report_id, agencies)
    return row


async def decide(conn: asyncpg.Connection, *, report_id: int, status: str, decided_by: str,
                 accepted_as: str | None, incident_id: int | None, public_reason: str | None,
                 staff_note: str | None) -> asyncpg.Record | None:
    """The decision, only while the report is still waiting (None: decided meanwhile)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE public_reports SET status = $2, decided_at = clock_timestamp(), decided_by = $3,"
        " accepted_as = $4, incident_id = $5, public_reason = $6,"
        " staff_note = coalesce($7, staff_note)"
        f" WHERE id = $1 AND status = 'received' RETURNING {_COLUMNS}",
        report_id, status, decided_by, accepted_as, incident_id, public_reason, staff_note)
    return row



# Decided reports that still hold contact data, decided more than $1 days ago: the partial
# index public_reports_contact_due_idx (migration 0020) finds exactly these, and the cutoff is
# an index condition (statement_timestamp() is stable; clock_timestamp() would be a filter over
# every decided report). The outer WHERE repeats the condition, so the UPDATE re-checks it on
# a row changed since the inner scan.
_CONTACT_DUE = """decided_at IS NOT NULL
AND decided_at < statement_timestamp() - make_interval(days => $1)
AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL)"""


async def erase_expired_contacts(conn: asyncpg.Connection, days: int, batch: int) -> int:
    """Erase (set NULL, stamp ``contact_erased_at``) the contact of at most ``batch`` reports
    decided more than ``days`` ago; how many. Undecided reports are never touched; a report
    filed without contact is not stamped (it has nothing to erase)."""
    status = await conn.execute(
        "UPDATE public_reports SET contact_name = NULL, contact_phone = NULL,"
        " contact_email = NULL, contact_erased_at = clock_timestamp()"
        f" WHERE id = ANY(ARRAY(SELECT id FROM public_reports WHERE {_CONTACT_DUE} LIMIT $2))"
        f" AND {_CONTACT_DUE}", days, batch)
    return int(status.split()[-1])
