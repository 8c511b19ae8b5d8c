"""The geocoder in a running app: San Francisco's address file imported into the database,
the TIGER graph loaded; intake, the geocode endpoints and the places table over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest

from cad import db
from cad.embedded_pg import with_database
from incidents.geocoding.normalize import normalize_street
from incidents.geocoding.service import import_addresses
from routing.build import haversine_m
from routing.graph import RoadGraph
from tests.dispatch_fixtures import Api, create_unit, stations_csv
from tests.support import RunningApp, require_shared

STATION_1 = (37.779416, -122.404193)   # 935 Folsom St (sffd_fire_stations.csv)


@pytest.fixture(scope="module")
def addresses_template(pg_server_url: str, template_db: str) -> Iterator[str]:
    """The migrated template with San Francisco's address file imported, once for the module:
    each test clones it (importing the 109,651 points again took ~20 s a test)."""
    name = f"cad_tpl_addr_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(with_database(pg_server_url, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create() -> None:
        await admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        pool = await db.create_pool(with_database(pg_server_url, name), min_size=1, max_size=2)
        try:
            result = await import_addresses(
                pool=pool, path=require_shared("addresses/sf_address_points.csv.gz"))
            assert result.total == 109_651 and result.n_bad == 0
        finally:
            await pool.close()

    asyncio.run(create())
    yield name
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(clone_database: Callable[[str], AbstractAsyncContextManager[str]],
                       addresses_template: str) -> AsyncIterator[str]:
    """This module's tests: a database of their own with the address points already in it,
    before the app starts (sf_app, sf_api): each worker builds its index from the table."""
    async with clone_database(addresses_template) as url:
        yield url


async def _intake(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "MED", "location": {"address": address}})


async def test_intake_by_address(sf_api: Api, sf_graph_path: Path) -> None:
    disp = await sf_api.as_("dispatcher")
    r = await _intake(disp, "935 Folsom St, Apt 2")
    assert r.status_code == 201, r.text
    inc = r.json()
    assert (inc["location_source"], inc["location_precision"], inc["location_unit"]) == (
        "address", "address_point", "2")
    assert inc["location_text"] == "935 FOLSOM ST, #2"
    assert haversine_m(inc["lat"], inc["lon"], *STATION_1) < 30
    # the routing target is on a Folsom St edge of the graph, next to the point
    assert haversine_m(inc["lat"], inc["lon"], inc["access_lat"], inc["access_lon"]) < 40
    g = RoadGraph.load(sf_graph_path)
    folsom = [i for i, n in enumerate(g.street_names)
              if "FOLSOM ST" in {normalize_street(p) for p in n.split(";")}]
    assert g.edge_name is not None
    on = np.flatnonzero(np.isin(g.edge_name, folsom))
    mid_lat = (g.node_lat[g.edge_tail[on]] + g.node_lat[g.fwd_head[on]]) / 2
    mid_lon = (g.node_lon[g.edge_tail[on]] + g.node_lon[g.fwd_head[on]]) / 2
    assert min(haversine_m(inc["access_lat"], inc["access_lon"], float(a), float(b))
               for a, b in zip(mid_lat, mid_lon, strict=True)) < 200

    # the precision is shown wherever the incident is: its detail and the list
    detail = (await disp.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert detail["location_precision"] == "address_point"
    listed = (await disp.get("/api/v1/incidents")).json()
    assert [i["location_precision"] for i in listed if i["id"] == inc["id"]] == ["address_point"]

    # "1200 Market St" (the example: placed 3.4 km off before) is in Civic Center
    r = await _intake(disp, "1200 Market St")
    assert r.status_code == 201, r.text
    assert haversine_m(r.json()["lat"], r.json()["lon"], 37.7786, -122.4153) < 60

    r = await _intake(disp, "0 Block of BALCETA AVE")
    assert r.status_code == 201 and r.json()["location_precision"] == "block", r.text

    # a changed location is geocoded the same way; coordinates say they are coordinates
    r = await disp.patch(f"/api/v1/incidents/{inc['id']}",
                         json={"location": {"intersection": "MARKET ST & 5TH ST"}})
    assert r.status_code == 200, r.text
    assert (r.json()["location_precision"], r.json()["location_unit"]) == ("intersection", None)
    r = await disp.patch(f"/api/v1/incidents/{inc['id']}",
                         json={"location": {"lat": 37.78, "lon": -122.41}})
    assert r.json()["location_precision"] == "coordinates" and r.json()["access_lat"] is None


async def test_uncertain_address_is_refused_with_candidates(sf_api: Api) -> None:
    disp = await sf_api.as_("dispatcher")
    r = await _intake(disp, "1200 MARKT ST")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert [e["field"] for e in body["errors"]] == ["body.location.address"]
    assert body["candidates"][0]["label"] == "1200 MARKET ST"
    assert body["candidates"][0]["score"] < 0.9
    r = await _intake(disp, "12 NOSUCHPLACEATALL ST")
    assert r.status_code == 422 and "not found" in r.json()["detail"], r.text
    # nothing was written by either refusal
    assert [i["location_text"] for i in (await disp.get("/api/v1/incidents")).json()] == []


async def test_geocode_suggest_and_reverse_endpoints(sf_api: Api) -> None:
    disp = await sf_api.as_("dispatcher")
    r = await disp.get("/api/v1/geocode", params={"q": "1200 market street"})
    assert r.status_code == 200, r.text
    best = r.json()["candidates"][0]
    assert (best["label"], best["precision"], best["score"]) == ("1200 MARKET ST",
                                                                 "address_point", 1.0)
    assert best["side"] in ("left", "right") and best["access_lat"] is not None

    r = await disp.get("/api/v1/geocode", params={"q": "MARKET ST & 5TH ST"})
    corner = r.json()["candidates"][0]
    assert corner["precision"] == "intersection"
    assert haversine_m(corner["lat"], corner["lon"], 37.7837, -122.4075) < 150

    r = await disp.get("/api/v1/geocode/suggest", params={"q": "1200 MARK"})
    assert "1200 MARKET ST" in [c["label"] for c in r.json()["candidates"]]
    r = await disp.get("/api/v1/geocode/suggest", params={"q": "MARKET ST & 5"})
    assert "MARKET ST & 5TH ST" in [c["label"] for c in r.json()["candidates"]]

    r = await disp.get("/api/v1/geocode/reverse", params={"lat": STATION_1[0],
                                                          "lon": STATION_1[1]})
    rev = r.json()
    assert rev["address"] == "935 FOLSOM ST" and rev["distance_m"] < 10
    assert "5TH ST" in rev["cross_streets"]
    assert rev["description"].startswith("935 FOLSOM ST (")

    r = await disp.get("/api/v1/geocode/reverse", params={"lat": 91, "lon": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.lat"
    anon = httpx.AsyncClient(base_url=sf_api.running.base_url)
    try:
        assert (await anon.get("/api/v1/geocode", params={"q": "x"})).status_code == 401
    finally:
        await anon.aclose()


async def test_managed_places(sf_api: Api) -> None:
    sup = await sf_api.as_("supervisor")
    disp = await sf_api.as_("dispatcher")
    place = {"name": "City Hall", "aliases": ["SF CITY HALL", "1 DR CARLTON B GOODLETT PL"],
             "lat": 37.77927, "lon": -122.41924}
    assert (await disp.put("/api/v1/places/city-hall", json=place)).status_code == 403
    r = await sup.put("/api/v1/places/city-hall", json=place)
    assert r.status_code == 201, r.text
    assert (await sup.put("/api/v1/places/city-hall", json=place)).status_code == 200
    r = await sup.put("/api/v1/places/sfo-t2", json={"name": "SFO Terminal 2", "lat": 37.6164,
                                                     "lon": -122.3840})
    assert r.status_code == 201
    bad = await sup.put("/api/v1/places/x", json={**place, "lat": "north"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.lat"

    r = await _intake(disp, "city hall")
    assert r.status_code == 201, r.text
    inc = r.json()
    assert (inc["location_precision"], inc["lat"]) == ("place", 37.77927)
    r = await disp.get("/api/v1/geocode", params={"q": "SFO TERMINAL 2"})
    assert r.json()["candidates"][0]["precision"] == "place"
    r = await disp.get("/api/v1/geocode/suggest", params={"q": "SFO"})
    assert r.json()["candidates"][0]["label"] == "SFO Terminal 2"

    assert (await sup.delete("/api/v1/places/sfo-t2")).status_code == 204
    assert (await sup.delete("/api/v1/places/sfo-t2")).status_code == 404
    r = await disp.get("/api/v1/geocode", params={"q": "SFO TERMINAL 2"})
    assert all(c["precision"] != "place" for c in r.json()["candidates"])
    assert [p["id"] for p in (await disp.get("/api/v1/places")).json()] == ["city-hall"]


async def test_recommendation_describes_where_each_unit_is(sf_api: Api,
                                                           sffd_stations: list[dict[str, str]]
                                                           ) -> None:
    sup = await sf_api.as_("supervisor")
    one = [s for s in sffd_stations if s["station"] == "1"]
    r = await sup.post("/api/v1/stations/import?agency=SFFD", content=stations_csv(one),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    await create_unit(sup, "E01", "engine", station="1")
    await create_unit(sup, "M01", "medic_als", station="1")
    disp = await sf_api.as_("dispatcher")
    r = await _intake(disp, "1200 Market St")
    assert r.status_code == 201, r.text
    rec = (await disp.post(f"/api/v1/incidents/{r.json()['id']}/recommendation")).json()
    assert rec["picks"], rec
    pick = rec["picks"][0]
    # the unit stands at Station 1, 935 Folsom St, between its corners
    assert pick["position_description"].startswith("935 FOLSOM ST (between ")
    assert "5TH ST" in pick["position_description"]
    assert rec["eta_method"] == "road_network"


async def test_the_board_reads_a_units_avl_position_in_words(sf_api: Api, sf_app: RunningApp) -> None:
    """GET /api/v1/units/{id}/position, which the board calls when a unit's row is opened:
    the newest fix, described by the reverse geocoder the gateway is handed (cad.wiring)."""
    sup = await sf_api.as_("supervisor")
    await create_unit(sup, "E01", "engine")
    await create_unit(sup, "E02", "engine")
    disp = await sf_api.as_("dispatcher")
    assert (await disp.get("/api/v1/units/E01/position")).status_code == 404   # no fix yet
    mdt = await sf_api.as_("field_unit", unit_id="E01")
    now = datetime.now(UTC)
    fixes = [{"lat": 37.7760, "lon": -122.4000, "fix_time": (now - timedelta(seconds=5)).isoformat()},
             {"lat": STATION_1[0], "lon": STATION_1[1], "fix_time": now.isoformat()}]
    r = await mdt.post("/api/v1/units/E01/positions", json={"fixes": fixes})
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    await sf_app.gateway.avl.writer.flush()
    r = await disp.get("/api/v1/units/E01/position")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["unit_id"], body["lat"], body["lon"]) == ("E01", STATION_1[0], STATION_1[1])
    assert body["description"].startswith("935 FOLSOM ST (between "), body
    assert "5TH ST" in body["description"]
    analyst = await sf_api.as_("analyst")
    assert (await analyst.get("/api/v1/units/E01/position")).status_code == 403
    other = await sf_api.as_("dispatcher", agency="OTHER")
    hidden = await other.get("/api/v1/units/E01/position")
    assert hidden.status_code == 404 and hidden.headers["content-type"] == "application/problem+json"
    assert (await disp.get("/api/v1/units/NOPE/position")).status_code == 404
