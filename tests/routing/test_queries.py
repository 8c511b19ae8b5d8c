"""Nearest-K, tables and routes against networkx Dijkstra (the slow obvious oracle)."""

from __future__ import annotations

import dataclasses
import itertools
import mmap
import os

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.index import Seed, UnitIndex, incident_seeds, unit_sources
from tests.routing.conftest import make_graph, nx_graph, oracle_eta_ds

REL = 1e-6


@st.composite
def random_case(draw):
    n = draw(st.integers(2, 14))
    arcs = []
    for _ in range(draw(st.integers(1, 45))):
        a = draw(st.integers(0, n - 1))
        b = draw(st.integers(0, n - 1))
        w = draw(st.sampled_from([1, 1, 2, 3, 5, 8, 13, 40]))  # 1 ds = a zero-length edge
        arcs.append((a, b, w))
        if draw(st.booleans()):  # two-way street, possibly with a different time back
            arcs.append((b, a, w if draw(st.booleans()) else draw(st.integers(1, 40))))
    arcs = [(a, b, w) for a, b, w in arcs if a != b]
    if not arcs:
        arcs = [(0, 1, 3)]
    n_units = draw(st.integers(0, 12))
    units = [(draw(st.integers(0, 10**6)), draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
              draw(st.booleans()), draw(st.integers(0, 2)), draw(st.integers(0, 3)))
             for _ in range(n_units)]
    incidents = [(draw(st.integers(0, 10**6)), draw(st.sampled_from([0.0, 0.3, 0.5, 0.99])))
                 for _ in range(3)]
    k = draw(st.integers(1, 6))
    layout = draw(st.sampled_from(["level-hilbert", "rank"]))  # hierarchy node numbering
    return arcs, units, incidents, k, layout


def _place_units(g, units, same_edge_as=None):
    idx_ch = UnitIndex(g, capacity=4)
    idx_dj = UnitIndex(g, capacity=4, use_ch=False)
    placed = []
    for i, (e_raw, frac, avail, typ, caps) in enumerate(units):
        if same_edge_as is not None and i % 3 == 0:
            e_raw = same_edge_as
        e = e_raw % g.n_edges
        if i % 4 == 3:  # some units stand at nodes
            src = [Seed(int(g.fwd_head[e]), 0.0, 0.0)]
        else:
            src = unit_sources(g, e, frac)
        for idx in (idx_ch, idx_dj):
            slot = idx.new_slot()
            assert slot == i
            idx.set_unit(slot, src, available=avail, type_bits=1 << typ, cap_bits=caps,
                         tie_key=1000 - i)
        placed.append((src, avail, typ, caps))
    return idx_ch, idx_dj, placed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case())
def test_nearest_k_matches_networkx(case):
    arcs, units, incidents, k, layout = case
    g = make_graph(arcs, layout=layout)
    G = nx_graph(g)
    for e_raw, g_frac in incidents:
        e_inc = e_raw % g.n_edges
        idx_ch, idx_dj, placed = _place_units(g, units, same_edge_as=e_inc)
        seeds = incident_seeds(g, e_inc, g_frac)
        type_mask, caps_req = 0b011, 0b01
        expect = []
        cache: dict = {}
        for i, (src, avail, typ, caps) in enumerate(placed):
            if not avail or not (type_mask >> typ) & 1 or (caps & caps_req) != caps_req:
                continue
            eta = oracle_eta_ds(G, g, src, seeds, cache)
            if np.isfinite(eta):
                expect.append((eta, 1000 - i, i))
        expect.sort()
        for idx in (idx_ch, idx_dj):
            slots, eta, length = idx.nearest(seeds, k=k, type_mask=type_mask, caps_req=caps_req)
            want = expect[:k]
            assert len(slots) == len(want)
            np.testing.assert_allclose(eta, [w[0] for w in want], rtol=REL)
            # make_graph's arcs are 10 m per ds, so every fastest path is 10 m per ds long:
            # the CH query sums the metres for its winners after the search, from each
            # one's meeting node down its parent arcs (routing.kernels.ch_nearest_q)
            np.testing.assert_allclose(length, 10.0 * eta, rtol=REL, atol=1e-6)
            # same ETA multiset; where ETAs are distinct, the same units in the same order
            for j, (w_eta, _, w_slot) in enumerate(want):
                if sum(1 for x in expect if x[0] == w_eta) == 1:
                    assert slots[j] == w_slot


@settings(max_examples=60, deadline=None)
@given(random_case())
def test_table_matches_networkx(case):
    arcs, units, incidents, _, layout = case
    g = make_graph(arcs, layout=layout)
    G = nx_graph(g)
    idx_ch, _, placed = _place_units(g, units)
    seeds = [incident_seeds(g, e % g.n_edges, f) for e, f in incidents]
    t, _ = idx_ch.table(seeds)
    cache: dict = {}
    for i, (src, *_rest) in enumerate(placed):
        for q, s in enumerate(seeds):
            want = oracle_eta_ds(G, g, src, s, cache)
            if np.isfinite(want):
                assert t[i, q] == pytest.approx(want, rel=REL)
            else:
                assert np.isinf(t[i, q])


