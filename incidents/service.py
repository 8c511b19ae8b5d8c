"""Incident actions: intake, changes, narrative, caller data, close, link and merge; incident
types; how an incident's status follows its assignments."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from cad import idempotency
from cad.errors import Conflict, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import AuditRecord, RequestContext, UnitOfWork, audit_now, retry_transient, unit_of_work
from incidents import repository as repo
from incidents.deps import IncidentsDeps
from incidents.geocoding.index import candidate_json
from incidents.schemas import (
    CloseIn,
    IncidentCreate,
    IncidentPatch,
    IncidentTypeIn,
    LinkIn,
    LocationIn,
    MergeIn,
    NarrativeIn,
)
from incidents.views import incident_view, load_incident_view, narrative_view
from incidents.zones import containing, zones_at


@dataclass(frozen=True)
class ResolvedLocation:
    lat: float
    lon: float
    text: str | None
    source: str                  # latlon | address | intersection
    precision: str               # coordinates | address_point | interpolated | block | ...
    unit: str | None = None      # apartment, suite: kept with the incident
    access_lat: float | None = None   # the routing target on the address's side of its street
    access_lon: float | None = None

    def columns(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon, "location_text": self.text,
                "location_source": self.source, "location_precision": self.precision,
                "location_unit": self.unit, "access_lat": self.access_lat,
                "access_lon": self.access_lon}


def resolve_location(*, deps: IncidentsDeps, loc: LocationIn, field: str = "body.location"
                     ) -> ResolvedLocation:
    """Coordinates as given, or the geocoder's best candidate for an address, place or
    intersection. Below the confidence threshold, or when two different places are equally
    likely, intake refuses (422) and lists the candidates for the dispatcher to choose."""
    if loc.lat is not None and loc.lon is not None:
        return ResolvedLocation(loc.lat, loc.lon, None, "latlon", "coordinates")
    text = loc.address or loc.intersection
    kind = "address" if loc.address else "intersection"
    assert text is not None
    geocoder = deps.geocoder.current
    found = geocoder.geocode(text)
    if kind == "intersection":
        found = [c for c in found if c.precision == "intersection"]
    name = f"{field}.{kind}"
    if not found:
        what = ("no address points are imported and no road graph is loaded"
                if geocoder.n_points == 0 and geocoder.street_index is None else
                "no address, place or street matches it")
        raise Invalid(f"{text!r} was not found: {what}; give lat and lon", field=name)
    best = found[0]
    threshold = deps.settings.geocode_min_score
    tied = [c for c in found[1:] if c.score >= best.score and c.label != best.label]
    if best.score < threshold or tied:
        why = (f"the best match scores {best.score:.2f}, below {threshold:.2f}" if not tied
               else f"{len(tied) + 1} different matches are equally likely")
        raise Invalid(f"{text!r} is uncertain ({why}): choose one of the candidates",
                      field=name, extra={"candidates": [candidate_json(c) for c in found]})
    label = best.label + (f", #{best.unit}" if best.unit else "")
    return ResolvedLocation(best.lat, best.lon, label, kind, best.precision, best.unit or None,
                            best.access_lat, best.access_lon)


def location_fields(loc: LocationIn, field: str = "body.location") -> list[str]:
    """The request fields a location came from (what a refusal names)."""
    if loc.lat is not None:
        return [f"{field}.lat", f"{field}.lon"]
    return [f"{field}.address" if loc.address else f"{field}.intersection"]


async def _number_sequence(deps: IncidentsDeps, *, agency: str, year: int,
                           incident_type: str) -> str:
    """The per-agency, per-year number sequence, made on first use (outside the intake's
    transaction, so the DDL lock is never held by it) and only for a request that passed
    validation: the incident type is checked here, before the sequence is made."""
    name = f"incident_no_{agency.lower().replace('-', '_')}_{year}"
    if name not in deps.known_sequences:
        async with deps.pool.acquire() as conn:
            if not await repo.incident_type_exists(conn, incident_type):
                raise Invalid(f"unknown incident type {incident_type}", field="body.incident_type")
            await repo.create_number_sequence(conn, name)
        deps.known_sequences.add(name)
    return name


async def _claim(uow: UnitOfWork, record: AuditRecord, *, key: str | None, scope: str,
                 payload: Any) -> idempotency.StoredAnswer | None:
    """With an Idempotency-Key: claim it in this transaction; the stored answer of an earlier
    request with the same key and body (its audit ``record`` then says it was a replay), or
    None (this request runs and records its answer)."""
    if key is None:
        return None
    stored = await idempotency.claim(uow.conn, scope=scope, key=key,
                                     req_hash=idempotency.request_hash(payload))
    if stored is not None:
        record.details["replayed"] = True
    return stored


async def _record(uow: UnitOfWork, *, key: str | None, scope: str, status_code: int,
                  body: Any) -> None:
    if key is not None:
        await idempotency.record(uow.conn, scope=scope, key=key, status_code=status_code,
                                 body=body)


@retry_transient
async def create_incident(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                          body: IncidentCreate, idempotency_key: str | None = None,
                          within: Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]] | None
                          = None) -> tuple[int, dict[str, Any]]:
    """Call intake. Returns (HTTP status, body): 201, or a replayed answer. Every check on the
    request runs before anything is made (the number sequence included). ``within`` runs in
    the intake's transaction once the incident is written (given its view): what made the
    incident (an accepted online report) commits with it, or neither does."""
    scope.require(body.agency, field="body.agency")  # before anything is made for it
    check = deps.plausible
    check.check_time(body.received_at, field="body.received_at")
    check.check_time(body.answered_at, field="body.answered_at")
    where = resolve_location(deps=deps, loc=body.location)
    lat, lon = where.lat, where.lon
    check.check_place(agency=body.agency, lat=lat, lon=lon, fields=location_fields(body.location))
    s = deps.settings
    dlat = s.duplicate_radius_m / 111_000.0
    dlon = dlat / max(math.cos(math.radians(lat)), 0.01)
    year = (body.received_at or datetime.now(UTC)).astimezone(UTC).year
    sequence = await _number_sequence(deps, agency=body.agency, year=year,
                                      incident_type=body.incident_type)
    key_scope = f"incident.create:{ctx.actor}"
    async with unit_of_work(deps.pool, ctx) as uow:
        conn = uow.conn
        record = uow.audit("incident.create", target=None, details={"agency": body.agency})
        stored = await _claim(uow, record, key=idempotency_key, scope=key_scope,
                              payload=body.model_dump(mode="json"))
        if stored is not None:
            return stored.status_code, stored.body
        info = await repo.intake_context(
            conn, incident_type=body.incident_type, lat=lat, lon=lon, received_at=body.received_at,
            window_s=s.duplicate_window_s, dlat=dlat, dlon=dlon, radius_m=s.duplicate_radius_m)
        if info is None:
            raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
        received = body.received_at or info["now"]
        zones = containing(info["zone_candidates"], lat, lon)
        zone_id = zones[0]["id"] if zones else None
        dups = [{"incident_id": d["incident_id"], "number": d["number"],
                 "incident_type": d["incident_type"], "distance_m": round(d["distance_m"], 1),
                 "seconds_apart": round(abs((received - datetime.fromisoformat(d["received_at"]))
                                            .total_seconds()), 1)}
                for d in info["duplicates"]] if s.duplicate_radius_m > 0 else []
        caller = body.caller
        row = await repo.insert_incident(
            conn, agency=body.agency, year=year, incident_type=body.incident_type,
            priority=body.priority or info["default_priority"], location=where.columns(),
            zone_id=zone_id, received_at=received,
            answered_at=body.answered_at, duplicate_ids=[d["incident_id"] for d in dups],
            caller_name=(caller.name or None) if caller else None,
            callback_number=(caller.callback_number or None) if caller else None,
            author=ctx.actor, narrative=body.narrative, sequence=sequence)
        iid = row["id"]
        record.target = f"incident:{iid}"
        record.details["number"] = row["number"]
        view = incident_view(row, [])
        uow.emit("incident.created", aggregate=("incident", iid), agency=body.agency,
                 data={"incident": view, "unit_ids": []})
        if dups:
            uow.emit("incident.duplicate_flagged", aggregate=("incident", iid), agency=body.agency,
                     data={"incident": view, "candidates": dups, "unit_ids": []})
        result = {**view, "possible_duplicates": dups, "zones": [z["id"] for z in zones]}
        if within is not None:
            await within(uow, view)
        await _record(uow, key=idempotency_key, scope=key_scope, status_code=201, body=result)
    return 201, result


async def get_incident(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                       incident_id: int) -> dict[str, Any]:
    """The incident, its narrative and links. A field unit (only its assignments) gets its
    callers too when CAD_FIELD_UNIT_CALLER_DATA grants it, audited like any caller read."""
    async with deps.pool.acquire() as conn:
        if await repo.visible_incident(conn, incident_id, scope=scope) is None:
            raise NotFound(f"incident {incident_id} does not exist")
        view = await load_incident_view(conn, incident_id)
        if view is None:
            raise NotFound(f"incident {incident_id} does not exist")
        narrative = await repo.narrative(conn, incident_id)
        links = await repo.links(conn, incident_id)
        if scope.unit_id is not None and scope.caller_data:
            rows = await repo.callers(conn, incident_id)
            await audit_now(conn, ctx, "incident.caller.read", target=f"incident:{incident_id}",
                            details={"records": len(rows), "unit_id": scope.unit_id})
            view["callers"] = [_caller_view(r) for r in rows]
    view["narrative"] = [narrative_view(n) for n in narrative]
    view["links"] = [{"incident_id": r["other_id"], "kind": r["kind"]} for r in links]
    return view


async def list_incidents(*, deps: IncidentsDeps, scope: Scope, open_only: bool,
                         agency: str | None, limit: int) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        ids = await repo.list_incident_ids(conn, open_only=open_only, agency=agency, limit=limit,
                                           scope=scope)
        out = []
        for iid in ids:
            v = await load_incident_view(conn, iid)
            if v is not None:
                out.append(v)
    return out


async def lock_incident(conn: asyncpg.Connection, *, incident_id: int,
                        scope: Scope) -> asyncpg.Record:
    """Lock the incident or answer 404, also when ``scope`` may not see it (incidents are
    locked before units: one global order)."""
    row = await repo.lock_incident(conn, incident_id, scope=scope)
    if row is None:
        raise NotFound(f"incident {incident_id} does not exist")
    return row


async def _lock_pair(conn: asyncpg.Connection, a: int, b: int,
                     scope: Scope) -> dict[int, asyncpg.Record]:
    """Lock two incidents in id order (two dispatchers linking the same pair the other way
    round must queue, not deadlock)."""
    return {i: await lock_incident(conn, incident_id=i, scope=scope) for i in sorted((a, b))}


async def emit_incident(uow: UnitOfWork, *, incident_id: int, type_: str,
                        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Emit ``type_`` with the incident's full view (and its units' ids) after a change."""
    view = await load_incident_view(uow.conn, incident_id)
    assert view is not None
    uow.emit(type_, aggregate=("incident", incident_id), agency=view["agency"],
             data={"incident": view, "unit_ids": await repo.assigned_unit_ids(uow.conn, incident_id),
                   **(extra or {})})
    return view


