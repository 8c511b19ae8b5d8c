"""Coverage's computation on a small hand-drawn graph, without the app: cells, weights, ETAs
against networkx Dijkstra, the n-th unit, bands, and the per-unit cache (reused for a status
change, recomputed for a move beyond the tolerance, evicted beyond its byte budget)."""

from __future__ import annotations

import h3
import numpy as np
import pytest

from cad.errors import Invalid
from incidents.dispatch import coverage as cov
from routing.index import Seed, incident_seeds
from routing.service import RoutingService
from tests.routing.conftest import make_graph, nx_graph, oracle_eta_ds

# A 10 x 10 street grid (~100 m blocks, node id 10*row + col), two-way, block times varied so
# that nearest units are not all ties; one one-way street so that direction matters.
ARCS: list[tuple[int, int, float]] = []
for r in range(10):
    for c in range(10):
        n = 10 * r + c
        if c < 9:
            t = 80.0 + (r * 7 + c * 3) % 40
            ARCS += [(n, n + 1, t), (n + 1, n, t)] if r != 5 else [(n, n + 1, t)]
        if r < 9:
            t = 90.0 + (r * 5 + c * 11) % 30
            ARCS += [(n, n + 10, t), (n + 10, n, t)]
UNITS = {"E1": (0, "engine"), "E2": (99, "engine"), "E3": (9, "engine"), "M1": (45, "medic")}


@pytest.fixture(scope="module")
def svc() -> RoutingService:
    s = RoutingService(make_graph(ARCS))
    for uid, (node, utype) in UNITS.items():
        s.upsert_unit(uid, node=node, unit_type=utype)
    return s


def _positions(svc: RoutingService) -> dict[str, tuple[float, float]]:
    g = svc.graph
    return {u: (float(g.node_lat[g.node_id(n)]), float(g.node_lon[g.node_id(n)]))
            for u, (n, _) in UNITS.items()}


async def test_cells_etas_against_networkx_and_the_nth_unit(svc: RoutingService) -> None:
    g = svc.graph
    middle = (float(g.node_lat.mean()), float(g.node_lon.mean()))
    far = (10.0, 10.0)   # a call nowhere near the area
    grid = cov.build_grid(svc, [], resolution=10, calls=[(*middle, 3), (*far, 2)])
    assert grid.area_source == "graph_extent" and 30 < len(grid.cells) < 200
    assert grid.weight.sum() == 3 and grid.calls_outside == 2
    assert grid.weight[grid.cells.index(h3.latlng_to_cell(*middle, 10))] == 3
    cache = cov.CoverageCache()
    await cov._columns(svc, grid, _positions(svc), cache)
    assert set(grid.columns) == set(UNITS) and cache.stats["unit_columns_computed"] == 4

    G = nx_graph(g)
    engines = ["E1", "E2", "E3"]
    first, who = cov._nth_best(grid, engines, 1, 1.0)
    second, who2 = cov._nth_best(grid, engines, 2, 1.5)
    for i in range(len(grid.cells)):
        p = svc.locate(lat=float(grid.lat[i]), lon=float(grid.lon[i]))
        inc = incident_seeds(g, p.edge, p.frac) if p.edge >= 0 else [Seed(p.node, 0.0, 0.0)]
        oracle = {u: oracle_eta_ds(G, g, [Seed(g.node_id(UNITS[u][0]), 0.0, 0.0)], inc) / 10.0
                  for u in engines}
        ranked = sorted(engines, key=lambda u: (oracle[u], u))
        assert who[i] == ranked[0] and first[i] == pytest.approx(oracle[ranked[0]], abs=1e-3)
        assert who2[i] == ranked[1] and second[i] == pytest.approx(1.5 * oracle[ranked[1]], abs=1e-3)
    none, nobody = cov._nth_best(grid, engines, 4, 1.0)   # only three engines
    assert np.isinf(none).all() and set(nobody) == {None}


def test_bands_and_input() -> None:
    eta = np.array([0.0, 120.0, 120.1, 240.0, 360.0, 360.1, np.inf])
    assert cov._band(eta, 240.0).tolist() == [0, 0, 1, 1, 2, 3, 4]
    labels = [b["label"] for b in cov.bands(240.0)]
    assert labels[0] == "covered: within 120 s" and labels[4].endswith("no available unit reaches it")
    assert cov.parse_without(" E07, M89 ,E07,") == ["E07", "M89"]
    assert cov.parse_without("") == [] and cov.parse_without(None) == []
    with pytest.raises(Invalid):
        cov.parse_without("E07,<script>")
    with pytest.raises(Invalid):
        cov.parse_without(",".join(f"U{i}" for i in range(51)))


async def test_cache_reuses_recomputes_after_a_move_and_evicts(svc: RoutingService,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    grid = cov.build_grid(svc, [], resolution=10, calls=[])
    cache = cov.CoverageCache()
    pos = _positions(svc)
    await cov._columns(svc, grid, pos, cache)
    before = {u: c[2].copy() for u, c in grid.columns.items()}
    # Nothing moved (a status change, a what-if): nothing recomputed.
    await cov._columns(svc, grid, pos, cache)
    assert cache.stats["unit_columns_computed"] == 4
    # E1 drifts 50 m (within the tolerance): kept; then moves 5 blocks: recomputed alone.
    la, lo = pos["E1"]
    await cov._columns(svc, grid, {**pos, "E1": (la + 0.00045, lo)}, cache)
    assert cache.stats["unit_columns_computed"] == 4
    g = svc.graph
    svc.move_unit("E1", node=50)
    try:
        moved = (float(g.node_lat[g.node_id(50)]), float(g.node_lon[g.node_id(50)]))
        await cov._columns(svc, grid, {**pos, "E1": moved}, cache)
        assert cache.stats["unit_columns_computed"] == 5
        assert not np.array_equal(grid.columns["E1"][2], before["E1"])
        assert all(np.array_equal(grid.columns[u][2], before[u]) for u in ("E2", "E3", "M1"))
    finally:
        svc.move_unit("E1", node=0)
    # Over the byte budget the least recently used grid goes, never the one in use.
    other = cov.build_grid(svc, [], resolution=9, calls=[])
    cache.grids[("old",)] = grid
    cache.grids[("new",)] = other
    await cov._columns(svc, other, pos, cache)
    budget = (len(grid.cells) + len(other.cells)) * 4 * 4
    monkeypatch.setattr(cov, "CACHE_BYTES", budget)
    cov._evict(cache, keep=other)
    assert list(cache.grids) == [("old",), ("new",)]   # within the budget
    monkeypatch.setattr(cov, "CACHE_BYTES", budget - 1)
    cov._evict(cache, keep=other)
    assert list(cache.grids) == [("new",)] and cache.stats["grids_evicted"] == 1
    monkeypatch.setattr(cov, "CACHE_BYTES", 0)
    cov._evict(cache, keep=other)
    assert list(cache.grids) == [("new",)]
