"""All SQL about units and stations."""

from __future__ import annotations

from typing import Any

import asyncpg


async def get_unit(conn: asyncpg.Connection, unit_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM units WHERE id = $1" + (" FOR UPDATE" if for_update else "")
    return await conn.fetchrow(sql, unit_id)


async def list_units(conn: asyncpg.Connection, *, agency: str | None, status: str | None,
                     include_inactive: bool) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM units WHERE ($1::text IS NULL OR agency = $1) "
        "AND ($2::text IS NULL OR status = $2) AND ($3 OR active) ORDER BY id",
        agency, status, include_inactive)


async def insert_unit(conn: asyncpg.Connection, u: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO units (id, agency, discipline, unit_type, capabilities, home_station, staffing, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        u["id"], u["agency"], u["discipline"], u["unit_type"], u["capabilities"],
        u["home_station"], u["staffing"], u["status"])


async def upsert_unit(conn: asyncpg.Connection, u: dict[str, Any]) -> tuple[asyncpg.Record, bool]:
    row = await conn.fetchrow(
        "INSERT INTO units (id, agency, discipline, unit_type, capabilities, home_station, staffing, status) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (id) DO UPDATE SET agency = EXCLUDED.agency, discipline = EXCLUDED.discipline, "
        "unit_type = EXCLUDED.unit_type, capabilities = EXCLUDED.capabilities, "
        "home_station = EXCLUDED.home_station, staffing = EXCLUDED.staffing, active = true, "
        "version = units.version + 1 "
        "RETURNING *, (xmax = 0) AS inserted",
        u["id"], u["agency"], u["discipline"], u["unit_type"], u["capabilities"],
        u["home_station"], u["staffing"], u["status"])
    return row, bool(row["inserted"])


async def update_unit_fields(conn: asyncpg.Connection, unit_id: str, changes: dict[str, Any]) -> asyncpg.Record:
    cols = list(changes)
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
    return await conn.fetchrow(
        f"UPDATE units SET {sets}, version = version + 1 WHERE id = $1 RETURNING *",
        unit_id, *[changes[c] for c in cols])


async def set_status(conn: asyncpg.Connection, unit_id: str, *, status: str,
                     current_incident: int | None) -> asyncpg.Record:
    return await conn.fetchrow(
        "UPDATE units SET status = $2, status_changed_at = clock_timestamp(), last_checkin_at = NULL, "
        "current_incident = $3, version = version + 1 WHERE id = $1 RETURNING *",
        unit_id, status, current_incident)


async def log_status(conn: asyncpg.Connection, *, unit_id: str, from_status: str | None,
                     to_status: str, at: Any, reported_at: Any, incident_id: int | None,
                     actor: str, source: str, client_addr: str | None,
                     request_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO unit_status_log (unit_id, from_status, to_status, at, reported_at, incident_id, "
        "actor, source, client_addr, request_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        unit_id, from_status, to_status, at, reported_at, incident_id, actor, source,
        client_addr, request_id)


async def status_history(conn: asyncpg.Connection, unit_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM unit_status_log WHERE unit_id = $1 ORDER BY id DESC LIMIT $2", unit_id, limit)


async def get_station(conn: asyncpg.Connection, station_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM stations WHERE id = $1", station_id)


async def upsert_station(conn: asyncpg.Connection, s: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO stations (id, agency, name, address, lat, lon) VALUES ($1,$2,$3,$4,$5,$6) "
        "ON CONFLICT (id) DO UPDATE SET agency = EXCLUDED.agency, name = EXCLUDED.name, "
        "address = EXCLUDED.address, lat = EXCLUDED.lat, lon = EXCLUDED.lon RETURNING *",
        s["id"], s["agency"], s["name"], s.get("address"), s["lat"], s["lon"])


async def list_stations(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM stations ORDER BY id")