@retry_transient
async def update_incident(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                          incident_id: int, body: IncidentPatch) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    expected = changes.pop("version", None)
    if not changes:
        raise Invalid("nothing to change", field="body")
    loc = (resolve_location(deps=deps, loc=body.location) if body.location is not None
           else None)
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("incident.update", target=f"incident:{incident_id}", details={"fields": sorted(changes)})
        row = await lock_incident(uow.conn, incident_id=incident_id, scope=scope)
        if row["status"] == "closed":
            raise Conflict(f"incident {incident_id} is closed")
        if expected is not None and row["version"] != expected:
            raise Conflict(f"incident {incident_id} is at version {row['version']}, not {expected}")
        sets: dict[str, Any] = {}
        if body.incident_type is not None:
            if not await repo.incident_type_exists(uow.conn, body.incident_type):
                raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
            sets["incident_type"] = body.incident_type
        if body.priority is not None:
            sets["priority"] = body.priority
        if loc is not None:
            assert body.location is not None
            deps.plausible.check_place(agency=row["agency"], lat=loc.lat, lon=loc.lon,
                                       fields=location_fields(body.location))
            zones = await zones_at(uow.conn, lat=loc.lat, lon=loc.lon)
            sets.update(loc.columns(), zone_id=zones[0]["id"] if zones else None)
        await repo.update_fields(uow.conn, incident_id, sets)
        view = await emit_incident(uow, incident_id=incident_id, type_="incident.updated",
                                   extra={"changed": sorted(sets)})
    return view


