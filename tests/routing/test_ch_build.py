"""The contraction itself: hierarchy distances against networkx, on symmetric graphs (where
one witness search decides both directions of a pair) and on directed ones, and the
shortcuts' middle nodes and lengths unpacked back to road edges."""

from __future__ import annotations

import heapq

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.ch import build_hierarchy
from routing.graph import Hierarchy, RoadGraph
from routing.route_kernels import check_down
from tests.routing.conftest import make_graph, nx_graph


def _upward(indptr: np.ndarray, head: np.ndarray, w: np.ndarray, src: int) -> dict[int, int]:
    """Plain Dijkstra over one upward graph (positions in the hierarchy's numbering)."""
    dist = {src: 0}
    heap = [(0, src)]
    while heap:
        d, x = heapq.heappop(heap)
        if d > dist[x]:
            continue
        for a in range(int(indptr[x]), int(indptr[x + 1])):
            y, nd = int(head[a]), d + int(w[a])
            if nd < dist.get(y, 1 << 62):
                dist[y] = nd
                heapq.heappush(heap, (nd, y))
    return dist


def ch_distance(h: Hierarchy, s: int, t: int) -> float:
    """s -> t through the hierarchy: forward upward from s, backward upward from t."""
    f = _upward(h.up_f_indptr, h.up_f_head, h.up_f_time_ds, int(h.rank[s]))
    b = _upward(h.up_b_indptr, h.up_b_head, h.up_b_time_ds, int(h.rank[t]))
    meet = [d + b[x] for x, d in f.items() if x in b]
    return float(min(meet)) if meet else float("inf")


