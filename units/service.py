"""Unit actions. Each is one transaction: the row, its status log, its event, its audit."""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg
from pydantic import ValidationError

from cad import idempotency
from cad.errors import Conflict, Forbidden, Invalid, NotFound
from cad.uow import RequestContext, UnitOfWork, unit_of_work
from incidents.board import load_incident_view, unit_view
from incidents.progress import assigned_unit_ids, record_unit_progress
from units import repository as repo
from units.locator import UnitLocator
from units.schemas import StationIn, StatusChange, UnitCreate, UnitPatch
from units.status import ASSIGNED, UnitStatus, allowed_next, can_transition, clears_assignment


def _refresh_after_commit(uow: UnitOfWork, pool: asyncpg.Pool, locator: UnitLocator | None,
                          unit_ids: list[str]) -> None:
    """Once committed, re-place these units in this worker's routing index."""
    if locator is None or locator.routing is None:
        return

    async def refresh() -> None:
        await _refresh(pool, locator, unit_ids)

    uow.after_commit(refresh)


async def _refresh(pool: asyncpg.Pool, locator: UnitLocator | None, unit_ids: list[str]) -> None:
    if locator is None or locator.routing is None:
        return
    async with pool.acquire() as conn:
        await locator.refresh(conn, unit_ids)


# --- stations ------------------------------------------------------------------------------
async def upsert_station(pool: asyncpg.Pool, ctx: RequestContext, station: StationIn) -> dict[str, Any]:
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("station.upsert", target=f"station:{station.id}")
        row = await repo.upsert_station(uow.conn, station.model_dump())
        data = {k: row[k] for k in ("id", "agency", "name", "address", "lat", "lon")}
        uow.emit("station.upserted", aggregate=("station", station.id), data={"station": data},
                 agency=station.agency)
    return data


async def import_stations_csv(pool: asyncpg.Pool, ctx: RequestContext, text: str,
                              *, agency: str) -> dict[str, Any]:
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
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("station.import", details={"count": len(stations)})
        for s in stations:
            await repo.upsert_station(uow.conn, s.model_dump())
        uow.emit("station.imported", aggregate=("station", "*"),
                 data={"station_ids": [s.id for s in stations]}, agency=agency)
    return {"imported": len(stations)}


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
async def create_unit(pool: asyncpg.Pool, ctx: RequestContext, body: UnitCreate,
                      locator: UnitLocator | None = None) -> dict[str, Any]:
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.create", target=f"unit:{body.id}")
        if await repo.get_unit(uow.conn, body.id) is not None:
            raise Conflict(f"unit {body.id} already exists")
        await _check_station(uow.conn, body.home_station)
        row = await repo.insert_unit(uow.conn, body.model_dump())
        await repo.log_status(uow.conn, unit_id=body.id, from_status=None, to_status=row["status"],
                              at=row["status_changed_at"], reported_at=None, incident_id=None,
                              actor=ctx.actor, source=_log_source(ctx), client_addr=ctx.client_addr,
                              request_id=ctx.request_id)
        view = unit_view(row)
        uow.emit("unit.created", aggregate=("unit", body.id), data={"unit": view}, agency=body.agency)
        _refresh_after_commit(uow, pool, locator, [body.id])
    return view


async def _check_station(conn: asyncpg.Connection, station_id: str | None) -> None:
    if station_id is not None and await repo.get_station(conn, station_id) is None:
        raise Invalid(f"station {station_id} does not exist", field="body.home_station")


def _log_source(ctx: RequestContext) -> str:
    return ctx.source if ctx.source in ("console", "mdt", "system", "api", "import") else "api"


