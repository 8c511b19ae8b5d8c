"""Runners-up in the recommendation, a unit's road route to an incident, and the supervisor's
read of overridden recommendations with their reasons."""

from __future__ import annotations

import httpx

from tests.dispatch_fixtures import DOWNTOWN, Api, create_incident
from tests.dispatch_fixtures import seed_stations_and_units as _seed


async def test_runners_up_are_the_next_nearest_units_per_slot_type(sf_api: Api, sffd_stations) -> None:
    units = [(f"E{int(s['station']):02d}", "engine", s["station"]) for s in sffd_stations[:6]]
    await _seed(sf_api, sffd_stations, units)
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")
    assert r.status_code == 201, r.text
    rec = r.json()
    picked = {p["unit_id"] for p in rec["picks"]}
    runners = rec["runners_up"]
    assert [x["rank"] for x in runners] == [1, 2, 3]
    assert all(x["slot_type"] == "engine" and x["unit_id"] not in picked for x in runners)
    # the routing core's own order: after the pick, the next three engines by road ETA
    routing = sf_api.running.runtime.routing
    assert routing is not None
    best = routing.nearest_units(lat=DOWNTOWN[0], lon=DOWNTOWN[1], k=4, unit_types=["engine"])
    assert [x["unit_id"] for x in runners] == [str(u.unit_id) for u in best.units[1:4]]
    etas = [p["eta_s"] for p in rec["picks"] if p["slot_type"] == "engine"] + [x["eta_s"] for x in runners]
    assert etas == sorted(etas)
    first = runners[0]
    assert first["distance_m"] > 0 and first["position_source"] == "station"
    assert first["position_description"] is None and first["stale_position"] is False
    assert first["reason"].startswith("runner-up 1: next nearest available engine by road ETA")
    # a runner-up can be dispatched instead of the pick: an override with its reason
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch",
                        json={"unit_ids": [first["unit_id"]], "recommendation_id": rec["id"],
                              "override_reason": "pick is refuelling"})
    assert r.status_code == 200, r.text
    assert r.json()["recommendation_outcome"] == "overridden"


async def test_runners_up_are_empty_when_no_unit_is_left(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    assert [p["unit_id"] for p in rec["picks"]] == ["E01"] and rec["runners_up"] == []


async def test_runners_up_are_in_the_openapi_document(sf_api: Api) -> None:
    async with httpx.AsyncClient(base_url=sf_api.running.base_url) as anon:
        doc = (await anon.get("/openapi.json")).json()
    rec = doc["components"]["schemas"]["RecommendationOut"]
    assert rec["properties"]["runners_up"]["items"]["$ref"].endswith("/RunnerUp")
    assert {"rank", "eta_s", "distance_m", "position_source", "reason"} <= set(
        doc["components"]["schemas"]["RunnerUp"]["properties"])


async def test_unit_route_follows_the_roads_to_its_incident(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    # not on an incident yet: the incident must be named
    r = await disp.get("/api/v1/units/E01/route")
    assert r.status_code == 409 and "incident_id" in r.json()["detail"]
    r = await disp.get(f"/api/v1/units/E01/route?incident_id={inc['id']}")
    assert r.status_code == 200, r.text
    route = r.json()
    routing = sf_api.running.runtime.routing
    assert routing is not None
    want = routing.route("E01", lat=DOWNTOWN[0], lon=DOWNTOWN[1])
    assert abs(route["distance_m"] - want.distance_m) < 1.0
    assert route["incident_id"] == inc["id"] and route["eta_s"] > 0
    pts = route["points"]
    assert len(pts) == len(want.coords_lonlat) > 2
    # the polyline runs from the unit to the incident, in [lat, lon]
    assert abs(pts[-1][0] - DOWNTOWN[0]) < 0.002 and abs(pts[-1][1] - DOWNTOWN[1]) < 0.002
    station = next(s for s in sffd_stations if s["station"] == "1")
    assert abs(pts[0][0] - float(station["lat"])) < 0.003
    # dispatched: the route defaults to its current incident
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch", json={"unit_ids": ["E01"]})
    assert r.status_code == 200, r.text
    r = await disp.get("/api/v1/units/E01/route")
    assert r.status_code == 200 and r.json()["incident_id"] == inc["id"]


async def test_unit_route_is_scoped_and_checked(sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    assert (await disp.get(f"/api/v1/units/NOPE/route?incident_id={inc['id']}")).status_code == 404
    assert (await disp.get("/api/v1/units/E01/route?incident_id=999999")).status_code == 404
    r = await disp.get("/api/v1/units/E01/route?incident_id=abc")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "incident_id" in r.text
    other = await sf_api.as_("dispatcher", agency="OTHER")
    assert (await other.get(f"/api/v1/units/E01/route?incident_id={inc['id']}")).status_code == 404
    analyst = await sf_api.as_("analyst")
    assert (await analyst.get(f"/api/v1/units/E01/route?incident_id={inc['id']}")).status_code == 403
    # a field unit reads its own unit's route, not another's
    mdt = await sf_api.as_("field_unit", unit_id="E13")
    r = await mdt.get(f"/api/v1/units/E13/route?incident_id={inc['id']}")
    assert r.status_code == 200, r.text
    assert (await mdt.get(f"/api/v1/units/E01/route?incident_id={inc['id']}")).status_code == 403
    async with httpx.AsyncClient(base_url=sf_api.running.base_url) as anon:
        assert (await anon.get(f"/api/v1/units/E01/route?incident_id={inc['id']}")).status_code == 401


async def test_supervisor_reads_overridden_recommendations_with_reasons(
        sf_api: Api, sffd_stations) -> None:
    await _seed(sf_api, sffd_stations, [("E01", "engine", "1"), ("E13", "engine", "13")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    picked = rec["picks"][0]["unit_id"]
    other = "E13" if picked == "E01" else "E01"
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch",
                        json={"unit_ids": [other], "recommendation_id": rec["id"],
                              "override_reason": "first-due engine is at the academy"})
    assert r.status_code == 200, r.text
    # an accepted recommendation is not listed
    inc2 = await create_incident(disp, 37.75, -122.42, itype="VEHFIRE")
    rec2 = (await disp.post(f"/api/v1/incidents/{inc2['id']}/recommendation")).json()
    r = await disp.post(f"/api/v1/incidents/{inc2['id']}/dispatch",
                        json={"unit_ids": [rec2["picks"][0]["unit_id"]], "recommendation_id": rec2["id"]})
    assert r.json()["recommendation_outcome"] == "accepted"
    sup = await sf_api.as_("supervisor")
    r = await sup.get("/api/v1/recommendations/overridden")
    assert r.status_code == 200, r.text
    rows = r.json()
    assert len(rows) == 1
    row = rows[0]
    assert row["recommendation_id"] == rec["id"] and row["number"] == inc["number"]
    assert row["recommended_units"] == [picked] and row["dispatched_units"] == [other]
    assert row["reason"] == "first-due engine is at the academy"
    assert row["overridden_by"] and row["overridden_at"]
    # agency scope: another agency's supervisor sees none of it; field units may not read it
    other_sup = await sf_api.as_("supervisor", agency="OTHER")
    assert (await other_sup.get("/api/v1/recommendations/overridden")).json() == []
    mdt = await sf_api.as_("field_unit", unit_id="E13")
    assert (await mdt.get("/api/v1/recommendations/overridden")).status_code == 403
    r = await sup.get("/api/v1/recommendations/overridden?limit=0")
    assert r.status_code == 422 and "limit" in r.text
