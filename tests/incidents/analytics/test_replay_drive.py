"""Replay with driving units: on the San Francisco graph, each dispatched unit fetches its
route (GET /units/{id}/route-to) and sends 1 Hz positions over its own MDT websocket until on
scene; the route endpoint's roles, scope and bad input."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from incidents.analytics import calibrate, simulate
from incidents.analytics.mapping import load_mapping
from tests.auth import make_user
from tests.dispatch_fixtures import make_settings
from tests.support import RunningApp, require_shared, running_app

WINDOW = "calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz"
STATIONS = "calls/sffd_fire_stations.csv"


def _m(a: tuple[float, float], b: tuple[float, float]) -> float:
    k = math.cos(math.radians(a[0]))
    return math.hypot((a[0] - b[0]) * 111_320, (a[1] - b[1]) * 111_320 * k)


@pytest.fixture
async def driving_app(database_url: str, tmp_path: Path, sf_graph_path: Path
                      ) -> AsyncIterator[RunningApp]:
    # At speed-up S a driving unit sends S fixes per wall second (fix times are wall times): the
    # AVL budget must allow it, and the breadcrumb thinner keep them all for this test.
    settings = make_settings(database_url, tmp_path, graph_path=sf_graph_path,
                             avl_fix_rate_per_s=1000.0, avl_store_max_per_unit_per_s=1000.0)
    async with running_app(settings) as running:
        yield running


async def _login(app: RunningApp, role: str, unit_id: str | None = None) -> httpx.AsyncClient:
    user, password = await make_user(app.pool, role, unit_id=unit_id)
    client = httpx.AsyncClient(base_url=app.base_url, timeout=30)
    r = await client.post("/api/v1/auth/login", json={"username": user, "password": password})
    client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return client


async def test_replayed_units_drive_their_routes_over_the_mdt_socket(
        driving_app: RunningApp) -> None:
    app = driving_app
    mapping = load_mapping("sffd")
    path = require_shared(WINDOW)
    calls = simulate.load_calls(path, mapping, limit=4)
    admin = await _login(app, "admin")
    try:
        await simulate.setup_roster(
            admin, agency="SFFD", stations=calibrate.read_stations(require_shared(STATIONS)),
            units=simulate.roster_from_calls(path, mapping),
            medics=simulate.medics_from_calls(path, mapping))
        driver = simulate.Driver(admin, ws_url=app.ws_url)
        report = await simulate.replay(admin, calls, agency="SFFD", speedup=200, driver=driver)
    finally:
        await admin.aclose()
    assert report.errors == [] and report.dispatched == 4
    assert report.fix_problems == 0 and report.fixes_accepted == report.fixes_sent
    await app.gateway.avl.writer.flush()
    # One fix per simulated second of each dispatched unit's predicted ETA.
    rows = await app.pool.fetch(
        "SELECT iu.unit_id, i.lat, i.lon, s.lat AS s_lat, s.lon AS s_lon FROM incident_units iu "
        "JOIN incidents i ON i.id = iu.incident_id JOIN units u ON u.id = iu.unit_id "
        "JOIN stations s ON s.id = u.home_station")
    assert rows and report.fixes_sent >= 60 * len(rows) // 2
    assert report.fix_messages < report.fixes_sent      # batched per wall tick
    for r in rows:
        crumbs = await app.pool.fetch("SELECT lat, lon FROM unit_positions WHERE unit_id = $1 "
                                      "ORDER BY fix_time", r["unit_id"])
        assert len(crumbs) >= 30, (r["unit_id"], len(crumbs))
        # It left from its station and ended at the scene (the route's end point).
        assert _m((crumbs[0]["lat"], crumbs[0]["lon"]), (r["s_lat"], r["s_lon"])) < 400
        assert _m((crumbs[-1]["lat"], crumbs[-1]["lon"]), (r["lat"], r["lon"])) < 150
    # Every fix sent was stored (this app's thinner keeps up to 1,000 per unit-second).
    assert await app.pool.fetchval("SELECT count(*) FROM unit_positions") == report.fixes_sent
    # Every unit was on scene and cleared afterwards.
    done = await app.pool.fetch("SELECT on_scene_at, cleared_at FROM incident_units")
    assert all(d["on_scene_at"] and d["cleared_at"] for d in done)


async def test_route_endpoint_roles_scope_and_bad_input(driving_app: RunningApp) -> None:
    app = driving_app
    sup = await _login(app, "supervisor")
    try:
        r = await sup.put("/api/v1/stations/S1", json={"id": "S1", "agency": "SFFD",
                                                       "name": "Station 1", "lat": 37.7803,
                                                       "lon": -122.4022})
        assert r.status_code in (200, 201), r.text
        r = await sup.post("/api/v1/units", json={
            "id": "E1", "agency": "SFFD", "discipline": "fire", "unit_type": "engine",
            "home_station": "S1", "status": "available_in_quarters"})
        assert r.status_code == 201, r.text
        await app.runtime.locator.settle()
        r = await sup.get("/api/v1/units/E1/route-to", params={"lat": 37.7599, "lon": -122.4148})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["eta_s"] > 60 and body["distance_m"] > 1000
        assert _m((body["coordinates"][0][1], body["coordinates"][0][0]), (37.7803, -122.4022)) < 200
        assert _m((body["coordinates"][-1][1], body["coordinates"][-1][0]),
                  (37.7599, -122.4148)) < 100
        bad = await sup.get("/api/v1/units/E1/route-to", params={"lat": 95, "lon": -122.4})
        assert bad.status_code == 422 and "lat" in bad.text
        far = await sup.get("/api/v1/units/E1/route-to", params={"lat": 40.7, "lon": -74.0})
        assert far.status_code == 422 and far.headers["content-type"].startswith(
            "application/problem+json") and "query.lat" in far.text
        assert (await sup.get("/api/v1/units/NOPE/route-to",
                              params={"lat": 37.76, "lon": -122.41})).status_code == 404
    finally:
        await sup.aclose()
    other = await _login(app, "field_unit", unit_id="E1-OTHER")
    mine = await _login(app, "field_unit", unit_id="E1")
    analyst = await _login(app, "analyst")
    try:
        params = {"lat": 37.7599, "lon": -122.4148}
        assert (await other.get("/api/v1/units/E1/route-to", params=params)).status_code == 403
        assert (await mine.get("/api/v1/units/E1/route-to", params=params)).status_code == 200
        assert (await analyst.get("/api/v1/units/E1/route-to", params=params)).status_code == 403
        assert (await httpx.AsyncClient(base_url=app.base_url).get(
            "/api/v1/units/E1/route-to", params=params)).status_code == 401
    finally:
        for c in (other, mine, analyst):
            await c.aclose()


async def test_no_route_without_a_road_graph(plain_app: RunningApp) -> None:
    """Without a road graph there are no routes: 409 (as the incident route), not a 5xx."""
    sup = await _login(plain_app, "supervisor")
    try:
        r = await sup.put("/api/v1/stations/S1", json={"id": "S1", "agency": "SFFD",
                                                       "name": "Station 1", "lat": 37.7803,
                                                       "lon": -122.4022})
        r = await sup.post("/api/v1/units", json={
            "id": "E1", "agency": "SFFD", "discipline": "fire", "unit_type": "engine",
            "home_station": "S1", "status": "available_in_quarters"})
        r = await sup.get("/api/v1/units/E1/route-to", params={"lat": 37.7599, "lon": -122.4148})
        assert r.status_code == 409 and "road graph" in r.text
    finally:
        await sup.aclose()
