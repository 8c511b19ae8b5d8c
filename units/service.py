"""Roster and station actions. Each is one transaction: the row, its status log, its event,
its audit. Status changes move incidents along too, so they live with the dispatch workflows
(``incidents.dispatch.progress``)."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
import numpy as np
from pydantic import ValidationError

from cad.errors import Conflict, Forbidden, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, retry_transient, unit_of_work
from routing.errors import RoutingError
from units import repository as repo
from units.deps import UnitsDeps
from units.schemas import StationIn, UnitCreate, UnitPatch
from units.status import ASSIGNED, UnitStatus
from units.views import status_log_view, unit_view


# --- stations ------------------------------------------------------------------------------
@retry_transient
async def upsert_station(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope,
                         station: StationIn) -> dict[str, Any]:
    scope.require(station.agency, field="body.agency")
    deps.plausible.check_place(agency=station.agency, lat=station.lat, lon=station.lon,
                               fields=["body.lat", "body.lon"])
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("station.upsert", target=f"station:{station.id}")
        await _check_stations_in_scope(uow.conn, [station.id], scope)
        row = await repo.upsert_station(uow.conn, station.model_dump())
        data = {k: row[k] for k in ("id", "agency", "name", "address", "lat", "lon")}
        uow.emit("station.upserted", aggregate=("station", station.id), data={"station": data},
                 agency=station.agency)
    return data


@retry_transient
async def import_stations_csv(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope, text: str,
                              agency: str) -> dict[str, Any]:
    """CSV with columns station|id, name (optional), address, lat, lon."""
    _, rows = _read_csv(text)
    stations: list[StationIn] = []
    for lineno, rec in rows:
        sid = (rec.get("id") or rec.get("station") or "").strip()
        try:
            stations.append(StationIn(
                id=sid, agency=(rec.get("agency") or agency).strip(),
                name=(rec.get("name") or f"Station {sid}").strip(),
                address=(rec.get("address") or "").strip() or None,
                lat=float(rec["lat"]), lon=float(rec["lon"])))
        except (KeyError, ValueError, TypeError, ValidationError) as exc:
            raise Invalid(f"line {lineno}: {_first_error(exc)}", field=f"body.line[{lineno}]") from None
        s = stations[-1]
        reason = deps.plausible.area.refusal(agency=s.agency, lat=s.lat, lon=s.lon)
        if reason is not None:
            raise Invalid(f"line {lineno}: {reason}", field=f"body.line[{lineno}]")
    scope.require(agency, field="query.agency")
    for lineno, s in zip((n for n, _ in rows), stations, strict=True):
        scope.require(s.agency, field=f"body.line[{lineno}]")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("station.import", details={"count": len(stations)})
        await _check_stations_in_scope(uow.conn, [s.id for s in stations], scope)
        for s in stations:
            await repo.upsert_station(uow.conn, s.model_dump())
        uow.emit("station.imported", aggregate=("station", "*"),
                 data={"station_ids": [s.id for s in stations]}, agency=agency)
    return {"imported": len(stations)}


async def _check_stations_in_scope(conn: asyncpg.Connection, station_ids: list[str],
                                   scope: Scope) -> None:
    """Overwriting another agency's station (ids are unique across agencies) is refused, and
    says no more than that the id is taken."""
    for sid, agency in (await repo.station_agencies(conn, station_ids)).items():
        if not scope.covers(agency):
            raise Conflict(f"station id {sid} is taken")


async def _check_units_in_scope(conn: asyncpg.Connection, unit_ids: list[str],
                                scope: Scope) -> None:
    for uid, agency in (await repo.unit_ids_taken(conn, unit_ids)).items():
        if not scope.covers(agency):
            raise Conflict(f"unit id {uid} is taken")


def log_source(ctx: RequestContext) -> str:
    """The status log's ``source`` for an action of ``ctx``."""
    return ctx.source if ctx.source in ("console", "mdt", "system", "api", "import") else "api"


def _read_csv(text: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Header and (line number, record) pairs; malformed CSV is a 422 naming the line. Line
    numbers are where each record ends, so a quoted field spanning lines counts right."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        header = list(reader.fieldnames or [])
        for rec in reader:
            rows.append((reader.line_num, rec))
    except csv.Error as exc:
        line = max(reader.line_num, 1)
        raise Invalid(f"line {line}: malformed CSV: {exc}", field=f"body.line[{line}]") from None
    return header, rows


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        e = exc.errors()[0]
        return f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}"
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]}"
    return str(exc)


