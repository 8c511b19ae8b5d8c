"""Contraction hierarchy preprocessing (numba).

Nodes are contracted one by one in order of the priority
``level + added_arcs/removed_arcs + added_hops/removed_hops`` (the quotient form
used by RoutingKit; it keeps the hierarchy flat and the upward search spaces small),
recomputed for a node's neighbours after each contraction and checked lazily for the
node itself when it reaches the top of the queue (that check's witness searches are
the contraction's own: no second pass). A shortcut u->w is added when no witness path
of at most the same travel time is found by a Dijkstra from u that avoids v, bounded
by a settle limit: a missed witness only adds a superfluous shortcut, never a wrong
distance.

What makes it fast (each measured in docs/routing.md, "Preprocessing, issue 15 point 4"):

* a witness search stops as soon as every target has a tentative distance within its
  need, or when its queue passes the largest need still open (the bound shrinks as
  targets are witnessed); nothing beyond that bound is ever queued;
* on a symmetric graph (every arc has a reverse of the same time: TIGER and DIMACS
  graphs are), one search decides both directions of a neighbour pair, and a node's
  neighbours are searched from the longest arc down, so each search looks only for the
  shorter arcs after it (smaller radius);
* the graph is contracted in a Hilbert-curve numbering of its nodes (a search's nodes,
  their rows and their distance slots are near each other in memory), and the searches
  scan a packed ``[nbr, w_out]`` copy of the rows;
* what a witness search reads and writes per node (tentative distance, heap position,
  target mark and need) sits in one 16-byte row, so a relaxation touches one cache line
  instead of four arrays.

**Rounds** (``build_hierarchy(threads=N)``): instead of one node at a time from the
queue, each round takes every node that comes first (priority, then a fixed
pseudo-random key) among all nodes within two hops of it. No two of them are adjacent or
share a neighbour, so their shortcuts are found on ``N`` threads against the same graph,
each search avoiding only its own node, and stay exact (docs/routing.md, "Preprocessing,
round three", has the argument); the shortcuts are then added in node order and the
neighbours re-prioritised on the threads. When a round would take fewer than
``min_round`` nodes (the dense core), the queue takes over for the rest. The
hierarchy does not depend on ``N``.

The dynamic graph lives in one pool of rows
``[nbr, w_out, w_in, hops_out, hops_in, mid_out, mid_in]`` (int32; ``mid`` is the
contracted node a shortcut bypasses, ``-2 - edge id`` for an original arc) plus
``[len_out, len_in]`` (float64), one growable slice per node; both directions of a
neighbour pair share a row, so in- and out-neighbours come from one scan.

The result is the set of upward arcs, stored in rank space (see graph.Hierarchy).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numba
import numpy as np

from routing.ch_kernels import (
    _N_REQUEUED,
    _N_ROUND_NODES,
    _N_ROUNDS,
    _N_SEARCHES,
    _N_SETTLED,
    _N_SETTLED_CONTRACT,
    _N_SIMS,
    _N_UB,
    _N_UF,
    _NEXT_RANK,
    _PQ_SIZE,
    _SYMMETRIC,
    WITNESS_LIMIT_CONTRACT,
    WITNESS_LIMIT_SIMULATE,
    _ch_init,
    _ch_step,
    _compact,
    _hilbert,
    _levels,
    _par_init,
    _par_step,
    _to_sequential,
)
from routing.graph import Hierarchy, RoadGraph, query_layout
from routing.route_kernels import child_arcs


def hilbert_keys(lat: np.ndarray, lon: np.ndarray, bits: int = 16) -> np.ndarray:
    """Hilbert-curve position of each coordinate within the points' bounding box."""
    if lat.size == 0:  # a graph whose arcs were all self-loops
        return np.zeros(0, np.int64)
    def scale(a: np.ndarray) -> np.ndarray:
        lo, hi = float(a.min()), float(a.max())
        span = hi - lo if hi > lo else 1.0
        return np.minimum(((a - lo) / span * (1 << bits)).astype(np.int64), (1 << bits) - 1)

    return np.asarray(_hilbert(scale(lon), scale(lat), bits))


