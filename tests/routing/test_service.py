"""The service face: strings and ids at the boundary, updates, tables, routes, swaps."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from routing import InvalidUnitTypesError, Location, RoutingError, RoutingService
from routing.cli import graph_app
from routing.graph import RoadGraph
from routing.testdata import require_road_file
from tests.routing.conftest import make_graph


# a 3x3 grid of two-way streets, 100 ds (10 s) per block; grid cell i has node id
# 10*row + col, which make_graph lays out ~100 m apart
def N(i: int) -> int:
    return 10 * (i // 3) + i % 3


GRID: list[tuple[int, int, float]] = [(N(a), N(b), 100.0) for a, b in [
    (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8),
    (0, 3), (3, 6), (1, 4), (4, 7), (2, 5), (5, 8)]]
GRID = GRID + [(b, a, w) for a, b, w in GRID]


@pytest.fixture
def svc() -> RoutingService:
    s = RoutingService(make_graph(GRID))
    s.upsert_unit("E1", node=N(0), unit_type="engine", capabilities={"water"})
    s.upsert_unit("M7", node=N(8), unit_type="medic", capabilities={"als"})
    s.upsert_unit("M3", node=N(2), unit_type="medic", capabilities={"als", "bariatric"})
    return s


def test_nearest_by_type_and_capability(svc):
    r = svc.nearest_units(node=N(4), k=5)
    assert [u.unit_id for u in r.units] == ["E1", "M3", "M7"]  # all 20 s: ties by id
    assert [u.eta_s for u in r.units] == [20.0, 20.0, 20.0]
    assert [u.unit_id for u in svc.nearest_units(node=N(4), unit_types={"medic"}).units] == ["M3", "M7"]
    assert [u.unit_id for u in svc.nearest_units(node=N(4), capabilities={"bariatric"}).units] == ["M3"]
    assert svc.nearest_units(node=N(4), capabilities={"unknown"}).units == []
    with pytest.raises(InvalidUnitTypesError):  # no ladder was ever placed: a typo, not "none free"
        svc.nearest_units(node=N(4), unit_types={"ladder"})
    assert svc.nearest_units(node=N(4), k=1).units[0].distance_m == pytest.approx(2000)


def test_moves_and_status_are_seen_by_the_next_query(svc):
    svc.move_unit("M7", node=N(5))
    assert svc.nearest_units(node=N(4), k=1).units[0].unit_id == "M7"
    svc.set_unit_available("M7", False)
    assert "M7" not in [u.unit_id for u in svc.nearest_units(node=N(4), k=5).units]
    svc.set_unit_available("M7", True)
    svc.remove_unit("M7")
    assert "M7" not in [u.unit_id for u in svc.nearest_units(node=N(4), k=5).units]
    with pytest.raises(RoutingError):
        svc.move_unit("M7", node=N(1))


def test_edge_positions_and_lat_lon(svc):
    g = svc.graph
    e = g.find_edge(g.node_id(N(3)), g.node_id(N(4)))
    svc.upsert_unit("B2", location=Location(edge=e, frac=0.5), unit_type="chief")
    r = svc.nearest_units(node=N(4), k=1)
    assert r.units[0].unit_id == "B2" and r.units[0].eta_s == pytest.approx(5.0)
    lat = float(g.node_lat[g.node_id(N(4))]) + 0.00005
    lon = float(g.node_lon[g.node_id(N(4))]) + 0.0006  # halfway 4 -> 5, ~5 m off the street
    r = svc.nearest_units(lat=lat, lon=lon, k=1)
    assert r.incident.distance_m == pytest.approx(5.6, abs=0.5)
    assert r.units[0].eta_s == pytest.approx(10.0, rel=0.01)  # B2: 5 s to node 4 + 5 s


def test_route_geometry(svc):
    r = svc.route("E1", node=N(4))
    assert r.eta_s == 20.0 and r.distance_m == pytest.approx(2000)
    g = svc.graph
    assert r.coords_lonlat[0] == (float(g.node_lon[g.node_id(N(0))]), float(g.node_lat[g.node_id(N(0))]))
    assert r.coords_lonlat[-1] == (float(g.node_lon[g.node_id(N(4))]), float(g.node_lat[g.node_id(N(4))]))
    assert len(r.coords_lonlat) == 3


def test_eta_table(svc):
    t = svc.eta_table(nodes=[N(0), N(4), N(8)])
    assert t.unit_ids == ["E1", "M7", "M3"]
    np.testing.assert_allclose(t.eta_s, [[0, 20, 40], [40, 20, 0], [20, 20, 20]])
    t2 = svc.eta_table(nodes=[N(4)], unit_ids=["M3"])
    assert t2.eta_s.shape == (1, 1)


def test_swap_graph_keeps_units_and_queries_running(svc):
    slower = make_graph([(a, b, 2 * w) for a, b, w in GRID])
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer():
        try:
            while not stop.is_set():
                r = svc.nearest_units(node=N(4), k=3)
                assert len(r.units) == 3 and r.units[0].eta_s in (20.0, 40.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    th = threading.Thread(target=hammer)
    th.start()
    svc.swap_graph(slower)
    svc.move_unit("E1", node=N(1))
    stop.set()
    th.join()
    assert not errors
    r = svc.nearest_units(node=N(4), k=3)
    assert r.units[0].unit_id == "E1" and r.units[0].eta_s == 20.0  # one slower block
    assert [u.eta_s for u in r.units[1:]] == [40.0, 40.0]


def test_cli_build(tmp_path):
    src = require_road_file("West-Oakland.osm.bz2")
    out = tmp_path / "wo.cadgraph"
    res = CliRunner().invoke(graph_app, ["build", str(src), "--out", str(out),
                                         "--speed", "residential=25"])
    assert res.exit_code == 0, res.output
    g = RoadGraph.load(out)
    assert g.hierarchy is not None and g.meta["speeds_kmh"]["residential"] == 25.0
    res = CliRunner().invoke(graph_app, ["info", str(out)])
    assert res.exit_code == 0
    res = CliRunner().invoke(graph_app, ["build", "--out", str(out)])
    assert res.exit_code != 0