async def update_unit(pool: asyncpg.Pool, ctx: RequestContext, unit_id: str, body: UnitPatch,
                      locator: UnitLocator | None = None) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    expected_version = changes.pop("version", None)
    if not changes:
        raise Invalid("nothing to change", field="body")
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.update", target=f"unit:{unit_id}", details={"fields": sorted(changes)})
        current = await repo.get_unit(uow.conn, unit_id, for_update=True)
        if current is None:
            raise NotFound(f"unit {unit_id} does not exist")
        if expected_version is not None and current["version"] != expected_version:
            raise Conflict(f"unit {unit_id} is at version {current['version']}, not {expected_version}",
                           extra={"current": unit_view(current)})
        if "home_station" in changes:
            await _check_station(uow.conn, changes["home_station"])
        row = await repo.update_unit_fields(uow.conn, unit_id, changes)
        view = unit_view(row)
        uow.emit("unit.updated", aggregate=("unit", unit_id), data={"unit": view}, agency=row["agency"])
        _refresh_after_commit(uow, pool, locator, [unit_id])
    return view


async def deactivate_unit(pool: asyncpg.Pool, ctx: RequestContext, unit_id: str,
                          locator: UnitLocator | None = None) -> dict[str, Any]:
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.deactivate", target=f"unit:{unit_id}")
        current = await repo.get_unit(uow.conn, unit_id, for_update=True)
        if current is None:
            raise NotFound(f"unit {unit_id} does not exist")
        if UnitStatus(current["status"]) in ASSIGNED:
            raise Conflict(f"unit {unit_id} is assigned to incident {current['current_incident']}",
                           extra={"current": unit_view(current)})
        row = await repo.update_unit_fields(uow.conn, unit_id, {"active": False})
        view = unit_view(row)
        uow.emit("unit.deactivated", aggregate=("unit", unit_id), data={"unit": view},
                 agency=row["agency"])
        _refresh_after_commit(uow, pool, locator, [unit_id])
    return view


CSV_COLUMNS = ("id", "agency", "discipline", "unit_type", "capabilities", "home_station", "staffing")


async def import_units_csv(pool: asyncpg.Pool, ctx: RequestContext, text: str,
                           locator: UnitLocator | None = None) -> dict[str, Any]:
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
    created = updated = 0
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.import", details={"count": len(units)})
        for u in units:
            await _check_station(uow.conn, u.home_station)
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
        _refresh_after_commit(uow, pool, locator, ids)
    return {"created": created, "updated": updated}


