"""Route kernels (numba): the fastest path from a unit to a point through the hierarchy,
unpacked by **child arcs** (see docs/routing.md, "Routes (issue 15 point 6)").

Every upward arc (forward and backward CSR alike) has two int32 entries in its side's
``down`` array (``ch_up_f_down`` / ``ch_up_b_down`` in the graph file), at ``2a`` and
``2a + 1``:

* an original arc: ``-1 - edge id`` and ``-1``;
* a shortcut p->q through m: the backward arc at m that stands for p->m (its index in
  the backward CSR), then the forward arc at m that stands for m->q (its index in the
  forward CSR). Both halves are upward arcs of m, which was contracted before p and q.

So unpacking a route is a walk over an explicit stack of arc references with no search
at all (before: one binary search per arc in a CSR row). ``child_arcs`` computes the
arrays once at build time; routing.graph_check verifies every entry of a file before
these kernels trust it (halves in m's rows, with the right heads, and times that add
up to the shortcut's: each half is strictly shorter, so a walk ends).

Arc references on the stack: ``a >= 0`` is forward arc a, ``-1 - b`` backward arc b.
"""
# mypy: disallow-untyped-defs=False
# (numba kernels: numba infers their types from the arguments at the first call, so
# annotations would restate what it checks and could not name the array layouts it
# specialises on; the Python callers in routing.index / routing.ch are fully typed)

from __future__ import annotations

import numpy as np
from numba import njit

from routing.heap import heap_pop, heap_push_or_decrease, lazy_lower, lazy_pop

INF = np.inf


# ------------------------------------------------------------------ build time
@njit(cache=True, inline="always")
def _arc_in_row(indptr, head, x, y):
    """Arc x->y by binary search in row x (rows are sorted by head), or -1."""
    lo = indptr[x]
    hi = indptr[x + 1]
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if head[mid] < y:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and head[lo] == y:
        return lo
    return -1


@njit(cache=True)
def _child_side(indptr, head, mid, backward, uf_indptr, uf_head, ub_indptr, ub_head, down):
    n = indptr.shape[0] - 1
    for x in range(n):
        for a in range(indptr[x], indptr[x + 1]):
            y = head[a]
            m = mid[a]
            if m <= -2:
                down[2 * a] = m + 1  # -1 - edge id, edge = -2 - m
                down[2 * a + 1] = -1
                continue
            if m < 0:
                return a  # an original arc of unknown edge: cannot be unpacked
            p = y if backward else x
            q = x if backward else y
            lo = _arc_in_row(ub_indptr, ub_head, m, p)
            hi = _arc_in_row(uf_indptr, uf_head, m, q)
            if lo < 0 or hi < 0:
                return a
            down[2 * a] = lo
            down[2 * a + 1] = hi
    return -1


@njit(cache=True)
def child_arcs(uf_indptr, uf_head, uf_mid, ub_indptr, ub_head, ub_mid):
    """The ``down`` arrays of both sides (module docstring) from the middle nodes.
    Returns (down_f, down_b, ok); ok False when an arc cannot be resolved (an older
    hierarchy whose original arcs lack their edge ids)."""
    down_f = np.empty(2 * uf_head.shape[0], np.int32)
    down_b = np.empty(2 * ub_head.shape[0], np.int32)
    bad_f = _child_side(uf_indptr, uf_head, uf_mid, False, uf_indptr, uf_head, ub_indptr,
                        ub_head, down_f)
    bad_b = _child_side(ub_indptr, ub_head, ub_mid, True, uf_indptr, uf_head, ub_indptr,
                        ub_head, down_b)
    return down_f, down_b, bad_f < 0 and bad_b < 0


# ------------------------------------------------------------------ file check
@njit(cache=True)
def _check_down_side(indptr, head, w, down, backward, rank, uf_head, uf_w, ub_head, ub_w,
                     tail_f, tail_b, edge_tail, fwd_head, edge_time):
    """0 when every entry of ``down`` is well formed (module docstring), else 1 + the
    first bad arc. Indices of the other arrays are assumed in range (checked before)."""
    n = indptr.shape[0] - 1
    m_edges = edge_tail.shape[0]
    nf = uf_head.shape[0]
    nb = ub_head.shape[0]
    for x in range(n):
        for a in range(indptr[x], indptr[x + 1]):
            y = head[a]
            p = y if backward else x
            q = x if backward else y
            lo = down[2 * a]
            hi = down[2 * a + 1]
            if lo < 0:
                e = -1 - lo
                if hi != -1 or e >= m_edges or rank[edge_tail[e]] != p or rank[fwd_head[e]] != q \
                        or edge_time[e] != w[a]:
                    return 1 + a
                continue
            if lo >= nb or hi < 0 or hi >= nf:
                return 1 + a
            # lo: backward arc p->m stored at m (head p); hi: forward arc m->q at m (head q)
            if ub_head[lo] != p or uf_head[hi] != q or np.int64(ub_w[lo]) + uf_w[hi] != w[a]:
                return 1 + a
            if tail_b[lo] != tail_f[hi]:  # both halves at the same middle node
                return 1 + a
    return 0


