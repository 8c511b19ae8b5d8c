"""All SQL of the incident tables: ``incidents``, ``incident_callers``, ``incident_narrative``,
``incident_links``, ``incident_units`` (an incident's assignments), ``incident_types`` and
``zones``. Every write to them goes through here, whichever workflow asks for it.

Two statements read other packages' tables to answer in one round trip (measured in the
dispatch benchmark): the intake context (zones and open incidents near the call) and the
zone import's station check; they only read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cad.security.scope import Scope

EARTH_RADIUS_M = 6_371_008.8

# Great-circle distance from ($2, $3) to incident i, in metres.
_DISTANCE_SQL = (
    f"2 * {EARTH_RADIUS_M} * asin(sqrt(power(sin(radians($2 - i.lat) / 2), 2) + "
    "cos(radians(i.lat)) * cos(radians($2)) * power(sin(radians($3 - i.lon) / 2), 2)))"
)

# One round trip for what intake needs to know: the type, the server's clock, the zones
# whose bounding box holds the point and the open incidents near it in space and time (the
# ten nearest: a dispatcher links or merges with one of those, not with a list of forty).
_INTAKE_CONTEXT = f"""
SELECT t.*, clock_timestamp() AS now,
  (SELECT coalesce(json_agg(json_build_object('id', z.id, 'agency', z.agency, 'kind', z.kind,
          'name', z.name, 'first_due_station', z.first_due_station, 'geometry', z.geometry)), '[]')
     FROM zones z WHERE $2 BETWEEN z.min_lat AND z.max_lat AND $3 BETWEEN z.min_lon AND z.max_lon
  ) AS zone_candidates,
  (SELECT coalesce(json_agg(json_build_object('incident_id', d.id, 'number', d.number,
          'incident_type', d.incident_type, 'received_at', d.received_at,
          'distance_m', d.distance_m) ORDER BY d.distance_m, d.id), '[]')
     FROM (SELECT * FROM (SELECT i.id, i.number, i.incident_type, i.received_at,
                  {_DISTANCE_SQL} AS distance_m
             FROM incidents i JOIN incident_types it ON it.code = i.incident_type
            WHERE i.status <> 'closed' AND i.merged_into IS NULL
              AND it.duplicate_group = t.duplicate_group
              AND i.received_at BETWEEN coalesce($4, clock_timestamp()) - make_interval(secs => $5)
                                    AND coalesce($4, clock_timestamp()) + make_interval(secs => $5)
              AND i.lat BETWEEN $2 - $6 AND $2 + $6 AND i.lon BETWEEN $3 - $7 AND $3 + $7) near
            WHERE near.distance_m <= $8 ORDER BY near.distance_m, near.id LIMIT 10) d
  ) AS duplicates