@retry_transient
async def add_narrative(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                        incident_id: int, body: NarrativeIn, idempotency_key: str | None = None
                        ) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body): 201, or a replayed answer. A field unit writes only to
    incidents of its own assignments (its scope)."""
    key_scope = f"incident.narrative:{ctx.actor}:{incident_id}"
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("incident.narrative.add", target=f"incident:{incident_id}")
        stored = await _claim(uow, record, key=idempotency_key, scope=key_scope,
                              payload=body.model_dump(mode="json"))
        if stored is not None:
            return stored.status_code, stored.body
        await lock_incident(uow.conn, incident_id=incident_id, scope=scope)
        n = await repo.add_narrative(uow.conn, incident_id=incident_id, author=ctx.actor,
                                     text=body.text)
        await repo.bump_version(uow.conn, [incident_id])
        entry = narrative_view(n)
        await emit_incident(uow, incident_id=incident_id, type_="incident.narrative_added",
                            extra={"entry": entry})
        await _record(uow, key=idempotency_key, scope=key_scope, status_code=201, body=entry)
    return 201, entry


def _caller_view(r: asyncpg.Record) -> dict[str, Any]:
    return {"name": r["name"], "callback_number": r["callback_number"],
            "recorded_at": r["created_at"].isoformat()}


async def get_caller(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                     incident_id: int) -> dict[str, Any]:
    """The caller's personal data. Every read is audited, found or not (out of scope is
    not found, and audited as a failure)."""
    async with deps.pool.acquire() as conn:
        exists = (await repo.visible_incident(conn, incident_id, scope=scope) is not None
                  and (scope.unit_id is None or scope.caller_data))
        rows = await repo.callers(conn, incident_id) if exists else []
        await audit_now(conn, ctx, "incident.caller.read", target=f"incident:{incident_id}",
                        outcome="success" if exists else "failure",
                        details={"records": len(rows)})
    if not exists:
        raise NotFound(f"incident {incident_id} does not exist")
    return {"incident_id": incident_id, "callers": [_caller_view(r) for r in rows]}


@retry_transient
async def close_incident(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                         incident_id: int, body: CloseIn, idempotency_key: str | None = None
                         ) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body): 200, or a replayed answer."""
    key_scope = f"incident.close:{ctx.actor}:{incident_id}"
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("incident.close", target=f"incident:{incident_id}",
                           details={"disposition": body.disposition})
        stored = await _claim(uow, record, key=idempotency_key, scope=key_scope,
                              payload=body.model_dump(mode="json"))
        if stored is not None:
            return stored.status_code, stored.body
        row = await lock_incident(uow.conn, incident_id=incident_id, scope=scope)
        if row["status"] == "closed":
            raise Conflict(f"incident {incident_id} is already closed")
        if not await repo.disposition_usable(uow.conn, body.disposition):
            raise Invalid(f"{body.disposition} is not in the disposition code list "
                          "(GET /api/v1/analytics/dispositions)", field="body.disposition")
        active = await repo.active_assignments(uow.conn, incident_id)
        if active:
            raise Conflict(
                f"incident {incident_id} still has units assigned: "
                + ", ".join(f"{a['unit_id']} ({a['status']})" for a in active),
                extra={"active_units": [a["unit_id"] for a in active]})
        await repo.close(uow.conn, incident_id, disposition=body.disposition)
        view = await emit_incident(uow, incident_id=incident_id, type_="incident.closed",
                                   extra={"disposition": body.disposition})
        await _record(uow, key=idempotency_key, scope=key_scope, status_code=200, body=view)
    return 200, view


