"""The console served by the app (cad.console): page, assets from the packages that ship them,
/docs with no CDN, the base map drawn from the road graph, the map configuration."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from cad.console.api import BASEMAP_ZOOM_BANDS
from routing.basemap import ZOOM_BANDS, band_for, basemap_geojson
from routing.graph import RoadGraph
from tests.auth import Api
from tests.dispatch_fixtures import make_settings
from tests.support import RunningApp, running_app

API = "/api/v1"
ASSET = re.compile(r'(?:src|href)="([^"]+)"')


async def test_the_console_page_and_every_asset_it_names_are_served_locally(
        app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assets = [a for a in ASSET.findall(page.text) if not a.startswith(("#", "data:"))]
        assert "/console/vendor/leaflet/leaflet.js" in assets
        assert "/console/static/app.js" in assets
        for asset in assets:
            assert asset.startswith("/"), f"{asset} would leave the machine"
            r = await c.get(asset)
            assert r.status_code == 200, asset
            assert len(r.content) > 100, asset
        js = await c.get("/console/vendor/leaflet/leaflet.js")
        assert b"Leaflet" in js.content[:400]
        # Kept by the browser and revalidated: a reload costs a 304, not the library again.
        assert js.headers["cache-control"] == "no-cache"
        again = await c.get("/console/vendor/leaflet/leaflet.js",
                            headers={"if-none-match": js.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert page.headers["cache-control"] == "no-store"   # the page itself is not kept


async def test_docs_work_offline(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        docs = await c.get("/docs")
        assert docs.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", docs.text)
        assert urls, docs.text
        for url in urls:
            assert not url.startswith(("http:", "https:", "//")), f"/docs loads {url}"
            r = await c.get(url)
            assert r.status_code == 200, url
        assert "/console/vendor/swagger-ui/swagger-ui-bundle.js" in urls
        bundle = await c.get("/console/vendor/swagger-ui/swagger-ui-bundle.js")
        assert len(bundle.content) > 500_000   # the real Swagger UI, not a stub
        assert "script-src 'self' 'unsafe-inline'" in docs.headers["content-security-policy"]
        assert (await c.get("/redoc")).status_code == 404   # no offline copy: not served


async def test_console_endpoints_need_a_reader(app: RunningApp) -> None:
    api = Api(app)
    try:
        async with httpx.AsyncClient(base_url=app.base_url) as anon:
            assert (await anon.get(f"{API}/console/config")).status_code == 401
            assert (await anon.get(f"{API}/basemap")).status_code == 401
        disp = await api.as_("dispatcher")
        cfg = (await disp.get(f"{API}/console/config")).json()
        assert cfg["tile_url"] is None and cfg["basemap"] is False and cfg["bounds"] is None
        assert cfg["libraries"]["leaflet"].startswith("1.")
        r = await disp.get(f"{API}/basemap")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        bad = await disp.get(f"{API}/basemap?zoom=99")
        assert bad.status_code == 422 and "zoom" in bad.text
    finally:
        await api.close()


async def test_an_external_tile_server_is_named_in_config_and_policy(
        database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path,
                             console_tile_url="https://tiles.example.org/{z}/{x}/{y}.png")
    async with running_app(settings) as running:
        api = Api(running)
        try:
            disp = await api.as_("dispatcher")
            cfg = (await disp.get(f"{API}/console/config")).json()
            assert cfg["tile_url"] == "https://tiles.example.org/{z}/{x}/{y}.png"
            page = await disp.get("/")
            assert "img-src 'self' data: https://tiles.example.org;" in \
                page.headers["content-security-policy"]
        finally:
            await api.close()


async def test_the_base_map_is_the_road_graph_simplified_by_zoom(sf_api: Api) -> None:
    disp = await sf_api.as_("dispatcher")
    cfg = (await disp.get(f"{API}/console/config")).json()
    assert cfg["basemap"] is True
    west, south, east, north = cfg["bounds"]
    assert -122.6 < west < east < -122.3 and 37.6 < south < north < 37.9   # San Francisco
    sizes = {}
    for zoom in (10, 13, 15, 17):
        r = await disp.get(f"{API}/basemap", params={"zoom": zoom})
        assert r.status_code == 200
        geo = r.json()
        assert geo["type"] == "FeatureCollection"
        tiers = [f["properties"]["tier"] for f in geo["features"]]
        sizes[zoom] = sum(len(line) for f in geo["features"] for line in f["geometry"]["coordinates"])
        for f in geo["features"]:
            for line in f["geometry"]["coordinates"]:
                for lon, lat in line:
                    assert west - 1e-3 <= lon <= east + 1e-3 and south - 1e-3 <= lat <= north + 1e-3
        if zoom < 12:
            assert tiers == ["major"]
        else:
            assert "major" in tiers and "collector" in tiers
        if zoom >= 14:
            assert "local" in tiers
    # More detail as one zooms in; the lowest band is a small fraction of the full one.
    assert sizes[10] < sizes[13] < sizes[15] <= sizes[17]
    assert sizes[10] * 20 < sizes[17]


def test_zoom_bands_are_the_same_on_both_sides() -> None:
    assert BASEMAP_ZOOM_BANDS == [b.min_zoom for b in ZOOM_BANDS]
    assert band_for(0).min_zoom == 0 and band_for(13).min_zoom == 12 and band_for(22).min_zoom == 16


def test_full_detail_keeps_every_segment(sf_graph_path: Path) -> None:
    """At the top band nothing is simplified away: every undirected segment's end points are
    vertices of the drawn lines."""
    graph = RoadGraph.load(sf_graph_path)
    geo = basemap_geojson(graph, zoom=16)
    drawn = {(round(lon, 6), round(lat, 6)) for f in geo["features"]
             for line in f["geometry"]["coordinates"] for lon, lat in line}
    ends = {(round(float(graph.node_lon[n]), 6), round(float(graph.node_lat[n]), 6))
            for n in set(graph.edge_tail.tolist()) | set(graph.edge_head.tolist())}
    assert ends <= drawn


@pytest.mark.parametrize("path", ["/console/static/../settings.py", "/console/static/nope.js"])
async def test_static_files_stay_in_their_folder(app: RunningApp, path: str) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.get(path)
    assert r.status_code == 404
