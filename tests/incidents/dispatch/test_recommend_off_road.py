"""Positions beyond the routing core's snapping limit are flagged end to end: a unit or an
incident far from any road is never recommended with an ordinary-looking ETA."""

from __future__ import annotations

from tests.dispatch_fixtures import Api, create_incident, create_unit, stations_csv

DOWNTOWN = (37.7837, -122.4075)  # Market St near 5th St
# In the Pacific, about 1.5 km west of Ocean Beach: inside San Francisco's bounds (the
# county's road data reaches the Farallon Islands), far from any road.
OFFSHORE = (37.7600, -122.5280)


async def _station_units(sf_api: Api, stations: list[dict[str, str]],
                         units: list[tuple[str, str]]) -> None:
    sup = await sf_api.as_("supervisor")
    r = await sup.post("/api/v1/stations/import?agency=SFFD", content=stations_csv(stations),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    for uid, station in units:
        await create_unit(sup, uid, "engine", station=station)


async def test_off_road_unit_is_flagged_in_the_recommendation(sf_api: Api, sffd_stations) -> None:
    home = next(s for s in sffd_stations if s["station"] == "1")
    offshore = {"station": "99", "address": "offshore", "lat": str(OFFSHORE[0]), "lon": str(OFFSHORE[1])}
    await _station_units(sf_api, [home, offshore], [("E99", "99")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *DOWNTOWN, itype="VEHFIRE")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["eta_method"] == "road_network"
    assert rec["incident_off_road"] is False and rec["incident_snap_distance_m"] < 50
    assert rec["picks"], rec
    pick = rec["picks"][0]
    assert pick["unit_id"] == "E99"
    assert pick["off_road"] is True
    assert 1000 < pick["snap_distance_m"] < 3000
    assert "beyond the 200 m snapping limit" in pick["reason"] and "ETA unreliable" in pick["reason"]
    # A unit on the road beside it is an ordinary pick, with no flag.
    sup = await sf_api.as_("supervisor")
    await create_unit(sup, "E01", "engine", station="1")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    first = rec["picks"][0]
    assert first["unit_id"] == "E01" and first["off_road"] is False
    assert first["snap_distance_m"] < 200 and "WARNING" not in first["reason"]
    # The OpenAPI document shows the flags.
    spec = (await disp.get("/openapi.json")).json()
    pick_schema = spec["components"]["schemas"]["Pick"]["properties"]
    assert "off_road" in pick_schema and "snap_distance_m" in pick_schema
    assert "incident_off_road" in spec["components"]["schemas"]["RecommendationOut"]["properties"]


async def test_off_road_incident_is_flagged(sf_api: Api, sffd_stations) -> None:
    home = next(s for s in sffd_stations if s["station"] == "1")
    await _station_units(sf_api, [home], [("E01", "1")])
    disp = await sf_api.as_("dispatcher")
    inc = await create_incident(disp, *OFFSHORE, itype="VEHFIRE")
    rec = (await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
    assert rec["incident_off_road"] is True and rec["incident_snap_distance_m"] > 1000
    assert rec["picks"][0]["unit_id"] == "E01" and rec["picks"][0]["off_road"] is False
