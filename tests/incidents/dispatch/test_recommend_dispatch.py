"""Recommendation by road ETA on the San Francisco graph, and atomic dispatch."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.dispatch_fixtures import DOWNTOWN, Api, create_incident, create_unit
from tests.dispatch_fixtures import seed_stations_and_units as _seed


async def test_recommendation_is_nearest_by_road_eta_and_explained(sf_api: Api, sffd_stations) -> None:
    units = [(f"E{int(s['station']):02d}", "engine", s["station"]) for s in sffd_stations]
    units += [("M85", "medic_als", "1"), ("M86", "medic_als", "36")]
    await _seed(sf_api, sffd_stations, units)
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="CARDIAC")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["eta_method"] == "road_network"
    assert rec["plan"]["name"] == "Cardiac arrest"
    assert sorted(p["slot_type"] for p in rec["picks"]) == ["engine", "medic_als"]
    assert rec["shortfalls"] == []
    # The engine pick is the routing core's own nearest engine, with the same ETA.
    routing = sf_api.running.runtime.routing
    assert routing is not None
    best = routing.nearest_units(lat=DOWNTOWN[0], lon=DOWNTOWN[1], k=3, unit_types=["engine"])
    engine = next(p for p in rec["picks"] if p["slot_type"] == "engine")
    assert engine["unit_id"] == best.units[0].unit_id
    assert abs(engine["eta_s"] - best.units[0].eta_s) < 0.11
    assert engine["eta_s"] <= best.units[1].eta_s
    assert engine["position_source"] == "station" and "no AVL fix" in engine["reason"]
    assert "by road ETA" in engine["reason"]


async def test_unavailable_units_are_never_recommended(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13"),
                                        ("E02", "engine", "2")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    first = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    chosen = first["picks"][0]["unit_id"]
    r = await disp.post("/api/v1/units/" + chosen + "/status", json={"status": "out_of_service"})
    assert r.status_code == 200
    second = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    assert second["picks"][0]["unit_id"] != chosen
    # Even when this worker's routing index has not heard of the change (another worker
    # made it), the database check keeps the busy unit out.
    routing = sf_api.running.runtime.routing
    assert routing is not None
    other = second["picks"][0]["unit_id"]
    await sf_api.running.pool.execute(
        "UPDATE units SET status = 'on_scene' WHERE id = $1", other)
    routing.set_unit_available(other, True)
    third = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    assert third["picks"][0]["unit_id"] not in (chosen, other)


async def test_substitution_and_shortfall_are_explained(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("Q03", "quint", "3"),
                                        ("E13", "engine", "13")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="STRUCT")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    by_slot: dict[str, list[dict[str, Any]]] = {}
    for p in rec["picks"]:
        by_slot.setdefault(p["slot_type"], []).append(p)
    # The only quint goes to a ladder slot (nothing else can fill one), not to an engine slot.
    assert [p["unit_id"] for p in by_slot["ladder"]] == ["Q03"]
    assert by_slot["ladder"][0]["substitute"] is True
    assert "substitutes for ladder" in by_slot["ladder"][0]["reason"]
    assert sorted(p["unit_id"] for p in by_slot["engine"]) == ["E01", "E13"]
    short = {s["slot_type"]: s for s in rec["shortfalls"]}
    assert short["engine"]["needed"] == 3 and short["engine"]["filled"] == 2
    assert short["ladder"]["needed"] == 2 and short["ladder"]["filled"] == 1
    assert "Q03 already picked" in short["ladder"]["reason"]
    assert short["battalion_chief"]["reason"] == "no battalion_chief unit exists in the roster"
    assert short["medic_als"]["filled"] == 0


async def test_stale_avl_fix_falls_back_to_station(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1")])
    pool = sf_api.running.pool
    await pool.execute("UPDATE units SET last_lat = 37.76, last_lon = -122.45, "
                       "last_fix_at = clock_timestamp() - interval '2 hours' WHERE id = 'E01'")
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    pick = rec["picks"][0]
    assert pick["position_source"] == "station" and pick["stale_position"] is True
    assert "stale" in pick["reason"] and pick["position_age_s"] >= 7000


async def test_dispatch_records_the_outcome_and_demands_a_reason_to_override(
        sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    picked = rec["picks"][0]["unit_id"]
    other = "E13" if picked == "E01" else "E01"
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch",
                        json={"unit_ids": [other], "recommendation_id": rec["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.override_reason"
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch",
                        json={"unit_ids": [other], "recommendation_id": rec["id"],
                              "override_reason": "first-due engine is at the academy"})
    assert r.status_code == 200, r.text
    assert r.json()["recommendation_outcome"] == "overridden"
    row = await sf_api.running.pool.fetchrow(
        "SELECT outcome, outcome_reason, dispatched_units FROM recommendations WHERE id = $1", rec["id"])
    assert dict(row) == {"outcome": "overridden", "outcome_reason": "first-due engine is at the academy",
                         "dispatched_units": [other]}
    inc2 = await create_incident(disp, 37.75, -122.42, itype="VEHFIRE")
    rec2 = (await disp.post(f"/api/v1/incidents/{inc2['id']}/recommendation")).json()
    assert [p["unit_id"] for p in rec2["picks"]] == [picked]
    r = await disp.post(f"/api/v1/incidents/{inc2['id']}/dispatch",
                        json={"unit_ids": [picked], "recommendation_id": rec2["id"]})
    assert r.json()["recommendation_outcome"] == "accepted"


async def test_racing_dispatchers_exactly_one_wins(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "E01")
    dispatchers = [await api.as_("dispatcher", fresh=True) for i in range(4)]  # four consoles
    incidents = [await create_incident(dispatchers[0], 37.77 + i / 1000, -122.42) for i in range(12)]
    attempts = [dispatchers[i % 4].post(f"/api/v1/incidents/{inc['id']}/dispatch",
                                        json={"unit_ids": ["E01"]})
                for i, inc in enumerate(incidents)]
    answers = await asyncio.gather(*attempts)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 11, [a.text for a in answers if a.status_code not in (200, 409)]
    winner = next(a for a in answers if a.status_code == 200).json()["incident"]["id"]
    for a in answers:
        if a.status_code == 409:
            body = a.json()
            assert body["unavailable"][0]["id"] == "E01"
            assert body["unavailable"][0]["status"] == "dispatched"
            assert body["unavailable"][0]["incident_id"] == winner
    pool = api.running.pool
    assert await pool.fetchval("SELECT count(*) FROM incident_units WHERE unit_id = 'E01'") == 1


async def test_full_lifecycle_and_close(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "M85", "medic_als", discipline="ems")
    await create_unit(sup, "E01")
    disp = await api.as_("dispatcher")
    mdt = await api.as_("field_unit", unit_id="M85")
    inc = await create_incident(disp, 37.77, -122.42, itype="CARDIAC")
    assert inc["status"] == "pending"
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch", json={"unit_ids": ["M85", "E01"]})
    assert r.json()["incident"]["status"] == "dispatched"
    steps = [("M85", "en_route", "en_route"), ("M85", "on_scene", "on_scene"),
             ("E01", "en_route", "on_scene"), ("E01", "available_on_radio", "on_scene"),
             ("M85", "transporting", "on_scene"), ("M85", "at_hospital", "on_scene")]
    for unit, status, incident_status in steps:
        client = mdt if unit == "M85" else disp
        r = await client.post(f"/api/v1/units/{unit}/status", json={"status": status})
        assert r.status_code == 200, r.text
        assert r.json()["incident_status"] == incident_status
        assert r.json()["incident_can_close"] is False
    early = await disp.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "TRANSPORTED"})
    assert early.status_code == 409 and early.json()["active_units"] == ["M85"]
    last = await mdt.post("/api/v1/units/M85/status", json={"status": "available_on_radio"})
    assert last.json()["incident_can_close"] is True and last.json()["incident_status"] == "cleared"
    closed = await disp.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "TRANSPORTED"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    full = (await disp.get(f"/api/v1/incidents/{inc['id']}")).json()
    m85 = next(u for u in full["units"] if u["unit_id"] == "M85")
    times = [m85[k] for k in ("dispatched_at", "en_route_at", "on_scene_at", "transporting_at",
                              "at_hospital_at", "cleared_at")]
    assert all(times) and times == sorted(times)
    e01 = next(u for u in full["units"] if u["unit_id"] == "E01")
    assert e01["on_scene_at"] is None  # never reported, never inferred
    assert full["first_en_route_at"] <= full["first_on_scene_at"]


async def test_avl_fix_moves_the_unit_for_the_very_next_recommendation(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13"),
                                        ("E36", "engine", "36")])
    disp = await sf_api.as_("dispatcher")
    # Far out in the Sunset district: E01/E13/E36 are all downtown-ish, so whichever was
    # nearest, a fix placing another engine next to the incident must change the pick.
    incident = (37.7535, -122.5045)
    inc = await create_incident(disp, *incident, itype="VEHFIRE")
    before = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()["picks"][0]
    mover = next(u for u in ("E01", "E13", "E36") if u != before["unit_id"])
    mdt = await sf_api.as_("field_unit", unit_id=mover, agency="SFFD")
    now = __import__("datetime").datetime.now(__import__("datetime").timezone.utc).isoformat()
    r = await mdt.post(f"/api/v1/units/{mover}/positions", json={"fixes": [
        {"lat": incident[0] + 0.001, "lon": incident[1], "fix_time": now, "heading": 0.0,
         "speed": 10.0, "accuracy": 5.0}]})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    after = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()["picks"][0]
    assert after["unit_id"] == mover
    assert after["position_source"] == "avl" and after["eta_s"] < before["eta_s"]
    assert "AVL fix" in after["reason"]
