"""Concurrent dispatches, status changes, clears, closes, merges, recommendations and AVL on
the same units and incidents: no 5xx, and database, board snapshot and event replay agree."""

from __future__ import annotations

import asyncio
import collections
import os
import random
from datetime import UTC, datetime
from typing import Any

import httpx

from incidents.dispatch.board import apply_event, board_snapshot
from tests.dispatch_fixtures import Api, create_incident, create_unit

UNITS = ["E01", "E02", "E03", "E04"]
STATUSES = ["en_route", "on_scene", "available_on_radio", "available_in_quarters",
            "out_of_service"]


async def test_concurrent_actions_never_fail_and_leave_one_consistent_state(api: Api) -> None:
    sup = await api.as_("supervisor")
    disp = await api.as_("dispatcher")
    for uid in UNITS:
        await create_unit(sup, uid)
    mdts = {uid: await api.as_("field_unit", unit_id=uid) for uid in UNITS}
    incidents = [(await create_incident(disp, 37.77 + i / 1000, -122.42))["id"] for i in range(4)]
    rng = random.Random(20261130)
    codes: list[tuple[str, int]] = []

    async def call(what: str, client: httpx.AsyncClient, method: str, url: str,
                   body: Any = None) -> None:
        r = await client.request(method, url, json=body)
        codes.append((what, r.status_code))
        assert r.status_code < 500, f"{what}: {r.status_code} {r.text}"

    def action() -> Any:
        kind = rng.choice(["dispatch", "dispatch", "status", "status", "status", "close",
                           "merge", "recommend", "avl"])
        inc = rng.choice(incidents)
        uid = rng.choice(UNITS)
        if kind == "dispatch":
            units = rng.sample(UNITS, rng.randint(1, 2))
            return call(kind, disp, "POST", f"/api/v1/incidents/{inc}/dispatch",
                        {"unit_ids": units, "override_reason": "stress"})
        if kind == "status":
            return call(kind, disp, "POST", f"/api/v1/units/{uid}/status",
                        {"status": rng.choice(STATUSES)})
        if kind == "close":
            return call(kind, disp, "POST", f"/api/v1/incidents/{inc}/close",
                        {"disposition": "REPORT"})
        if kind == "merge":
            other = rng.choice(incidents)
            return call(kind, disp, "POST", f"/api/v1/incidents/{inc}/merge", {"into_id": other})
        if kind == "recommend":
            return call(kind, disp, "POST", f"/api/v1/incidents/{inc}/recommendation")
        now = datetime.now(UTC).isoformat()
        return call(kind, mdts[uid], "POST", f"/api/v1/units/{uid}/positions",
                    {"fixes": [{"lat": 37.77 + rng.random() / 100, "lon": -122.42,
                                    "fix_time": now}]})

    rounds, width = (int(x) for x in os.environ.get("CAD_STRESS", "12x12").split("x"))
    for _ in range(rounds):
        await asyncio.gather(*(action() for _ in range(width)))
        # Keep work to do: new incidents replace closed ones, units come back into service.
        for i, iid in enumerate(incidents):
            r = await disp.get(f"/api/v1/incidents/{iid}")
            if r.json()["status"] == "closed":
                incidents[i] = (await create_incident(disp, 37.77 + i / 1000, -122.42))["id"]
    for kind in ("dispatch", "status", "close", "avl"):  # each kind got through sometimes
        assert any(w == kind and c == 200 for w, c in codes), (kind, codes)
    print(sorted(collections.Counter(codes).items()))

    pool = api.running.pool
    # The database agrees with itself: a unit's incident is its one active assignment.
    rows = await pool.fetch(
        "SELECT u.id, u.status, u.current_incident, "
        "array_agg(a.incident_id) FILTER (WHERE a.cleared_at IS NULL) AS active "
        "FROM units u LEFT JOIN incident_units a ON a.unit_id = u.id GROUP BY u.id")
    for r in rows:
        active = r["active"] or []
        assert len(active) <= 1, dict(r)
        assert r["current_incident"] == (active[0] if active else None), dict(r)
        assigned = r["status"] in ("dispatched", "en_route", "on_scene", "transporting",
                                   "at_hospital")
        assert assigned == (r["current_incident"] is not None), dict(r)
    closed_with_units = await pool.fetchval(
        "SELECT count(*) FROM incidents i JOIN incident_units a ON a.incident_id = i.id "
        "WHERE i.status = 'closed' AND a.cleared_at IS NULL")
    assert closed_with_units == 0
    # The board rebuilt from every event equals a fresh snapshot.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                        readonly=True):
        snapshot = await board_snapshot(conn, agencies=None)
        events = await conn.fetch("SELECT * FROM event_log ORDER BY id")
    board: dict[str, Any] = {"incidents": {}, "units": {}}
    for e in events:
        board = apply_event(board, e)
    assert board == snapshot