def test_hand_drawn_one_way_block():
    # A one-way loop 0->1->2->3->0 (100 ds each) and a two-way spur 1<->4 (50 ds).
    g = make_graph([(0, 1, 100), (1, 2, 100), (2, 3, 100), (3, 0, 100), (1, 4, 50), (4, 1, 50)])
    n = {int(x): i for i, x in enumerate(g.node_ext_id)}
    e01 = g.find_edge(n[0], n[1])
    idx = UnitIndex(g)
    # unit A just behind the incident on the same one-way edge; unit B just ahead of it
    a, b, c = idx.new_slot(), idx.new_slot(), idx.new_slot()
    idx.set_unit(a, unit_sources(g, e01, 0.2), available=True, type_bits=1, cap_bits=0, tie_key=0)
    idx.set_unit(b, unit_sources(g, e01, 0.8), available=True, type_bits=1, cap_bits=0, tie_key=1)
    idx.set_unit(c, [Seed(n[4], 0.0, 0.0)], available=True, type_bits=1, cap_bits=0, tie_key=2)
    slots, eta, length = idx.nearest(incident_seeds(g, e01, 0.5), k=3)
    # A drives 30 ds straight on; B must go round the block: 20 + 300 + 50 = 370;
    # C from the spur: 50 to node 1, then 1->2->3->0 (300) and half of 0->1 (50) = 400
    assert slots.tolist() == [a, b, c]
    np.testing.assert_allclose(eta, [30, 370, 400])
    np.testing.assert_allclose(length, [300, 3700, 4000])  # 10 m per ds in make_graph


def test_ties_are_broken_by_tie_key():
    g = make_graph([(0, 1, 10), (1, 0, 10), (1, 2, 10), (2, 1, 10)])
    n = {int(x): i for i, x in enumerate(g.node_ext_id)}
    idx = UnitIndex(g)
    for tie in (5, 3, 9, 1):
        s = idx.new_slot()
        idx.set_unit(s, [Seed(n[0] if tie % 2 else n[2], 0.0, 0.0)], available=True, type_bits=1,
                     cap_bits=0, tie_key=tie)
    slots, eta, _ = idx.nearest([Seed(n[1], 0.0, 0.0)], k=3)
    np.testing.assert_allclose(eta, [10, 10, 10])
    assert [int(idx.u_tie[s]) for s in slots] == [1, 3, 5]


def test_moves_and_availability_apply_immediately():
    g = make_graph([(i, i + 1, 10) for i in range(9)] + [(i + 1, i, 10) for i in range(9)])
    n = {int(x): i for i, x in enumerate(g.node_ext_id)}
    idx = UnitIndex(g)
    s = idx.new_slot()
    idx.set_unit(s, [Seed(n[9], 0.0, 0.0)], available=True, type_bits=1, cap_bits=0, tie_key=0)
    inc = [Seed(n[0], 0.0, 0.0)]
    assert idx.nearest(inc, k=1)[1].tolist() == [90.0]
    idx.set_unit(s, [Seed(n[2], 0.0, 0.0)], available=True, type_bits=1, cap_bits=0, tie_key=0)
    assert idx.nearest(inc, k=1)[1].tolist() == [20.0]
    idx.set_available(s, False)
    assert idx.nearest(inc, k=1)[0].size == 0
    idx.set_available(s, True)
    idx.remove(s)
    assert idx.nearest(inc, k=1)[0].size == 0
    assert idx.bucket_entries() == 0

ENDS = (-0.5, -0.25, 99.5, 99.25)  # a route's first and last point, off every node


def _polyline(g, src, edges, ends):
    """UnitIndex.route_line's points, the obvious way."""
    pts = [[ends[0], ends[1]]]
    nodes = ([] if src is None else [src.node]) + [int(g.fwd_head[e]) for e in edges]
    for p in [[float(g.node_lon[v]), float(g.node_lat[v])] for v in nodes] + [[ends[2], ends[3]]]:
        if p != pts[-1]:
            pts.append(p)
    return pts


def _pool_regions(idx):
    """The bucket pool's regions: (start, capacity) of every bucket holding one, and of
    every free one (walking the free lists, routing.kernels._region_get)."""
    from routing import kernels as K

    sj = idx._pools()[0]
    held = [(int(idx._b_start[x]), int(idx._b_cap[x])) for x in np.flatnonzero(idx._b_cap)]
    free = []
    for k in range(K.FREE_CLASSES):
        h = int(idx._scal[1 + k])
        while h >= 0:
            free.append((h, 4 << k))
            h = int(sj[h, 0])
    return held, free


