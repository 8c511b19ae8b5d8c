"""All SQL of community alerts: ``alerts``, ``alert_subscriptions`` and ``alert_deliveries``
(migration 0013), which this package owns, and reads of incidents and zones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_ALERT_COLS = ("a.id, a.identifier, a.agency, a.incident_id, a.msg_type, a.references_id, "
               "a.state, a.event, a.category, a.urgency, a.severity, a.certainty, a.area_desc, "
               "a.polygons, a.infos, a.expires_at, a.drafted_by, a.drafted_at, a.approved_by, "
               "a.sent_at, a.cap_xml, i.number AS incident_number, ref.identifier AS references_identifier")


def _alert(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return dict(row)   # jsonb columns arrive decoded (cad.db's codec)


async def incident_location(conn: asyncpg.Connection, *, incident_id: int
                            ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, agency, lat, lon, number FROM incidents WHERE id = $1", incident_id)


async def zone(conn: asyncpg.Connection, *, zone_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT id, agency, name, geometry FROM zones WHERE id = $1",
                               zone_id)


async def insert_alert(conn: asyncpg.Connection, *, values: dict[str, Any]) -> int:
    alert_id: int = await conn.fetchval(
        "INSERT INTO alerts (identifier, agency, incident_id, msg_type, references_id, event, "
        "category, urgency, severity, certainty, area_desc, polygons, infos, expires_at, "
        "drafted_by) VALUES ('pending-' || gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, "
        "$9, $10, $11::jsonb, $12::jsonb, $13, $14) RETURNING id",
        values["agency"], values["incident_id"], values["msg_type"], values["references_id"],
        values["event"], values["category"], values["urgency"], values["severity"],
        values["certainty"], values["area_desc"], values["polygons"],
        values["infos"], values["expires_at"], values["drafted_by"])
    return alert_id


async def set_identifier(conn: asyncpg.Connection, *, alert_id: int, identifier: str) -> None:
    await conn.execute("UPDATE alerts SET identifier = $2 WHERE id = $1", alert_id, identifier)


async def get_alert(conn: asyncpg.Connection | asyncpg.Pool, *, alert_id: int,
                    for_update: bool = False) -> dict[str, Any] | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    return _alert(await conn.fetchrow(
        f"SELECT {_ALERT_COLS} FROM alerts a JOIN incidents i ON i.id = a.incident_id "
        "LEFT JOIN alerts ref ON ref.id = a.references_id "
        f"WHERE a.id = $1{lock}", alert_id))


async def list_alerts(pool: asyncpg.Pool, *, agencies: list[str] | None, limit: int
                      ) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLS} FROM alerts a JOIN incidents i ON i.id = a.incident_id "
        "LEFT JOIN alerts ref ON ref.id = a.references_id "
        "WHERE ($1::text[] IS NULL OR a.agency = ANY($1)) ORDER BY a.id DESC LIMIT $2",
        agencies, limit)
    return [a for r in rows if (a := _alert(r)) is not None]


async def published(pool: asyncpg.Pool, *, agency: str, limit: int) -> list[dict[str, Any]]:
    """An agency's published messages (Alert, Update, Cancel), newest first: the feeds."""
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLS} FROM alerts a JOIN incidents i ON i.id = a.incident_id "
        "LEFT JOIN alerts ref ON ref.id = a.references_id "
        "WHERE a.state = 'published' AND a.agency = $1 "
        "ORDER BY a.sent_at DESC, a.id DESC LIMIT $2", agency, limit)
    return [a for r in rows if (a := _alert(r)) is not None]


async def current(pool: asyncpg.Pool, *, agency: str, now: datetime, limit: int
                  ) -> list[dict[str, Any]]:
    """What is in force for an agency now: published Alerts and Updates that have not expired
    and that no later published message (an Update or a Cancel) references; newest first.
    A Cancel is never in force itself, and it takes the message it cancels out."""
    rows = await pool.fetch(
        f"SELECT {_ALERT_COLS} FROM alerts a JOIN incidents i ON i.id = a.incident_id "
        "LEFT JOIN alerts ref ON ref.id = a.references_id "
        "WHERE a.state = 'published' AND a.agency = $1 AND a.msg_type <> 'Cancel' "
        "AND (a.expires_at IS NULL OR a.expires_at > $2) "
        "AND NOT EXISTS (SELECT 1 FROM alerts later WHERE later.references_id = a.id "
        "                AND later.state = 'published') "
        "ORDER BY a.sent_at DESC, a.id DESC LIMIT $3", agency, now, limit)
    return [a for r in rows if (a := _alert(r)) is not None]


async def reference_chain(conn: asyncpg.Connection, *, alert_id: int) -> list[asyncpg.Record]:
    """The alert and every published alert it updates or cancels, transitively, oldest
    first (identifier, sent_at)."""
    return await conn.fetch(
        "WITH RECURSIVE chain AS ("
        " SELECT id, references_id, identifier, sent_at, 0 AS depth FROM alerts WHERE id = $1"
        " UNION ALL SELECT a.id, a.references_id, a.identifier, a.sent_at, c.depth + 1"
        " FROM alerts a JOIN chain c ON a.id = c.references_id)"
        " SELECT identifier, sent_at FROM chain ORDER BY depth DESC", alert_id)


