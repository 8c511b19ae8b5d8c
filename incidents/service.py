"""Incident actions: intake, changes, narrative, caller data, close, link and merge."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from cad.errors import Conflict, Invalid, NotFound
from cad.services import Services
from cad.uow import RequestContext, audit_now, unit_of_work
from incidents.board import incident_view, load_incident_view
from incidents.progress import assigned_unit_ids
from incidents.schemas import (
    CloseIn,
    IncidentCreate,
    IncidentPatch,
    LinkIn,
    LocationIn,
    MergeIn,
    NarrativeIn,
)
from incidents.zones import containing, zones_at

EARTH_RADIUS_M = 6_371_008.8

_DISTANCE_SQL = (
    f"2 * {EARTH_RADIUS_M} * asin(sqrt(power(sin(radians($1 - i.lat) / 2), 2) + "
    "cos(radians(i.lat)) * cos(radians($1)) * power(sin(radians($2 - i.lon) / 2), 2)))"
)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def resolve_location(services: Services, loc: LocationIn, field: str = "body.location"
                     ) -> tuple[float, float, str | None, str]:
    """(lat, lon, text, source) for a location given as coordinates, address or intersection."""
    if loc.lat is not None and loc.lon is not None:
        return loc.lat, loc.lon, None, "latlon"
    geocoder = services.geocoder
    text = loc.address or loc.intersection
    kind = "address" if loc.address else "intersection"
    if geocoder is None:
        raise Invalid("no street index is loaded (start with CAD_GRAPH_PATH set to a graph with "
                      "street names), give lat and lon", field=f"{field}.{kind}")
    assert text is not None
    hit = geocoder.intersection(text) if kind == "intersection" else geocoder.address(text)
    if hit is None:
        raise Invalid(f"{text!r} was not found among the road graph's street names",
                      field=f"{field}.{kind}")
    return hit.lat, hit.lon, hit.label, kind


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
                  {_DISTANCE_SQL.replace('$1', '$2').replace('$2 - i.lon', '$3 - i.lon')} AS distance_m
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
                           location_source, zone_id, received_at, answered_at, duplicate_candidates)
    SELECT $1 || '-' || $2 || '-' || lpad(nextval($17::regclass)::text, 6, '0'), $1, $3, $4, $5,
           $6, $7, $8, $9, $10, $11, $12
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

async def _number_sequence(services: Services, agency: str, year: int) -> str:
    """The per-agency, per-year number sequence, made on first use (outside the intake's
    transaction, so the DDL lock is never held by it)."""
    name = f"incident_no_{agency.lower().replace('-', '_')}_{year}"
    if name not in services.known_sequences:
        async with services.pool.acquire() as conn:
            try:
                await conn.execute(f'CREATE SEQUENCE IF NOT EXISTS "{name}"')
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateTableError):
                pass  # another worker made it at the same instant: IF NOT EXISTS is not atomic
        services.known_sequences.add(name)
    return name


async def create_incident(services: Services, ctx: RequestContext, body: IncidentCreate) -> dict[str, Any]:
    lat, lon, text, source = resolve_location(services, body.location)
    s = services.settings
    dlat = s.duplicate_radius_m / 111_000.0
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    if body.received_at is not None and body.received_at > datetime.now(UTC) + timedelta(seconds=60):
        raise Invalid("received_at is in the future", field="body.received_at")
    year = (body.received_at or datetime.now(UTC)).astimezone(UTC).year
    sequence = await _number_sequence(services, body.agency, year)
    async with unit_of_work(services.pool, ctx) as uow:
        conn = uow.conn
        record = uow.audit("incident.create", target=None, details={"agency": body.agency})
        info = await conn.fetchrow(_INTAKE_CONTEXT, body.incident_type, lat, lon, body.received_at,
                                   s.duplicate_window_s, dlat, dlon, s.duplicate_radius_m)
        if info is None:
            raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
        now = info["now"]
        received = body.received_at or now
        if received > now + timedelta(seconds=60):
            raise Invalid("received_at is in the future", field="body.received_at")
        zones = containing(info["zone_candidates"], lat, lon)
        zone_id = zones[0]["id"] if zones else None
        dups = [{"incident_id": d["incident_id"], "number": d["number"],
                 "incident_type": d["incident_type"], "distance_m": round(d["distance_m"], 1),
                 "seconds_apart": round(abs((received - datetime.fromisoformat(d["received_at"]))
                                            .total_seconds()), 1)}
                for d in info["duplicates"]] if s.duplicate_radius_m > 0 else []
        caller = body.caller
        row = await conn.fetchrow(
            _INSERT_INCIDENT, body.agency, str(year),
            body.incident_type, body.priority or info["default_priority"], lat, lon, text, source,
            zone_id, received, body.answered_at, [d["incident_id"] for d in dups],
            (caller.name or None) if caller else None,
            (caller.callback_number or None) if caller else None, ctx.actor, body.narrative,
            sequence)
        iid = row["id"]
        record.target = f"incident:{iid}"
        record.details["number"] = row["number"]
        view = incident_view(row, [])
        uow.emit("incident.created", aggregate=("incident", iid), agency=body.agency,
                 data={"incident": view, "unit_ids": []})
        if dups:
            uow.emit("incident.duplicate_flagged", aggregate=("incident", iid), agency=body.agency,
                     data={"incident": view, "candidates": dups, "unit_ids": []})
    return {**view, "possible_duplicates": dups, "zones": [z["id"] for z in zones]}


async def get_incident(services: Services, incident_id: int) -> dict[str, Any]:
    async with services.pool.acquire() as conn:
        view = await load_incident_view(conn, incident_id)
        if view is None:
            raise NotFound(f"incident {incident_id} does not exist")
        narrative = await conn.fetch(
            "SELECT id, at, author, text FROM incident_narrative WHERE incident_id = $1 ORDER BY id",
            incident_id)
        links = await conn.fetch(
            "SELECT other_id, kind FROM incident_links WHERE incident_id = $1 "
            "UNION SELECT incident_id, kind FROM incident_links WHERE other_id = $1 ORDER BY 1",
            incident_id)
    view["narrative"] = [{"id": n["id"], "at": n["at"].isoformat(), "author": n["author"],
                          "text": n["text"]} for n in narrative]
    view["links"] = [{"incident_id": r["other_id"], "kind": r["kind"]} for r in links]
    return view


async def list_incidents(services: Services, *, open_only: bool, agency: str | None,
                         limit: int) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        ids = await conn.fetch(
            "SELECT id FROM incidents WHERE (NOT $1 OR status <> 'closed') "
            "AND ($2::text IS NULL OR agency = $2) ORDER BY received_at DESC, id DESC LIMIT $3",
            open_only, agency, limit)
        out = []
        for r in ids:
            v = await load_incident_view(conn, r["id"])
            if v is not None:
                out.append(v)
    return out


async def _lock_incident(conn: asyncpg.Connection, incident_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist")
    return row


async def _lock_pair(conn: asyncpg.Connection, a: int, b: int) -> dict[int, asyncpg.Record]:
    """Lock two incidents in id order (two dispatchers linking the same pair the other way
    round must queue, not deadlock)."""
    return {i: await _lock_incident(conn, i) for i in sorted((a, b))}


async def _emit_incident(uow: Any, incident_id: int, type_: str, **extra: Any) -> dict[str, Any]:
    view = await load_incident_view(uow.conn, incident_id)
    assert view is not None
    uow.emit(type_, aggregate=("incident", incident_id), agency=view["agency"],
             data={"incident": view, "unit_ids": await assigned_unit_ids(uow.conn, incident_id), **extra})
    return view


async def update_incident(services: Services, ctx: RequestContext, incident_id: int,
                          body: IncidentPatch) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    expected = changes.pop("version", None)
    if not changes:
        raise Invalid("nothing to change", field="body")
    loc = resolve_location(services, body.location) if body.location is not None else None
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident.update", target=f"incident:{incident_id}", details={"fields": sorted(changes)})
        row = await _lock_incident(uow.conn, incident_id)
        if row["status"] == "closed":
            raise Conflict(f"incident {incident_id} is closed")
        if expected is not None and row["version"] != expected:
            raise Conflict(f"incident {incident_id} is at version {row['version']}, not {expected}")
        sets: dict[str, Any] = {}
        if body.incident_type is not None:
            if not await uow.conn.fetchval("SELECT 1 FROM incident_types WHERE code = $1", body.incident_type):
                raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
            sets["incident_type"] = body.incident_type
        if body.priority is not None:
            sets["priority"] = body.priority
        if loc is not None:
            zones = await zones_at(uow.conn, loc[0], loc[1])
            sets.update(lat=loc[0], lon=loc[1], location_text=loc[2], location_source=loc[3],
                        zone_id=zones[0]["id"] if zones else None)
        cols = list(sets)
        await uow.conn.execute(
            f"UPDATE incidents SET {', '.join(f'{c} = ${i + 2}' for i, c in enumerate(cols))}, "
            "version = version + 1 WHERE id = $1", incident_id, *[sets[c] for c in cols])
        view = await _emit_incident(uow, incident_id, "incident.updated", changed=sorted(cols))
    return view


async def add_narrative(services: Services, ctx: RequestContext, incident_id: int,
                        body: NarrativeIn) -> dict[str, Any]:
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident.narrative.add", target=f"incident:{incident_id}")
        await _lock_incident(uow.conn, incident_id)
        n = await uow.conn.fetchrow(
            "INSERT INTO incident_narrative (incident_id, author, text) VALUES ($1, $2, $3) RETURNING *",
            incident_id, ctx.actor, body.text)
        await uow.conn.execute("UPDATE incidents SET version = version + 1 WHERE id = $1", incident_id)
        entry = {"id": n["id"], "at": n["at"].isoformat(), "author": n["author"], "text": n["text"]}
        await _emit_incident(uow, incident_id, "incident.narrative_added", entry=entry)
    return entry


async def get_caller(services: Services, ctx: RequestContext, incident_id: int) -> dict[str, Any]:
    """The caller's personal data. Every read is audited, found or not."""
    async with services.pool.acquire() as conn:
        exists = await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", incident_id)
        rows = await conn.fetch(
            "SELECT name, callback_number, created_at FROM incident_callers WHERE incident_id = $1 "
            "ORDER BY id", incident_id)
        await audit_now(conn, ctx, "incident.caller.read", target=f"incident:{incident_id}",
                        outcome="success" if exists else "failure",
                        details={"records": len(rows)})
    if not exists:
        raise NotFound(f"incident {incident_id} does not exist")
    return {"incident_id": incident_id, "callers": [
        {"name": r["name"], "callback_number": r["callback_number"],
         "recorded_at": r["created_at"].isoformat()} for r in rows]}