# --- roster ------------------------------------------------------------------------------
@retry_transient
async def create_unit(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope,
                      body: UnitCreate) -> dict[str, Any]:
    scope.require(body.agency, field="body.agency")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.create", target=f"unit:{body.id}")
        if await repo.unit_ids_taken(uow.conn, [body.id]):
            raise Conflict(f"unit {body.id} already exists")
        await _check_station(uow.conn, body.home_station, scope)
        row = await repo.insert_unit(uow.conn, body.model_dump())
        await repo.log_status(uow.conn, unit_id=body.id, from_status=None, to_status=row["status"],
                              at=row["status_changed_at"], reported_at=None, incident_id=None,
                              actor=ctx.actor, source=log_source(ctx), client_addr=ctx.client_addr,
                              request_id=ctx.request_id)
        view = unit_view(row)
        uow.emit("unit.created", aggregate=("unit", body.id), data={"unit": view}, agency=body.agency)
        deps.locator.refresh_after_commit(uow, [body.id])
    return view


async def _check_station(conn: asyncpg.Connection, station_id: str | None,
                         scope: Scope) -> None:
    if station_id is not None and await repo.get_station(conn, station_id, scope=scope) is None:
        raise Invalid(f"station {station_id} does not exist", field="body.home_station")


@retry_transient
async def update_unit(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope, unit_id: str,
                      body: UnitPatch) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    expected_version = changes.pop("version", None)
    if not changes:
        raise Invalid("nothing to change", field="body")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.update", target=f"unit:{unit_id}", details={"fields": sorted(changes)})
        current = await repo.get_unit(uow.conn, unit_id, scope=scope, for_update=True)
        if current is None:
            raise NotFound(f"unit {unit_id} does not exist")
        if changes.get("agency") is not None:
            scope.require(changes["agency"], field="body.agency")
        if expected_version is not None and current["version"] != expected_version:
            raise Conflict(f"unit {unit_id} is at version {current['version']}, not {expected_version}",
                           extra={"current": unit_view(current)})
        if "home_station" in changes:
            await _check_station(uow.conn, changes["home_station"], scope)
        row = await repo.update_unit_fields(uow.conn, unit_id, changes)
        view = unit_view(row)
        uow.emit("unit.updated", aggregate=("unit", unit_id), data={"unit": view}, agency=row["agency"])
        deps.locator.refresh_after_commit(uow, [unit_id])
    return view


@retry_transient
async def deactivate_unit(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope,
                          unit_id: str) -> dict[str, Any]:
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.deactivate", target=f"unit:{unit_id}")
        current = await repo.get_unit(uow.conn, unit_id, scope=scope, for_update=True)
        if current is None:
            raise NotFound(f"unit {unit_id} does not exist")
        if UnitStatus(current["status"]) in ASSIGNED:
            raise Conflict(f"unit {unit_id} is assigned to incident {current['current_incident']}",
                           extra={"current": unit_view(current)})
        row = await repo.update_unit_fields(uow.conn, unit_id, {"active": False})
        view = unit_view(row)
        uow.emit("unit.deactivated", aggregate=("unit", unit_id), data={"unit": view},
                 agency=row["agency"])
        deps.locator.refresh_after_commit(uow, [unit_id])
    return view


CSV_COLUMNS = ("id", "agency", "discipline", "unit_type", "capabilities", "home_station", "staffing")


@retry_transient
async def import_units_csv(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope,
                           text: str) -> dict[str, Any]:
    """Create or update units from CSV (header: id, agency, discipline, unit_type,
    capabilities separated by ';', home_station, staffing). All or nothing."""
    header, rows = _read_csv(text)
    missing = [c for c in ("id", "agency", "discipline", "unit_type") if c not in header]
    if missing:
        raise Invalid(f"CSV header lacks {', '.join(missing)}", field="body.header")
    units: list[UnitCreate] = []
    for lineno, rec in rows:
        try:
            units.append(UnitCreate(
                id=rec["id"].strip(), agency=rec["agency"].strip(), discipline=rec["discipline"].strip(),
                unit_type=rec["unit_type"].strip(),
                capabilities=[c.strip() for c in (rec.get("capabilities") or "").split(";") if c.strip()],
                home_station=(rec.get("home_station") or "").strip() or None,
                staffing=int(rec.get("staffing") or 0)))
        except (ValueError, TypeError, ValidationError, AttributeError) as exc:
            raise Invalid(f"line {lineno}: {_first_error(exc)}", field=f"body.line[{lineno}]") from None
    ids = [u.id for u in units]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise Invalid(f"unit ids appear twice: {', '.join(dup)}", field="body.id")
    for lineno, u in zip((n for n, _ in rows), units, strict=True):
        scope.require(u.agency, field=f"body.line[{lineno}]")
    created = updated = 0
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.import", details={"count": len(units)})
        await _check_units_in_scope(uow.conn, ids, scope)
        for u in units:
            await _check_station(uow.conn, u.home_station, scope)
            row, inserted = await repo.upsert_unit(uow.conn, u.model_dump())
            if inserted:
                created += 1
                await repo.log_status(uow.conn, unit_id=u.id, from_status=None, to_status=row["status"],
                                      at=row["status_changed_at"], reported_at=None, incident_id=None,
                                      actor=ctx.actor, source="import", client_addr=ctx.client_addr,
                                      request_id=ctx.request_id)
            else:
                updated += 1
            uow.emit("unit.created" if inserted else "unit.updated", aggregate=("unit", u.id),
                     data={"unit": unit_view(row)}, agency=u.agency)
        deps.locator.refresh_after_commit(uow, ids)
    return {"created": created, "updated": updated}


