"""Snapping to edges: position along the edge, direction, distance, throughput."""

from __future__ import annotations

import time

import numpy as np
import pytest

from routing.snap import Snapper
from tests.routing.conftest import make_graph


def _node_ll(g, ext):
    i = g.node_id(ext)
    return float(g.node_lat[i]), float(g.node_lon[i])


def test_mid_edge_on_a_one_way_street():
    # 0 -> 1 one-way (east), 1 <-> 2 two-way, 2 -> 0 back: a strongly connected triangle
    g = make_graph([(0, 1, 100), (1, 2, 60), (2, 1, 60), (2, 0, 80)])
    s = Snapper(g)
    (la0, lo0), (la1, lo1) = _node_ll(g, 0), _node_ll(g, 1)
    # a point 30% of the way from 0 to 1, 20 m north of the street
    lat = la0 + 0.3 * (la1 - la0) + 20 / 111_195
    lon = lo0 + 0.3 * (lo1 - lo0)
    r = s.snap([lat], [lon])
    e = int(r.edge[0])
    assert (int(g.edge_tail[e]), int(g.fwd_head[e])) == (g.node_id(0), g.node_id(1))
    assert r.frac[0] == pytest.approx(0.3, abs=1e-3)
    assert r.twin[0] == -1  # one-way: only the forward direction exists
    assert r.distance_m[0] == pytest.approx(20, abs=0.5)
    assert r.to_tail_s[0] == pytest.approx(3.0, rel=1e-3)  # 100 ds edge
    assert r.to_head_s[0] == pytest.approx(7.0, rel=1e-3)
    assert not r.beyond_limit[0]


def test_two_way_reports_the_twin():
    g = make_graph([(0, 1, 100), (1, 0, 100), (1, 2, 60), (2, 1, 60)])
    s = Snapper(g)
    (la1, lo1), (la2, lo2) = _node_ll(g, 1), _node_ll(g, 2)
    r = s.snap([(la1 + la2) / 2], [(lo1 + lo2) / 2 + 1e-6])
    e, tw = int(r.edge[0]), int(r.twin[0])
    assert tw >= 0 and g.edge_tail[tw] == g.fwd_head[e] and g.fwd_head[tw] == g.edge_tail[e]
    assert r.frac[0] == pytest.approx(0.5, abs=0.01)


def test_far_points_are_flagged():
    g = make_graph([(0, 1, 100), (1, 0, 100)])
    s = Snapper(g, limit_m=50)
    la, lo = _node_ll(g, 0)
    r = s.snap([la + 0.001, la + 0.01, la - 2.0], [lo, lo, lo])  # 111 m, 1.1 km, far outside
    assert r.beyond_limit.tolist() == [True, True, True]
    assert r.distance_m[0] == pytest.approx(111.2, rel=0.01)
    assert r.distance_m[2] > 200_000
    r = s.snap([la + 0.0003], [lo])
    assert not r.beyond_limit[0]


def test_snap_matches_brute_force_on_sf(real_graph):
    g = real_graph("tl_2017_06075_roads.zip")
    s = Snapper(g)
    rng = np.random.default_rng(5)
    lat = rng.uniform(37.71, 37.81, 300)
    lon = rng.uniform(-122.51, -122.36, 300)
    r = s.snap(lat, lon)
    # brute force over every segment in the same projection
    px, py = s._project(lat, lon)
    ax, ay, bx, by = s._x0, s._y0, s._x1, s._y1
    dx, dy = bx - ax, by - ay
    L2 = np.maximum(dx * dx + dy * dy, 1e-12)
    for i in range(0, 300, 7):
        t = np.clip(((px[i] - ax) * dx + (py[i] - ay) * dy) / L2, 0, 1)
        d = np.hypot(ax + t * dx - px[i], ay + t * dy - py[i])
        assert r.distance_m[i] == pytest.approx(d.min(), abs=1e-6)


def test_snap_throughput_over_10k_points_per_second(real_graph):
    g = real_graph("tl_2017_06075_roads.zip")
    s = Snapper(g)
    rng = np.random.default_rng(1)
    lat = rng.uniform(37.71, 37.81, 20_000)
    lon = rng.uniform(-122.51, -122.36, 20_000)
    s.snap(lat[:10], lon[:10])  # JIT warm-up
    t0 = time.perf_counter()
    r = s.snap(lat, lon)
    rate = lat.size / (time.perf_counter() - t0)
    assert len(r) == 20_000
    assert rate > 10_000, f"{rate:.0f} points/s"


def test_snap_one_equals_snap(real_graph):
    """The single-point path (every AVL fix) answers exactly as the vectorised one."""
    g = real_graph("liechtenstein.osm.pbf")
    s = Snapper(g)
    rng = np.random.default_rng(9)
    lat = rng.uniform(g.node_lat.min() - 0.01, g.node_lat.max() + 0.01, 300)
    lon = rng.uniform(g.node_lon.min() - 0.01, g.node_lon.max() + 0.01, 300)
    many = s.snap(lat, lon)
    for i in range(lat.size):
        e, f, tw, d, beyond = s.snap_one(float(lat[i]), float(lon[i]))
        assert (e, f, tw, d, beyond) == (int(many.edge[i]), float(many.frac[i]),
                                         int(many.twin[i]), float(many.distance_m[i]),
                                         bool(many.beyond_limit[i]))
    with pytest.raises(ValueError):
        s.snap_one(float("nan"), 9.5)
