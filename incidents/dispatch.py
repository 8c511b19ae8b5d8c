"""Dispatch: assign units to an incident atomically, only while they are still available."""

from __future__ import annotations

from typing import Any

from cad import idempotency
from cad.errors import Conflict, Invalid, NotFound
from cad.services import Services
from cad.uow import RequestContext, unit_of_work
from incidents.board import load_incident_view, unit_view
from incidents.progress import assigned_unit_ids, derive_incident_status
from incidents.schemas import DispatchIn
from units import repository as unit_repo
from units.service import _refresh_after_commit
from units.status import AVAILABLE, UnitStatus

_AVAILABLE = [s.value for s in AVAILABLE]


async def dispatch_units(services: Services, ctx: RequestContext, incident_id: int, body: DispatchIn,
                         *, idempotency_key: str | None = None) -> tuple[int, dict[str, Any]]:
    scope = f"incident.dispatch:{ctx.actor}:{incident_id}"
    req_hash = idempotency.request_hash(body.model_dump(mode="json"))
    unit_ids = sorted(body.unit_ids)
    async with unit_of_work(services.pool, ctx) as uow:
        conn = uow.conn
        uow.audit("incident.dispatch", target=f"incident:{incident_id}", details={"units": unit_ids})
        if idempotency_key is not None:
            stored = await idempotency.claim(conn, scope=scope, key=idempotency_key, req_hash=req_hash)
            if stored is not None:
                return stored.status_code, stored.body
        # Lock order everywhere: incident, then units by id. Two dispatchers racing for a
        # unit queue on its row; the loser re-reads it as dispatched and gets 409.
        inc = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        if inc is None:
            raise NotFound(f"incident {incident_id} does not exist")
        if inc["status"] == "closed":
            raise Conflict(f"incident {incident_id} is closed")
        locked = await conn.fetch("SELECT * FROM units WHERE id = ANY($1) ORDER BY id FOR UPDATE", unit_ids)
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
            rec = await conn.fetchrow(
                "SELECT * FROM recommendations WHERE id = $1 AND incident_id = $2 FOR UPDATE",
                body.recommendation_id, incident_id)
            if rec is None:
                raise Invalid(f"recommendation {body.recommendation_id} is not for incident {incident_id}",
                              field="body.recommendation_id")
            recommended = {p["unit_id"] for p in rec["picks"]}
            rec_outcome = "accepted" if set(unit_ids) == recommended else "overridden"
            if rec_outcome == "overridden" and not body.override_reason:
                raise Invalid("dispatching other units than recommended needs an override_reason "
                              f"(recommended: {', '.join(sorted(recommended)) or 'none'})",
                              field="body.override_reason")
            if rec["outcome"] is None:
                await conn.execute(
                    "UPDATE recommendations SET outcome = $2, outcome_reason = $3, outcome_at = clock_timestamp(), "
                    "outcome_by = $4, dispatched_units = $5 WHERE id = $1",
                    rec["id"], rec_outcome, body.override_reason, ctx.actor, unit_ids)

        rows = await conn.fetch(
            "UPDATE units SET status = 'dispatched', status_changed_at = clock_timestamp(), "
            "last_checkin_at = NULL, current_incident = $2, version = version + 1 "
            "WHERE id = ANY($1) AND active AND status = ANY($3) RETURNING *",
            unit_ids, incident_id, _AVAILABLE)
        assert len(rows) == len(unit_ids)  # rows are locked and were checked above
        at = max(r["status_changed_at"] for r in rows)
        for r in rows:
            await conn.execute(
                "INSERT INTO incident_units (incident_id, unit_id, status, dispatched_at, recommendation_id) "
                "VALUES ($1, $2, 'dispatched', $3, $4)", incident_id, r["id"], r["status_changed_at"],
                body.recommendation_id)
            await unit_repo.log_status(conn, unit_id=r["id"], from_status=found[r["id"]]["status"],
                                       to_status="dispatched", at=r["status_changed_at"], reported_at=None,
                                       incident_id=incident_id, actor=ctx.actor, source="console",
                                       client_addr=ctx.client_addr, request_id=ctx.request_id)
        await conn.execute(
            "UPDATE incidents SET first_dispatched_at = coalesce(first_dispatched_at, $2) WHERE id = $1",
            incident_id, min(r["status_changed_at"] for r in rows))
        await derive_incident_status(conn, incident_id, at=at)
        view = await load_incident_view(conn, incident_id)
        assert view is not None
        units_after = [unit_view(r) for r in sorted(rows, key=lambda r: r["id"])]
        result = {"incident": view, "dispatched": unit_ids, "units": units_after,
                  "recommendation_id": body.recommendation_id, "recommendation_outcome": rec_outcome}
        uow.emit("incident.units_dispatched", aggregate=("incident", incident_id), agency=inc["agency"],
                 data={"incident": view, "units_after": units_after, "dispatched": unit_ids,
                       "unit_ids": await assigned_unit_ids(conn, incident_id),
                       "recommendation_id": body.recommendation_id,
                       "recommendation_outcome": rec_outcome,
                       "override_reason": body.override_reason})
        if idempotency_key is not None:
            await idempotency.record(conn, scope=scope, key=idempotency_key, status_code=200, body=result)
        _refresh_after_commit(uow, services.pool, services.locator, unit_ids)
    return 200, result
