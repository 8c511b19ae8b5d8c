"""Route time per road class (routing.calibration.class_times via
RoutingService.route_class_times) and a graph scaled per road class
(routing.calibration.with_class_factors), on the San Francisco graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.calibration import with_class_factors
from routing.ch import build_hierarchy
from routing.graph import RoadGraph
from routing.service import RoutingService

# Station 1 (Folsom St) to points across the city: Presidio, Ocean Beach, Bayview, Mission.
START = (37.7803, -122.4022)
POINTS = [(37.7989, -122.4662), (37.7600, -122.5090), (37.7300, -122.3900), (37.7599, -122.4148)]


@pytest.fixture(scope="module")
def sf_graph(sf_graph_path: Path) -> RoadGraph:
    return RoadGraph.load(sf_graph_path)


def _service(graph: RoadGraph) -> RoutingService:
    svc = RoutingService(graph)
    svc.upsert_unit("E1", lat=START[0], lon=START[1])
    return svc


def test_class_times_sum_to_the_routed_eta(sf_graph: RoadGraph) -> None:
    svc = _service(sf_graph)
    seen: set[str] = set()
    for lat, lon in POINTS:
        split = svc.route_class_times("E1", lat=lat, lon=lon)
        route = svc.route("E1", lat=lat, lon=lon)
        assert split.eta_s == pytest.approx(route.eta_s)
        assert sum(split.class_time_s.values()) == pytest.approx(route.eta_s)
        assert set(split.class_time_s) <= set(sf_graph.class_names)
        assert all(t > 0 for t in split.class_time_s.values())
        seen |= set(split.class_time_s)
    # Cross-town routes use local streets and arterials at least.
    assert len(seen) >= 2


def test_a_graph_scaled_per_class_routes_on_the_scaled_times(sf_graph: RoadGraph) -> None:
    base = _service(sf_graph)
    splits = [base.route_class_times("E1", lat=lat, lon=lon) for lat, lon in POINTS]
    cls = max(splits[0].class_time_s, key=lambda c: splits[0].class_time_s[c])
    scaled = with_class_factors(sf_graph, {cls: 1.5})
    assert scaled.hierarchy is None and scaled.meta["class_time_factors"][cls] == 1.5
    changed = scaled.edge_class == sf_graph.class_names.index(cls)
    assert (scaled.edge_time_ds[~changed] == sf_graph.edge_time_ds[~changed]).all()
    assert scaled.edge_time_ds[changed].sum() == pytest.approx(
        1.5 * sf_graph.edge_time_ds[changed].sum(), rel=1e-3)
    svc = _service(scaled.with_hierarchy(build_hierarchy(scaled)))
    for (lat, lon), before in zip(POINTS, splits, strict=True):
        after = svc.route_class_times("E1", lat=lat, lon=lon).eta_s
        # Never faster than before; never slower than the old path at the new speeds
        # (1 s of slack for rounding each edge to deciseconds).
        assert before.eta_s - 0.5 <= after <= before.eta_s + 0.5 * before.class_time_s[cls] + 1.0
    assert svc.route_class_times("E1", lat=POINTS[0][0], lon=POINTS[0][1]).eta_s > splits[0].eta_s

    with pytest.raises(ValueError, match="unknown road classes"):
        with_class_factors(sf_graph, {"no-such-class": 2.0})
    with pytest.raises(ValueError, match="positive"):
        with_class_factors(sf_graph, {cls: 0.0})
