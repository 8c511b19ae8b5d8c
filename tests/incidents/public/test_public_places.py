"""Generalisation on real data: San Francisco's address points and the TIGER road graph. An
incident at an address is published at its hundred block's middle, not at the house; one
away from any address (inside a park) at the nearest corner of the graph."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cad import db
from incidents.geocoding.service import import_addresses
from tests.auth import Api
from tests.dispatch_fixtures import make_settings
from tests.incidents.public.conftest import intake, publish
from tests.support import RunningApp, require_shared, running_app


def _m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    kx = 111_320.0 * math.cos(math.radians(lat1))
    return math.hypot((lat1 - lat2) * 111_320.0, (lon1 - lon2) * kx)


@pytest.fixture
async def sf_public_app(database_url: str, tmp_path: Path, sf_graph_path: Path
                        ) -> AsyncIterator[RunningApp]:
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        await import_addresses(pool=pool, path=require_shared("addresses/sf_address_points.csv.gz"))
    finally:
        await pool.close()
    async with running_app(make_settings(database_url, tmp_path, graph_path=sf_graph_path,
                                         public_delay_s=0.0)) as app:
        yield app


async def test_published_places_on_san_francisco_data(sf_public_app: RunningApp) -> None:
    api = Api(sf_public_app)
    try:
        sup = await api.as_("supervisor")
        assert (await publish(sup, "ROBBERY")).status_code == 200
        at_house = await intake(sup, location={"address": "935 Folsom St, Apt 2"})
        in_park = await intake(sup, location={"lat": 37.76850, "lon": -122.48300})
        async with httpx.AsyncClient(base_url=sf_public_app.base_url) as anon:
            fc = (await anon.get("/public/SFFD/incidents.geojson")).json()
    finally:
        await api.close()
    by_number = {f["properties"]["number"]: f for f in fc["features"]}
    house = by_number[at_house["number"]]
    assert house["properties"]["location"] == "900 Block of FOLSOM ST"
    assert house["properties"]["location_precision"] == "block"
    lon, lat = house["geometry"]["coordinates"]
    assert 15 < _m(lat, lon, at_house["lat"], at_house["lon"]) < 150
    park = by_number[in_park["number"]]
    assert park["properties"]["location_precision"] == "intersection", park
    assert " & " in park["properties"]["location"]
    lon, lat = park["geometry"]["coordinates"]
    assert _m(lat, lon, 37.76850, -122.48300) < 1000