@retry_transient
async def check_in(*, deps: UnitsDeps, ctx: RequestContext, scope: Scope, unit_id: str,
                   acting_unit: str | None = None) -> dict[str, Any]:
    """A unit confirms it is fine (resets its status timer)."""
    if acting_unit is not None and acting_unit != unit_id:
        raise Forbidden(f"this device is bound to unit {acting_unit}, not {unit_id}")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.checkin", target=f"unit:{unit_id}")
        row = await repo.check_in(uow.conn, unit_id, scope=scope)
        if row is None:
            raise NotFound(f"unit {unit_id} does not exist")
        view = unit_view(row)
        uow.emit("unit.checked_in", aggregate=("unit", unit_id), agency=row["agency"],
                 data={"unit": view, "unit_ids": [unit_id]})
    return view


async def get_unit(*, deps: UnitsDeps, scope: Scope, unit_id: str) -> dict[str, Any]:
    async with deps.pool.acquire() as conn:
        row = await repo.get_unit(conn, unit_id, scope=scope)
    if row is None:
        raise NotFound(f"unit {unit_id} does not exist")
    return unit_view(row)


async def list_units(*, deps: UnitsDeps, scope: Scope, agency: str | None,
                     status: UnitStatus | None, include_inactive: bool) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        rows = await repo.list_units(conn, agencies=scope.narrowed(None if agency is None
                                                                   else [agency]),
                                     status=status.value if status else None,
                                     include_inactive=include_inactive)
    hidden = scope.hidden_for([agency or ""])
    return [unit_view(r) for r in rows
            if not hidden or (not r["training"] and r["agency"] not in hidden)]


async def status_history(*, deps: UnitsDeps, scope: Scope, unit_id: str,
                         limit: int) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        if await repo.get_unit(conn, unit_id, scope=scope) is None:
            raise NotFound(f"unit {unit_id} does not exist")
        rows = await repo.status_history(conn, unit_id, limit)
    return [status_log_view(r) for r in rows]


async def list_stations(*, deps: UnitsDeps, scope: Scope,
                        agency: str | None = None) -> list[dict[str, Any]]:
    """The stations of the caller's agencies (or of ``agency``); a training agency's are left
    out unless named, as units and incidents are (cad.security.scope, ``hidden``)."""
    async with deps.pool.acquire() as conn:
        rows = await repo.list_stations(conn, agencies=scope.narrowed(None if agency is None
                                                                      else [agency]))
    hidden = scope.hidden_for([agency or ""])
    return [dict(r) for r in rows if r["agency"] not in hidden]


async def unit_route(*, deps: UnitsDeps, scope: Scope, unit_id: str, lat: float, lon: float,
                     acting_unit: str | None = None) -> dict[str, Any]:
    """The fastest road route from where this worker's routing index has the unit (its newest
    fresh fix, else its station) to a point: what an MDT navigates (and the replay drives)."""
    if acting_unit is not None and acting_unit != unit_id:
        raise Forbidden(f"this device is bound to unit {acting_unit}, not {unit_id}")
    async with deps.pool.acquire() as conn:
        row = await repo.get_unit(conn, unit_id, scope=scope)
    if row is None:
        raise NotFound(f"unit {unit_id} does not exist")
    routing = deps.locator.routing
    if routing is None:
        # 409 like the incident route (incidents/dispatch/routes.py): retrying will not help
        # until an operator configures a graph, which is not what a 503 tells a client.
        raise Conflict("no road graph is loaded (CAD_GRAPH_PATH): no routes")
    deps.plausible.check_place(agency=row["agency"], lat=lat, lon=lon,
                               fields=["query.lat", "query.lon"])
    try:
        route = routing.route(unit_id, lat=lat, lon=lon)
    except RoutingError as exc:
        raise Conflict(f"no route for unit {unit_id}: {exc}") from None
    return {"unit_id": unit_id, "eta_s": round(route.eta_s, 1),
            "distance_m": round(route.distance_m, 1),
            "coordinates": np.round(route.lonlat, 6).tolist()}