def unpack(g: RoadGraph, h: Hierarchy, forward: bool, arc: int) -> list[int]:
    """Road edges of one upward arc, through the middle nodes of its shortcuts."""
    mid = (h.up_f_mid if forward else h.up_b_mid)
    assert mid is not None
    m = int(mid[arc])
    if m <= -2:
        return [-2 - m]
    indptr, head = (h.up_f_indptr, h.up_f_head) if forward else (h.up_b_indptr, h.up_b_head)
    tail = int(np.searchsorted(indptr, arc, side="right") - 1)
    # forward arc tail->head is the road path tail -> mid -> head; backward arc at tail
    # stands for head -> tail: head -> mid -> tail. Each half is an upward arc at mid.
    def arc_at(frm: int, to: int, fwd: bool) -> int:
        ip, hd = (h.up_f_indptr, h.up_f_head) if fwd else (h.up_b_indptr, h.up_b_head)
        row = hd[ip[frm]:ip[frm + 1]]
        k = int(np.searchsorted(row, to))
        assert k < row.size and row[k] == to
        return int(ip[frm]) + k
    x = int(head[arc])
    if forward:  # tail -> m (backward arc at m from tail), m -> x (forward arc at m)
        return unpack(g, h, False, arc_at(m, tail, False)) + unpack(g, h, True, arc_at(m, x, True))
    return unpack(g, h, False, arc_at(m, x, False)) + unpack(g, h, True, arc_at(m, tail, True))


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 16))
    symmetric = draw(st.booleans())
    arcs = []
    for _ in range(draw(st.integers(1, 50))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        w = draw(st.sampled_from([1, 1, 2, 3, 5, 8, 13, 40]))
        arcs.append((a, b, w))
        if symmetric:
            arcs.append((b, a, w))
        elif draw(st.booleans()):
            arcs.append((b, a, draw(st.integers(1, 40))))
    threads = draw(st.sampled_from([None, 1, 2]))
    return arcs, symmetric, draw(st.sampled_from(["level-hilbert", "rank"])), threads


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_hierarchy_distances_match_networkx(case):
    arcs, symmetric, layout, threads = case
    g = make_graph(arcs, with_ch=False)
    stats: dict[str, int] = {}
    # threads: None is one node at a time; 1 or 2 contract in rounds of independent nodes
    # (min_round=1: rounds to the last node, none left to the one-at-a-time tail)
    h = build_hierarchy(g, layout=layout, stats=stats, threads=threads, min_round=1)
    if threads is not None:
        assert stats["round_nodes"] == g.n_nodes
    # parallel arcs reduce to the fastest both ways, so a symmetric draw stays symmetric
    assert stats["symmetric"] == int(symmetric or _is_symmetric(g))
    G = nx_graph(g)
    for s in range(g.n_nodes):
        want = nx.single_source_dijkstra_path_length(G, s, weight="weight")
        for t in range(g.n_nodes):
            assert ch_distance(h, s, t) == want.get(t, float("inf"))
    # every upward arc unpacks to a road path of its own time and length
    for forward in (True, False):
        times = h.up_f_time_ds if forward else h.up_b_time_ds
        lengths = h.up_f_length_m if forward else h.up_b_length_m
        for arc in range(times.size):
            edges = unpack(g, h, forward, arc)
            assert int(g.edge_time_ds[edges].sum()) == int(times[arc])
            assert float(g.edge_length_m[edges].sum()) == pytest.approx(float(lengths[arc]), rel=1e-6)
            # the child arcs name the same halves, down to the same road edges
            assert unpack_by_children(h, forward, arc) == edges
    assert check_down(*_down_args(g, h)) == 0


def unpack_by_children(h: Hierarchy, forward: bool, arc: int) -> list[int]:
    """Road edges of one upward arc, through the child arcs (routing.route_kernels)."""
    down = h.up_f_down if forward else h.up_b_down
    assert down is not None
    lo, hi = int(down[2 * arc]), int(down[2 * arc + 1])
    if lo < 0:
        assert hi == -1
        return [-1 - lo]
    return unpack_by_children(h, False, lo) + unpack_by_children(h, True, hi)


def _down_args(g: RoadGraph, h: Hierarchy) -> tuple:
    return (h.rank, h.up_f_indptr, h.up_f_head, h.up_f_time_ds, h.up_f_down, h.up_b_indptr,
            h.up_b_head, h.up_b_time_ds, h.up_b_down, g.edge_tail, g.fwd_head, g.edge_time_ds)


def test_check_down_refuses_wrong_child_arcs(real_graph_plain):
    """route_kernels.check_down (the full check of the child arcs) finds a half that is
    in range but wrong: the other half's arc, a shortcut's half swapped for another of
    the same middle node, a wrong edge id."""
    g = real_graph_plain("West-Oakland.osm.bz2")
    h = build_hierarchy(g)
    assert h.has_child_arcs and check_down(*_down_args(g, h)) == 0
    assert h.up_f_down is not None
    short = int(np.nonzero(h.up_f_down[0::2] >= 0)[0][0])
    orig = int(np.nonzero(h.up_f_down[0::2] < 0)[0][0])
    for pos, value in ((2 * short, int(h.up_f_down[2 * short]) + 1),
                       (2 * short + 1, int(h.up_f_down[2 * short + 1]) + 1),
                       (2 * orig, int(h.up_f_down[2 * orig]) - 1)):
        bad = h.up_f_down.copy()
        bad[pos] = value
        args = list(_down_args(g, h))
        args[4] = bad
        assert check_down(*args) != 0


def _is_symmetric(g: RoadGraph) -> bool:
    arcs = {(int(g.edge_tail[e]), int(g.fwd_head[e])): int(g.edge_time_ds[e]) for e in range(g.n_edges)}
    return all(arcs.get((b, a)) == w for (a, b), w in arcs.items())


def test_symmetric_path_on_san_francisco(real_graph_plain):
    """TIGER is all two-way with equal times: the symmetric witness searches apply, and
    the hierarchy's distances are Dijkstra's (scipy) on random pairs."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    g = real_graph_plain("tl_2017_06075_roads.zip")
    stats: dict[str, int] = {}
    h = build_hierarchy(g, stats=stats)
    assert stats["symmetric"] == 1
    m = csr_matrix((g.edge_time_ds.astype(np.float64), g.fwd_head, g.fwd_indptr),
                   shape=(g.n_nodes, g.n_nodes))
    rng = np.random.default_rng(7)
    src = rng.integers(0, g.n_nodes, 8)
    d = dijkstra(m, indices=src)
    for i, s in enumerate(src):
        for t in rng.integers(0, g.n_nodes, 6):
            assert ch_distance(h, int(s), int(t)) == d[i, t]


@pytest.fixture(scope="module")
def real_graph_plain():
    from routing.loaders import load_any
    from routing.testdata import require_road_file

    def get(name: str) -> RoadGraph:
        return load_any(require_road_file(name))

    return get


@pytest.mark.parametrize("min_round", [1, 16])
def test_rounds_on_san_francisco(real_graph_plain, min_round):
    """Contraction in rounds of independent nodes: Dijkstra's distances on random pairs,
    and the same hierarchy whatever the number of threads (each node's searches use
    the graph as the round found it, whichever thread runs them)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    g = real_graph_plain("tl_2017_06075_roads.zip")
    stats: dict[str, int] = {}
    h = build_hierarchy(g, stats=stats, threads=2, min_round=min_round)
    assert stats["rounds"] > 10 and stats["round_nodes"] > 0.9 * g.n_nodes
    one = build_hierarchy(g, threads=1, min_round=min_round)
    for a, b in ((h.rank, one.rank), (h.up_f_indptr, one.up_f_indptr), (h.up_f_head, one.up_f_head),
                 (h.up_f_time_ds, one.up_f_time_ds), (h.up_b_head, one.up_b_head),
                 (h.up_b_time_ds, one.up_b_time_ds), (h.up_f_mid, one.up_f_mid),
                 (h.up_b_mid, one.up_b_mid), (h.up_f_length_m, one.up_f_length_m)):
        assert np.array_equal(a, b)
    m = csr_matrix((g.edge_time_ds.astype(np.float64), g.fwd_head, g.fwd_indptr),
                   shape=(g.n_nodes, g.n_nodes))
    rng = np.random.default_rng(11)
    src = rng.integers(0, g.n_nodes, 8)
    d = dijkstra(m, indices=src)
    for i, s in enumerate(src):
        for t in rng.integers(0, g.n_nodes, 6):
            assert ch_distance(h, int(s), int(t)) == d[i, t]


def test_threads_must_be_positive():
    g = make_graph([(0, 1, 3), (1, 0, 3)], with_ch=False)
    with pytest.raises(ValueError, match="threads"):
        build_hierarchy(g, threads=0)



@pytest.mark.parametrize("rounds", [False, True])
def test_compile_step_loads_the_rounds_kernels_only_when_asked(rounds):
    """`cad graph build --ch-threads N` compiles (or loads) the rounds' kernels in its
    compile step, reported apart from the preprocessing; without it they stay unloaded.
    In a fresh interpreter: in this one other tests have run them already."""
    import subprocess
    import sys

    code = ("from routing.ch import compile_ch_kernels; from routing import ch_kernels as k; "
            f"compile_ch_kernels(rounds={rounds}); "
            "print([len(f.signatures) > 0 for f in (k._par_init, k._par_step, k._ch_step)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=600)
    assert out.stdout.strip() == str([rounds, rounds, True])  # entry points (callees load with them)
