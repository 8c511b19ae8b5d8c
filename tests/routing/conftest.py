"""Fixtures for the routing tests: hand-drawn graphs, graphs built from the shared
extracts (cached per session), and a networkx oracle."""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import numpy as np
import pytest

from routing.build import build_graph
from routing.ch import build_hierarchy
from routing.graph import RoadGraph
from routing.index import Seed
from routing.testdata import require_road_file


def make_graph(arcs: list[tuple[int, int, float]], *, n_coords: int | None = None,
               largest_scc: bool = False, with_ch: bool = True,
               layout: str = "level-hilbert") -> RoadGraph:
    """Graph from (tail, head, time_ds) arcs on nodes laid out on a 100 m grid.

    Lengths are 10 m per decisecond, so route distances are easy to check by hand.
    ``layout`` is the hierarchy's node numbering (routing.ch.build_hierarchy)."""
    nodes = sorted({a for a, _, _ in arcs} | {b for _, b, _ in arcs}) if n_coords is None \
        else list(range(n_coords))
    ids = np.array(nodes, dtype=np.int64)
    lat = 40.0 + (ids // 10) * 0.0009  # ~100 m
    lon = -74.0 + (ids % 10) * 0.0012  # ~100 m at 40N
    t = np.array([a[2] for a in arcs], dtype=np.int64)
    g = build_graph(
        tail_ext=np.array([a[0] for a in arcs]), head_ext=np.array([a[1] for a in arcs]),
        time_ds=t, length_m=t * 10.0, road_class=np.zeros(len(arcs)),
        way_id=np.arange(len(arcs)), node_ext_id=ids, node_lat=lat, node_lon=lon,
        class_names=["test"], largest_scc=largest_scc)
    return g.with_hierarchy(build_hierarchy(g, layout=layout)) if with_ch else g


def nx_graph(g: RoadGraph) -> nx.DiGraph:
    G = nx.DiGraph()
    G.add_nodes_from(range(g.n_nodes))
    for e in range(g.n_edges):
        G.add_edge(int(g.edge_tail[e]), int(g.fwd_head[e]), weight=int(g.edge_time_ds[e]),
                   length=float(g.edge_length_m[e]))
    return G


def oracle_eta_ds(G: nx.DiGraph, g: RoadGraph, unit_src: list[Seed], inc_seeds: list[Seed],
                  cache: dict | None = None) -> float:
    """ETA by networkx Dijkstra: best over unit sources, incident seeds, and driving
    straight along a shared edge."""
    best = np.inf
    for s in unit_src:
        key = s.node
        if cache is not None and key in cache:
            d = cache[key]
        else:
            d = nx.single_source_dijkstra_path_length(G, s.node, weight="weight")
            if cache is not None:
                cache[key] = d
        for q in inc_seeds:
            if q.node in d:
                best = min(best, s.t_ds + d[q.node] + q.t_ds)
            if s.edge >= 0 and s.edge == q.edge and s.frac <= q.frac:
                best = min(best, (q.frac - s.frac) * float(g.edge_time_ds[s.edge]))
    return best


_cache: dict[str, RoadGraph] = {}


@pytest.fixture(scope="session")
def real_graph() -> Callable[[str], RoadGraph]:
    """Load a shared extract into a RoadGraph with its hierarchy, once per session."""
    from routing.loaders import load_any

    def get(name: str) -> RoadGraph:
        path = require_road_file(name)
        if name not in _cache:
            g = load_any(path)
            _cache[name] = g.with_hierarchy(build_hierarchy(g))
        return _cache[name]

    return get
