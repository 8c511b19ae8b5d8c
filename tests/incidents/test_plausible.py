"""Plausible time and place: timestamps outside the window and locations outside the service
area are 422 naming the field, before anything is made (rows, events, number sequences);
infinite timestamps cannot be stored; the timer sweep skips a row it cannot evaluate."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cad import db
from cad.plausible import ServiceArea, ServiceAreaError
from cad.settings import REPO_ROOT
from incidents.dispatch import timers
from tests.dispatch_fixtures import Api, create_incident, create_unit, make_settings
from tests.support import running_app

SF = (37.7793, -122.4193)
OAKLAND = (37.8044, -122.2712)


def _fields(resp: Any) -> list[str]:
    body = resp.json()
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return [e["field"] for e in body.get("errors", [])]


async def _made(pool: asyncpg.Pool) -> dict[str, int]:
    """What an intake makes: incidents, events, number sequences."""
    return {
        "incidents": await pool.fetchval("SELECT count(*) FROM incidents"),
        "events": await pool.fetchval(
            "SELECT count(*) FROM event_log WHERE type LIKE 'incident.%'"),
        "sequences": await pool.fetchval(
            "SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relname LIKE 'incident_no_%'"),
    }


def _intake(lat: float, lon: float, **extra: Any) -> dict[str, Any]:
    return {"agency": "SFFD", "incident_type": "MED", "location": {"lat": lat, "lon": lon},
            **extra}


# --- times -----------------------------------------------------------------------------------

async def test_intake_times_outside_the_window_are_422_naming_the_field(api: Api) -> None:
    disp = await api.as_("dispatcher")
    pool = api.running.pool
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    cases = [
        ("received_at", "0001-01-01T00:00:00Z"),                 # was stored as -infinity
        ("received_at", "9999-12-31T23:59:59.999999+00:00"),     # was stored as infinity
        ("received_at", "1989-12-31T23:59:59Z"),
        ("received_at", soon),
        ("answered_at", "9999-12-31T23:59:59.999999+00:00"),
        ("answered_at", "0001-01-01T00:00:00+14:00"),
    ]
    for name, value in cases:
        r = await disp.post("/api/v1/incidents", json={**_intake(*SF), name: value})
        assert r.status_code == 422, (name, value, r.text)
        assert _fields(r) == [f"body.{name}"], (name, value, r.text)
    assert await _made(pool) == {"incidents": 0, "events": 0, "sequences": 0}
    # The edges of the window are accepted.
    ok = await create_incident(disp, *SF, received_at="1990-01-01T00:00:00Z",
                               answered_at=(datetime.now(UTC) + timedelta(minutes=4)).isoformat())
    assert ok["received_at"].startswith("1990-01-01T00:00:00")
    assert ok["number"].startswith("SFFD-1990-")


async def test_the_window_is_configurable(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, time_earliest=datetime(2020, 1, 1, tzinfo=UTC),
                             time_max_future_s=0)
    async with running_app(settings) as running:
        a = Api(running)
        try:
            disp = await a.as_("dispatcher")
            r = await disp.post("/api/v1/incidents", json=_intake(*SF, received_at="2019-06-01T00:00:00Z"))
            assert r.status_code == 422 and _fields(r) == ["body.received_at"]
            ahead = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
            r = await disp.post("/api/v1/incidents", json=_intake(*SF, received_at=ahead))
            assert r.status_code == 422 and _fields(r) == ["body.received_at"]
            await create_incident(disp, *SF, received_at="2021-01-01T00:00:00Z")
        finally:
            await a.close()


async def test_status_reported_at_outside_the_window_is_422_and_changes_nothing(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "E01", status="available_in_quarters")
    pool = api.running.pool
    for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00",
                  (datetime.now(UTC) + timedelta(hours=1)).isoformat(), "2026-01-01T00:00:00"):
        r = await sup.post("/api/v1/units/E01/status",
                           json={"status": "available_on_radio", "reported_at": value})
        assert r.status_code == 422, (value, r.text)
        assert _fields(r) == ["body.reported_at"], (value, r.text)
    assert await pool.fetchval("SELECT count(*) FROM unit_status_log WHERE unit_id = 'E01'") == 1
    assert (await sup.get("/api/v1/units/E01")).json()["status"] == "available_in_quarters"


async def test_no_number_sequence_is_made_for_a_request_validation_refuses(api: Api) -> None:
    """Smaller defect: a sequence was created for an unknown agency/type before validation
    refused the request."""
    disp = await api.as_("dispatcher")
    pool = api.running.pool
    r = await disp.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "NOSUCHTYPE", "location": {"lat": SF[0], "lon": SF[1]}})
    assert r.status_code == 422 and _fields(r) == ["body.incident_type"], r.text
    assert await _made(pool) == {"incidents": 0, "events": 0, "sequences": 0}
    r = await disp.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "MED", "location": {"lat": 0.0, "lon": 0.0}})
    assert r.status_code == 422, r.text
    assert await _made(pool) == {"incidents": 0, "events": 0, "sequences": 0}
    # An agency the dispatcher does not act for is refused first (agency scope).
    r = await disp.post("/api/v1/incidents", json={
        "agency": "NEWAGENCY", "incident_type": "MED", "location": {"lat": SF[0], "lon": SF[1]}})
    assert r.status_code == 403, r.text
    assert await _made(pool) == {"incidents": 0, "events": 0, "sequences": 0}


async def test_infinite_timestamps_cannot_be_stored(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO units (id, agency, discipline, unit_type) "
                       "VALUES ('E9', 'A', 'fire', 'engine')")
    refused = {
        "units_last_fix_at_finite": "UPDATE units SET last_fix_at = 'infinity' WHERE id = 'E9'",
        "units_status_changed_at_finite":
            "UPDATE units SET status_changed_at = '-infinity' WHERE id = 'E9'",
        "unit_status_log_reported_at_finite":
            "INSERT INTO unit_status_log (unit_id, to_status, reported_at, actor, source) "
            "VALUES ('E9', 'off_duty', '-infinity', 't', 'api')",
        "incidents_received_at_finite":
            "INSERT INTO incidents (number, agency, incident_type, priority, lat, lon, "
            "location_source, received_at) VALUES ('X-1', 'A', 'MED', 2, 37.7, -122.4, 'latlon', "
            "'-infinity')",
    }
    for constraint, sql in refused.items():
        with pytest.raises(asyncpg.CheckViolationError) as caught:
            await pool.execute(sql)
        assert caught.value.constraint_name == constraint
    # Every constraint of the migration was validated on this (clean) database.
    left = await pool.fetch("SELECT conname FROM pg_constraint WHERE conname LIKE '%\\_finite' "
                            "AND NOT convalidated")
    assert left == []
    assert await pool.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conname LIKE '%\\_finite'") >= 25


async def test_the_migration_repairs_existing_rows_and_applies_cleanly(
        empty_database_url: str, tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for f in sorted((REPO_ROOT / "migrations").glob("*.sql")):
        if int(f.name[:4]) < 5:
            shutil.copy(f, before / f.name)
    conn = await db.connect(empty_database_url)
    try:
        await db.migrate(conn, before)
        # What the old server let in: infinite intake and device times.
        await conn.execute(
            "INSERT INTO units (id, agency, discipline, unit_type, last_fix_at, last_lat, last_lon) "
            "VALUES ('E1', 'A', 'fire', 'engine', 'infinity', 1, 2), "
            "('E2', 'A', 'fire', 'engine', now(), 37.7, -122.4)")
        await conn.execute(
            "INSERT INTO unit_status_log (unit_id, to_status, reported_at, actor, source) "
            "VALUES ('E1', 'off_duty', '-infinity', 't', 'mdt')")
        await conn.execute(
            "INSERT INTO incidents (number, agency, incident_type, priority, lat, lon, "
            "location_source, received_at, answered_at) VALUES "
            "('A-1', 'A', 'MED', 2, 37.7, -122.4, 'latlon', '-infinity', 'infinity'), "
            "('A-2', 'A', 'MED', 2, 37.7, -122.4, 'latlon', 'infinity', 'infinity'), "
            "('A-3', 'A', 'MED', 2, 37.7, -122.4, 'latlon', '2026-01-01 00:00:00+00', "
            "'2026-01-01 00:00:00+00')")
        applied = await db.migrate(conn, REPO_ROOT / "migrations")
        assert "0005_finite_times.sql" in applied
        rows = {r["number"]: r for r in await conn.fetch(
            "SELECT number, received_at, answered_at, created_at FROM incidents")}
        assert rows["A-1"]["received_at"] == rows["A-1"]["created_at"]
        assert rows["A-1"]["answered_at"] is None
        assert rows["A-2"]["received_at"] == rows["A-2"]["created_at"]
        assert rows["A-3"]["received_at"] == datetime(2026, 1, 1, tzinfo=UTC)  # untouched
        notes = await conn.fetch("SELECT i.number, n.author FROM incident_narrative n "
                                 "JOIN incidents i ON i.id = n.incident_id ORDER BY i.number")
        assert [(n["number"], n["author"]) for n in notes] == [
            ("A-1", "migration 0005"), ("A-2", "migration 0005")]
        e1 = await conn.fetchrow("SELECT * FROM units WHERE id = 'E1'")
        assert e1["last_fix_at"] is None and e1["last_lat"] is None
        # The append-only log keeps its history; its constraint holds for new rows only.
        unvalidated = [r["conname"] for r in await conn.fetch(
            "SELECT conname FROM pg_constraint WHERE conname LIKE '%\\_finite' "
            "AND NOT convalidated")]
        assert unvalidated == ["unit_status_log_reported_at_finite"]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO unit_status_log (unit_id, to_status, reported_at, actor, source) "
                "VALUES ('E2', 'off_duty', 'infinity', 't', 'mdt')")
    finally:
        await conn.close()


# --- places ----------------------------------------------------------------------------------

async def test_null_island_is_refused_without_an_area_or_a_graph(api: Api) -> None:
    disp = await api.as_("dispatcher")
    sup = await api.as_("supervisor")
    pool = api.running.pool
    for lat, lon in ((0.0, 0.0), (0.4, -0.7)):
        r = await disp.post("/api/v1/incidents", json=_intake(lat, lon))
        assert r.status_code == 422, r.text
        assert _fields(r) == ["body.location.lat", "body.location.lon"]
    assert await _made(pool) == {"incidents": 0, "events": 0, "sequences": 0}
    r = await sup.put("/api/v1/stations/S0", json={"id": "S0", "agency": "SFFD", "name": "Zero",
                                                   "lat": 0.0, "lon": 0.0})
    assert r.status_code == 422 and _fields(r) == ["body.lat", "body.lon"], r.text
    csv_text = "station,name,lat,lon\n1,One,37.77,-122.42\n2,Two,0,0\n"
    r = await sup.post("/api/v1/stations/import?agency=SFFD", content=csv_text,
                       headers={"content-type": "text/csv"})
    assert r.status_code == 422 and _fields(r) == ["body.line[3]"], r.text
    assert await pool.fetchval("SELECT count(*) FROM stations") == 0
    # Anywhere else on earth is an agency's business without a configured area.
    inc = await create_incident(disp, *SF)
    r = await disp.patch(f"/api/v1/incidents/{inc['id']}",
                         json={"location": {"lat": 0.0, "lon": 0.0}})
    assert r.status_code == 422 and _fields(r) == ["body.location.lat", "body.location.lon"]
    assert (await disp.get(f"/api/v1/incidents/{inc['id']}")).json()["lat"] == SF[0]


def _box(lat: float, lon: float, d: float = 0.05) -> list[list[list[float]]]:
    return [[[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
             [lon - d, lat - d]]]


AREA = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"agency": "SFFD"},
     "geometry": {"type": "Polygon", "coordinates": _box(*SF)}},
    {"type": "Feature", "properties": {},
     "geometry": {"type": "Polygon", "coordinates": _box(*OAKLAND)}},
]}


@pytest.fixture(params=["inline", "file"])
async def area_api(request: pytest.FixtureRequest, database_url: str,
                   tmp_path: Path) -> AsyncIterator[Api]:
    value = json.dumps(AREA)
    if request.param == "file":
        path = tmp_path / "area.geojson"
        path.write_text(value)
        value = str(path)
    async with running_app(make_settings(database_url, tmp_path, service_area=value)) as running:
        a = Api(running)
        yield a
        await a.close()


async def test_a_configured_service_area_bounds_each_agency(area_api: Api) -> None:
    disp = await area_api.as_("dispatcher", agencies=["SFFD", "SFPD"])
    sup = await area_api.as_("supervisor")
    await create_incident(disp, *SF)
    for agency, (lat, lon) in (("SFFD", OAKLAND), ("SFFD", (0.0, 0.0)), ("SFPD", SF),
                               ("SFPD", (0.0, 0.0))):
        r = await disp.post("/api/v1/incidents", json={**_intake(lat, lon), "agency": agency})
        assert r.status_code == 422, (agency, lat, lon, r.text)
        assert _fields(r) == ["body.location.lat", "body.location.lon"]
    r = await disp.post("/api/v1/incidents", json={**_intake(*OAKLAND), "agency": "SFPD"})
    assert r.status_code == 201, r.text  # no area of its own: the shared one
    r = await sup.put("/api/v1/stations/S9", json={"id": "S9", "agency": "SFFD", "name": "Nine",
                                                   "lat": OAKLAND[0], "lon": OAKLAND[1]})
    assert r.status_code == 422 and _fields(r) == ["body.lat", "body.lon"]


async def test_the_road_graph_bounds_plus_margin_are_the_default_area(sf_api: Api) -> None:
    disp = await sf_api.as_("dispatcher")
    area = sf_api.running.runtime.incidents.plausible.area
    assert area.bounds is not None and not area.polygons
    min_lat, _, _, max_lon = area.bounds
    await create_incident(disp, *SF)
    await create_incident(disp, min_lat + 0.001, SF[1])       # inside the margin
    for lat, lon in ((0.0, 0.0), (min_lat - 0.01, SF[1]), (SF[0], max_lon + 0.01),
                     (38.58, -121.49)):                         # Sacramento
        r = await disp.post("/api/v1/incidents", json=_intake(lat, lon))
        assert r.status_code == 422, (lat, lon, r.text)
        assert re.search(r"outside the service area \(road graph .* bounds \+ 10000 m\)",
                         r.json()["detail"])


def test_a_bad_service_area_is_refused_naming_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ServiceAreaError, match="cannot read"):
        ServiceArea.from_geojson(str(tmp_path / "missing.geojson"))
    with pytest.raises(ServiceAreaError, match="expected a Polygon.*not .Point."):
        ServiceArea.from_geojson('{"type": "Point", "coordinates": [0, 0]}')
    with pytest.raises(ServiceAreaError, match="is invalid"):
        ServiceArea.from_geojson('{"type": "Polygon", "coordinates": [[[0,0],[1,1],[1,0],[0,1],'
                                 '[0,0]]]}')
    with pytest.raises(ServiceAreaError, match="not JSON"):
        ServiceArea.from_geojson("{nope")


# --- timers ----------------------------------------------------------------------------------

@pytest.fixture
async def timer_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(database_url, tmp_path,
                             pending_thresholds_s={1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0},
                             unit_status_thresholds_s={"available_in_quarters": 0.0})
    async with running_app(settings) as running:
        a = Api(running)
        yield a
        await a.close()


async def test_the_timer_sweep_skips_a_row_it_cannot_evaluate(
        timer_api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    deps = timer_api.running.runtime.dispatch
    pool = deps.pool
    disp = await timer_api.as_("dispatcher")
    sup = await timer_api.as_("supervisor")
    good = await create_incident(disp, *SF)
    bad = {k: (await create_incident(disp, *SF))["id"] for k in ("neg_inf", "year_1", "bc")}
    await create_unit(sup, "E01")
    await create_unit(sup, "E02")
    # Rows the old server could store, made directly: past the new constraint where needed,
    # as the database's superuser (the server's role, cad_app, may not alter tables).
    database_url = timer_api.running.settings.database_url
    assert database_url is not None
    admin = await db.connect(database_url)
    try:
        await admin.execute("ALTER TABLE incidents DROP CONSTRAINT IF EXISTS "
                            "incidents_received_at_finite")
        await admin.execute("ALTER TABLE units DROP CONSTRAINT IF EXISTS "
                            "units_status_changed_at_finite")
        await admin.execute("UPDATE incidents SET received_at = '-infinity' WHERE id = $1",
                            bad["neg_inf"])
        await admin.execute("UPDATE incidents SET received_at = '0001-01-01 00:00:00+00' "
                            "WHERE id = $1", bad["year_1"])
        await admin.execute("UPDATE incidents SET received_at = '4713-01-01 00:00:00+00 BC' "
                            "WHERE id = $1", bad["bc"])
        await admin.execute("UPDATE units SET status_changed_at = 'infinity' WHERE id = 'E02'")
    finally:
        await admin.close()
    capsys.readouterr()

    board = await disp.get("/api/v1/timers")
    assert board.status_code == 200, board.text
    assert good["id"] in [p["incident_id"] for p in board.json()["pending_incidents"]]
    assert [u["unit_id"] for u in board.json()["units"]] == ["E01"]

    assert await timers.sweep(deps=deps) == 2      # the good incident and E01
    assert await timers.sweep(deps=deps) == 0      # announced once; the bad rows still skipped
    fired = await pool.fetch("SELECT aggregate_id FROM event_log WHERE type LIKE 'timer.%' "
                             "ORDER BY id")
    assert [r["aggregate_id"] for r in fired] == [str(good["id"]), "E01"]
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if "timer_row_unevaluable" in line]
    assert sorted(e["subject"] for e in logged) == sorted(
        [f"incident:{i}" for i in bad.values()] + ["unit:E02"])
    # A new incident still gets its timer while the bad rows stay.
    later = await create_incident(disp, *SF)
    assert await timers.sweep(deps=deps) == 1
    assert (await pool.fetchval("SELECT aggregate_id FROM event_log WHERE type = "
                                "'timer.pending_overdue' ORDER BY id DESC LIMIT 1")) == str(later["id"])
