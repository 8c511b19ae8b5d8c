"""Units and stations over HTTP (see cad/security/policy.py for who may call what). Status
changes move incidents too: ``POST /units/{id}/status`` is served by ``incidents.dispatch``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from cad.errors import Invalid
from cad.security import Context, CurrentPrincipal, CurrentScope
from schemas.board import UnitView
from schemas.common import AgencyQuery
from units import service
from units.deps import UnitsDep
from units.schemas import (
    CheckIn,
    ImportCounts,
    StationIn,
    StationOut,
    StationsImported,
    StatusHistoryEntry,
    StatusTableEntry,
    UnitCreate,
    UnitPatch,
    UnitRoute,
)
from units.status import APCO_CODES, TRANSITIONS, UnitStatus

router = APIRouter(prefix="/api/v1", tags=["units"])

CSV_BODY = Body(media_type="text/csv", description="CSV text with a header row.")


@router.get("/units", summary="The roster", response_model=list[UnitView])
async def list_units(deps: UnitsDep, scope: CurrentScope,
                     agency: Annotated[AgencyQuery | None, Query()] = None,
                     status: UnitStatus | None = None,
                     include_inactive: bool = False) -> list[dict[str, Any]]:
    return await service.list_units(deps=deps, scope=scope, agency=agency, status=status,
                                    include_inactive=include_inactive)


@router.post("/units", status_code=201, summary="Add a unit to the roster", response_model=UnitView)
async def create_unit(body: UnitCreate, deps: UnitsDep, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    return await service.create_unit(deps=deps, ctx=ctx, scope=scope, body=body)


@router.post("/units/import", summary="Create or update units from CSV",
             response_model=ImportCounts)
async def import_units(deps: UnitsDep, ctx: Context, scope: CurrentScope,
                       text: Annotated[str, CSV_BODY]) -> dict[str, Any]:
    return await service.import_units_csv(deps=deps, ctx=ctx, scope=scope, text=text)


@router.get("/units/status-table", summary="Unit statuses, APCO codes and allowed transitions",
            response_model=dict[str, StatusTableEntry])
async def status_table() -> dict[str, Any]:
    return {s.value: {"apco_code": APCO_CODES[s], "allowed_next": sorted(t.value for t in nxt)}
            for s, nxt in TRANSITIONS.items()}


@router.get("/units/{unit_id}", response_model=UnitView)
async def get_unit(unit_id: str, deps: UnitsDep, scope: CurrentScope) -> dict[str, Any]:
    return await service.get_unit(deps=deps, scope=scope, unit_id=unit_id)


@router.patch("/units/{unit_id}", response_model=UnitView)
async def update_unit(unit_id: str, body: UnitPatch, deps: UnitsDep, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    return await service.update_unit(deps=deps, ctx=ctx, scope=scope, unit_id=unit_id, body=body)


@router.delete("/units/{unit_id}", summary="Take a unit off the roster (kept for history)",
               response_model=UnitView)
async def deactivate_unit(unit_id: str, deps: UnitsDep, ctx: Context,
                          scope: CurrentScope) -> dict[str, Any]:
    return await service.deactivate_unit(deps=deps, ctx=ctx, scope=scope, unit_id=unit_id)


@router.get("/units/{unit_id}/route-to", response_model=UnitRoute,
            summary="The fastest road route from the unit to a point (MDT navigation)")
async def unit_route(unit_id: str, deps: UnitsDep, principal: CurrentPrincipal,
                     scope: CurrentScope,
                     lat: Annotated[float, Query(ge=-90, le=90)],
                     lon: Annotated[float, Query(ge=-180, le=180)]) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    return await service.unit_route(deps=deps, scope=scope, unit_id=unit_id, lat=lat, lon=lon,
                                    acting_unit=acting)


@router.post("/units/{unit_id}/checkin", summary="The unit is fine: reset its status timer",
             response_model=UnitView)
async def check_in(unit_id: str, deps: UnitsDep, ctx: Context, principal: CurrentPrincipal,
                   scope: CurrentScope, body: CheckIn | None = None) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    return await service.check_in(deps=deps, ctx=ctx, scope=scope, unit_id=unit_id,
                                  acting_unit=acting)


@router.get("/units/{unit_id}/status-history", summary="Append-only status log, newest first",
            response_model=list[StatusHistoryEntry])
async def status_history(unit_id: str, deps: UnitsDep, scope: CurrentScope,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return await service.status_history(deps=deps, scope=scope, unit_id=unit_id, limit=limit)


@router.get("/stations", response_model=list[StationOut],
            summary="Stations (a training agency's only when named, or for its trainees)")
async def list_stations(deps: UnitsDep, scope: CurrentScope,
                        agency: Annotated[AgencyQuery | None, Query()] = None
                        ) -> list[dict[str, Any]]:
    return await service.list_stations(deps=deps, scope=scope, agency=agency)


@router.put("/stations/{station_id}", response_model=StationOut)
async def put_station(station_id: str, body: StationIn, deps: UnitsDep, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    if body.id != station_id:
        raise Invalid("body id differs from the path", field="body.id")
    return await service.upsert_station(deps=deps, ctx=ctx, scope=scope, station=body)


@router.post("/stations/import", response_model=StationsImported,
             summary="Create or update stations from CSV (station|id, name, address, lat, lon)")
async def import_stations(deps: UnitsDep, ctx: Context, scope: CurrentScope,
                          text: Annotated[str, CSV_BODY],
                          agency: Annotated[str, Query(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
                          ) -> dict[str, Any]:
    return await service.import_stations_csv(deps=deps, ctx=ctx, scope=scope, text=text,
                                             agency=agency)
