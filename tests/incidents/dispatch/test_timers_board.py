"""Timers fire once per crossing; the board can be rebuilt from events alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cad.security.scope import Scope
from incidents.dispatch import timers
from incidents.dispatch.board import apply_event, board_snapshot
from tests.dispatch_fixtures import Api, create_incident, create_unit, make_settings
from tests.support import RunningApp, running_app


@pytest.fixture
async def timer_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        database_url, tmp_path,
        pending_thresholds_s={1: 0.0, 2: 0.0, 3: 3600.0, 4: 3600.0, 5: 3600.0},
        unit_status_thresholds_s={"dispatched": 0.0, "on_scene": 3600.0})
    async with running_app(settings) as running:
        a = Api(running)
        yield a
        await a.close()


async def _events(pool: Any, type_: str) -> list[Any]:
    return await pool.fetch("SELECT * FROM event_log WHERE type = $1 ORDER BY id", type_)


async def test_each_crossing_emits_exactly_one_event(timer_api: Api) -> None:
    deps = timer_api.running.runtime.dispatch
    pool = deps.pool
    sup = await timer_api.as_("supervisor")
    await create_unit(sup, "E01")
    disp = await timer_api.as_("dispatcher")
    urgent = await create_incident(disp, 37.77, -122.42, itype="CARDIAC")   # priority 1: 0 s
    routine = await create_incident(disp, 37.78, -122.42, itype="BURG")     # priority 3: 1 h
    overdue = await timers.overdue(deps=deps, scope=Scope.ALL)
    assert [p["incident_id"] for p in overdue["pending_incidents"]] == [urgent["id"]]
    assert await timers.sweep(deps=deps) == 1
    assert await timers.sweep(deps=deps) == 0  # already announced
    ev = await _events(pool, "timer.pending_overdue")
    assert [e["aggregate_id"] for e in ev] == [str(urgent["id"])]
    # Dispatching starts the unit's "dispatched" timer (0 s): one event, then none.
    r = await disp.post(f"/api/v1/incidents/{urgent['id']}/dispatch", json={"unit_ids": ["E01"]})
    assert r.status_code == 200
    assert await timers.sweep(deps=deps) == 1
    assert await timers.sweep(deps=deps) == 0
    assert [e["aggregate_id"] for e in await _events(pool, "timer.unit_status_overdue")] == ["E01"]
    # A check-in restarts the clock: a new crossing, a new event.
    assert (await disp.post("/api/v1/units/E01/checkin")).status_code == 200
    assert await timers.sweep(deps=deps) == 1
    assert len(await _events(pool, "timer.unit_status_overdue")) == 2
    # On scene (threshold 1 h): nothing is overdue for the unit any more.
    await disp.post("/api/v1/units/E01/status", json={"status": "on_scene"})
    assert await timers.sweep(deps=deps) == 0
    board = (await disp.get("/api/v1/timers")).json()
    assert board["units"] == [] and board["pending_incidents"] == []
    assert routine["status"] == "pending"


async def _snapshot(running: RunningApp) -> tuple[dict[str, Any], int]:
    async with running.pool.acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        last = await conn.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
        return await board_snapshot(conn, agencies=None), last


async def test_board_rebuilt_from_events_equals_a_fresh_snapshot(api: Api) -> None:
    running = api.running
    pool = running.pool
    sup = await api.as_("supervisor")
    disp = await api.as_("dispatcher")
    mdt = await api.as_("field_unit", unit_id="M85")
    state: dict[str, Any] = {}

    async def create_units() -> None:
        await create_unit(sup, "E01")
        await create_unit(sup, "M85", "medic_als", discipline="ems", status="off_duty")

    async def intake() -> None:
        state["a"] = await create_incident(disp, 37.77, -122.42, itype="CARDIAC")
        state["b"] = await create_incident(disp, 37.7702, -122.4201, itype="MED")

    async def m85_on() -> None:
        await mdt.post("/api/v1/units/M85/status", json={"status": "available_on_radio"})

    async def dispatch() -> None:
        r = await disp.post(f"/api/v1/incidents/{state['a']['id']}/dispatch",
                            json={"unit_ids": ["E01", "M85"]})
        assert r.status_code == 200

    async def progress() -> None:
        for s in ("en_route", "on_scene", "transporting"):
            assert (await mdt.post("/api/v1/units/M85/status", json={"status": s})).status_code == 200
        await disp.post(f"/api/v1/incidents/{state['a']['id']}/narrative", json={"text": "CPR in progress"})

    async def clear_and_close() -> None:
        await disp.post("/api/v1/units/E01/status", json={"status": "available_in_quarters"})
        await mdt.post("/api/v1/units/M85/status", json={"status": "at_hospital"})
        await mdt.post("/api/v1/units/M85/status", json={"status": "available_on_radio"})
        r = await disp.post(f"/api/v1/incidents/{state['a']['id']}/close",
                            json={"disposition": "TRANSPORTED"})
        assert r.status_code == 200

    async def merge_and_edit() -> None:
        await disp.patch(f"/api/v1/incidents/{state['b']['id']}", json={"priority": 1})
        c = await create_incident(disp, 37.7701, -122.4201, itype="MED")
        await disp.post(f"/api/v1/incidents/{c['id']}/merge", json={"into_id": state["b"]["id"]})
        await sup.patch("/api/v1/units/E01", json={"staffing": 4})
        await disp.post("/api/v1/units/E01/checkin")
        await sup.delete("/api/v1/units/M85")

    for action in (create_units, intake, m85_on, dispatch, progress, clear_and_close, merge_and_edit):
        before, cursor = await _snapshot(running)
        await action()
        events = await pool.fetch("SELECT * FROM event_log WHERE id > $1 ORDER BY id", cursor)
        assert events, f"{action.__name__} emitted no event"
        rebuilt = before
        for e in events:
            rebuilt = apply_event(rebuilt, e)
        after, _ = await _snapshot(running)
        assert rebuilt == after, f"board diverged after {action.__name__}"