@njit(cache=True)
def check_down(rank, uf_indptr, uf_head, uf_w, uf_down, ub_indptr, ub_head, ub_w, ub_down,
               edge_tail, fwd_head, edge_time):
    """0 when both ``down`` arrays are well formed; 1 + arc for the first bad forward arc,
    -(1 + arc) for the first bad backward one."""
    if uf_down.shape[0] != 2 * uf_head.shape[0]:
        return 1
    if ub_down.shape[0] != 2 * ub_head.shape[0]:
        return -1
    tail_f = _row_of_arcs(uf_indptr)
    tail_b = _row_of_arcs(ub_indptr)
    bad = _check_down_side(uf_indptr, uf_head, uf_w, uf_down, False, rank, uf_head, uf_w, ub_head,
                           ub_w, tail_f, tail_b, edge_tail, fwd_head, edge_time)
    if bad:
        return bad
    return -_check_down_side(ub_indptr, ub_head, ub_w, ub_down, True, rank, uf_head, uf_w, ub_head,
                             ub_w, tail_f, tail_b, edge_tail, fwd_head, edge_time)


@njit(cache=True)
def _row_of_arcs(indptr):
    n = indptr.shape[0] - 1
    row = np.empty(indptr[n], np.int32)
    for x in range(n):
        for a in range(indptr[x], indptr[x + 1]):
            row[a] = x
    return row


# ------------------------------------------------------------------ query time
@njit(cache=True)
def _up_search_arcs(src, src_t, n_src, indptr, head, w, st_indptr, st_head, st_w, bound_dist,
                    dist, hkey, hnode, hpos, touched, par, par_arc, best_meet):
    """Upward Dijkstra with stall-on-demand from seeded sources, recording each node's
    parent node (-1 at a source) and, unless ``par_arc`` is None (numba then compiles the
    write away), the arc it came by (written whenever a distance is, so neither array
    needs a reset). With ``bound_dist`` (the other direction's finished
    distances) it keeps the best meeting node in best_meet = [eta, node] and stops once
    the queue minimum reaches that eta. Returns the touched count; the caller resets
    dist through touched."""
    nt = 0
    size = 0
    for i in range(n_src):
        r = src[i]
        if src_t[i] < dist[r]:
            if dist[r] == INF:
                touched[nt] = r
                nt += 1
            dist[r] = src_t[i]
            par[r] = -1
            size = heap_push_or_decrease(hkey, hnode, hpos, size, r, src_t[i])
    while size > 0:
        d = hkey[0]
        x = hnode[0]
        if d >= best_meet[0]:
            break
        size = heap_pop(hkey, hnode, hpos, size)
        bd = bound_dist[x]
        if bd < INF and d + bd < best_meet[0]:
            best_meet[0] = d + bd
            best_meet[1] = x
        stalled = False
        for a in range(st_indptr[x], st_indptr[x + 1]):
            if dist[st_head[a]] + st_w[a] < d:
                stalled = True
                break
        if stalled:
            continue
        for a in range(indptr[x], indptr[x + 1]):
            y = head[a]
            nd = d + w[a]
            if nd < dist[y]:
                if dist[y] == INF:
                    touched[nt] = y
                    nt += 1
                dist[y] = nd
                par[y] = x
                if par_arc is not None:
                    par_arc[y] = a
                size = heap_push_or_decrease(hkey, hnode, hpos, size, y, nd)
    for i in range(size):
        hpos[hnode[i]] = -1
    return nt


@njit(cache=True)
def route_polyline(edges, n_e, src_node, fwd_head, node_lon, node_lat, x0, y0, x1, y1, out_xy):
    """The route's points for the console into ``out_xy`` (at least n_e + 3 rows of lon,
    lat): (x0, y0), the source node, the head of each of the first ``n_e`` driven edges,
    (x1, y1); a point equal to the one before is dropped. ``src_node`` -1: no road edges
    (the point lies ahead on the unit's own street). Returns the count."""
    out_xy[0, 0] = x0
    out_xy[0, 1] = y0
    k = 1
    for i in range(-1, n_e + 1):
        if i == -1:
            if src_node < 0:
                continue
            x = node_lon[src_node]
            y = node_lat[src_node]
        elif i == n_e:
            x = x1
            y = y1
        else:
            v = fwd_head[edges[i]]
            x = node_lon[v]
            y = node_lat[v]
        if x != out_xy[k - 1, 0] or y != out_xy[k - 1, 1]:
            out_xy[k, 0] = x
            out_xy[k, 1] = y
            k += 1
    return k


