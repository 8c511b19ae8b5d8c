"""Dispatch over HTTP: recommendation, dispatch, unit status changes, response plans and
substitutions, timers and the board (see cad/security/policy.py for who may call what)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response

from cad.deps import IdempotencyKey
from cad.security import Context, CurrentPrincipal, CurrentScope
from incidents.dispatch import coverage, overrides, plans, recommend, routes, service, timers
from incidents.dispatch.board import board_at_head
from incidents.dispatch.deps import DispatchDep
from incidents.dispatch.schemas import (
    BoardOut,
    CoverageOut,
    DispatchIn,
    DispatchOut,
    OverriddenRecommendation,
    RecommendationOut,
    ResponsePlanIn,
    ResponsePlanOut,
    StatusChangeOut,
    SubstitutionIn,
    SubstitutionOut,
    TimersOut,
    UnitRouteOut,
    UnitTypeCode,
)
from schemas.common import AgencyQuery, DbId
from units.schemas import StatusChange

IncidentId = Annotated[DbId, Path()]

router = APIRouter(prefix="/api/v1", tags=["dispatch"])


@router.post("/incidents/{incident_id}/recommendation", status_code=201,
             summary="Recommend units to fill the response plan, nearest by road ETA",
             response_model=RecommendationOut)
async def make_recommendation(incident_id: IncidentId, deps: DispatchDep,
                              ctx: Context, scope: CurrentScope) -> dict[str, Any]:
    return await recommend.recommend(deps=deps, ctx=ctx, scope=scope, incident_id=incident_id)


@router.post("/incidents/{incident_id}/dispatch", response_model=DispatchOut,
             summary="Assign units (atomic; only available units)",
             responses={409: {"description": "A unit is no longer available; the body has its state"}})
async def dispatch_units(incident_id: IncidentId, body: DispatchIn, deps: DispatchDep,
                         ctx: Context, scope: CurrentScope, response: Response,
                         idempotency_key: IdempotencyKey) -> dict[str, Any]:
    code, result = await service.dispatch_units(deps=deps, ctx=ctx, scope=scope,
                                                incident_id=incident_id, body=body,
                                                idempotency_key=idempotency_key)
    response.status_code = code
    return result


@router.post("/units/{unit_id}/status", summary="Report a status change (console or MDT)",
             tags=["units"], response_model=StatusChangeOut, response_model_exclude_unset=True,
             responses={409: {"description": "Not allowed from the current status; the body "
                                             "lists allowed_next"}})
async def change_status(unit_id: str, body: StatusChange, deps: DispatchDep, ctx: Context,
                        principal: CurrentPrincipal, scope: CurrentScope, response: Response,
                        idempotency_key: IdempotencyKey) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    code, result = await service.change_unit_status(
        deps=deps, ctx=ctx, scope=scope, unit_id=unit_id, body=body,
        idempotency_key=idempotency_key, acting_unit=acting)
    response.status_code = code
    return result


@router.get("/units/{unit_id}/route", tags=["units"], response_model=UnitRouteOut,
            summary="A unit's road route to an incident (default: its current one)",
            responses={409: {"description": "No incident given or assigned, no road graph, or no "
                                            "road route"}})
async def get_unit_route(unit_id: str, deps: DispatchDep, principal: CurrentPrincipal,
                         scope: CurrentScope,
                         incident_id: Annotated[DbId | None, Query()] = None) -> dict[str, Any]:
    acting = principal.unit_id if principal.role == "field_unit" else None
    return await routes.unit_route(deps=deps, scope=scope, unit_id=unit_id, incident_id=incident_id,
                                   acting_unit=acting)


# --- response plans ----------------------------------------------------------------------------
@router.get("/response-plans", response_model=list[ResponsePlanOut])
async def list_plans(deps: DispatchDep) -> list[dict[str, Any]]:
    return await plans.list_plans(deps=deps)


@router.post("/response-plans", status_code=201, response_model=ResponsePlanOut,
             summary="Create or replace the plan for a (type, priority, zone) combination")
async def put_plan(body: ResponsePlanIn, deps: DispatchDep, ctx: Context) -> dict[str, Any]:
    return await plans.put_plan(deps=deps, ctx=ctx, body=body)


@router.delete("/response-plans/{plan_id}", response_model=ResponsePlanOut)
async def delete_plan(plan_id: Annotated[DbId, Path()], deps: DispatchDep,
                      ctx: Context) -> dict[str, Any]:
    return await plans.delete_plan(deps=deps, ctx=ctx, plan_id=plan_id)


@router.get("/substitutions", summary="Which unit types may fill which slots",
            response_model=list[SubstitutionOut])
async def list_substitutions(deps: DispatchDep) -> list[dict[str, str]]:
    return await plans.list_substitutions(deps=deps)


@router.post("/substitutions", status_code=201, response_model=SubstitutionOut)
async def add_substitution(body: SubstitutionIn, deps: DispatchDep, ctx: Context) -> dict[str, str]:
    return await plans.add_substitution(deps=deps, ctx=ctx, body=body)


# --- supervisor views ------------------------------------------------------------------------
@router.get("/timers", summary="What is overdue now: pending incidents and unit status timers",
            response_model=TimersOut)
async def get_timers(deps: DispatchDep, scope: CurrentScope) -> dict[str, Any]:
    return await timers.overdue(deps=deps, scope=scope)


@router.get("/recommendations/overridden", response_model=list[OverriddenRecommendation],
            summary="Recommendations the dispatcher overrode, with the reasons, newest first")
async def list_overridden(deps: DispatchDep, scope: CurrentScope,
                          limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    return await overrides.overridden(deps=deps, scope=scope, limit=limit)


@router.get("/board", response_model=BoardOut,
            summary="Board snapshot (open incidents, active units) with its event position")
async def get_board(deps: DispatchDep, scope: CurrentScope,
                    agency: Annotated[list[AgencyQuery] | None, Query(max_length=50)] = None
                    ) -> dict[str, Any]:
    """The caller's agencies (``agency`` narrows them; it never widens them). Training
    agencies the caller does not act for alone are left out unless named."""
    return await board_at_head(deps.pool, agencies=scope.narrowed(agency),
                               hidden=frozenset(scope.hidden_for(agency)))


@router.get("/coverage", response_model=CoverageOut,
            summary="Coverage now: the road travel time from the nearest available unit to every "
                    "demand cell of the area, and the share covered within a threshold",
            responses={409: {"description": "No road graph is loaded"}})
async def get_coverage(
        deps: DispatchDep, scope: CurrentScope,
        agency: Annotated[list[AgencyQuery] | None, Query(max_length=50, description=(
            "Narrows the caller's agencies (never widens them); another agency is 403."))] = None,
        unit_type: Annotated[list[UnitTypeCode] | None, Query(max_length=10, description=(
            "Unit types counted together (a substitute with its slot type); none: any type."))] = None,
        threshold_s: Annotated[float | None, Query(gt=0, le=7200, description=(
            "Covered within this; default: the type's own (engine 240 s) or 480 s."))] = None,
        nth: Annotated[int, Query(ge=1, le=coverage.MAX_NTH, description=(
            "Covered by the n-th nearest unit: 1 first due, more for depth (a full first alarm)."
        ))] = 1,
        without: Annotated[str | None, Query(max_length=1700, description=(
            "What-if: comma-separated unit ids treated as committed, e.g. E07,M89."))] = None,
        resolution: Annotated[int | None, Query(ge=6, le=10, description=(
            "H3 resolution of the demand cells (default CAD_COVERAGE_RESOLUTION)."))] = None,
) -> Response:
    query = coverage.CoverageQuery(
        agencies=agency, unit_types=sorted(set(unit_type or [])), threshold_s=threshold_s, nth=nth,
        without=coverage.parse_without(without),
        resolution=resolution or deps.settings.coverage_resolution)
    result = await coverage.coverage(deps=deps, scope=scope, query=query)
    # Serialised here, not through the response model: validating thousands of cells took ten
    # times as long as writing them (the shape is checked against CoverageOut by the tests).
    return Response(orjson.dumps(result), media_type="application/json")