def test_teleports_reuse_the_pool_and_stay_exact(real_graph):
    """Units sent again and again to random places (a station, a hospital, a reassignment
    across town) reuse the bucket regions freed by emptied and outgrown buckets: the pool
    stops growing, no region is both held and free or overlaps another, and the answers
    still equal the Dijkstra fallback's. Before regions were reused the pool only grew
    (here: by 69 % from the 2,000th to the 6,000th teleport, to 12 times the room)."""
    g = real_graph("liechtenstein.osm.pbf")
    rng = np.random.default_rng(11)
    idx = UnitIndex(g, capacity=64)
    n_units = 60
    for i in range(n_units):
        s = idx.new_slot()
        idx.set_unit(s, unit_sources(g, int(rng.integers(g.n_edges)), float(rng.random())),
                     available=True, type_bits=1, cap_bits=0, tie_key=i)

    def teleports(count):
        for _ in range(count):
            s = int(rng.integers(n_units))
            if rng.random() < 0.5:
                idx.move(s, node=int(rng.integers(g.n_nodes)))
            else:
                idx.move(s, edge=int(rng.integers(g.n_edges)), frac=float(rng.random()))

    teleports(2000)
    end_early = int(idx._scal[0])
    teleports(4000)
    end_late = int(idx._scal[0])
    assert end_late <= 1.15 * end_early, (end_early, end_late)
    held, free = _pool_regions(idx)
    assert len(free) > 0  # regions were freed and are waiting to be reused
    spans = sorted(held + free)
    for (a, ca), (b, _cb) in itertools.pairwise(spans):
        assert a + ca <= b, "two regions overlap"
    assert spans[-1][0] + spans[-1][1] <= end_late
    assert all(int(idx._b_len[x]) <= int(idx._b_cap[x]) for x in np.flatnonzero(idx._b_len))
    assert idx.bucket_entries() == sum(int(idx.u_cnt[s]) for s in range(n_units))
    for _ in range(30):
        seeds = incident_seeds(g, int(rng.integers(g.n_edges)), float(rng.random()))
        a = idx.nearest(seeds, k=6)
        b = idx.nearest(seeds, k=6, use_ch=False)
        np.testing.assert_allclose(a[1], b[1], rtol=REL)
        assert a[0].tolist() == b[0].tolist()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case())
def test_ch_routes_match_networkx_and_dijkstra(case):
    """Routes by unpacking the hierarchy's shortcuts: the ETA equals networkx's, the
    edges are a connected drive from the unit's source to the incident's seed, and
    their times add up to the ETA."""
    arcs, units, incidents, _, layout = case
    g = make_graph(arcs, layout=layout)
    assert g.hierarchy is not None and g.hierarchy.can_unpack and g.hierarchy.has_child_arcs
    # the same hierarchy without child arcs (a version-3 file): unpacked by middle nodes
    g_mid = g.with_hierarchy(dataclasses.replace(g.hierarchy, up_f_down=None, up_b_down=None))
    G = nx_graph(g)
    idx_ch, idx_dj, placed = _place_units(g, units)
    idx_mid, _idx, _placed = _place_units(g_mid, units)
    cache: dict = {}
    for e_raw, g_frac in incidents:
        seeds = incident_seeds(g, e_raw % g.n_edges, g_frac)
        for i, (src, *_rest) in enumerate(placed):
            want = oracle_eta_ds(G, g, src, seeds, cache)
            t, length, edges, s_src, s_seed = idx_ch.path(i, seeds)
            t_dj, _length_dj, _e, _s, _q = idx_dj.path(i, seeds)
            t_mid, length_mid, edges_mid, src_mid, _q = idx_mid.path(i, seeds)
            # the same ETA; of several equally fast drives the two searches may pick others
            assert t_mid == t
            # the console's polyline: drawn by the route kernel (child arcs), or from the
            # edges (middle nodes); both what the edges say
            for ix, ln, sr, ed in ((idx_ch, length, s_src, edges),
                                   (idx_mid, length_mid, src_mid, edges_mid)):
                t_l, length_l, xy = ix.route_line(i, seeds, *ENDS)
                assert t_l == t and (length_l == ln or not np.isfinite(t))
                assert xy.tolist() == (_polyline(g, sr, ed, ENDS) if np.isfinite(t) else [])
            if not np.isfinite(want):
                assert np.isinf(t)
                continue
            assert t == pytest.approx(want, rel=REL)
            assert t == pytest.approx(t_dj, rel=REL)
            if s_src is None:  # straight along the shared edge
                continue
            node = s_src.node
            for e in edges:
                assert int(g.edge_tail[e]) == node
                node = int(g.fwd_head[e])
            assert node == s_seed.node
            total = s_src.t_ds + float(g.edge_time_ds[edges].sum()) + s_seed.t_ds
            assert total == pytest.approx(t, rel=REL)
            want_len = s_src.length_m + float(g.edge_length_m[edges].sum()) + s_seed.length_m
            assert length == pytest.approx(want_len, rel=REL)