# ------------------------------------------------------------------ routes
# Both searches read the hierarchy's query layout (graph.Hierarchy.query_layout: node x's
# upward-forward arcs [q_node[2x], q_node[2x+1]) then its upward-backward arcs up to
# q_node[2x+2], as (head, time) pairs in one block) and keep a lazy heap each
# (routing.heap.lazy_push): a settled node reads one contiguous block, and a relaxation
# writes a heap row instead of sifting positions. The two searches alternate (the smaller
# queue minimum goes next) and both stop once their minima reach the best meeting. Each
# node keeps its parent node and the arc it came by as an index in its direction's CSR
# arrays, which is what the child arcs (``down``) are indexed by.
@njit(cache=True, inline="always")
def _q_step(x, d, forward, q_node, q_arc, indptr, dist, dist_o, par, arc, hq, size, touched, nt,
            best_t, best_x):
    """Settle x at d in one direction: meeting test, stall test on the other direction's
    part of x's block, then relax this direction's part. Returns the new (heap size,
    touched count, best eta, best meeting node)."""
    bo = dist_o[x]
    if bo < INF and d + bo < best_t:
        best_t = d + bo
        best_x = x
    if forward:
        r0 = q_node[2 * x]
        r1 = q_node[2 * x + 1]
        s0 = r1
        s1 = q_node[2 * x + 2]
    else:
        s0 = q_node[2 * x]
        s1 = q_node[2 * x + 1]
        r0 = s1
        r1 = q_node[2 * x + 2]
    for a in range(s0, s1):
        if dist[q_arc[2 * a]] + q_arc[2 * a + 1] < d:
            return size, nt, best_t, best_x
    base = indptr[x] - r0  # the block's part is the CSR row in the same order
    for a in range(r0, r1):
        y = q_arc[2 * a]
        nd = d + q_arc[2 * a + 1]
        if nd < dist[y]:
            size, nt = lazy_lower(y, nd, dist, touched, nt, hq, size)
            par[y] = x
            arc[y] = base + a
    return size, nt, best_t, best_x


@njit(cache=True, inline="always")
def _seed(r, t, dist, par, hq, size, touched, nt):
    if t < dist[r]:
        size, nt = lazy_lower(r, t, dist, touched, nt, hq, size)
        par[r] = -1
    return size, nt


@njit(cache=True)
def ch_route(src, src_t, n_src, seeds, seed_t, n_seeds, q_node, q_arc,
             uf_indptr, uf_down, ub_indptr, ub_down,
             dist_f, dist_b, hq_f, hq_b, touched_f, touched_b, par_f, par_b, arc_f, arc_b,
             stack, out_edges):
    """Fastest path from up to two unit sources (hierarchy ids, offsets) to up to two
    incident seeds: the bidirectional upward search above, then the chain of hierarchy arcs
    through the meeting node unpacked by the child arcs. Writes the road edge ids in driving
    order to out_edges and returns (eta ds, source index, seed index, number of edges);
    source index -1 when unreachable, -2 when a workspace would overflow (never expected).
    dist_*: +inf between calls (left so); the other arrays any content."""
    best_t = INF
    best_x = -1
    nt_f = 0
    nt_b = 0
    sf = 0
    sb = 0
    for i in range(n_src):
        sf, nt_f = _seed(src[i], src_t[i], dist_f, par_f, hq_f, sf, touched_f, nt_f)
    for i in range(n_seeds):
        sb, nt_b = _seed(seeds[i], seed_t[i], dist_b, par_b, hq_b, sb, touched_b, nt_b)
    while True:
        while sf > 0 and hq_f[0, 0] > dist_f[int(hq_f[0, 1])]:
            sf = lazy_pop(hq_f, sf)  # stale: its node was pushed again with a smaller key
        while sb > 0 and hq_b[0, 0] > dist_b[int(hq_b[0, 1])]:
            sb = lazy_pop(hq_b, sb)
        df = hq_f[0, 0] if sf > 0 else INF
        db = hq_b[0, 0] if sb > 0 else INF
        if df >= best_t and db >= best_t:
            break
        if df <= db:
            x = int(hq_f[0, 1])
            sf = lazy_pop(hq_f, sf)
            sf, nt_f, best_t, best_x = _q_step(x, df, True, q_node, q_arc, uf_indptr, dist_f,
                                               dist_b, par_f, arc_f, hq_f, sf, touched_f, nt_f,
                                               best_t, best_x)
        else:
            x = int(hq_b[0, 1])
            sb = lazy_pop(hq_b, sb)
            sb, nt_b, best_t, best_x = _q_step(x, db, False, q_node, q_arc, ub_indptr, dist_b,
                                               dist_f, par_b, arc_b, hq_b, sb, touched_b, nt_b,
                                               best_t, best_x)
    si, qi, n_out = _unpack(best_x, src, n_src, seeds, n_seeds, uf_down, ub_down, par_f, par_b,
                            arc_f, arc_b, stack, out_edges)
    for i in range(nt_f):
        dist_f[touched_f[i]] = INF
    for i in range(nt_b):
        dist_b[touched_b[i]] = INF
    return best_t, si, qi, n_out