FROM incident_types t WHERE t.code = $1
"""

# The number, the incident, its caller and first narrative line: one statement.
_INSERT_INCIDENT = """
WITH i AS (
    INSERT INTO incidents (number, agency, incident_type, priority, lat, lon, location_text,
                           location_source, zone_id, received_at, answered_at, duplicate_candidates,
                           location_precision, location_unit, access_lat, access_lon)
    SELECT $1 || '-' || $2 || '-' || lpad(nextval($17::regclass)::text, 6, '0'), $1, $3, $4, $5,
           $6, $7, $8, $9, $10, $11, $12, $18, $19, $20, $21
    RETURNING *
), c AS (
    INSERT INTO incident_callers (incident_id, name, callback_number)
    SELECT i.id, $13, $14 FROM i WHERE $13::text IS NOT NULL OR $14::text IS NOT NULL
), m AS (
    INSERT INTO incident_narrative (incident_id, author, text)
    SELECT i.id, $15, $16 FROM i WHERE $16::text IS NOT NULL
)
SELECT * FROM i
"""


# --- intake ----------------------------------------------------------------------------------
async def create_number_sequence(conn: asyncpg.Connection, name: str) -> None:
    """The server's role may not create objects: the owner makes the sequence
    (cad_create_sequence, 0007_db_roles.sql), a concurrent creation included."""
    await conn.execute("SELECT cad_create_sequence($1)", name)


async def intake_context(conn: asyncpg.Connection, *, incident_type: str, lat: float, lon: float,
                         received_at: datetime | None, window_s: float, dlat: float, dlon: float,
                         radius_m: float) -> asyncpg.Record | None:
    return await conn.fetchrow(_INTAKE_CONTEXT, incident_type, lat, lon, received_at, window_s,
                               dlat, dlon, radius_m)


async def insert_incident(conn: asyncpg.Connection, *, agency: str, year: int, incident_type: str,
                          priority: int, location: dict[str, Any], zone_id: str | None,
                          received_at: datetime,
                          answered_at: datetime | None, duplicate_ids: list[int],
                          caller_name: str | None, callback_number: str | None, author: str,
                          narrative: str | None, sequence: str) -> asyncpg.Record:
    return await conn.fetchrow(
        _INSERT_INCIDENT, agency, str(year), incident_type, priority, location["lat"],
        location["lon"], location["location_text"], location["location_source"], zone_id,
        received_at, answered_at, duplicate_ids, caller_name, callback_number, author, narrative,
        sequence, location["location_precision"], location["location_unit"],
        location["access_lat"], location["access_lon"])


# --- scope -----------------------------------------------------------------------------------
def _visible(alias: str, n: int) -> str:
    """The scope predicate (cad.security.scope) on incident ``alias``, with parameters $n
    (agencies, NULL = all), $n+1 (a field unit's id: only its assignments) and $n+2 (how long
    after clearing its assignment it still sees the incident, s)."""
    return (f"(${n}::text[] IS NULL OR {alias}.agency = ANY(${n}::text[])) AND "
            f"(${n + 1}::text IS NULL OR EXISTS (SELECT 1 FROM incident_units sa "
            f"WHERE sa.incident_id = {alias}.id AND sa.unit_id = ${n + 1}::text "
            f"AND (sa.cleared_at IS NULL "
            f"OR sa.cleared_at > clock_timestamp() - make_interval(secs => ${n + 2}::float8))))")


# --- reads -----------------------------------------------------------------------------------
async def visible_incident(conn: asyncpg.Connection, incident_id: int, *,
                           scope: Scope) -> asyncpg.Record | None:
    """The incident if ``scope`` may see it, else None (another agency's is not found)."""
    return await conn.fetchrow(f"SELECT * FROM incidents i WHERE i.id = $1 AND {_visible('i', 2)}",
                               incident_id, *scope.incident_filter())


async def get_incident(conn: asyncpg.Connection, incident_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)


async def lock_incident(conn: asyncpg.Connection, incident_id: int, *,
                        scope: Scope) -> asyncpg.Record | None:
    """Lock one incident (the global lock order: incidents by id first, then units by id);
    None when it does not exist or ``scope`` may not see it."""
    return await conn.fetchrow(
        f"SELECT * FROM incidents i WHERE i.id = $1 AND {_visible('i', 2)} FOR UPDATE",
        incident_id, *scope.incident_filter())


async def assignments(conn: asyncpg.Connection, incident_id: int) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM incident_units WHERE incident_id = $1", incident_id)


async def assignments_of(conn: asyncpg.Connection, incident_ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM incident_units WHERE incident_id = ANY($1)",
                            list(incident_ids))


async def active_assignments(conn: asyncpg.Connection, incident_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT unit_id, status FROM incident_units WHERE incident_id = $1 AND cleared_at IS NULL "
        "ORDER BY unit_id", incident_id)


async def assigned_unit_ids(conn: asyncpg.Connection, incident_id: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT unit_id FROM incident_units WHERE incident_id = $1 ORDER BY unit_id",
        incident_id)
    return [r["unit_id"] for r in rows]


async def open_incidents(conn: asyncpg.Connection, *,
                         agencies: Sequence[str] | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM incidents WHERE status <> 'closed' "
        "AND ($1::text[] IS NULL OR agency = ANY($1)) ORDER BY id", agencies)


async def list_incident_ids(conn: asyncpg.Connection, *, open_only: bool, agency: str | None,
                            limit: int, scope: Scope, hidden: Sequence[str] = ()) -> list[int]:
    """``hidden``: training agencies left out, and with them every row marked training."""
    rows = await conn.fetch(
        "SELECT id FROM incidents i WHERE (NOT $1 OR status <> 'closed') "
        f"AND ($2::text IS NULL OR agency = $2) AND {_visible('i', 4)} "
        "AND (cardinality($7::text[]) = 0 OR (NOT i.training AND i.agency <> ALL($7))) "
        "ORDER BY received_at DESC, id DESC LIMIT $3",
        open_only, agency, limit, *scope.incident_filter(), list(hidden))
    return [r["id"] for r in rows]


async def narrative(conn: asyncpg.Connection, incident_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, at, author, text FROM incident_narrative WHERE incident_id = $1 ORDER BY id",
        incident_id)


async def links(conn: asyncpg.Connection, incident_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT other_id, kind FROM incident_links WHERE incident_id = $1 "
        "UNION SELECT incident_id, kind FROM incident_links WHERE other_id = $1 ORDER BY 1",
        incident_id)


async def callers(conn: asyncpg.Connection, incident_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT name, callback_number, created_at FROM incident_callers WHERE incident_id = $1 "
        "ORDER BY id", incident_id)


async def pending_overdue(conn: asyncpg.Connection, *, thresholds_s: dict[int, float],
                          agencies: Sequence[str] | None = None) -> list[asyncpg.Record]:
    """Pending incidents (of ``agencies``, or all when None) older than their priority's
    threshold (only those come back). A row whose received_at no arithmetic survives
    (infinite) is left out: see ``pending_unevaluable``."""
    prios = sorted(thresholds_s)
    return await conn.fetch(
        "SELECT i.id, i.number, i.agency, i.priority, t.threshold_s, "
        "extract(epoch FROM clock_timestamp() - i.received_at) AS age_s "
        "FROM incidents i JOIN unnest($1::int[], $2::float8[]) AS t(priority, threshold_s) "
        "ON t.priority = i.priority WHERE i.status = 'pending' AND isfinite(i.received_at) "
        "AND ($3::text[] IS NULL OR i.agency = ANY($3)) "
        "AND i.received_at <= clock_timestamp() - make_interval(secs => t.threshold_s) "
        "ORDER BY i.received_at",
        prios, [thresholds_s[p] for p in prios], agencies)


async def pending_unevaluable(conn: asyncpg.Connection) -> list[int]:
    """Pending incidents whose age cannot be computed (an infinite received_at, stored before
    migration 0005 refused them)."""
    rows = await conn.fetch(
        "SELECT id FROM incidents WHERE status = 'pending' AND NOT isfinite(received_at) "
        "ORDER BY id")
    return [r["id"] for r in rows]


async def incident_type_exists(conn: asyncpg.Connection, code: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM incident_types WHERE code = $1", code))


async def list_incident_types(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM incident_types ORDER BY code")


# --- writes ----------------------------------------------------------------------------------
async def bump_version(conn: asyncpg.Connection, incident_ids: Sequence[int]) -> None:
    await conn.execute("UPDATE incidents SET version = version + 1 WHERE id = ANY($1)",
                       list(incident_ids))


async def update_fields(conn: asyncpg.Connection, incident_id: int, sets: dict[str, Any]) -> None:
    cols = list(sets)
    await conn.execute(
        f"UPDATE incidents SET {', '.join(f'{c} = ${i + 2}' for i, c in enumerate(cols))}, "
        "version = version + 1 WHERE id = $1", incident_id, *[sets[c] for c in cols])


async def add_narrative(conn: asyncpg.Connection, *, incident_id: int, author: str,
                        text: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO incident_narrative (incident_id, author, text) VALUES ($1, $2, $3) RETURNING *",
        incident_id, author, text)


async def disposition_usable(conn: asyncpg.Connection, code: str) -> bool:
    """Whether ``code`` is an active entry of the managed disposition list."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM disposition_codes WHERE code = $1 AND active)", code))


async def close(conn: asyncpg.Connection, incident_id: int, *, disposition: str,
                merged_into: int | None = None) -> None:
    await conn.execute(
        "UPDATE incidents SET status = 'closed', closed_at = clock_timestamp(), disposition = $2, "
        "merged_into = coalesce($3, merged_into), "
        "cleared_at = coalesce(cleared_at, clock_timestamp()), version = version + 1 WHERE id = $1",
        incident_id, disposition, merged_into)


async def link(conn: asyncpg.Connection, *, first: int, second: int, kind: str,
               created_by: str) -> None:
    await conn.execute(
        "INSERT INTO incident_links (incident_id, other_id, kind, created_by) VALUES ($1,$2,$3,$4) "
        "ON CONFLICT (incident_id, other_id) DO UPDATE SET kind = EXCLUDED.kind",
        first, second, kind, created_by)


async def copy_callers_and_narrative(conn: asyncpg.Connection, *, from_id: int, to_id: int,
                                     from_number: str) -> None:
    """A merge: callers and narrative of ``from_id`` are added to ``to_id``."""
    await conn.execute(
        "INSERT INTO incident_callers (incident_id, name, callback_number, created_at) "
        "SELECT $2, name, callback_number, created_at FROM incident_callers WHERE incident_id = $1",
        from_id, to_id)
    await conn.execute(
        "INSERT INTO incident_narrative (incident_id, author, text) "
        "SELECT $2, author, '[merged from ' || $3 || ' at ' || at::text || '] ' || text "
        "FROM incident_narrative WHERE incident_id = $1 ORDER BY id",
        from_id, to_id, from_number)


async def upsert_incident_type(conn: asyncpg.Connection, code: str,
                               t: dict[str, Any]) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO incident_types (code, description, apco_type, discipline, default_priority, "
        "duplicate_group) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (code) DO UPDATE SET "
        "description = EXCLUDED.description, apco_type = EXCLUDED.apco_type, "
        "discipline = EXCLUDED.discipline, default_priority = EXCLUDED.default_priority, "
        "duplicate_group = EXCLUDED.duplicate_group RETURNING *",
        code, t["description"], t["apco_type"], t["discipline"], t["default_priority"],
        t["duplicate_group"])


# --- assignments (incident_units) --------------------------------------------------------------
async def insert_assignment(conn: asyncpg.Connection, *, incident_id: int, unit_id: str,
                            dispatched_at: datetime, recommendation_id: int | None,
                            mutual_aid: bool = False) -> None:
    await conn.execute(
        "INSERT INTO incident_units (incident_id, unit_id, status, dispatched_at, "
        "recommendation_id, mutual_aid) VALUES ($1, $2, 'dispatched', $3, $4, $5)", incident_id, unit_id,
        dispatched_at, recommendation_id, mutual_aid)


async def set_first_dispatched(conn: asyncpg.Connection, incident_id: int, at: datetime) -> None:
    await conn.execute(
        "UPDATE incidents SET first_dispatched_at = coalesce(first_dispatched_at, $2) WHERE id = $1",
        incident_id, at)


_FIRST_TIME_COLUMNS = ("first_en_route_at", "first_on_scene_at")
_ASSIGNMENT_TIME_COLUMNS = ("en_route_at", "on_scene_at", "transporting_at", "at_hospital_at")


async def clear_assignment(conn: asyncpg.Connection, *, incident_id: int, unit_id: str,
                           at: datetime) -> None:
    await conn.execute(
        "UPDATE incident_units SET status = 'cleared', cleared_at = $3 "
        "WHERE incident_id = $1 AND unit_id = $2 AND cleared_at IS NULL", incident_id, unit_id, at)


async def advance_assignment(conn: asyncpg.Connection, *, incident_id: int, unit_id: str,
                             status: str, at: datetime, time_column: str | None,
                             first_column: str | None) -> None:
    """The unit's assignment takes ``status``; ``time_column`` (of the assignment) and
    ``first_column`` (of the incident) keep their first value."""
    if time_column is not None and time_column not in _ASSIGNMENT_TIME_COLUMNS:
        raise ValueError(f"not an assignment time column: {time_column}")
    if first_column is not None and first_column not in _FIRST_TIME_COLUMNS:
        raise ValueError(f"not an incident first-time column: {first_column}")
    extra = f", {time_column} = coalesce({time_column}, $3)" if time_column else ""
    await conn.execute(
        f"UPDATE incident_units SET status = $4{extra} "
        "WHERE incident_id = $1 AND unit_id = $2 AND cleared_at IS NULL",
        incident_id, unit_id, at, status)
    if first_column is not None:
        await conn.execute(
            f"UPDATE incidents SET {first_column} = coalesce({first_column}, $2) WHERE id = $1",
            incident_id, at)


async def progress_counts(conn: asyncpg.Connection, incident_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT i.status, i.first_en_route_at, i.first_on_scene_at, "
        "count(a.*) AS n_assigned, count(a.*) FILTER (WHERE a.cleared_at IS NULL) AS n_active "
        "FROM incidents i LEFT JOIN incident_units a ON a.incident_id = i.id "
        "WHERE i.id = $1 GROUP BY i.id", incident_id)


async def set_derived_status(conn: asyncpg.Connection, incident_id: int, *, status: str,
                             at: datetime) -> None:
    await conn.execute(
        "UPDATE incidents SET status = $2::text, version = version + 1, "
        "cleared_at = CASE WHEN $2::text = 'cleared' THEN $3::timestamptz ELSE NULL END "
        "WHERE id = $1", incident_id, status, at)


# --- zones -----------------------------------------------------------------------------------
ZONE_BBOX_CANDIDATES = (
    "SELECT id, agency, kind, name, first_due_station, geometry FROM zones "
    "WHERE $1 BETWEEN min_lat AND max_lat AND $2 BETWEEN min_lon AND max_lon")


async def zone_candidates(conn: asyncpg.Connection, lat: float, lon: float) -> list[asyncpg.Record]:
    return await conn.fetch(ZONE_BBOX_CANDIDATES, lat, lon)


async def list_zones(conn: asyncpg.Connection, *,
                     agencies: Sequence[str] | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, agency, kind, name, first_due_station, geometry FROM zones "
        "WHERE ($1::text[] IS NULL OR agency = ANY($1)) ORDER BY id", agencies)


async def zone_agencies(conn: asyncpg.Connection, zone_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT id, agency FROM zones WHERE id = ANY($1)", list(zone_ids))
    return {r["id"]: r["agency"] for r in rows}


async def zone_exists(conn: asyncpg.Connection, zone_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM zones WHERE id = $1", zone_id))


async def known_station_ids(conn: asyncpg.Connection) -> set[str]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM stations")}


async def upsert_zone(conn: asyncpg.Connection, z: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO zones (id, agency, kind, name, first_due_station, geometry, "
        "min_lat, min_lon, max_lat, max_lon) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
        "ON CONFLICT (id) DO UPDATE SET agency = EXCLUDED.agency, kind = EXCLUDED.kind, "
        "name = EXCLUDED.name, first_due_station = EXCLUDED.first_due_station, "
        "geometry = EXCLUDED.geometry, min_lat = EXCLUDED.min_lat, min_lon = EXCLUDED.min_lon, "
        "max_lat = EXCLUDED.max_lat, max_lon = EXCLUDED.max_lon",
        z["id"], z["agency"], z["kind"], z["name"], z["first_due_station"], z["geometry"],
        z["min_lat"], z["min_lon"], z["max_lat"], z["max_lon"])


async def delete_zones_not_in(conn: asyncpg.Connection, *, kind: str, keep: Sequence[str],
                              agencies: Sequence[str] | None) -> list[str]:
    """Zones of ``kind`` (of ``agencies``; all when None) not in ``keep`` and not referenced
    by an incident or a plan."""
    rows = await conn.fetch(
        "DELETE FROM zones WHERE kind = $1 AND NOT (id = ANY($2)) "
        "AND ($3::text[] IS NULL OR agency = ANY($3)) "
        "AND id NOT IN (SELECT zone_id FROM incidents WHERE zone_id IS NOT NULL) "
        "AND id NOT IN (SELECT zone_id FROM response_plans WHERE zone_id IS NOT NULL) "
        "RETURNING id", kind, list(keep), agencies)
    return [r["id"] for r in rows]