async def close_incident(services: Services, ctx: RequestContext, incident_id: int,
                         body: CloseIn) -> dict[str, Any]:
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident.close", target=f"incident:{incident_id}",
                  details={"disposition": body.disposition})
        row = await _lock_incident(uow.conn, incident_id)
        if row["status"] == "closed":
            raise Conflict(f"incident {incident_id} is already closed")
        active = await uow.conn.fetch(
            "SELECT unit_id, status FROM incident_units WHERE incident_id = $1 AND cleared_at IS NULL "
            "ORDER BY unit_id", incident_id)
        if active:
            raise Conflict(
                f"incident {incident_id} still has units assigned: "
                + ", ".join(f"{a['unit_id']} ({a['status']})" for a in active),
                extra={"active_units": [a["unit_id"] for a in active]})
        await uow.conn.execute(
            "UPDATE incidents SET status = 'closed', closed_at = clock_timestamp(), disposition = $2, "
            "cleared_at = coalesce(cleared_at, clock_timestamp()), version = version + 1 WHERE id = $1",
            incident_id, body.disposition)
        view = await _emit_incident(uow, incident_id, "incident.closed", disposition=body.disposition)
    return view


async def link_incidents(services: Services, ctx: RequestContext, incident_id: int,
                         body: LinkIn) -> dict[str, Any]:
    if body.other_id == incident_id:
        raise Invalid("an incident cannot be linked to itself", field="body.other_id")
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident.link", target=f"incident:{incident_id}", details={"other": body.other_id})
        await _lock_pair(uow.conn, incident_id, body.other_id)
        first, second = sorted((incident_id, body.other_id))
        await uow.conn.execute(
            "INSERT INTO incident_links (incident_id, other_id, kind, created_by) VALUES ($1,$2,$3,$4) "
            "ON CONFLICT (incident_id, other_id) DO UPDATE SET kind = EXCLUDED.kind",
            first, second, body.kind, ctx.actor)
        await uow.conn.execute("UPDATE incidents SET version = version + 1 WHERE id = ANY($1)",
                               [first, second])
        await _emit_incident(uow, incident_id, "incident.linked", other_id=body.other_id, kind=body.kind)
        await _emit_incident(uow, body.other_id, "incident.linked", other_id=incident_id, kind=body.kind)
    return {"incident_id": incident_id, "other_id": body.other_id, "kind": body.kind}