def test_path_eta_equals_nearest_eta(real_graph):
    g = real_graph("helsinki.osm.pbf")
    rng = np.random.default_rng(11)
    idx = UnitIndex(g)
    for _ in range(20):
        s = idx.new_slot()
        idx.set_unit(s, unit_sources(g, int(rng.integers(g.n_edges)), float(rng.random())),
                     available=True, type_bits=1, cap_bits=0, tie_key=s)
    dij = UnitIndex(g, use_ch=False)  # routes by plain Dijkstra, for comparison
    for s in range(idx.n_slots):
        dij.new_slot()
        ns = int(idx.u_nsrc[s])
        dij.set_unit(s, [idx._source(s, c) for c in range(ns)], available=True, type_bits=1,
                     cap_bits=0, tie_key=s)
    assert g.hierarchy is not None and g.hierarchy.can_unpack
    for _ in range(20):
        seeds = incident_seeds(g, int(rng.integers(g.n_edges)), float(rng.random()))
        slots, eta, length = idx.nearest(seeds, k=3)
        for s, t, ln in zip(slots, eta, length):
            pt, _plen, edges, _src, _seed = idx.path(int(s), seeds)
            assert pt == pytest.approx(t, rel=REL)
            assert pt == pytest.approx(dij.path(int(s), seeds)[0], rel=REL)
            # the path's own time adds up
            if _src is not None:
                tot = _src.t_ds + g.edge_time_ds[edges].sum() + _seed.t_ds
                assert tot == pytest.approx(pt, rel=REL)


@pytest.mark.parametrize("name", ["liechtenstein.osm.pbf", "monaco.osm.pbf", "helsinki.osm.pbf",
                                  "West-Oakland.osm.bz2", "tl_2017_06075_roads.zip"])
def test_real_extracts_match_networkx(real_graph, name):
    g = real_graph(name)
    G = nx_graph(g)
    rng = np.random.default_rng(7)
    idx = UnitIndex(g, capacity=64)
    units = []
    for i in range(40):
        src = unit_sources(g, int(rng.integers(g.n_edges)), float(rng.random()))
        s = idx.new_slot()
        idx.set_unit(s, src, available=bool(i % 3), type_bits=1, cap_bits=0, tie_key=i)
        units.append((src, bool(i % 3)))
    # distances from every unit source, once (networkx is the slow part)
    cache: dict = {}
    for _ in range(15):
        seeds = incident_seeds(g, int(rng.integers(g.n_edges)), float(rng.random()))
        _slots, eta, _ = idx.nearest(seeds, k=5)
        want = sorted(oracle_eta_ds(G, g, src, seeds, cache) for src, av in units if av)[:5]
        np.testing.assert_allclose(eta, want, rtol=REL)


def test_networkx_oracle_agrees_with_itself_on_reverse():
    # guard for the oracle: reversed-graph distances equal forward ones
    g = make_graph([(0, 1, 3), (1, 2, 4), (2, 0, 5), (2, 1, 1)])
    G = nx_graph(g)
    d = dict(nx.all_pairs_dijkstra_path_length(G))
    R = dict(nx.all_pairs_dijkstra_path_length(G.reverse()))
    assert all(d[a][b] == R[b][a] for a in d for b in d[a])


def test_many_moves_keep_ch_exact(real_graph):
    """Moves in large buckets leave tombstones that later insertions reuse: after many
    moves, removals and repeated fixes the CH answers still equal the Dijkstra
    fallback's, tables too, and the live entry count equals a fresh index's."""
    from routing import kernels as K

    g = real_graph("liechtenstein.osm.pbf")
    rng = np.random.default_rng(5)
    idx = UnitIndex(g, capacity=8)
    pos = {}
    for i in range(120):
        s = idx.new_slot()
        pos[s] = unit_sources(g, int(rng.integers(g.n_edges)), float(rng.random()))
        idx.set_unit(s, pos[s], available=True, type_bits=1, cap_bits=0, tie_key=i)
    assert int(idx._b_len.max()) > 2 * K.SMALL_BUCKET  # the tombstone path is exercised
    tombstones = 0
    for rnd in range(6):
        for _ in range(150):
            s = int(rng.choice(list(pos)))
            if rng.random() < 0.2:  # a repeated fix: nothing changes
                before = idx.bucket_entries()
                idx.set_unit(s, pos[s], available=True, type_bits=1, cap_bits=0, tie_key=s)
                assert idx.bucket_entries() == before
                continue
            e, f = int(rng.integers(g.n_edges)), float(rng.random())
            pos[s] = unit_sources(g, e, f)
            if rnd % 2:  # the AVL path (sources built in the kernel)
                idx.move(s, edge=e, frac=f)
            else:
                idx.set_unit(s, pos[s], available=True, type_bits=1, cap_bits=0, tie_key=s)
        if rnd == 3:  # units leave for good
            for s in list(pos)[:30]:
                idx.remove(s)
                del pos[s]
        fresh = UnitIndex(g, capacity=8)
        for s in sorted(pos):
            while fresh.n_slots <= s:
                fresh.new_slot()
            fresh.set_unit(s, pos[s], available=True, type_bits=1, cap_bits=0, tie_key=s)
        assert idx.bucket_entries() == fresh.bucket_entries() == sum(
            int(idx.u_cnt[s]) for s in pos)
        tombstones = max(tombstones, int(idx._b_len.sum()) - idx.bucket_entries())
        pts = [incident_seeds(g, int(rng.integers(g.n_edges)), float(rng.random()))
               for _ in range(25)]
        for seeds in pts:
            a = idx.nearest(seeds, k=7)
            b = idx.nearest(seeds, k=7, use_ch=False)
            np.testing.assert_allclose(a[1], b[1], rtol=REL)
            assert a[0].tolist() == b[0].tolist()
        t, _ = idx.table(pts)
        tf, _ = fresh.table(pts)
        live = sorted(pos)
        np.testing.assert_allclose(t[live], tf[live], rtol=REL)
    assert tombstones > 0


