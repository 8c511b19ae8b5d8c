"""All SQL of the public face. It writes ``public_incident_types`` and
``public_challenge_uses`` (incidents.public.challenge); it reads incidents
and their types (the incidents core's tables) through the one publication predicate below,
so every public read passes the same gate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

# The gate every public row passes: the agency publishes the type, the type is not sensitive
# ($sensitive: a case-insensitive regular expression over code, description and APCO type;
# EMS types are medical and never published), the incident is closed, not merged, not training
# (marked so, or of an agency that is one now: docs/analytics.md, "Training mode"), and closed
# at least the publication delay ago. Columns are listed: nothing else of the row leaves.
_PUBLISHED = """
SELECT i.number, i.agency, i.incident_type, t.description AS type_description,
       i.received_at, i.closed_at, i.first_dispatched_at, i.lat, i.lon
FROM incidents i
JOIN incident_types t ON t.code = i.incident_type
JOIN public_incident_types p ON p.agency = i.agency AND p.incident_type = i.incident_type
WHERE i.agency = $1 AND i.status = 'closed' AND i.merged_into IS NULL
  AND NOT i.training AND NOT cad_is_training(i.agency)
  AND i.closed_at <= clock_timestamp() - make_interval(secs => $2)
  AND t.discipline <> 'ems'
  AND (t.code || ' ' || t.description || ' ' || t.apco_type) !~* $3
"""


async def published_incidents(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str,
                              delay_s: float, sensitive: str, since: datetime,
                              limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        _PUBLISHED + " AND i.closed_at >= $4 ORDER BY i.closed_at DESC, i.id DESC LIMIT $5",
        agency, delay_s, sensitive, since, limit))


async def published_by_number(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str,
                              delay_s: float, sensitive: str, number: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_PUBLISHED + " AND i.number = $4",
                                                     agency, delay_s, sensitive, number)
    return row


async def published_received_between(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str,
                                     delay_s: float, sensitive: str, start: datetime,
                                     end: datetime, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        _PUBLISHED + " AND i.received_at >= $4 AND i.received_at < $5"
        " ORDER BY i.received_at, i.id LIMIT $6",
        agency, delay_s, sensitive, start, end, limit))


async def publication_types(conn: asyncpg.Connection | asyncpg.Pool, *,
                            agencies: list[str] | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT agency, incident_type, enabled_by, enabled_at FROM public_incident_types"
        " WHERE $1::text[] IS NULL OR agency = ANY($1) ORDER BY agency, incident_type",
        agencies))


async def incident_type(conn: asyncpg.Connection, *, code: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT code, description, apco_type, discipline FROM incident_types WHERE code = $1", code)
    return row


async def enable_type(conn: asyncpg.Connection, *, agency: str, code: str,
                      by: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO public_incident_types (agency, incident_type, enabled_by) VALUES ($1, $2, $3)"
        " ON CONFLICT (agency, incident_type) DO UPDATE SET enabled_by = public_incident_types.enabled_by"
        " RETURNING agency, incident_type, enabled_by, enabled_at", agency, code, by)
    return row


async def disable_type(conn: asyncpg.Connection, *, agency: str, code: str) -> bool:
    done: Any = await conn.fetchval(
        "DELETE FROM public_incident_types WHERE agency = $1 AND incident_type = $2 RETURNING 1",
        agency, code)
    return done is not None


async def spend_challenge(conn: asyncpg.Connection, *, digest: bytes, kind: str, purpose: str,
                          address: bytes, window_s: float, budget: int,
                          expires_at: datetime) -> str:
    """Record a challenge token as used, in the caller's transaction: ``"ok"``, ``"used"``
    (spent before) or ``"limited"`` (``address`` spent ``budget`` tokens of this kind and
    purpose within the window). One address and purpose at a time (an advisory lock), so
    parallel requests cannot overdraw the budget. Prunes a few expired rows on the way."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 15))",
                       f"challenge|{purpose}|{address.hex()}")
    if await conn.fetchval("SELECT 1 FROM public_challenge_uses WHERE digest = $1", digest):
        return "used"
    spent = await conn.fetchval(
        "SELECT count(*) FROM public_challenge_uses WHERE address = $1 AND purpose = $2"
        " AND kind = $3 AND used_at > clock_timestamp() - make_interval(secs => $4)",
        address, purpose, kind, window_s)
    if spent >= budget:
        return "limited"
    inserted = await conn.fetchval(
        "INSERT INTO public_challenge_uses (digest, kind, purpose, address, keep_until)"
        " VALUES ($1, $2, $3, $4, greatest($5, clock_timestamp() + make_interval(secs => $6)))"
        " ON CONFLICT (digest) DO NOTHING RETURNING 1",
        digest, kind, purpose, address, expires_at, window_s)
    await conn.execute(
        "DELETE FROM public_challenge_uses WHERE digest IN (SELECT digest FROM"
        " public_challenge_uses WHERE keep_until < clock_timestamp() LIMIT 20)")
    return "ok" if inserted else "used"


async def has_public_reviewer(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str) -> bool:
    """Whether an agency takes the public's forms (online reports, feedback): an enabled
    supervisor or admin acts for it, so someone works the queue; a typo in the address finds
    none. A training agency never does (nothing of training is public). Reads ``users``
    (cad's table), read only."""
    return bool(await conn.fetchval(
        "SELECT NOT cad_is_training($1) AND EXISTS (SELECT 1 FROM users WHERE NOT disabled"
        " AND role IN ('supervisor', 'admin') AND $1 = ANY (agencies))", agency))