@njit(cache=True, inline="always")
def _unpack(meet, src, n_src, seeds, n_seeds, uf_down, ub_down, par_f, par_b, arc_f, arc_b,
            stack, out_edges):
    """The road edges of the chain of hierarchy arcs through ``meet`` (ch_route); returns
    (source index, seed index, edge count)."""
    si = -1
    qi = -1
    n_out = 0
    if meet < 0:
        return si, qi, n_out
    # the stack, bottom to top: the backward chain's arcs from the seed end up to the
    # meeting node, then the forward chain's from the meeting node down to the source, so
    # the first arc driven is on top. The backward chain is listed first (meet .. seed) in
    # the upper half of the stack, then moved down reversed.
    cap = stack.shape[0]
    nb = 0
    x = meet
    while par_b[x] >= 0:
        stack[cap - 1 - nb] = -1 - arc_b[x]  # original arc x -> par_b[x]
        nb += 1
        x = par_b[x]
    for i in range(n_seeds):
        if seeds[i] == x:
            qi = i
    for i in range(nb):
        stack[i] = stack[cap - nb + i]
    sp = nb
    x = meet
    while par_f[x] >= 0:
        stack[sp] = arc_f[x]  # original arc par_f[x] -> x
        sp += 1
        x = par_f[x]
    for i in range(n_src):
        if src[i] == x:
            si = i
    n_cap = out_edges.shape[0]
    while sp > 0:
        sp -= 1
        r = stack[sp]
        if r >= 0:
            lo = uf_down[2 * r]
            hi = uf_down[2 * r + 1]
        else:
            lo = ub_down[-2 - 2 * r]
            hi = ub_down[-1 - 2 * r]
        if lo < 0:
            if n_out == n_cap:
                return -2, qi, 0
            out_edges[n_out] = -1 - lo
            n_out += 1
        else:
            if sp + 2 > cap:
                return -2, qi, 0
            stack[sp] = hi  # second half m->q, a forward arc, after the first
            stack[sp + 1] = -1 - lo  # first half p->m, a backward arc
            sp += 2
    return si, qi, n_out


@njit(cache=True)
def ctx_route(c, slot, r0, t0, r1, t1, n_seeds, uf_down, ub_down, dist_b, hq_b, rw, stack,
              edges, node_lon, node_lat, x0, y0, x1, y1, xy):
    """ch_route from unit ``slot``'s sources (context ``c``: routing.kernels.IndexCtx) to up
    to two seeds (hierarchy ids r, offsets t; with one seed r1/t1 are ignored). ``rw``
    int32 (5, n): touched_b, par_f, par_b, arc_f, arc_b; ``hq_b`` the backward search's
    heap, shaped like ``c.hq``. The edges are in ``edges``. With room in ``xy`` (edges + 3,
    2) it also writes the route's polyline there (route_polyline), from (x0, y0) to (x1,
    y1). Returns (eta ds, source index, seed
    index, edge count, metres along those edges, point count; 0 without the polyline)."""
    src = c.seed_i[0]
    seeds = c.seed_i[1]
    src_t = c.seed_f[0]
    seed_t = c.seed_f[1]
    ns = c.u_nsrc[slot]
    for i in range(ns):
        src[i] = c.rank[c.u_src[slot, i]]
        src_t[i] = c.u_pos_f[1, slot, i]
    seeds[0] = r0
    seed_t[0] = t0
    seeds[1] = r1
    seed_t[1] = t1
    best, si, qi, n_e = ch_route(src, src_t, ns, seeds, seed_t, n_seeds, c.q_node, c.q_arc,
                                 c.uf_indptr, uf_down, c.ub_indptr, ub_down, c.ws_f[0], dist_b,
                                 c.hq, hq_b, c.ws_i[2], rw[0], rw[1], rw[2], rw[3], rw[4], stack,
                                 edges)
    length = 0.0
    el = c.edge_len
    for i in range(n_e):
        length += el[edges[i]]
    k = 0
    if si >= 0 and xy.shape[0] >= n_e + 3:
        k = route_polyline(edges, n_e, c.u_src[slot, si], c.fwd_head, node_lon, node_lat, x0, y0,
                           x1, y1, xy)
    return best, si, qi, n_e, length, k