def test_a_pool_the_moves_outgrew_is_freed(real_graph):
    """The bucket pool lives in the kernels' context: when a move grows it, the arrays it
    outgrew are freed, not kept by the index (which held the last ones it had asked the
    context for, as resident as the new ones), and answers stay those of Dijkstra."""
    from routing import kernels as K

    g = real_graph("liechtenstein.osm.pbf")
    rng = np.random.default_rng(11)
    idx = UnitIndex(g, capacity=256)

    def held() -> set[int]:  # the buffers of the arrays the index holds
        vals = [x for v in vars(idx).values() for x in (v if isinstance(v, tuple) else (v,))]
        return {a.__array_interface__["data"][0] for a in vals if isinstance(a, np.ndarray)}

    old = {a.__array_interface__["data"][0] for a in idx._pools()}
    size = len(idx._pools()[1])
    # freed regions are reused (test_teleports_reuse_the_pool_and_stay_exact), so the pool
    # grows only with the entries the units hold: place units until a placement grows it
    units = 0
    while len(K.ctx_pools(idx._ctx)[1]) == size and units < 2000:
        idx.set_unit(idx.new_slot(), unit_sources(g, int(rng.integers(g.n_edges)), 0.5),
                     available=True, type_bits=1, cap_bits=0, tie_key=units)
        units += 1
    assert len(K.ctx_pools(idx._ctx)[1]) > size  # grown by a move
    assert not held() & old
    for _ in range(300):  # and moves after it
        idx.move(int(rng.integers(units)), edge=int(rng.integers(g.n_edges)), frac=0.25)
    for _ in range(10):
        seeds = incident_seeds(g, int(rng.integers(g.n_edges)), 0.5)
        a = idx.nearest(seeds, k=5)
        b = idx.nearest(seeds, k=5, use_ch=False)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1], b[1], rtol=REL)


@pytest.mark.skipif(not (hasattr(mmap, "MADV_NOHUGEPAGE") and os.path.exists("/proc/self/smaps")),
                    reason="Linux's madvise flag, read back from /proc")
def test_node_workspaces_refuse_huge_pages(real_graph):
    """The per-node workspaces and the bucket pool are written at scattered nodes or from
    their start: their mappings refuse transparent huge pages, with which one write made
    2 MiB resident (numpy asks for them on arrays of 4 MiB and more)."""
    g = real_graph("liechtenstein.osm.pbf")
    idx = UnitIndex(g)
    idx.set_unit(idx.new_slot(), [Seed(0, 0.0, 0.0)], available=True, type_bits=1, cap_bits=0,
                 tie_key=0)
    maps = []  # (start, end, VmFlags) of every mapping
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
            elif head == "VmFlags:":
                maps.append((lo, hi, line.split()[1:]))
    for a in (idx._ws_f, idx._ws_i, idx._hq, idx._bk, *idx._pools(), idx.u_dist):
        addr = a.__array_interface__["data"][0]
        flags = [f for lo, hi, f in maps if lo <= addr < hi]
        assert len(flags) == 1 and "nh" in flags[0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case(), st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.75, 1.0]), min_size=1, max_size=4))
