"""Incidents, recommendation, dispatch, zones, response plans, timers and the board over HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from cad.deps import IdempotencyKey, ServicesDep
from cad.errors import Invalid, NotFound
from cad.security import Context, CurrentPrincipal
from incidents import dispatch, recommend, service, timers, zones
from incidents.board import board_snapshot
from incidents.schemas import (
    CloseIn,
    DispatchIn,
    IncidentCreate,
    IncidentPatch,
    IncidentTypeIn,
    LinkIn,
    MergeIn,
    NarrativeIn,
    ResponsePlanIn,
    SubstitutionIn,
    ZoneImport,
)
from schemas.common import AgencyQuery, DbId, Latitude, Longitude

IncidentId = Annotated[DbId, Path()]

router = APIRouter(prefix="/api/v1", tags=["incidents"])


@router.post("/incidents", status_code=201, summary="Call intake: create an incident",
             description="Flags possible duplicates (same duplicate group, within the configured "
                         "distance and time of an open incident) in `possible_duplicates`.")
async def create_incident(body: IncidentCreate, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await service.create_incident(services, ctx, body)


@router.get("/incidents", summary="Incidents, newest first")
async def list_incidents(services: ServicesDep, open_only: bool = True, agency: Annotated[AgencyQuery | None, Query()] = None,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await service.list_incidents(services, open_only=open_only, agency=agency, limit=limit)


@router.get("/incidents/{incident_id}")
async def get_incident(incident_id: IncidentId, services: ServicesDep) -> dict[str, Any]:
    return await service.get_incident(services, incident_id)


@router.patch("/incidents/{incident_id}", summary="Change type, priority or location")
async def update_incident(incident_id: IncidentId, body: IncidentPatch, services: ServicesDep,
                          ctx: Context) -> dict[str, Any]:
    return await service.update_incident(services, ctx, incident_id, body)


@router.get("/incidents/{incident_id}/caller", summary="Caller's personal data (every read audited)")
async def get_caller(incident_id: IncidentId, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await service.get_caller(services, ctx, incident_id)


@router.post("/incidents/{incident_id}/narrative", status_code=201, summary="Append to the narrative")
async def add_narrative(incident_id: IncidentId, body: NarrativeIn, services: ServicesDep,
                        ctx: Context) -> dict[str, Any]:
    return await service.add_narrative(services, ctx, incident_id, body)


@router.post("/incidents/{incident_id}/recommendation", status_code=201,
             summary="Recommend units to fill the response plan, nearest by road ETA")
async def make_recommendation(incident_id: IncidentId, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await recommend.recommend(services, ctx, incident_id)


@router.post("/incidents/{incident_id}/dispatch", summary="Assign units (atomic; only available units)",
             responses={409: {"description": "A unit is no longer available; the body has its state"}})
async def dispatch_units(incident_id: IncidentId, body: DispatchIn, services: ServicesDep, ctx: Context,
                         response: Response, idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await dispatch.dispatch_units(services, ctx, incident_id, body,
                                                 idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.post("/incidents/{incident_id}/close", summary="Close with a disposition code")
async def close_incident(incident_id: IncidentId, body: CloseIn, services: ServicesDep,
                         ctx: Context) -> dict[str, Any]:
    return await service.close_incident(services, ctx, incident_id, body)


@router.post("/incidents/{incident_id}/link", summary="Link two incidents (related or duplicate)")
async def link_incidents(incident_id: IncidentId, body: LinkIn, services: ServicesDep,
                         ctx: Context) -> dict[str, Any]:
    return await service.link_incidents(services, ctx, incident_id, body)


@router.post("/incidents/{incident_id}/merge", summary="Merge a duplicate into another incident")
async def merge_incident(incident_id: IncidentId, body: MergeIn, services: ServicesDep,
                         ctx: Context) -> dict[str, Any]:
    return await service.merge_incident(services, ctx, incident_id, body)


@router.get("/incident-types")
async def list_incident_types(services: ServicesDep) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM incident_types ORDER BY code")]


@router.put("/incident-types/{code}", summary="Create or change an incident type")
async def put_incident_type(code: str, body: IncidentTypeIn, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    import re

    from cad.uow import unit_of_work

    if not re.fullmatch(r"[A-Z][A-Z0-9_-]{0,15}", code):
        raise Invalid("incident type codes are 1-16 capitals, digits, _ or -", field="path.code")
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("incident_type.upsert", target=f"incident_type:{code}")
        row = await uow.conn.fetchrow(
            "INSERT INTO incident_types (code, description, apco_type, discipline, default_priority, "
            "duplicate_group) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (code) DO UPDATE SET "
            "description = EXCLUDED.description, apco_type = EXCLUDED.apco_type, "
            "discipline = EXCLUDED.discipline, default_priority = EXCLUDED.default_priority, "
            "duplicate_group = EXCLUDED.duplicate_group RETURNING *",
            code, body.description, body.apco_type, body.discipline, body.default_priority,
            body.duplicate_group)
        uow.emit("incident_type.upserted", aggregate=("incident_type", code), data=dict(row))
    return dict(row)


# --- zones -----------------------------------------------------------------------------------
@router.post("/zones/import", summary="Import zones from a GeoJSON FeatureCollection")
async def import_zones(body: ZoneImport, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    return await zones.import_zones(services.pool, ctx, body.features, replace_kind=body.replace_kind)


@router.get("/zones")
async def list_zones(services: ServicesDep) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        return await zones.list_zones(conn)


@router.get("/zones/lookup", summary="Zones containing a point, the deciding one first")
async def lookup_zone(lat: Latitude, lon: Longitude, services: ServicesDep) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        return await zones.zones_at(conn, lat, lon)


# --- response plans --------------------------------------------------------------------------
@router.get("/response-plans")
async def list_plans(services: ServicesDep) -> list[dict[str, Any]]:
    async with services.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM response_plans ORDER BY id")]


@router.post("/response-plans", status_code=201, summary="Create or replace the plan for a "
             "(type, priority, zone) combination")
async def put_plan(body: ResponsePlanIn, services: ServicesDep, ctx: Context) -> dict[str, Any]:
    from cad.uow import unit_of_work

    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("response_plan.upsert", details=body.model_dump())
        if body.incident_type is not None and not await uow.conn.fetchval(
                "SELECT 1 FROM incident_types WHERE code = $1", body.incident_type):
            raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
        if body.zone_id is not None and not await uow.conn.fetchval(
                "SELECT 1 FROM zones WHERE id = $1", body.zone_id):
            raise Invalid(f"unknown zone {body.zone_id}", field="body.zone_id")
        row = await uow.conn.fetchrow(
            "INSERT INTO response_plans (name, incident_type, priority, zone_id, slots) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_type, priority, zone_id) "
            "DO UPDATE SET name = EXCLUDED.name, slots = EXCLUDED.slots RETURNING *",
            body.name, body.incident_type, body.priority, body.zone_id,
            [s.model_dump() for s in body.slots])
        uow.emit("response_plan.upserted", aggregate=("response_plan", row["id"]), data=dict(row))
    return dict(row)


@router.delete("/response-plans/{plan_id}")
async def delete_plan(plan_id: Annotated[DbId, Path()], services: ServicesDep, ctx: Context) -> dict[str, Any]:
    from cad.uow import unit_of_work

    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("response_plan.delete", target=f"response_plan:{plan_id}")
        await uow.conn.execute("UPDATE recommendations SET plan_id = NULL WHERE plan_id = $1", plan_id)
        row = await uow.conn.fetchrow("DELETE FROM response_plans WHERE id = $1 RETURNING *", plan_id)
        if row is None:
            raise NotFound(f"response plan {plan_id} does not exist")
        uow.emit("response_plan.deleted", aggregate=("response_plan", plan_id), data={"id": plan_id})
    return dict(row)


@router.get("/substitutions", summary="Which unit types may fill which slots")
async def list_substitutions(services: ServicesDep) -> list[dict[str, str]]:
    async with services.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM slot_substitutions ORDER BY 1, 2")]


@router.post("/substitutions", status_code=201)
async def add_substitution(body: SubstitutionIn, services: ServicesDep, ctx: Context) -> dict[str, str]:
    from cad.uow import unit_of_work

    if body.slot_type == body.unit_type:
        raise Invalid("a unit type always fills its own slots", field="body.unit_type")
    async with unit_of_work(services.pool, ctx) as uow:
        uow.audit("substitution.add", details=body.model_dump())
        await uow.conn.execute("INSERT INTO slot_substitutions VALUES ($1, $2) ON CONFLICT DO NOTHING",
                               body.slot_type, body.unit_type)
        uow.emit("substitution.added", aggregate=("substitution", body.slot_type), data=body.model_dump())
    return body.model_dump()


# --- supervisor views ------------------------------------------------------------------------
@router.get("/timers", summary="What is overdue now: pending incidents and unit status timers")
async def get_timers(services: ServicesDep) -> dict[str, Any]:
    return await timers.overdue(services)


@router.get("/board", summary="Board snapshot (open incidents, active units) with its event position")
async def get_board(services: ServicesDep, principal: CurrentPrincipal,
                    agency: Annotated[list[AgencyQuery] | None, Query(max_length=50)] = None) -> dict[str, Any]:
    async with services.pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                  readonly=True):
        last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
        snap = await board_snapshot(conn, agencies=agency)
    return {"last_event_id": last, **snap}
