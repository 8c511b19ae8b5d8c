"""All SQL of cad.security except the audit chain (cad.security.audit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from cad.security.scope import Scope

USER_COLUMNS = ("id::text AS id, username, display_name, role, unit_id, agency, agencies, "
                "disabled, "
                "failed_logins, locked_until, created_at, updated_at")


async def user_by_username(conn: asyncpg.Connection, username: str, *,
                           for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1{lock}", username)


async def user_by_id(conn: asyncpg.Connection, user_id: str, *,
                     for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = $1::uuid{lock}", user_id)


async def visible_user(conn: asyncpg.Connection, user_id: str, *, scope: Scope,
                       for_update: bool = False) -> asyncpg.Record | None:
    """The user, or None when it does not exist or acts for no agency of ``scope``."""
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {USER_COLUMNS}, password_hash FROM users WHERE id = $1::uuid "
        f"AND ($2::text[] IS NULL OR agencies && $2){lock}", user_id, scope.agency_list)


async def list_users(conn: asyncpg.Connection, *, role: str | None, include_disabled: bool,
                     limit: int, offset: int, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT {USER_COLUMNS} FROM users WHERE ($1::text IS NULL OR role = $1) "
        f"AND ($2 OR NOT disabled) AND ($5::text[] IS NULL OR agencies && $5) "
        f"ORDER BY username LIMIT $3 OFFSET $4",
        role, include_disabled, limit, offset, scope.agency_list)


async def insert_user(conn: asyncpg.Connection, *, username: str, password_hash: str, role: str,
                      unit_id: str | None, agency: str | None, display_name: str | None,
                      agencies: list[str] | None = None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO users (username, password_hash, role, unit_id, agency, display_name, "
        f"agencies) VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, '{{}}'::text[])) "
        f"RETURNING {USER_COLUMNS}",
        username, password_hash, role, unit_id, agency, display_name, agencies)


async def unit_agency(conn: asyncpg.Connection, unit_id: str) -> str | None:
    """The agency of a unit (None: no such unit), to bind field-unit users to existing units
    of their agency. The one read of the ``units`` table here; it only reads."""
    return await conn.fetchval("SELECT agency FROM units WHERE id = $1", unit_id)


async def update_user(conn: asyncpg.Connection, user_id: str, changes: dict[str, Any]
                      ) -> asyncpg.Record | None:
    allowed = {"display_name", "role", "unit_id", "agency", "agencies", "disabled", "password_hash",
               "failed_logins", "locked_until", "password_changed_at"}
    cols = [c for c in changes if c in allowed]
    if not cols:
        return await user_by_id(conn, user_id)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    return await conn.fetchrow(
        f"UPDATE users SET {sets}, updated_at = clock_timestamp() WHERE id = $1::uuid "
        f"RETURNING {USER_COLUMNS}", user_id, *[changes[c] for c in cols])


async def count_enabled_admins(conn: asyncpg.Connection, *, excluding: str | None = None) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled "
        "AND ($1::uuid IS NULL OR id <> $1::uuid)", excluding)


async def record_login_attempt(conn: asyncpg.Connection, *, at: datetime, username: str,
                               client_addr: str | None, success: bool, reason: str | None) -> None:
    await conn.execute(
        "INSERT INTO login_attempts (at, username, client_addr, success, reason) "
        "VALUES ($1, $2, $3, $4, $5)", at, username, client_addr, success, reason)


async def register_failed_login(conn: asyncpg.Connection, user_id: str, *, now: datetime,
                                threshold: int, lock_until: datetime) -> asyncpg.Record:
    """Count a consecutive failure; the threshold-th one locks the account and restarts the count."""
    return await conn.fetchrow(
        "UPDATE users SET "
        "  locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 ELSE locked_until END, "
        "  failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END "
        "WHERE id = $1::uuid RETURNING failed_logins, locked_until",
        user_id, threshold, lock_until)


async def insert_session(conn: asyncpg.Connection, *, session_id: str, user_id: str,
                         refresh_hash: str, now: datetime, expires_at: datetime,
                         client_addr: str | None, user_agent: str | None) -> None:
    await conn.execute(
        "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_seen_at, expires_at, "
        "client_addr, user_agent) VALUES ($1::uuid, $2::uuid, $3, $4, $4, $5, $6, $7)",
        session_id, user_id, refresh_hash, now, expires_at, client_addr, user_agent)


_SESSION_PRINCIPAL = """
SELECT s.id::text AS session_id, s.refresh_hash, s.last_seen_at, s.expires_at, s.revoked_at,
       u.id::text AS user_id, u.username, u.role, u.unit_id, u.agency, u.agencies, u.disabled
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id = $1::uuid
"""


async def session_with_user(conn: asyncpg.Connection | asyncpg.Pool, session_id: str, *,
                            for_update: bool = False) -> asyncpg.Record | None:
    sql = _SESSION_PRINCIPAL + (" FOR UPDATE OF s" if for_update else "")
    return await conn.fetchrow(sql, session_id)


async def touch_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: str,
                        now: datetime) -> None:
    await conn.execute(
        "UPDATE sessions SET last_seen_at = $2 WHERE id = $1::uuid AND last_seen_at < $2 "
        "AND revoked_at IS NULL", session_id, now)


async def rotate_refresh(conn: asyncpg.Connection, session_id: str, refresh_hash: str) -> None:
    await conn.execute("UPDATE sessions SET refresh_hash = $2 WHERE id = $1::uuid",
                       session_id, refresh_hash)


async def revoke_session(conn: asyncpg.Connection | asyncpg.Pool, session_id: str, *,
                         now: datetime, reason: str) -> bool:
    status = await conn.execute(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 "
        "WHERE id = $1::uuid AND revoked_at IS NULL", session_id, now, reason)
    return status.endswith(" 1")


async def revoke_user_credentials(conn: asyncpg.Connection, user_id: str, *, now: datetime,
                                  reason: str, by: str) -> tuple[int, int]:
    s = await conn.execute(
        "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 "
        "WHERE user_id = $1::uuid AND revoked_at IS NULL", user_id, now, reason)
    d = await conn.execute(
        "UPDATE device_tokens SET revoked_at = $2, revoked_by = $3 "
        "WHERE user_id = $1::uuid AND revoked_at IS NULL", user_id, now, by)
    return int(s.split()[-1]), int(d.split()[-1])


DEVICE_COLUMNS = ("d.id::text AS id, d.user_id::text AS user_id, d.unit_id, d.label, "
                  "d.created_at, d.created_by, d.expires_at, d.last_used_at, d.revoked_at, "
                  "d.revoked_by")


async def insert_device(conn: asyncpg.Connection, *, user_id: str, unit_id: str, label: str,
                        token_hash: str, now: datetime, created_by: str,
                        expires_at: datetime | None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO device_tokens AS d (user_id, unit_id, label, token_hash, created_at, "
        f"created_by, expires_at) VALUES ($1::uuid, $2, $3, $4, $5, $6, $7) "
        f"RETURNING {DEVICE_COLUMNS}",
        user_id, unit_id, label, token_hash, now, created_by, expires_at)


async def list_devices(conn: asyncpg.Connection, *, user_id: str | None, unit_id: str | None,
                       include_revoked: bool, scope: Scope) -> list[asyncpg.Record]:
    """Device tokens of users acting for an agency of ``scope``."""
    return await conn.fetch(
        f"SELECT {DEVICE_COLUMNS} FROM device_tokens d JOIN users u ON u.id = d.user_id "
        f"WHERE ($1::uuid IS NULL OR d.user_id = $1::uuid) AND ($2::text IS NULL OR d.unit_id = $2) "
        f"AND ($3 OR d.revoked_at IS NULL) AND ($4::text[] IS NULL OR u.agencies && $4) "
        f"ORDER BY d.created_at DESC LIMIT 1000",
        user_id, unit_id, include_revoked, scope.agency_list)


async def revoke_device(conn: asyncpg.Connection, device_id: str, *, now: datetime,
                        by: str, scope: Scope) -> asyncpg.Record | None:
    """None when there is no such token or its user acts for no agency of ``scope``."""
    return await conn.fetchrow(
        f"UPDATE device_tokens d SET revoked_at = coalesce(d.revoked_at, $2), "
        f"revoked_by = coalesce(d.revoked_by, $3) FROM users u WHERE d.id = $1::uuid "
        f"AND u.id = d.user_id AND ($4::text[] IS NULL OR u.agencies && $4) "
        f"RETURNING {DEVICE_COLUMNS}",
        device_id, now, by, scope.agency_list)


async def device_with_user(conn: asyncpg.Connection | asyncpg.Pool, token_hash: str
                           ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT d.id::text AS device_id, d.unit_id AS device_unit, d.expires_at, d.revoked_at, "
        "d.last_used_at, u.id::text AS user_id, u.username, u.role, u.unit_id, u.agency, "
        "u.agencies, "
        "u.disabled FROM device_tokens d JOIN users u ON u.id = d.user_id "
        "WHERE d.token_hash = $1", token_hash)


async def touch_device(conn: asyncpg.Connection | asyncpg.Pool, device_id: str,
                       now: datetime) -> None:
    await conn.execute("UPDATE device_tokens SET last_used_at = $2 WHERE id = $1::uuid",
                       device_id, now)