def test_moves_along_the_same_street_match_networkx(case, fracs):
    """Bucket entries hold distances from a unit's source nodes and a move that keeps them
    (along the same street, the usual AVL fix) only changes the unit's offsets: after such
    moves, on the edge, onto its twin and back to a node, nearest-K, tables and the Dijkstra
    fallback still equal networkx."""
    arcs, units, incidents, k, layout = case
    g = make_graph(arcs, layout=layout)
    G = nx_graph(g)
    idx_ch, idx_dj, placed = _place_units(g, units)
    for step, f in enumerate(fracs):
        for i, (e_raw, _frac, avail, typ, caps) in enumerate(units):
            e = e_raw % g.n_edges
            twin = int(g.edge_twin[e])
            if step % 2 == 1 and twin >= 0:
                src = unit_sources(g, twin, 1.0 - f)  # the same spot seen from the twin
                where = {"edge": twin, "frac": 1.0 - f}
            elif i % 4 == 3:
                src = [Seed(int(g.fwd_head[e]), 0.0, 0.0)]
                where = {"node": int(g.fwd_head[e])}
            else:
                src = unit_sources(g, e, f)
                where = {"edge": e, "frac": f}
            before = int(idx_ch.u_cnt[i])
            for idx in (idx_ch, idx_dj):
                if (i + step) % 2:  # the AVL path: the sources built in the kernel
                    idx.move(i, **where)
                else:
                    idx.set_unit(i, src, available=avail, type_bits=1 << typ, cap_bits=caps,
                                 tie_key=1000 - i)
            if i % 4 != 3 and step > 0 and step % 2 == 0 and twin < 0:
                assert int(idx_ch.u_cnt[i]) == before  # same sources: entries untouched
            placed[i] = (src, avail, typ, caps)
    cache: dict = {}
    for e_raw, g_frac in incidents:
        seeds = incident_seeds(g, e_raw % g.n_edges, g_frac)
        expect = sorted((eta, 1000 - i, i) for i, (src, avail, _t, _c) in enumerate(placed)
                        if avail and np.isfinite(eta := oracle_eta_ds(G, g, src, seeds, cache)))
        for idx in (idx_ch, idx_dj):
            _slots, eta, _ = idx.nearest(seeds, k=k)
            np.testing.assert_allclose(eta, [w[0] for w in expect[:k]], rtol=REL)
    t, _ = idx_ch.table([incident_seeds(g, e % g.n_edges, f) for e, f in incidents])
    cache = {}
    for i, (src, *_rest) in enumerate(placed):
        for q, (e_raw, g_frac) in enumerate(incidents):
            want = oracle_eta_ds(G, g, src, incident_seeds(g, e_raw % g.n_edges, g_frac), cache)
            assert t[i, q] == pytest.approx(want, rel=REL) if np.isfinite(want) else np.isinf(t[i, q])


@settings(max_examples=60, deadline=None)
@given(random_case())
def test_query_layout_repeats_the_upward_rows(case):
    """Hierarchy.query_layout: node x's block holds its upward-forward row, then its
    upward-backward row, as (head, time) pairs in CSR order."""
    arcs, _, _, _, layout = case
    h = make_graph(arcs, layout=layout).hierarchy
    q_node, q_arc = h.query_layout()
    n = h.rank.size
    assert q_node.size == 2 * n + 2 and q_node[0] == 0 and q_node[-1] == q_node[-2]
    for x in range(n):
        a0, a1, a2 = q_node[2 * x], q_node[2 * x + 1], q_node[2 * x + 2]
        f0, f1 = h.up_f_indptr[x], h.up_f_indptr[x + 1]
        b0, b1 = h.up_b_indptr[x], h.up_b_indptr[x + 1]
        assert list(q_arc[2 * a0:2 * a1:2]) == list(h.up_f_head[f0:f1])
        assert list(q_arc[2 * a0 + 1:2 * a1:2]) == list(h.up_f_time_ds[f0:f1])
        assert list(q_arc[2 * a1:2 * a2:2]) == list(h.up_b_head[b0:b1])
        assert list(q_arc[2 * a1 + 1:2 * a2:2]) == list(h.up_b_time_ds[b0:b1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 1.0, 2.5, 3.0, 7.0]), st.integers(0, 9)),
                min_size=1, max_size=60), st.integers(0, 59))
