"""Units and stations over HTTP (see cad/security/policy.py for who may call what)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from cad.deps import IdempotencyKey, ServicesDep
from cad.errors import NotFound
from cad.security import Context, CurrentPrincipal
from incidents.board import unit_view
from schemas.common import AgencyQuery
from units import repository as repo
from units import service
from units.schemas import CheckIn, StationIn, StatusChange, UnitCreate, UnitPatch
from units.status import APCO_CODES, TRANSITIONS, UnitStatus

router = APIRouter(prefix="/api/v1", tags=["units"])

CSV_BODY = Body(media_type="text/csv", description="CSV text with a header row.")


@router.get("/units", summary="The roster")
async def list_units(services: ServicesDep, agency: Annotated[AgencyQuery | None, Query()] = None,
                     status: UnitStatus | None = None,
                     include_inactive: bool = False) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        rows = await repo.list_units(conn, agency=agency, status=status.value if status else None,
                                     include_inactive=include_inactive)
    return [unit_view(r) for r in rows]


@router.post("/units", status_code=201, summary="Add a unit to the roster")
async def create_unit(body: UnitCreate, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await service.create_unit(services.pool, ctx, body, services.locator)


@router.post("/units/import", summary="Create or update units from CSV")
async def import_units(services: ServicesDep, ctx: Context,
                       text: Annotated[str, CSV_BODY]) -> dict[str, Any]:
    return await service.import_units_csv(services.pool, ctx, text, services.locator)


@router.get("/units/status-table", summary="Unit statuses, APCO codes and allowed transitions")
async def status_table() -> dict[str, Any]:
    return {s.value: {"apco_code": APCO_CODES[s], "allowed_next": sorted(t.value for t in nxt)}
            for s, nxt in TRANSITIONS.items()}


@router.get("/units/{unit_id}")
async def get_unit(unit_id: str, services: ServicesDep) -> dict[str, Any]:
    async with services.pool.acquire() as conn:
        row = await repo.get_unit(conn, unit_id)
    if row is None:
        raise NotFound(f"unit {unit_id} does not exist")
    return unit_view(row)


@router.patch("/units/{unit_id}")
async def update_unit(unit_id: str, body: UnitPatch, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await service.update_unit(services.pool, ctx, unit_id, body, services.locator)


@router.delete("/units/{unit_id}", summary="Take a unit off the roster (kept for history)")
async def deactivate_unit(unit_id: str, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await service.deactivate_unit(services.pool, ctx, unit_id, services.locator)


@router.post("/units/{unit_id}/status", summary="Report a status change (console or MDT)",
             responses={409: {"description": "Not allowed from the current status; the body lists "
                                              "allowed_next"}})
async def change_status(unit_id: str, body: StatusChange, services: ServicesDep, ctx: Context,
                        principal: CurrentPrincipal, response: Response,
                        idempotency_key: IdempotencyKey) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    code, result = await service.change_status(services.pool, ctx, unit_id, body,
                                               idempotency_key=idempotency_key, acting_unit=acting,
                                               locator=services.locator)
    response.status_code = code
    return result


@router.post("/units/{unit_id}/checkin", summary="The unit is fine: reset its status timer")
async def check_in(unit_id: str, services: ServicesDep, ctx: Context, principal: CurrentPrincipal,
                   body: CheckIn | None = None) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    return await service.check_in(services.pool, ctx, unit_id, acting_unit=acting)


@router.get("/units/{unit_id}/status-history", summary="Append-only status log, newest first")
async def status_history(unit_id: str, services: ServicesDep,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        if await repo.get_unit(conn, unit_id) is None:
            raise NotFound(f"unit {unit_id} does not exist")
        rows = await repo.status_history(conn, unit_id, limit)
    return [{"id": r["id"], "from_status": r["from_status"], "to_status": r["to_status"],
             "at": r["at"].isoformat(), "reported_at": r["reported_at"].isoformat() if r["reported_at"] else None,
             "incident_id": r["incident_id"], "actor": r["actor"], "source": r["source"]} for r in rows]


@router.get("/stations")
async def list_stations(services: ServicesDep) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        return [dict(r) for r in await repo.list_stations(conn)]


@router.put("/stations/{station_id}")
async def put_station(station_id: str, body: StationIn, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    if body.id != station_id:
        from cad.errors import Invalid

        raise Invalid("body id differs from the path", field="body.id")
    return await service.upsert_station(services.pool, ctx, body)


@router.post("/stations/import", summary="Create or update stations from CSV (station|id, name, address, lat, lon)")
async def import_stations(services: ServicesDep, ctx: Context, text: Annotated[str, CSV_BODY],
                          agency: Annotated[str, Query(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]) -> dict[str, Any]:
    return await service.import_stations_csv(services.pool, ctx, text, agency=agency)
