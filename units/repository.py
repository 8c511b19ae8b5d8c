"""All SQL of the ``units``, ``stations`` and ``unit_status_log`` tables: every write to them
goes through here, whichever workflow asks for it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cad.security.scope import Scope

# A unit with its home station's position: what the routing index and the straight-line
# fallback place it by.
UNITS_WITH_STATIONS = """
SELECT u.*, s.lat AS station_lat, s.lon AS station_lon
FROM units u LEFT JOIN stations s ON s.id = u.home_station
"""

_UNIT_COLUMNS = "id, agency, discipline, unit_type, capabilities, home_station, staffing, status"


# --- reads -----------------------------------------------------------------------------------
async def get_unit(conn: asyncpg.Connection, unit_id: str, *, scope: Scope,
                   for_update: bool = False) -> asyncpg.Record | None:
    """The unit, or None when it does not exist or is of an agency outside ``scope``."""
    sql = ("SELECT * FROM units WHERE id = $1 AND ($2::text[] IS NULL OR agency = ANY($2))"
           + (" FOR UPDATE" if for_update else ""))
    return await conn.fetchrow(sql, unit_id, scope.agency_list)


async def unit_ids_taken(conn: asyncpg.Connection, unit_ids: Sequence[str]) -> dict[str, str]:
    """Unit id -> agency for those of ``unit_ids`` that exist (ids are unique across agencies)."""
    rows = await conn.fetch("SELECT id, agency FROM units WHERE id = ANY($1)", list(unit_ids))
    return {r["id"]: r["agency"] for r in rows}


async def list_units(conn: asyncpg.Connection, *, agencies: Sequence[str] | None,
                     status: str | None, include_inactive: bool) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM units WHERE ($1::text[] IS NULL OR agency = ANY($1)) "
        "AND ($2::text IS NULL OR status = $2) AND ($3 OR active) ORDER BY id",
        agencies, status, include_inactive)


async def active_units(conn: asyncpg.Connection, *,
                       agencies: Sequence[str] | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM units WHERE active AND ($1::text[] IS NULL OR agency = ANY($1)) ORDER BY id",
        agencies)


async def units_with_stations(conn: asyncpg.Connection,
                              unit_ids: Sequence[str] | None = None) -> list[asyncpg.Record]:
    """Units joined with their home station; all of them when ``unit_ids`` is None."""
    if unit_ids is None:
        return await conn.fetch(UNITS_WITH_STATIONS)
    return await conn.fetch(UNITS_WITH_STATIONS + " WHERE u.id = ANY($1)", list(unit_ids))


async def available_with_stations(conn: asyncpg.Connection, *, statuses: Sequence[str],
                                  unit_types: Sequence[str],
                                  capabilities: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        UNITS_WITH_STATIONS + " WHERE u.active AND u.status = ANY($1) AND u.unit_type = ANY($2) "
        "AND u.capabilities @> $3", list(statuses), list(unit_types), list(capabilities))


async def roster_of_types(conn: asyncpg.Connection, *, unit_types: Sequence[str],
                          capabilities: Sequence[str],
                          agencies: Sequence[str] | None) -> list[asyncpg.Record]:
    """Active units (of ``agencies``; all when None) of these types with these capabilities,
    whatever their status."""
    return await conn.fetch(
        "SELECT id, status, current_incident FROM units WHERE active AND unit_type = ANY($1) "
        "AND capabilities @> $2 AND ($3::text[] IS NULL OR agency = ANY($3)) ORDER BY id",
        list(unit_types), list(capabilities), agencies)


async def lock_units(conn: asyncpg.Connection, unit_ids: Sequence[str], *,
                     agencies: Sequence[str] | None) -> list[asyncpg.Record]:
    """Lock these units in id order (the global lock order: incidents first, then units by
    id; docs/architecture.md); only those of ``agencies`` (all when None) are returned."""
    return await conn.fetch(
        "SELECT * FROM units WHERE id = ANY($1) AND ($2::text[] IS NULL OR agency = ANY($2)) "
        "ORDER BY id FOR UPDATE", list(unit_ids), agencies)


async def unit_agency(conn: asyncpg.Connection, unit_id: str) -> str | None:
    return await conn.fetchval("SELECT agency FROM units WHERE id = $1", unit_id)


async def overdue_units(conn: asyncpg.Connection, *, thresholds_s: dict[str, float],
                        agencies: Sequence[str] | None = None) -> list[asyncpg.Record]:
    """Active units longer in their status (since the later of the change and the last
    check-in) than its threshold; the thresholds go into the query, only overdue rows return.
    A unit whose status start is infinite is left out: see ``unevaluable_units``."""
    statuses = sorted(thresholds_s)
    return await conn.fetch(
        "SELECT u.id, u.agency, u.status, u.current_incident, t.threshold_s, "
        "extract(epoch FROM clock_timestamp() - greatest(u.status_changed_at, u.last_checkin_at))"
        " AS age_s "
        "FROM units u JOIN unnest($1::text[], $2::float8[]) AS t(status, threshold_s) "
        "ON t.status = u.status WHERE u.active AND ($3::text[] IS NULL OR u.agency = ANY($3)) "
        "AND isfinite(greatest(u.status_changed_at, u.last_checkin_at)) "
        "AND greatest(u.status_changed_at, u.last_checkin_at) "
        "    <= clock_timestamp() - make_interval(secs => t.threshold_s) ORDER BY u.id",
        statuses, [thresholds_s[x] for x in statuses], agencies)


async def unevaluable_units(conn: asyncpg.Connection) -> list[str]:
    """Active units whose time in status cannot be computed (an infinite timestamp)."""
    rows = await conn.fetch(
        "SELECT id FROM units WHERE active "
        "AND NOT isfinite(greatest(status_changed_at, last_checkin_at)) ORDER BY id")
    return [r["id"] for r in rows]


async def unit_with_status_since(conn: asyncpg.Connection, unit_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT *, greatest(status_changed_at, last_checkin_at) AS since FROM units WHERE id = $1",
        unit_id)


async def status_history(conn: asyncpg.Connection, unit_id: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM unit_status_log WHERE unit_id = $1 ORDER BY id DESC LIMIT $2", unit_id, limit)


# --- writes ----------------------------------------------------------------------------------
async def insert_unit(conn: asyncpg.Connection, u: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO units ({_UNIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        u["id"], u["agency"], u["discipline"], u["unit_type"], u["capabilities"],
        u["home_station"], u["staffing"], u["status"])


async def upsert_unit(conn: asyncpg.Connection, u: dict[str, Any]) -> tuple[asyncpg.Record, bool]:
    row = await conn.fetchrow(
        f"INSERT INTO units ({_UNIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
        "ON CONFLICT (id) DO UPDATE SET agency = EXCLUDED.agency, discipline = EXCLUDED.discipline, "
        "unit_type = EXCLUDED.unit_type, capabilities = EXCLUDED.capabilities, "
        "home_station = EXCLUDED.home_station, staffing = EXCLUDED.staffing, active = true, "
        "version = units.version + 1 "
        "RETURNING *, (xmax = 0) AS inserted",
        u["id"], u["agency"], u["discipline"], u["unit_type"], u["capabilities"],
        u["home_station"], u["staffing"], u["status"])
    return row, bool(row["inserted"])


async def update_unit_fields(conn: asyncpg.Connection, unit_id: str,
                             changes: dict[str, Any]) -> asyncpg.Record:
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


async def mark_dispatched(conn: asyncpg.Connection, unit_ids: Sequence[str], *, incident_id: int,
                          from_statuses: Sequence[str]) -> list[asyncpg.Record]:
    """Units still active and in one of ``from_statuses`` become dispatched to the incident."""
    return await conn.fetch(
        "UPDATE units SET status = 'dispatched', status_changed_at = clock_timestamp(), "
        "last_checkin_at = NULL, current_incident = $2, version = version + 1 "
        "WHERE id = ANY($1) AND active AND status = ANY($3) RETURNING *",
        list(unit_ids), incident_id, list(from_statuses))


async def check_in(conn: asyncpg.Connection, unit_id: str, *,
                   scope: Scope) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE units SET last_checkin_at = clock_timestamp(), version = version + 1 "
        "WHERE id = $1 AND active AND ($2::text[] IS NULL OR agency = ANY($2)) RETURNING *",
        unit_id, scope.agency_list)


_STORE_LAST_FIXES = """
UPDATE units AS u SET last_lat = v.lat, last_lon = v.lon, last_fix_at = v.fix_time
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::timestamptz[]) AS v(unit_id, lat, lon, fix_time)
WHERE u.id = v.unit_id AND (u.last_fix_at IS NULL OR u.last_fix_at < v.fix_time)
"""


async def store_last_fixes(conn: asyncpg.Connection, fixes: Sequence[tuple[str, float, float,
                                                                          datetime]]) -> None:
    """Each unit's newest AVL fix (unit id, lat, lon, fix time; one per unit); an older one
    never wins. Call it inside a transaction: the rows are locked first in id order (the
    global lock order), because one UPDATE over many units locks them in whatever order the
    join yields, and a dispatch holding one of them while waiting for another would close a
    cycle (seen under tests/incidents/dispatch/test_concurrency.py)."""
    if not fixes:
        return
    ordered = sorted(fixes, key=lambda f: f[0])
    ids, lats, lons, times = (list(c) for c in zip(*ordered, strict=True))
    await conn.execute("SELECT 1 FROM units WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE", ids)
    await conn.execute(_STORE_LAST_FIXES, ids, lats, lons, times)


async def log_status(conn: asyncpg.Connection, *, unit_id: str, from_status: str | None,
                     to_status: str, at: datetime, reported_at: datetime | None,
                     incident_id: int | None, actor: str, source: str, client_addr: str | None,
                     request_id: str | None) -> None:
    await conn.execute(
        "INSERT INTO unit_status_log (unit_id, from_status, to_status, at, reported_at, incident_id, "
        "actor, source, client_addr, request_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        unit_id, from_status, to_status, at, reported_at, incident_id, actor, source,
        client_addr, request_id)


# --- stations --------------------------------------------------------------------------------
async def get_station(conn: asyncpg.Connection, station_id: str, *,
                      scope: Scope) -> asyncpg.Record | None:
    """The station, or None when it does not exist or is of an agency outside ``scope``."""
    return await conn.fetchrow(
        "SELECT * FROM stations WHERE id = $1 AND ($2::text[] IS NULL OR agency = ANY($2))",
        station_id, scope.agency_list)


async def station_agencies(conn: asyncpg.Connection, station_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT id, agency FROM stations WHERE id = ANY($1)", list(station_ids))
    return {r["id"]: r["agency"] for r in rows}


async def upsert_station(conn: asyncpg.Connection, s: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO stations (id, agency, name, address, lat, lon) VALUES ($1,$2,$3,$4,$5,$6) "
        "ON CONFLICT (id) DO UPDATE SET agency = EXCLUDED.agency, name = EXCLUDED.name, "
        "address = EXCLUDED.address, lat = EXCLUDED.lat, lon = EXCLUDED.lon RETURNING *",
        s["id"], s["agency"], s["name"], s.get("address"), s["lat"], s["lon"])


async def list_stations(conn: asyncpg.Connection, *,
                        agencies: Sequence[str] | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM stations WHERE ($1::text[] IS NULL OR agency = ANY($1)) ORDER BY id",
        agencies)