def test_lazy_heap_pops_live_entries_in_order_after_compaction(pushes, compact_at):
    """The query searches' heap (heap.lazy_push/lazy_pop/lazy_compact): stale entries (key
    above the node's distance) are dropped by compaction, live ones pop in key order."""
    from routing import heap as H

    hq = np.empty((len(pushes) + 1, 2))
    dist = np.full(10, np.inf)
    size = 0
    for i, (key, node) in enumerate(pushes):
        if key < dist[node]:
            dist[node] = key
            size = H.lazy_push(hq, size, key, node)
        if i == compact_at:
            size = H.lazy_compact(hq, size, dist)
            assert size == int(np.isfinite(dist).sum())
    popped = []
    while size:
        popped.append((hq[0, 0], int(hq[0, 1])))
        size = H.lazy_pop(hq, size)
    live = [(k, v) for k, v in popped if k == dist[v]]
    assert [k for k, _ in popped] == sorted(k for k, _ in popped)
    assert sorted(live) == sorted((dist[v], v) for v in range(10) if np.isfinite(dist[v]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case(), st.lists(st.tuples(st.sampled_from(["next", "next", "next", "frac", "uturn",
                                                          "end", "teleport"]),
                                         st.integers(0, 10**6),
                                         st.sampled_from([0.0, 0.2, 0.5, 0.9, 1.0])),
                               min_size=1, max_size=8))
def test_drives_across_streets_match_networkx(case, steps):
    """Units driving from street to street: crossing onto the next street keeps the entries
    of the end just passed (bucket_move's partial case: the old other end's entries go, the
    kept end gets back the entries it was pruned of, one search for the new end), U-turns,
    stops at a street's end, fixes along the street and teleports, through both the AVL
    entry (UnitIndex.move) and set_unit; then nearest-K, tables and the Dijkstra fallback
    equal networkx, and the buckets hold exactly the units' rows."""
    arcs, units, incidents, k, layout = case
    g = make_graph(arcs, layout=layout)
    G = nx_graph(g)
    idx_ch, idx_dj, placed = _place_units(g, units)
    edge = [e_raw % g.n_edges for e_raw, *_ in units]
    for step, (action, pick, f) in enumerate(steps):
        for i, (_e, _frac, avail, typ, caps) in enumerate(units):
            e = edge[i]
            where: dict = {"edge": e, "frac": f}
            if action == "next":
                head = int(g.fwd_head[e])
                outs = range(int(g.fwd_indptr[head]), int(g.fwd_indptr[head + 1]))
                if len(outs):
                    where["edge"] = outs[(pick + i) % len(outs)]
            elif action == "uturn" and g.edge_twin[e] >= 0:
                where["edge"] = int(g.edge_twin[e])
            elif action == "teleport":
                where["edge"] = (pick + 7 * i) % g.n_edges
            elif action == "end":
                where = {"node": int(g.fwd_head[e])}
            if "edge" in where:
                edge[i] = where["edge"]
                src = unit_sources(g, where["edge"], f)
            else:
                src = [Seed(where["node"], 0.0, 0.0)]
            for idx in (idx_ch, idx_dj):
                if (i + step) % 3:  # mostly the AVL path: the sources built in the kernel
                    idx.move(i, **where)
                else:
                    idx.set_unit(i, src, available=avail, type_bits=1 << typ, cap_bits=caps,
                                 tie_key=1000 - i)
            placed[i] = (src, avail, typ, caps)
    assert idx_ch.bucket_entries() == sum(int(idx_ch.u_cnt[i]) for i in range(len(units)))
    cache: dict = {}
    for e_raw, g_frac in incidents:
        seeds = incident_seeds(g, e_raw % g.n_edges, g_frac)
        expect = sorted((eta, 1000 - i, i) for i, (src, avail, _t, _c) in enumerate(placed)
                        if avail and np.isfinite(eta := oracle_eta_ds(G, g, src, seeds, cache)))
        for idx in (idx_ch, idx_dj):
            _slots, eta, _ = idx.nearest(seeds, k=k)
            np.testing.assert_allclose(eta, [w[0] for w in expect[:k]], rtol=REL)
    t, _ = idx_ch.table([incident_seeds(g, e % g.n_edges, f) for e, f in incidents])
    cache = {}
    for i, (src, *_rest) in enumerate(placed):
        for q, (e_raw, g_frac) in enumerate(incidents):
            want = oracle_eta_ds(G, g, src, incident_seeds(g, e_raw % g.n_edges, g_frac), cache)
            assert t[i, q] == pytest.approx(want, rel=REL) if np.isfinite(want) else np.isinf(t[i, q])


def test_crossing_onto_the_next_street_keeps_the_passed_end():
    """On two-way streets a-b-c-d, a unit crossing from a-b onto b-c keeps b's entries under
    their label (one new search, for c), and a U-turn back onto b-a keeps them too."""
    arcs = []
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (2, 7)):
        arcs += [(a, b, 10), (b, a, 10)]
    g = make_graph(arcs)
    G = nx_graph(g)
    idx = UnitIndex(g, capacity=2)
    s = idx.new_slot()

    def arc(a, b):
        for e in range(g.n_edges):
            if int(g.edge_tail[e]) == a and int(g.fwd_head[e]) == b:
                return e
        raise AssertionError

    idx.set_unit(s, unit_sources(g, arc(0, 1), 0.5), available=True, type_bits=1, cap_bits=0,
                 tie_key=0)
    lab_b = [int(x) for x in idx.u_src[s]].index(1)
    for a, b, f in ((1, 2, 0.3), (2, 1, 0.5), (1, 2, 0.8)):  # cross, U-turn, cross again
        kept = 1 if (a, b) == (1, 2) else 2
        lab = [int(x) for x in idx.u_src[s]].index(kept) if kept in idx.u_src[s] else None
        idx.move(s, edge=arc(a, b), frac=f)
        if (a, b, f) == (1, 2, 0.3):
            assert int(idx.u_src[s, lab_b]) == 1  # b kept its label: no full move
        if lab is not None:
            assert int(idx.u_src[s, lab]) == kept
        for inc in range(g.n_nodes):
            seeds = [Seed(inc, 0.0, 0.0)]
            _sl, eta, _ = idx.nearest(seeds, k=1)
            want = oracle_eta_ds(G, g, unit_sources(g, arc(a, b), f), seeds)
            assert eta[0] == pytest.approx(want, rel=REL)
    assert idx.bucket_entries() == int(idx.u_cnt[s])