async def published_xml(pool: asyncpg.Pool, *, agency: str, identifier: str) -> str | None:
    xml: str | None = await pool.fetchval(
        "SELECT cap_xml FROM alerts WHERE identifier = $1 AND agency = $2 AND state = 'published'",
        identifier, agency)
    return xml


async def publish(conn: asyncpg.Connection, *, alert_id: int, approved_by: str,
                  sent_at: datetime, cap_xml: str) -> bool:
    """Draft -> published, by someone other than the drafter (the table's CHECK says so too)."""
    row = await conn.fetchval(
        "UPDATE alerts SET state = 'published', approved_by = $2, sent_at = $3, cap_xml = $4 "
        "WHERE id = $1 AND state = 'draft' AND drafted_by <> $2 RETURNING id",
        alert_id, approved_by, sent_at, cap_xml)
    return row is not None


async def queue_deliveries(conn: asyncpg.Connection, *, alert_id: int, agency: str) -> int:
    """One pending delivery per active subscription of the alert's agency."""
    rows = await conn.fetch(
        "INSERT INTO alert_deliveries (alert_id, subscription_id) "
        "SELECT $1, id FROM alert_subscriptions WHERE agency = $2 AND active "
        "RETURNING id", alert_id, agency)
    return len(rows)


async def insert_subscription(conn: asyncpg.Connection, *, agency: str, channel: str,
                              target: str, secret: str | None, created_by: str
                              ) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO alert_subscriptions (agency, channel, target, secret, created_by) "
        "VALUES ($1, $2, $3, $4, $5) "
        "RETURNING id, agency, channel, target, created_by, created_at, active",
        agency, channel, target, secret, created_by)
    return row


async def deactivate_subscription(conn: asyncpg.Connection, *, subscription_id: int,
                                  agencies: list[str] | None) -> str | None:
    agency: str | None = await conn.fetchval(
        "UPDATE alert_subscriptions SET active = false WHERE id = $1 AND active "
        "AND ($2::text[] IS NULL OR agency = ANY($2)) RETURNING agency",
        subscription_id, agencies)
    return agency


async def list_subscriptions(pool: asyncpg.Pool, *, agencies: list[str] | None
                             ) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, agency, channel, target, created_by, created_at, active "
        "FROM alert_subscriptions WHERE active AND ($1::text[] IS NULL OR agency = ANY($1)) "
        "ORDER BY id", agencies)


_DELIVERY_COLS = ("d.id, d.alert_id, d.subscription_id, s.channel, s.target, d.state, "
                  "d.attempts, d.next_attempt_at, d.last_error, d.delivered_at, d.log")


async def deliveries(pool: asyncpg.Pool, *, alert_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT {_DELIVERY_COLS} FROM alert_deliveries d "
        "JOIN alert_subscriptions s ON s.id = d.subscription_id "
        "WHERE d.alert_id = $1 ORDER BY d.id", alert_id)
    return [dict(r) for r in rows]


async def claim_due(conn: asyncpg.Connection, *, limit: int) -> list[asyncpg.Record]:
    """Due deliveries, locked for this transaction (other workers skip them)."""
    return await conn.fetch(
        "SELECT d.id, d.attempts, d.alert_id, s.channel, s.target, s.secret, a.cap_xml, "
        "a.identifier, a.infos, a.msg_type FROM alert_deliveries d "
        "JOIN alert_subscriptions s ON s.id = d.subscription_id "
        "JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.state = 'pending' AND d.next_attempt_at <= now() "
        "ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED", limit)


async def next_due_in_s(pool: asyncpg.Pool) -> float | None:
    """Seconds until the earliest pending delivery falls due (<= 0: due now), None if none."""
    wait: float | None = await pool.fetchval(
        "SELECT date_part('epoch', min(next_attempt_at) - now()) FROM alert_deliveries "
        "WHERE state = 'pending'")
    return wait


async def record_attempt(conn: asyncpg.Connection, *, delivery_id: int, error: str | None,
                         retry_in_s: float | None) -> None:
    """One attempt: delivered, retried after ``retry_in_s``, or failed for good (None).
    clock_timestamp, not now(): the claim's transaction began before the send, and the
    backoff counts from the failure."""
    entry = {"at": None, "ok": error is None, "error": error}
    await conn.execute(
        "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = $2, "
        "log = log || jsonb_build_array(jsonb_set($3::jsonb, '{at}', to_jsonb(clock_timestamp()))), "
        "state = CASE WHEN $2::text IS NULL THEN 'delivered' "
        "             WHEN $4::float8 IS NULL THEN 'failed' ELSE 'pending' END, "
        "delivered_at = CASE WHEN $2::text IS NULL THEN clock_timestamp() END, "
        "next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at "
        "                  ELSE clock_timestamp() + make_interval(secs => $4) END "
        "WHERE id = $1", delivery_id, error, entry, retry_in_s)
