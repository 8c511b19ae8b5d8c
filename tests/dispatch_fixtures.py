"""Fixtures for the dispatch workflow (loaded by tests/conftest.py for every package): the San
Francisco road graph, SFFD stations, apps with and without a graph, and role clients on them."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth import Api
from tests.support import Apps, RunningApp, make_settings, once_per_run, require_shared

__all__ = ["make_settings"]  # imported from here by many tests


@pytest.fixture(scope="session")
def sf_graph_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TIGER San Francisco graph, built once per test run with `cad graph build` (under
    pytest-xdist by the first worker that needs it; the others wait for that one)."""
    src = require_shared("road/tl_2017_06075_roads.zip")
    with once_per_run(tmp_path_factory, "graphs") as graphs:
        out = graphs / "sf.cadgraph"
        if not out.exists():  # written atomically (RoadGraph.save): whole or absent
            subprocess.run([sys.executable, "-m", "cad", "graph", "build", str(src), "--out",
                            str(out)], check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def sffd_stations() -> list[dict[str, Any]]:
    path = require_shared("calls/sffd_fire_stations.csv")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
async def plain_app(apps: Apps) -> RunningApp:
    """The app without a road graph (straight-line ETA estimates)."""
    return await apps.start()


@pytest.fixture
async def sf_app(apps: Apps, sf_graph_path: Path) -> RunningApp:
    return await apps.start(graph_path=sf_graph_path)


@pytest.fixture
def api(apps: Apps, plain_app: RunningApp) -> Api:
    return apps.api(plain_app)


@pytest.fixture
def sf_api(apps: Apps, sf_app: RunningApp) -> Api:
    return apps.api(sf_app)


# Market St near 5th St, downtown San Francisco.
DOWNTOWN = (37.7837, -122.4075)


async def seed_stations_and_units(api: Api, stations: list[dict[str, Any]],
                                  units: list[tuple[str, str, str]]) -> httpx.AsyncClient:
    """The SFFD stations imported and ``units`` (id, unit type, station) created, by a
    supervisor, whose client is returned."""
    sup = await api.as_("supervisor")
    r = await sup.post("/api/v1/stations/import?agency=SFFD", content=stations_csv(stations),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    for uid, utype, station in units:
        await create_unit(sup, uid, utype, station=station)
    return sup


def stations_csv(stations: list[dict[str, Any]]) -> str:
    lines = ["station,name,address,lat,lon"]
    for s in stations:
        lines.append(f"{s['station']},Station {s['station']},\"{s['address']}\",{s['lat']},{s['lon']}")
    return "\n".join(lines) + "\n"


async def create_unit(client: httpx.AsyncClient, unit_id: str, unit_type: str = "engine", *,
                      station: str | None = None, status: str = "available_in_quarters",
                      discipline: str = "fire", agency: str = "SFFD",
                      capabilities: list[str] | None = None) -> dict[str, Any]:
    r = await client.post("/api/v1/units", json={
        "id": unit_id, "agency": agency, "discipline": discipline, "unit_type": unit_type,
        "home_station": station, "status": status, "capabilities": capabilities or []})
    assert r.status_code == 201, r.text
    return r.json()


async def create_incident(client: httpx.AsyncClient, lat: float, lon: float, itype: str = "MED",
                          **extra: Any) -> dict[str, Any]:
    body = {"agency": "SFFD", "incident_type": itype, "location": {"lat": lat, "lon": lon}, **extra}
    r = await client.post("/api/v1/incidents", json=body)
    assert r.status_code == 201, r.text
    return r.json()
