"""Response plans (which unit types an incident of a type, priority and zone needs) and slot
substitutions (which unit types may fill which slots): the rules recommendations follow."""

from __future__ import annotations

from typing import Any

from cad.errors import Invalid, NotFound
from cad.uow import RequestContext, retry_transient, unit_of_work
from incidents import repository as incident_repo
from incidents.dispatch import repository as repo
from incidents.dispatch.deps import DispatchDeps
from incidents.dispatch.schemas import ResponsePlanIn, SubstitutionIn


async def list_plans(*, deps: DispatchDeps) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        return [dict(r) for r in await repo.list_plans(conn)]


@retry_transient
async def put_plan(*, deps: DispatchDeps, ctx: RequestContext, body: ResponsePlanIn) -> dict[str, Any]:
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("response_plan.upsert", details=body.model_dump())
        if body.incident_type is not None and not await incident_repo.incident_type_exists(
                uow.conn, body.incident_type):
            raise Invalid(f"unknown incident type {body.incident_type}", field="body.incident_type")
        if body.zone_id is not None and not await incident_repo.zone_exists(uow.conn, body.zone_id):
            raise Invalid(f"unknown zone {body.zone_id}", field="body.zone_id")
        row = await repo.upsert_plan(uow.conn, name=body.name, incident_type=body.incident_type,
                                     priority=body.priority, zone_id=body.zone_id,
                                     slots=[s.model_dump() for s in body.slots])
        uow.emit("response_plan.upserted", aggregate=("response_plan", row["id"]), data=dict(row))
    return dict(row)


@retry_transient
async def delete_plan(*, deps: DispatchDeps, ctx: RequestContext, plan_id: int) -> dict[str, Any]:
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("response_plan.delete", target=f"response_plan:{plan_id}")
        row = await repo.delete_plan(uow.conn, plan_id)
        if row is None:
            raise NotFound(f"response plan {plan_id} does not exist")
        uow.emit("response_plan.deleted", aggregate=("response_plan", plan_id), data={"id": plan_id})
    return dict(row)


async def list_substitutions(*, deps: DispatchDeps) -> list[dict[str, str]]:
    async with deps.pool.acquire() as conn:
        return [dict(r) for r in await repo.list_substitutions(conn)]


@retry_transient
async def add_substitution(*, deps: DispatchDeps, ctx: RequestContext,
                           body: SubstitutionIn) -> dict[str, str]:
    if body.slot_type == body.unit_type:
        raise Invalid("a unit type always fills its own slots", field="body.unit_type")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("substitution.add", details=body.model_dump())
        await repo.add_substitution(uow.conn, slot_type=body.slot_type, unit_type=body.unit_type)
        uow.emit("substitution.added", aggregate=("substitution", body.slot_type),
                 data=body.model_dump())
    return body.model_dump()