@retry_transient
async def link_incidents(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                         incident_id: int, body: LinkIn, idempotency_key: str | None = None
                         ) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body): 200, or a replayed answer."""
    if body.other_id == incident_id:
        raise Invalid("an incident cannot be linked to itself", field="body.other_id")
    key_scope = f"incident.link:{ctx.actor}:{incident_id}"
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("incident.link", target=f"incident:{incident_id}",
                           details={"other": body.other_id})
        stored = await _claim(uow, record, key=idempotency_key, scope=key_scope,
                              payload=body.model_dump(mode="json"))
        if stored is not None:
            return stored.status_code, stored.body
        await _lock_pair(uow.conn, incident_id, body.other_id, scope)
        first, second = sorted((incident_id, body.other_id))
        await repo.link(uow.conn, first=first, second=second, kind=body.kind, created_by=ctx.actor)
        await repo.bump_version(uow.conn, [first, second])
        await emit_incident(uow, incident_id=incident_id, type_="incident.linked",
                            extra={"other_id": body.other_id, "kind": body.kind})
        await emit_incident(uow, incident_id=body.other_id, type_="incident.linked",
                            extra={"other_id": incident_id, "kind": body.kind})
        result = {"incident_id": incident_id, "other_id": body.other_id, "kind": body.kind}
        await _record(uow, key=idempotency_key, scope=key_scope, status_code=200, body=result)
    return 200, result


@retry_transient
async def merge_incident(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                         incident_id: int, body: MergeIn, idempotency_key: str | None = None
                         ) -> tuple[int, dict[str, Any]]:
    """Close this incident as a duplicate of ``into_id``: callers and narrative move over.
    Returns (HTTP status, body): 200, or a replayed answer."""
    if body.into_id == incident_id:
        raise Invalid("an incident cannot be merged into itself", field="body.into_id")
    key_scope = f"incident.merge:{ctx.actor}:{incident_id}"
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("incident.merge", target=f"incident:{incident_id}",
                           details={"into": body.into_id})
        stored = await _claim(uow, record, key=idempotency_key, scope=key_scope,
                              payload=body.model_dump(mode="json"))
        if stored is not None:
            return stored.status_code, stored.body
        rows = await _lock_pair(uow.conn, incident_id, body.into_id, scope)
        first, second = sorted(rows)
        src, dst = rows[incident_id], rows[body.into_id]
        if src["status"] == "closed" or dst["status"] == "closed":
            raise Conflict("both incidents must be open to merge")
        active = len(await repo.active_assignments(uow.conn, incident_id))
        if active:
            raise Conflict(f"incident {incident_id} has {active} unit(s) assigned: clear them first")
        await repo.copy_callers_and_narrative(uow.conn, from_id=incident_id, to_id=body.into_id,
                                              from_number=src["number"])
        await repo.link(uow.conn, first=first, second=second, kind="duplicate", created_by=ctx.actor)
        await repo.close(uow.conn, incident_id, disposition="MERGED", merged_into=body.into_id)
        await repo.bump_version(uow.conn, [body.into_id])
        await emit_incident(uow, incident_id=incident_id, type_="incident.merged",
                            extra={"into_id": body.into_id})
        view = await emit_incident(uow, incident_id=body.into_id, type_="incident.merge_received",
                                   extra={"from_id": incident_id})
        await _record(uow, key=idempotency_key, scope=key_scope, status_code=200, body=view)
    return 200, view


# --- incident types --------------------------------------------------------------------------
async def list_incident_types(*, deps: IncidentsDeps) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        return [dict(r) for r in await repo.list_incident_types(conn)]


@retry_transient
async def put_incident_type(*, deps: IncidentsDeps, ctx: RequestContext, code: str,
                            body: IncidentTypeIn) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Z][A-Z0-9_-]{0,15}", code):
        raise Invalid("incident type codes are 1-16 capitals, digits, _ or -", field="path.code")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("incident_type.upsert", target=f"incident_type:{code}")
        row = await repo.upsert_incident_type(uow.conn, code, body.model_dump())
        uow.emit("incident_type.upserted", aggregate=("incident_type", code), data=dict(row))
    return dict(row)


# --- assignments: how the incident's status follows its units ----------------------------------
async def derive_status(conn: asyncpg.Connection, *, incident_id: int,
                        at: datetime) -> dict[str, Any]:
    """Set the incident's status from its assignments (pending -> dispatched -> en_route ->
    on_scene -> cleared; closed stays closed). Returns {"incident_status", "all_cleared"}."""
    row = await repo.progress_counts(conn, incident_id)
    assert row is not None
    if row["status"] == "closed":
        return {"incident_status": "closed", "all_cleared": row["n_active"] == 0}
    if row["n_assigned"] == 0:
        status = "pending"
    elif row["n_active"] == 0:
        status = "cleared"
    elif row["first_on_scene_at"] is not None:
        status = "on_scene"
    elif row["first_en_route_at"] is not None:
        status = "en_route"
    else:
        status = "dispatched"
    if status != row["status"]:
        await repo.set_derived_status(conn, incident_id, status=status, at=at)
    else:
        await repo.bump_version(conn, [incident_id])
    return {"incident_status": status, "all_cleared": status == "cleared"}