def ch_layout(graph: RoadGraph, level: np.ndarray) -> np.ndarray:
    """Where each node sits in the hierarchy's arrays: highest level first, and within
    a level along a Hilbert curve. A search climbs from a node through a few nodes per
    level, all near it on the map, so the nodes of one search space share cache lines
    and pages instead of being scattered in contraction order."""
    key = hilbert_keys(graph.node_lat, graph.node_lon)
    order = np.lexsort((key, -level))  # position -> node
    pos = np.empty(graph.n_nodes, np.int32)
    pos[order] = np.arange(graph.n_nodes, dtype=np.int32)
    return pos


def _to_csr(n: int, pos: np.ndarray, U: np.ndarray, UL: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    frm = pos[U[:, 0]].astype(np.int64)
    to = pos[U[:, 1]].astype(np.int32)
    # a shortcut's middle node in the layout's numbering; an original arc keeps -2 - edge id
    mid = np.where(U[:, 3] >= 0, pos[np.maximum(U[:, 3], 0)], U[:, 3]).astype(np.int32)
    order = np.lexsort((to, frm))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(frm, minlength=n), out=indptr[1:])
    return (indptr, to[order], U[order, 2].astype(np.int32), UL[order].astype(np.float32),
            mid[order])


def _hilbert_csr(graph: RoadGraph) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The graph's forward CSR with its nodes renumbered along a Hilbert curve.
    Returns ``order`` (new id -> node) and (indptr, head, time, length, edge id)."""
    n = graph.n_nodes
    order = np.argsort(hilbert_keys(graph.node_lat, graph.node_lon), kind="stable")
    new_id = np.empty(n, np.int64)
    new_id[order] = np.arange(n)
    tail = new_id[graph.edge_tail]
    head = new_id[graph.fwd_head]
    eid = np.lexsort((head, tail))  # new arc position -> edge id
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(tail, minlength=n), out=indptr[1:])
    return order, (indptr, head[eid].astype(np.int32), graph.edge_time_ds[eid],
                   graph.edge_length_m[eid], eid.astype(np.int64))


def _unpermute(order: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Upward arcs ``[from, to, time, mid]`` back in the graph's node numbering."""
    out = U.copy()
    out[:, 0] = order[U[:, 0]]
    out[:, 1] = order[U[:, 1]]
    out[:, 3] = np.where(U[:, 3] >= 0, order[np.maximum(U[:, 3], 0)], U[:, 3])
    return out


def compile_ch_kernels(rounds: bool = False) -> float:
    """Compile (or load from numba's on-disk cache) the preprocessing kernels by
    contracting a four-node graph, so that a caller can report the one-time compile
    apart from the preprocessing time; with ``rounds``, those of the contraction in
    rounds too (``build_hierarchy(threads=N)``). Returns the seconds it took."""
    t0 = time.perf_counter()
    tail = np.array([0, 1, 1, 2, 2, 3, 3, 0], np.int32)
    head = np.array([1, 0, 2, 1, 3, 2, 0, 3], np.int32)
    order = np.argsort(tail, kind="stable")
    indptr = np.zeros(5, np.int64)
    np.cumsum(np.bincount(tail, minlength=4), out=indptr[1:])
    w = np.array([3, 3, 4, 4, 5, 5, 6, 6], np.int32)[order]
    lenm = w.astype(np.float64)
    head = head[order]
    eid = np.arange(8, dtype=np.int64)
    st = _ch_init(4, indptr, head, w, lenm, eid, WITNESS_LIMIT_SIMULATE)
    st = _ch_step(*st, WITNESS_LIMIT_SIMULATE, WITNESS_LIMIT_CONTRACT, 4)  # type: ignore[call-arg]  # numba Dispatcher: stubs lack the jitted signature
    _compact(*st[:7], st[8])  # type: ignore[call-arg]  # numba Dispatcher: stubs lack the jitted signature
    _levels(4, st[8], st[16], int(st[6][_N_UF]), st[18], int(st[6][_N_UB]))
    _hilbert(np.zeros(1, np.int64), np.zeros(1, np.int64), 16)
    one = np.array([0, 1], np.int64)
    arc = np.zeros(1, np.int32)
    child_arcs(one, arc, arc - 2, one, arc, arc - 2)
    if rounds:
        _contract_sequential(4, _contract_rounds(4, (indptr, head, w, lenm, eid), 1, WITNESS_LIMIT_SIMULATE,
                                                 WITNESS_LIMIT_CONTRACT, 4, None, min_round=1),
                             WITNESS_LIMIT_SIMULATE, WITNESS_LIMIT_CONTRACT, 4, None)
    return time.perf_counter() - t0


