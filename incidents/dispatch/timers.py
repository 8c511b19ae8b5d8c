"""Overdue timers: pending incidents by priority, units too long in a status without a
check-in. Crossing a threshold emits exactly one event, whichever worker sweeps first."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import structlog

from cad.security.scope import Scope
from cad.uow import RequestContext, unit_of_work
from incidents import repository as incident_repo
from incidents.dispatch import repository as repo
from incidents.dispatch.deps import DispatchDeps
from incidents.views import load_incident_view
from units import repository as unit_repo
from units.views import unit_view

log = structlog.get_logger("incidents.dispatch.timers")
SYSTEM = RequestContext.system("timers")


async def overdue(*, deps: DispatchDeps, scope: Scope) -> dict[str, list[dict[str, Any]]]:
    """What is overdue now (for the supervisor's board: its agencies), without emitting
    anything. The thresholds go into the query: only overdue rows come back, however long
    the queue."""
    s = deps.settings
    async with deps.pool.acquire() as conn:
        pend = await incident_repo.pending_overdue(conn, thresholds_s=s.pending_thresholds_s,
                                                   agencies=scope.agency_list)
        units = await unit_repo.overdue_units(conn, thresholds_s=s.unit_status_thresholds_s,
                                              agencies=scope.agency_list)
    out_p = [{"incident_id": r["id"], "number": r["number"], "agency": r["agency"],
              "priority": r["priority"], "age_s": round(float(r["age_s"]), 1),
              "threshold_s": r["threshold_s"]} for r in pend]
    out_u = [{"unit_id": r["id"], "agency": r["agency"], "status": r["status"],
              "incident_id": r["current_incident"], "age_s": round(float(r["age_s"]), 1),
              "threshold_s": r["threshold_s"]} for r in units]
    return {"pending_incidents": out_p, "units": out_u}


# What evaluating one timer row can raise because of the row itself: a timestamp no
# arithmetic survives (DataError), one Python cannot hold (a BC date: OverflowError), one that
# round-trips to -infinity and is refused by a constraint (year 1 is datetime.min, which the
# driver sends as -infinity). That row is skipped, never the sweep. Anything else (the
# database gone, the pool closing) ends this sweep as before.
ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ArithmeticError,
              ValueError, TypeError)


def _unevaluable(deps: DispatchDeps, subject: str, reason: str) -> None:
    """Log a timer row that cannot be evaluated, once per subject and worker."""
    if subject not in deps.unevaluable_timers:
        deps.unevaluable_timers.add(subject)
        log.error("timer_row_unevaluable", subject=subject, reason=reason)


async def sweep(*, deps: DispatchDeps) -> int:
    """Emit one event per newly crossed threshold. Returns how many fired. A row that cannot
    be evaluated is logged once with its id and skipped; every other timer still fires."""
    fired = 0
    async with deps.pool.acquire() as conn:
        for iid in await incident_repo.pending_unevaluable(conn):
            _unevaluable(deps, f"incident:{iid}", "received_at is not a finite time")
        for uid in await unit_repo.unevaluable_units(conn):
            _unevaluable(deps, f"unit:{uid}", "status_changed_at or last_checkin_at is not a "
                                              "finite time")
    now_overdue = await overdue(deps=deps, scope=Scope.ALL)
    for p in now_overdue["pending_incidents"]:
        try:
            fired += await _fire_pending(deps, p)
        except ROW_ERRORS as exc:
            _unevaluable(deps, f"incident:{p['incident_id']}", f"{type(exc).__name__}: {exc}")
    for u in now_overdue["units"]:
        try:
            fired += await _fire_unit(deps, u)
        except ROW_ERRORS as exc:
            _unevaluable(deps, f"unit:{u['unit_id']}", f"{type(exc).__name__}: {exc}")
    return fired


async def _fire_pending(deps: DispatchDeps, p: dict[str, Any]) -> int:
    async with unit_of_work(deps.pool, SYSTEM) as uow:
        row = await incident_repo.lock_incident(uow.conn, p["incident_id"], scope=Scope.ALL)
        if row is None or row["status"] != "pending":
            return 0
        new = await repo.claim_alert(uow.conn, kind="pending_overdue",
                                     subject=str(p["incident_id"]), since=row["received_at"],
                                     threshold_s=p["threshold_s"])
        if not new:
            return 0
        view = await load_incident_view(uow.conn, p["incident_id"])
        uow.emit("timer.pending_overdue", aggregate=("incident", p["incident_id"]),
                 agency=p["agency"], data={"incident": view, "age_s": p["age_s"],
                                           "threshold_s": p["threshold_s"], "unit_ids": []})
    return 1


async def _fire_unit(deps: DispatchDeps, u: dict[str, Any]) -> int:
    async with unit_of_work(deps.pool, SYSTEM) as uow:
        row = await unit_repo.unit_with_status_since(uow.conn, u["unit_id"])
        if row is None or row["status"] != u["status"]:
            return 0
        new = await repo.claim_alert(uow.conn, kind="unit_status_overdue", subject=u["unit_id"],
                                     since=row["since"], threshold_s=u["threshold_s"])
        if not new:
            return 0
        uow.emit("timer.unit_status_overdue", aggregate=("unit", u["unit_id"]), agency=u["agency"],
                 data={"unit": unit_view(row), "status": u["status"], "age_s": u["age_s"],
                       "threshold_s": u["threshold_s"], "incident_id": u["incident_id"],
                       "unit_ids": [u["unit_id"]]})
    return 1


async def run_sweeper(*, deps: DispatchDeps, stop: asyncio.Event) -> None:
    interval = deps.settings.timer_sweep_interval_s
    while not stop.is_set():
        try:
            await sweep(deps=deps)
        except Exception:  # a failed sweep is retried next tick; the app keeps serving
            log.exception("timer_sweep_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