async def merge_incident(services: Services, ctx: RequestContext, incident_id: int,
                         body: MergeIn) -> dict[str, Any]:
    """Close this incident as a duplicate of ``into_id``: callers and narrative move over."""
    if body.into_id == incident_id:
        raise Invalid("an incident cannot be merged into itself", field="body.into_id")
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident.merge", target=f"incident:{incident_id}", details={"into": body.into_id})
        rows = await _lock_pair(uow.conn, incident_id, body.into_id)
        first, second = sorted(rows)
        src, dst = rows[incident_id], rows[body.into_id]
        if src["status"] == "closed" or dst["status"] == "closed":
            raise Conflict("both incidents must be open to merge")
        active = await uow.conn.fetchval(
            "SELECT count(*) FROM incident_units WHERE incident_id = $1 AND cleared_at IS NULL", incident_id)
        if active:
            raise Conflict(f"incident {incident_id} has {active} unit(s) assigned: clear them first")
        await uow.conn.execute(
            "INSERT INTO incident_callers (incident_id, name, callback_number, created_at) "
            "SELECT $2, name, callback_number, created_at FROM incident_callers WHERE incident_id = $1",
            incident_id, body.into_id)
        await uow.conn.execute(
            "INSERT INTO incident_narrative (incident_id, author, text) "
            "SELECT $2, author, '[merged from ' || $3 || ' at ' || at::text || '] ' || text "
            "FROM incident_narrative WHERE incident_id = $1 ORDER BY id",
            incident_id, body.into_id, src["number"])
        await uow.conn.execute(
            "INSERT INTO incident_links (incident_id, other_id, kind, created_by) VALUES ($1,$2,'duplicate',$3) "
            "ON CONFLICT (incident_id, other_id) DO UPDATE SET kind = 'duplicate'", first, second, ctx.actor)
        await uow.conn.execute(
            "UPDATE incidents SET status = 'closed', closed_at = clock_timestamp(), disposition = 'MERGED', "
            "merged_into = $2, cleared_at = coalesce(cleared_at, clock_timestamp()), version = version + 1 "
            "WHERE id = $1", incident_id, body.into_id)
        await uow.conn.execute("UPDATE incidents SET version = version + 1 WHERE id = $1", body.into_id)
        await _emit_incident(uow, incident_id, "incident.merged", into_id=body.into_id)
        view = await _emit_incident(uow, body.into_id, "incident.merge_received", from_id=incident_id)
    return view
