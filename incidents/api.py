"""Incidents, incident types and zones over HTTP (see cad/security/policy.py for who may call
what). Recommendation, dispatch, plans, timers and the board: ``incidents.dispatch.api``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from cad.deps import IdempotencyKey
from cad.security import Context, CurrentScope
from incidents import service, zones
from incidents.deps import IncidentsDep
from incidents.schemas import (
    CallerData,
    CloseIn,
    IncidentCreate,
    IncidentDetail,
    IncidentPatch,
    IncidentTypeIn,
    IncidentTypeOut,
    IntakeOut,
    LinkIn,
    LinkOut,
    MergeIn,
    NarrativeIn,
    ZoneImport,
    ZoneOut,
    ZonesImported,
    ZoneWithGeometry,
)
from schemas.board import IncidentView, NarrativeEntry
from schemas.common import AgencyQuery, DbId, Latitude, Longitude

IncidentId = Annotated[DbId, Path()]

router = APIRouter(prefix="/api/v1", tags=["incidents"])


@router.post("/incidents", status_code=201, summary="Call intake: create an incident",
             response_model=IntakeOut,
             description="Flags possible duplicates (same duplicate group, within the configured "
                         "distance and time of an open incident) in `possible_duplicates`.")
async def create_incident(body: IncidentCreate, deps: IncidentsDep, ctx: Context,
                          scope: CurrentScope, response: Response,
                          idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.create_incident(deps=deps, ctx=ctx, scope=scope, body=body,
                                                 idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.get("/incidents", summary="Incidents, newest first", response_model=list[IncidentView])
async def list_incidents(deps: IncidentsDep, scope: CurrentScope, open_only: bool = True,
                         agency: Annotated[AgencyQuery | None, Query()] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await service.list_incidents(deps=deps, scope=scope, open_only=open_only,
                                        agency=agency, limit=limit)


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
async def get_incident(incident_id: IncidentId, deps: IncidentsDep, ctx: Context,
                       scope: CurrentScope) -> dict[str, Any]:
    return await service.get_incident(deps=deps, ctx=ctx, scope=scope, incident_id=incident_id)


@router.patch("/incidents/{incident_id}", summary="Change type, priority or location",
              response_model=IncidentView)
async def update_incident(incident_id: IncidentId, body: IncidentPatch, deps: IncidentsDep,
                          ctx: Context, scope: CurrentScope) -> dict[str, Any]:
    return await service.update_incident(deps=deps, ctx=ctx, scope=scope, incident_id=incident_id,
                                      body=body)


@router.get("/incidents/{incident_id}/caller", response_model=CallerData,
            summary="Caller's personal data (every read audited)")
async def get_caller(incident_id: IncidentId, deps: IncidentsDep, ctx: Context,
                     scope: CurrentScope) -> dict[str, Any]:
    return await service.get_caller(deps=deps, ctx=ctx, scope=scope, incident_id=incident_id)


@router.post("/incidents/{incident_id}/narrative", status_code=201, response_model=NarrativeEntry,
             summary="Append to the narrative")
async def add_narrative(incident_id: IncidentId, body: NarrativeIn, deps: IncidentsDep,
                        ctx: Context, scope: CurrentScope, response: Response,
                        idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.add_narrative(deps=deps, ctx=ctx, scope=scope,
        incident_id=incident_id, body=body, idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.post("/incidents/{incident_id}/close", summary="Close with a disposition code",
             response_model=IncidentView)
async def close_incident(incident_id: IncidentId, body: CloseIn, deps: IncidentsDep,
                         ctx: Context, scope: CurrentScope, response: Response,
                         idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.close_incident(deps=deps, ctx=ctx, scope=scope,
        incident_id=incident_id, body=body, idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.post("/incidents/{incident_id}/link", summary="Link two incidents (related or duplicate)",
             response_model=LinkOut)
async def link_incidents(incident_id: IncidentId, body: LinkIn, deps: IncidentsDep,
                         ctx: Context, scope: CurrentScope, response: Response,
                         idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.link_incidents(deps=deps, ctx=ctx, scope=scope,
        incident_id=incident_id, body=body, idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.post("/incidents/{incident_id}/merge", summary="Merge a duplicate into another incident",
             response_model=IncidentView)
async def merge_incident(incident_id: IncidentId, body: MergeIn, deps: IncidentsDep,
                         ctx: Context, scope: CurrentScope, response: Response,
                         idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.merge_incident(deps=deps, ctx=ctx, scope=scope,
        incident_id=incident_id, body=body, idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.get("/incident-types", response_model=list[IncidentTypeOut])
async def list_incident_types(deps: IncidentsDep) -> list[dict[str, Any]]:
    return await service.list_incident_types(deps=deps)


@router.put("/incident-types/{code}", summary="Create or change an incident type",
            response_model=IncidentTypeOut)
async def put_incident_type(code: str, body: IncidentTypeIn, deps: IncidentsDep,
                            ctx: Context) -> dict[str, Any]:
    return await service.put_incident_type(deps=deps, ctx=ctx, code=code, body=body)


# --- zones -----------------------------------------------------------------------------------
@router.post("/zones/import", summary="Import zones from a GeoJSON FeatureCollection",
             response_model=ZonesImported)
async def import_zones(body: ZoneImport, deps: IncidentsDep, ctx: Context,
                       scope: CurrentScope) -> dict[str, Any]:
    return await zones.import_zones(deps=deps, ctx=ctx, scope=scope, features=body.features,
                                    replace_kind=body.replace_kind)


@router.get("/zones", response_model=list[ZoneWithGeometry])
async def list_zones(deps: IncidentsDep, scope: CurrentScope) -> list[dict[str, Any]]:
    return await zones.list_zones(deps=deps, scope=scope)


@router.get("/zones/lookup", summary="Zones containing a point, the deciding one first",
            response_model=list[ZoneOut])
async def lookup_zone(lat: Latitude, lon: Longitude, deps: IncidentsDep,
                      scope: CurrentScope) -> list[dict[str, Any]]:
    return await zones.lookup_zones(deps=deps, scope=scope, lat=lat, lon=lon)
