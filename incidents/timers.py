"""Overdue timers: pending incidents by priority, units too long in a status without a
check-in. Crossing a threshold emits exactly one event, whichever worker sweeps first."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from cad.services import Services
from cad.uow import RequestContext, unit_of_work
from incidents.board import load_incident_view, unit_view

log = structlog.get_logger("incidents.timers")
SYSTEM = RequestContext.system("timers")


async def overdue(services: Services) -> dict[str, list[dict[str, Any]]]:
    """What is overdue now (for the supervisor's board), without emitting anything. The
    thresholds go into the query: only overdue rows come back, however long the queue."""
    s = services.settings
    prios = sorted(s.pending_thresholds_s)
    statuses = sorted(s.unit_status_thresholds_s)
    async with services.pool.acquire() as conn:
        pend = await conn.fetch(
            "SELECT i.id, i.number, i.agency, i.priority, t.threshold_s, "
            "extract(epoch FROM clock_timestamp() - i.received_at) AS age_s "
            "FROM incidents i JOIN unnest($1::int[], $2::float8[]) AS t(priority, threshold_s) "
            "ON t.priority = i.priority WHERE i.status = 'pending' "
            "AND i.received_at <= clock_timestamp() - make_interval(secs => t.threshold_s) "
            "ORDER BY i.received_at",
            prios, [s.pending_thresholds_s[p] for p in prios])
        units = await conn.fetch(
            "SELECT u.id, u.agency, u.status, u.current_incident, t.threshold_s, "
            "extract(epoch FROM clock_timestamp() - greatest(u.status_changed_at, u.last_checkin_at)) AS age_s "
            "FROM units u JOIN unnest($1::text[], $2::float8[]) AS t(status, threshold_s) "
            "ON t.status = u.status WHERE u.active "
            "AND greatest(u.status_changed_at, u.last_checkin_at) "
            "    <= clock_timestamp() - make_interval(secs => t.threshold_s) ORDER BY u.id",
            statuses, [s.unit_status_thresholds_s[x] for x in statuses])
    out_p = [{"incident_id": r["id"], "number": r["number"], "agency": r["agency"],
              "priority": r["priority"], "age_s": round(float(r["age_s"]), 1),
              "threshold_s": r["threshold_s"]} for r in pend]
    out_u = [{"unit_id": r["id"], "agency": r["agency"], "status": r["status"],
              "incident_id": r["current_incident"], "age_s": round(float(r["age_s"]), 1),
              "threshold_s": r["threshold_s"]} for r in units]
    return {"pending_incidents": out_p, "units": out_u}


async def sweep(services: Services) -> int:
    """Emit one event per newly crossed threshold. Returns how many fired."""
    fired = 0
    now_overdue = await overdue(services)
    for p in now_overdue["pending_incidents"]:
        async with unit_of_work(services.pool, SYSTEM) as uow:
            row = await uow.conn.fetchrow(
                "SELECT status, received_at FROM incidents WHERE id = $1 FOR UPDATE", p["incident_id"])
            if row is None or row["status"] != "pending":
                continue
            new = await uow.conn.fetchval(
                "INSERT INTO timer_alerts (kind, subject, since, threshold_s) VALUES "
                "('pending_overdue', $1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                str(p["incident_id"]), row["received_at"], p["threshold_s"])
            if new:
                view = await load_incident_view(uow.conn, p["incident_id"])
                uow.emit("timer.pending_overdue", aggregate=("incident", p["incident_id"]),
                         agency=p["agency"], data={"incident": view, "age_s": p["age_s"],
                                                   "threshold_s": p["threshold_s"], "unit_ids": []})
                fired += 1
    for u in now_overdue["units"]:
        async with unit_of_work(services.pool, SYSTEM) as uow:
            row = await uow.conn.fetchrow(
                "SELECT *, greatest(status_changed_at, last_checkin_at) AS since FROM units WHERE id = $1",
                u["unit_id"])
            if row is None or row["status"] != u["status"]:
                continue
            new = await uow.conn.fetchval(
                "INSERT INTO timer_alerts (kind, subject, since, threshold_s) VALUES "
                "('unit_status_overdue', $1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                u["unit_id"], row["since"], u["threshold_s"])
            if new:
                uow.emit("timer.unit_status_overdue", aggregate=("unit", u["unit_id"]), agency=u["agency"],
                         data={"unit": unit_view(row), "status": u["status"], "age_s": u["age_s"],
                               "threshold_s": u["threshold_s"], "incident_id": u["incident_id"],
                               "unit_ids": [u["unit_id"]]})
                fired += 1
    return fired


async def run_sweeper(services: Services, stop: asyncio.Event) -> None:
    interval = services.settings.timer_sweep_interval_s
    while not stop.is_set():
        try:
            await sweep(services)
        except Exception:  # a failed sweep is retried next tick; the app keeps serving
            log.exception("timer_sweep_failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