# --- status --------------------------------------------------------------------------------
async def change_status(pool: asyncpg.Pool, ctx: RequestContext, unit_id: str, body: StatusChange,
                        *, idempotency_key: str | None = None, acting_unit: str | None = None,
                        locator: UnitLocator | None = None) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body). ``acting_unit``: the caller is an MDT bound to this unit."""
    if acting_unit is not None and acting_unit != unit_id:
        raise Forbidden(f"this device is bound to unit {acting_unit}, not {unit_id}")
    new = body.status
    if new is UnitStatus.DISPATCHED:
        raise Conflict("units become dispatched only through POST /api/v1/incidents/{id}/dispatch",
                       extra={"allowed_next": []})
    source = body.source or ("mdt" if ctx.source == "mdt" else "console")
    scope = f"unit.status:{ctx.actor}:{unit_id}"
    req_hash = idempotency.request_hash(body.model_dump(mode="json"))
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.status.change", target=f"unit:{unit_id}", details={"to": new.value})
        if idempotency_key is not None:
            stored = await idempotency.claim(uow.conn, scope=scope, key=idempotency_key, req_hash=req_hash)
            if stored is not None:
                return stored.status_code, stored.body
        unit = await _lock_unit_and_incident(uow.conn, unit_id)
        if not unit["active"]:
            raise Conflict(f"unit {unit_id} is deactivated")
        current = UnitStatus(unit["status"])
        incident_id = unit["current_incident"]
        if body.incident_id is not None and body.incident_id != incident_id:
            raise Conflict(
                f"unit {unit_id} is not on incident {body.incident_id}"
                + (f" (it is on {incident_id})" if incident_id else " (it has no incident)"),
                extra={"current": unit_view(unit), "allowed_next": allowed_next(current)})
        if not can_transition(current, new):
            raise Conflict(
                f"unit {unit_id} cannot go from {current.value} to {new.value}; allowed: "
                f"{', '.join(allowed_next(current))}",
                extra={"current_status": current.value, "allowed_next": allowed_next(current),
                       "current": unit_view(unit)})
        clears = clears_assignment(current, new)
        row = await repo.set_status(uow.conn, unit_id, status=new.value,
                                    current_incident=None if clears else incident_id)
        at = row["status_changed_at"]
        await repo.log_status(uow.conn, unit_id=unit_id, from_status=current.value,
                              to_status=new.value, at=at, reported_at=body.reported_at,
                              incident_id=incident_id, actor=ctx.actor, source=source,
                              client_addr=ctx.client_addr, request_id=ctx.request_id)
        view = unit_view(row)
        result: dict[str, Any] = {"unit": view, "from_status": current.value,
                                  "incident_id": incident_id, "incident_can_close": False}
        uow.emit("unit.status_changed", aggregate=("unit", unit_id), agency=row["agency"], data={
            "unit": view, "from": current.value, "to": new.value, "incident_id": incident_id,
            "source": source, "unit_ids": [unit_id]})
        if incident_id is not None:
            progress = await record_unit_progress(uow.conn, incident_id=incident_id, unit_id=unit_id,
                                                  new_status=new, clears=clears, at=at)
            incident = await load_incident_view(uow.conn, incident_id)
            assert incident is not None
            result["incident_can_close"] = progress["all_cleared"]
            result["incident_status"] = incident["status"]
            uow.emit("incident.unit_status_changed", aggregate=("incident", incident_id),
                     agency=incident["agency"], data={
                         "incident": incident, "unit_id": unit_id, "to": new.value,
                         "unit_ids": await assigned_unit_ids(uow.conn, incident_id),
                         "all_units_cleared": progress["all_cleared"]})
        if idempotency_key is not None:
            await idempotency.record(uow.conn, scope=scope, key=idempotency_key, status_code=200,
                                     body=result)
        _refresh_after_commit(uow, pool, locator, [unit_id])
    return 200, result


async def _lock_unit_and_incident(conn: asyncpg.Connection, unit_id: str) -> asyncpg.Record:
    """Lock the unit's incident, then the unit: the same order as dispatch, so the two
    actions never deadlock. Retried if the unit changed incident in between."""
    for _ in range(5):
        peek = await repo.get_unit(conn, unit_id)
        if peek is None:
            raise NotFound(f"unit {unit_id} does not exist")
        if peek["current_incident"] is not None:
            await conn.execute("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE", peek["current_incident"])
        unit = await repo.get_unit(conn, unit_id, for_update=True)
        assert unit is not None
        if unit["current_incident"] == peek["current_incident"]:
            return unit
    raise Conflict(f"unit {unit_id} is changing too fast; retry")


async def check_in(pool: asyncpg.Pool, ctx: RequestContext, unit_id: str, *,
                   acting_unit: str | None = None) -> dict[str, Any]:
    """A unit confirms it is fine (resets its status timer)."""
    if acting_unit is not None and acting_unit != unit_id:
        raise Forbidden(f"this device is bound to unit {acting_unit}, not {unit_id}")
    async with unit_of_work(pool, ctx) as uow:
        uow.audit("unit.checkin", target=f"unit:{unit_id}")
        row = await uow.conn.fetchrow(
            "UPDATE units SET last_checkin_at = clock_timestamp(), version = version + 1 "
            "WHERE id = $1 AND active RETURNING *", unit_id)
        if row is None:
            raise NotFound(f"unit {unit_id} does not exist")
        view = unit_view(row)
        uow.emit("unit.checked_in", aggregate=("unit", unit_id), agency=row["agency"],
                 data={"unit": view, "unit_ids": [unit_id]})
    return view
