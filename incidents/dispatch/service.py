"""The two actions that bind units to incidents: dispatch (assign available units, atomically)
and unit status changes (which move the unit's assignment and the incident along).

Lock order everywhere (docs/architecture.md): incidents by id, then units by id. Two
dispatchers racing for a unit queue on its row; the loser re-reads it as dispatched and gets
409."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from cad import idempotency
from cad.errors import Conflict, Forbidden, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, retry_transient, unit_of_work
from incidents import repository as incident_repo
from incidents import service as incidents
from incidents.dispatch import repository as repo
from incidents.dispatch.deps import DispatchDeps
from incidents.dispatch.schemas import DispatchIn
from incidents.views import load_incident_view
from units import repository as unit_repo
from units.schemas import StatusChange
from units.status import (
    ASSIGNMENT_COLUMN,
    AVAILABLE,
    UnitStatus,
    allowed_next,
    can_transition,
    clears_assignment,
)
from units.views import unit_view

_AVAILABLE = [s.value for s in AVAILABLE]
# The incident's first-time column a unit status sets (the first unit to report it wins).
_FIRST = {UnitStatus.EN_ROUTE: "first_en_route_at", UnitStatus.ON_SCENE: "first_on_scene_at"}


@retry_transient
async def dispatch_units(*, deps: DispatchDeps, ctx: RequestContext, scope: Scope,
                         incident_id: int, body: DispatchIn, idempotency_key: str | None = None
                         ) -> tuple[int, dict[str, Any]]:
    """Assign units to an incident, only while they are still available. Returns (HTTP
    status, body). The incident must be in ``scope``; its units of its own agency, or of an
    agency the caller may call on for mutual aid (``scope.unit_agencies_for``): those are
    flagged on the assignment, in the event and in the audit record. Any other unit is
    unknown (422), as if it did not exist."""
    key_scope = f"incident.dispatch:{ctx.actor}:{incident_id}"
    req_hash = idempotency.request_hash(body.model_dump(mode="json"))
    unit_ids = sorted(body.unit_ids)
    async with unit_of_work(deps.pool, ctx) as uow:
        conn = uow.conn
        record = uow.audit("incident.dispatch", target=f"incident:{incident_id}",
                           details={"units": unit_ids})
        if idempotency_key is not None:
            stored = await idempotency.claim(conn, scope=key_scope, key=idempotency_key,
                                             req_hash=req_hash)
            if stored is not None:
                return stored.status_code, stored.body
        inc = await incidents.lock_incident(conn, incident_id=incident_id, scope=scope)
        if inc["status"] == "closed":
            raise Conflict(f"incident {incident_id} is closed")
        locked = await unit_repo.lock_units(
            conn, unit_ids, agencies=sorted(scope.unit_agencies_for(inc["agency"])))
        found = {r["id"]: r for r in locked}
        unknown = [u for u in unit_ids if u not in found]
        if unknown:
            raise Invalid(f"unknown unit(s): {', '.join(unknown)}", field="body.unit_ids")
        busy = [r for r in locked if not r["active"] or UnitStatus(r["status"]) not in AVAILABLE]
        if busy:
            raise Conflict(
                "not available: " + ", ".join(
                    f"{r['id']} ({r['status']}" + (f" on incident {r['current_incident']})"
                                                  if r["current_incident"] else ")") for r in busy),
                extra={"unavailable": [unit_view(r) for r in busy]})

        rec_outcome = None
        if body.recommendation_id is not None:
            rec = await repo.lock_recommendation(conn, recommendation_id=body.recommendation_id,
                                                 incident_id=incident_id)
            if rec is None:
                raise Invalid(f"recommendation {body.recommendation_id} is not for incident "
                              f"{incident_id}", field="body.recommendation_id")
            recommended = {p["unit_id"] for p in rec["picks"]}
            rec_outcome = "accepted" if set(unit_ids) == recommended else "overridden"
            if rec_outcome == "overridden" and not body.override_reason:
                raise Invalid("dispatching other units than recommended needs an override_reason "
                              f"(recommended: {', '.join(sorted(recommended)) or 'none'})",
                              field="body.override_reason")
            if rec["outcome"] is None:
                await repo.record_outcome(conn, recommendation_id=rec["id"], outcome=rec_outcome,
                                          reason=body.override_reason, by=ctx.actor,
                                          unit_ids=unit_ids)

        mutual_aid = sorted(r["id"] for r in locked if r["agency"] != inc["agency"])
        if mutual_aid:
            record.details["mutual_aid"] = {u: found[u]["agency"] for u in mutual_aid}
        rows = await unit_repo.mark_dispatched(conn, unit_ids, incident_id=incident_id,
                                               from_statuses=_AVAILABLE)
        assert len(rows) == len(unit_ids)  # rows are locked and were checked above
        at = max(r["status_changed_at"] for r in rows)
        for r in rows:
            await incident_repo.insert_assignment(
                conn, incident_id=incident_id, unit_id=r["id"], dispatched_at=r["status_changed_at"],
                recommendation_id=body.recommendation_id, mutual_aid=r["id"] in mutual_aid)
            await unit_repo.log_status(conn, unit_id=r["id"], from_status=found[r["id"]]["status"],
                                       to_status="dispatched", at=r["status_changed_at"],
                                       reported_at=None, incident_id=incident_id, actor=ctx.actor,
                                       source="console", client_addr=ctx.client_addr,
                                       request_id=ctx.request_id)
        await incident_repo.set_first_dispatched(conn, incident_id,
                                                 min(r["status_changed_at"] for r in rows))
        await incidents.derive_status(conn, incident_id=incident_id, at=at)
        view = await load_incident_view(conn, incident_id)
        assert view is not None
        units_after = [unit_view(r) for r in sorted(rows, key=lambda r: r["id"])]
        result = {"incident": view, "dispatched": unit_ids, "units": units_after,
                  "recommendation_id": body.recommendation_id,
                  "recommendation_outcome": rec_outcome, "mutual_aid": mutual_aid}
        uow.emit("incident.units_dispatched", aggregate=("incident", incident_id), agency=inc["agency"],
                 data={"incident": view, "units_after": units_after, "dispatched": unit_ids,
                       "unit_ids": await incident_repo.assigned_unit_ids(conn, incident_id),
                       "recommendation_id": body.recommendation_id,
                       "recommendation_outcome": rec_outcome,
                       "override_reason": body.override_reason, "mutual_aid": mutual_aid})
        if idempotency_key is not None:
            await idempotency.record(conn, scope=key_scope, key=idempotency_key, status_code=200,
                                     body=result)
        deps.locator.refresh_after_commit(uow, unit_ids)
    return 200, result


@retry_transient
async def change_unit_status(*, deps: DispatchDeps, ctx: RequestContext, scope: Scope,
                             unit_id: str, body: StatusChange, idempotency_key: str | None = None,
                             acting_unit: str | None = None) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body). ``acting_unit``: the caller is an MDT bound to this unit.
    A console changes the status of its agencies' units, and of any unit on one of its
    agencies' incidents (mutual aid); any other unit is not found."""
    if acting_unit is not None and acting_unit != unit_id:
        raise Forbidden(f"this device is bound to unit {acting_unit}, not {unit_id}")
    deps.plausible.check_time(body.reported_at, field="body.reported_at")
    new = body.status
    if new is UnitStatus.DISPATCHED:
        raise Conflict("units become dispatched only through POST /api/v1/incidents/{id}/dispatch",
                       extra={"allowed_next": []})
    source = body.source or ("mdt" if ctx.source == "mdt" else "console")
    key_scope = f"unit.status:{ctx.actor}:{unit_id}"
    req_hash = idempotency.request_hash(body.model_dump(mode="json"))
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("unit.status.change", target=f"unit:{unit_id}", details={"to": new.value})
        if idempotency_key is not None:
            stored = await idempotency.claim(uow.conn, scope=key_scope, key=idempotency_key,
                                             req_hash=req_hash)
            if stored is not None:
                return stored.status_code, stored.body
        unit = await _lock_unit_and_incident(uow.conn, unit_id, scope=scope,
                                             own_unit=acting_unit is not None)
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
        row = await unit_repo.set_status(uow.conn, unit_id, status=new.value,
                                         current_incident=None if clears else incident_id)
        at = row["status_changed_at"]
        await unit_repo.log_status(uow.conn, unit_id=unit_id, from_status=current.value,
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
            progress = await record_unit_progress(uow.conn, incident_id=incident_id,
                                                  unit_id=unit_id, new_status=new, clears=clears,
                                                  at=at)
            incident = await load_incident_view(uow.conn, incident_id)
            assert incident is not None
            result["incident_can_close"] = progress["all_cleared"]
            result["incident_status"] = incident["status"]
            uow.emit("incident.unit_status_changed", aggregate=("incident", incident_id),
                     agency=incident["agency"], data={
                         "incident": incident, "unit_id": unit_id, "to": new.value,
                         "unit_ids": await incident_repo.assigned_unit_ids(uow.conn, incident_id),
                         "all_units_cleared": progress["all_cleared"]})
        if idempotency_key is not None:
            await idempotency.record(uow.conn, scope=key_scope, key=idempotency_key,
                                     status_code=200, body=result)
        deps.locator.refresh_after_commit(uow, [unit_id])
    return 200, result


async def record_unit_progress(conn: asyncpg.Connection, *, incident_id: int, unit_id: str,
                               new_status: UnitStatus, clears: bool,
                               at: datetime) -> dict[str, Any]:
    """Update the unit's assignment row and the incident's derived status. Returns
    {"incident_status": ..., "all_cleared": bool}."""
    if clears:
        await incident_repo.clear_assignment(conn, incident_id=incident_id, unit_id=unit_id, at=at)
    else:
        await incident_repo.advance_assignment(
            conn, incident_id=incident_id, unit_id=unit_id, status=new_status.value, at=at,
            time_column=ASSIGNMENT_COLUMN.get(new_status), first_column=_FIRST.get(new_status))
    return await incidents.derive_status(conn, incident_id=incident_id, at=at)


class _MovedOn(Exception):
    """The unit changed incident between the peek and its lock."""


async def _lock_unit_and_incident(conn: asyncpg.Connection, unit_id: str, *, scope: Scope,
                                  own_unit: bool) -> asyncpg.Record:
    """Lock the unit's incident, then the unit: the global order, so this and dispatch never
    deadlock. When the unit changed incident in between, the attempt's savepoint is rolled
    back, which releases both locks (PostgreSQL releases locks taken after a savepoint when it
    is rolled back to), and the next attempt starts holding nothing: keeping the unit's lock
    while waiting for its new incident is the cycle a concurrent dispatch closes."""
    for _ in range(5):
        try:
            async with conn.transaction():  # a savepoint inside the action's transaction
                peek = await unit_repo.get_unit(conn, unit_id, scope=Scope.ALL)
                if peek is None:
                    raise NotFound(f"unit {unit_id} does not exist")
                incident = None
                if peek["current_incident"] is not None:
                    incident = await incident_repo.lock_incident(
                        conn, peek["current_incident"], scope=Scope.ALL)
                # Visible: the MDT's own unit, a unit of the caller's agencies, or one on an
                # incident of the caller's agencies (mutual aid it brought in).
                if not (own_unit or scope.covers(peek["agency"])
                        or (incident is not None and scope.covers(incident["agency"]))):
                    raise NotFound(f"unit {unit_id} does not exist")
                unit = await unit_repo.get_unit(conn, unit_id, scope=Scope.ALL, for_update=True)
                assert unit is not None
                if unit["current_incident"] != peek["current_incident"]:
                    raise _MovedOn
                return unit
        except _MovedOn:
            continue
    raise Conflict(f"unit {unit_id} is changing too fast; retry")