_Progress = Callable[[int, int], None] | None
# a round of _par_step contracting fewer nodes than this hands over to _ch_step
MIN_ROUND = 16


def _contract_sequential(n: int, st: tuple, limit_simulate: int, limit_contract: int, chunk: int,
                         progress: _Progress) -> tuple:
    """One node at a time from a priority queue (_ch_step) until none is left."""
    alive_at_compaction = n - int(st[6][_NEXT_RANK])
    while st[6][_PQ_SIZE] > 0:
        st = _ch_step(*st, limit_simulate, limit_contract, chunk)  # type: ignore[call-arg]  # numba Dispatcher: stubs lack the jitted signature
        alive = n - int(st[6][_NEXT_RANK])
        if 0 < alive <= alive_at_compaction // 2:
            # the remaining graph's rows, packed again in node order (they were scattered
            # by growth and by the contracted nodes' rows between them)
            st = (*_compact(*st[:7], st[8]), *st[3:])  # type: ignore[call-arg]  # numba Dispatcher, as above
            alive_at_compaction = alive
        if progress is not None:
            progress(n - alive, n)
    return st


def _contract_rounds(n: int, csr: tuple[np.ndarray, ...], threads: int, limit_simulate: int,
                     limit_contract: int, chunk: int, progress: _Progress, min_round: int = MIN_ROUND
                     ) -> tuple:
    """Rounds of independent nodes on ``threads`` threads (_par_step) while a round has
    at least ``min_round`` nodes; returns the state for _contract_sequential to finish."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]  # numba fills config at run time
    try:
        st = _par_init(n, *csr, threads, limit_simulate)  # type: ignore[call-arg]  # numba Dispatcher, as above
        alive_at_compaction = n
        while True:
            done_before = int(st[6][_NEXT_RANK])
            st = _par_step(*st, limit_simulate, limit_contract, chunk, min_round)  # type: ignore[call-arg]  # numba Dispatcher, as above
            done = int(st[6][_NEXT_RANK])
            alive = n - done
            if 0 < alive <= alive_at_compaction // 2:
                st = (*_compact(*st[:7], st[8]), *st[3:])  # type: ignore[call-arg]  # numba Dispatcher, as above
                alive_at_compaction = alive
            if progress is not None:
                progress(done, n)
            if alive == 0 or done - done_before < chunk:
                break
    finally:
        numba.set_num_threads(before)
    (A, L, NW, astart, alen, acap, scal, level, rank, prio, _tie, _alive, scal_t, W_t, hkey_t,
     hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t, UF, UFL, UB, UBL) = st
    pq_key, pq_node, pq_pos = _to_sequential(n, rank, prio, scal, scal_t)
    return (A, L, NW, astart, alen, acap, scal, level, rank, W_t[0], hkey_t[0], hnode_t[0], touched_t[0],
            pq_key, pq_node, pq_pos, UF, UFL, UB, UBL, scr_i_t[0], scr_f_t[0], pairs_t[0])


def build_hierarchy(graph: RoadGraph, *, progress: Callable[[int, int], None] | None = None,
                    limit_simulate: int = WITNESS_LIMIT_SIMULATE,
                    limit_contract: int = WITNESS_LIMIT_CONTRACT,
                    layout: str = "level-hilbert", stats: dict[str, int] | None = None,
                    threads: int | None = None, min_round: int = MIN_ROUND) -> Hierarchy:
    """Contract the whole graph. ``progress(done, total)`` is called between chunks.
    ``layout`` orders the hierarchy's arrays: ``"level-hilbert"`` (see ch_layout) or
    ``"rank"`` (contraction order). ``stats``, when given, receives the work done
    (priority simulations, witness searches, settled nodes, re-queues) and whether the
    symmetric-graph shortcut of the witness searches applied."""
    t0 = time.perf_counter()
    n = graph.n_nodes
    # contract in a Hilbert-curve numbering: a witness search's nodes, their rows of the
    # dynamic graph and their distance slots are then near each other in memory
    order, csr = _hilbert_csr(graph)
    chunk = max(1000, n // 200)
    if threads is None:
        st = _ch_init(n, *csr, limit_simulate)  # type: ignore[call-arg]  # numba Dispatcher: stubs lack the jitted signature
    else:
        st = _contract_rounds(n, csr, threads, limit_simulate, limit_contract, chunk, progress, min_round)
    st = _contract_sequential(n, st, limit_simulate, limit_contract, chunk, progress)
    scal = st[6]
    if stats is not None:
        stats.update(simulations=int(scal[_N_SIMS]), searches=int(scal[_N_SEARCHES]),
                     settled=int(scal[_N_SETTLED]), settled_contracting=int(scal[_N_SETTLED_CONTRACT]),
                     requeued=int(scal[_N_REQUEUED]), symmetric=int(scal[_SYMMETRIC]),
                     rounds=int(scal[_N_ROUNDS]), round_nodes=int(scal[_N_ROUND_NODES]))
    rank = np.empty(n, np.int32)
    rank[order] = st[8]
    UF, UFL, UB, UBL = st[16], st[17], st[18], st[19]
    nf, nb = int(scal[_N_UF]), int(scal[_N_UB])
    UF, UB = _unpermute(order, UF[:nf]), _unpermute(order, UB[:nb])
    if layout == "rank":
        pos = rank.copy()
    elif layout == "level-hilbert":
        pos = ch_layout(graph, _levels(n, rank, UF, nf, UB, nb))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    f = _to_csr(n, pos, UF, UFL[:nf])
    b = _to_csr(n, pos, UB, UBL[:nb])
    # child arcs: each shortcut's two halves by position, so routes unpack without searching
    t_child = time.perf_counter()
    down_f, down_b, ok = child_arcs(f[0], f[1], f[4], b[0], b[1], b[4])
    if not ok:  # every half of a finished hierarchy is an upward arc of its middle node
        raise RuntimeError("contraction hierarchy: a shortcut's halves are not at its middle node")
    if stats is not None:
        stats["child_arcs_ms"] = round(1000 * (time.perf_counter() - t_child))
    q_node, q_arc = query_layout(f[0], f[1], f[2], b[0], b[1], b[2])
    return Hierarchy(
        rank=pos,
        up_f_indptr=f[0], up_f_head=f[1], up_f_time_ds=f[2], up_f_length_m=f[3],
        up_b_indptr=b[0], up_b_head=b[1], up_b_time_ds=b[2], up_b_length_m=b[3],
        up_f_mid=f[4], up_b_mid=b[4], up_f_down=down_f, up_b_down=down_b,
        q_node=q_node, q_arc=q_arc,
        preprocess_s=time.perf_counter() - t0,
    )