def test_hot_calls_take_the_context_by_address(real_graph, tmp_path):
    """The hot calls pass the index's context by address (routing.kernels, "the context by
    address"): a graph built in memory and the same graph mapped from its file both give a
    context of exactly the type those kernels are compiled for (else the index would
    quietly fall back to the slower call), and the address entries answer, move and
    report exactly as the context entries do."""
    from routing import kernels as K
    from routing.graph import RoadGraph

    g_mem = real_graph("monaco.osm.pbf")
    g_file = RoadGraph.load(g_mem.save(tmp_path / "monaco.cadgraph"))
    rng = np.random.default_rng(11)
    nodes = rng.integers(0, g_mem.n_nodes, size=40)
    edges = rng.integers(0, g_mem.n_edges, size=40)
    for g in (g_mem, g_file):
        idx = UnitIndex(g, capacity=4)
        assert idx._ctx._type == K.CTX_TYPE
        assert idx._ctx_a == K.ctx_address(idx._ctx) != 0
        twin = UnitIndex(g, capacity=4)
        for i, node in enumerate(nodes[:20]):
            for ix in (idx, twin):
                s = ix.new_slot()
                ix.set_unit(s, [Seed(int(node), 0.0, 0.0)], available=i % 3 != 0, type_bits=1,
                            cap_bits=0, tie_key=i)
        twin._ctx_a = 0  # the context entries
        for i, e in enumerate(edges[:20]):  # AVL fixes through both entries
            idx.move_edge(i, int(e), 0.25)
            twin.move_edge(i, int(e), 0.25)
        assert idx.bucket_entries() == twin.bucket_entries() > 0
        for node in nodes[20:]:
            r = int(g.hierarchy.rank[node])
            answers = []
            for ix in (idx, twin):
                cnt = ix.nearest_raw(r, 5)
                answers.append((cnt, ix._out_slot[:cnt].tolist(), ix._out_f[:2, :cnt].tolist()))
            assert answers[0] == answers[1]
            a = idx.nearest([Seed(int(node), 0.0, 0.0)], k=3)
            b = twin.nearest([Seed(int(node), 0.0, 0.0)], k=3)
            assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_avl_fix_snaps_and_moves_in_one_call_as_in_two(real_graph, tmp_path, monkeypatch):
    """RoutingService.move_unit(lat, lon) snaps and moves in one kernel call when both
    contexts go by address (routing.snap.a_snap_move): the snapper's context has the type
    that call is compiled for, from a graph built in memory and from its file alike, and
    fixes through it leave the same placements and answers as the two-call path."""
    from routing.graph import RoadGraph
    from routing.service import RoutingService
    from routing.snap import SNAP_CTX_TYPE

    g_mem = real_graph("monaco.osm.pbf")
    g_file = RoadGraph.load(g_mem.save(tmp_path / "monaco.cadgraph"))
    rng = np.random.default_rng(12)
    lat0, lat1 = float(g_mem.node_lat.min()), float(g_mem.node_lat.max())
    lon0, lon1 = float(g_mem.node_lon.min()), float(g_mem.node_lon.max())
    fixes = [(int(rng.integers(8)), float(rng.uniform(lat0, lat1)), float(rng.uniform(lon0, lon1)))
             for _ in range(60)]
    import routing.index

    for g in (g_mem, g_file):
        one, two = RoutingService(g), RoutingService(g)
        # rows of 2 entries: one-call fixes that must widen them first, then move again
        with monkeypatch.context() as m:
            m.setattr(routing.index, "INITIAL_SEARCH_WIDTH", 2)
            narrow = RoutingService(g)
        assert narrow._state.index.u_nodes.shape[1] == 2
        sn = one._state.snapper
        assert sn._ctx._type == SNAP_CTX_TYPE and sn.ctx_address != 0
        assert one._state.index.ctx_address != 0
        two._state.snapper.ctx_address = 0  # the two-call path
        for svc in (one, two, narrow):
            for u in range(8):
                svc.upsert_unit(u, node=int(g.node_ext_id[u * 7]), available=True)
        for u, la, lo in fixes:
            p1 = one.move_unit(u, lat=la, lon=lo)
            p2 = two.move_unit(u, lat=la, lon=lo)
            p3 = narrow.move_unit(u, lat=la, lon=lo)
            assert (p1.edge, p1.frac, p1.twin, p1.distance_m) == (p2.edge, p2.frac, p2.twin,
                                                                  p2.distance_m) == (
                p3.edge, p3.frac, p3.twin, p3.distance_m)
        assert narrow._state.index.u_nodes.shape[1] > 2
        assert (one._state.index.bucket_entries() == two._state.index.bucket_entries()
                == narrow._state.index.bucket_entries())
        for la, lo in [(la, lo) for _, la, lo in fixes[:10]]:
            a = one.nearest_units(lat=la, lon=lo, k=3)
            b = two.nearest_units(lat=la, lon=lo, k=3)
            c3 = narrow.nearest_units(lat=la, lon=lo, k=3)
            assert [(c.unit_id, c.eta_s) for c in a.units] == [(c.unit_id, c.eta_s) for c in b.units]
            assert [(c.unit_id, c.eta_s) for c in c3.units] == [(c.unit_id, c.eta_s) for c in a.units]
            assert a.units
