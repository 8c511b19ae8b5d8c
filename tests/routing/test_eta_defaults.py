"""Honest ETAs: the README's own `cad graph build` of the TIGER file carries the measured SFFD
time factor, and a server with that graph says on /readyz which ETA method it answers with."""

from __future__ import annotations

from pathlib import Path

import httpx

from routing.graph import RoadGraph
from routing.speeds import TIGER_TIME_FACTOR
from tests.support import RunningApp


def test_tiger_build_applies_the_measured_factor_by_default(sf_graph_path: Path) -> None:
    g = RoadGraph.load(sf_graph_path)   # built with `cad graph build FILE --out ...`, no flag
    assert g.meta["source_kind"] == "tiger"
    assert g.meta["time_factor"] == TIGER_TIME_FACTOR == 1.8
    # a 25 mph local street (S1400, 40.2 km/h) now takes 1.8x its posted-speed time
    local = g.class_names.index("S1400")
    on = g.edge_class == local
    kmh = (g.edge_length_m[on] / 1000) / (g.edge_time_ds[on] / 36000)
    assert abs(float(kmh.mean()) - 40.2 / 1.8) < 1.0


async def test_readyz_names_the_graph_and_the_eta_method(sf_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=sf_app.base_url) as c:
        r = await c.get("/readyz")
    assert r.status_code == 200
    details = r.json()["details"]
    assert details["eta_method"] == "road_network"
    assert details["road_graph"] is not None and details["road_graph"].endswith("sf.cadgraph")
    assert not any("no road graph" in w for w in details["warnings"])
