"""Query kernels (numba): unit buckets over a contraction hierarchy, nearest-K,
many-to-many tables, and a plain Dijkstra for routes and as the no-index fallback.

All kernels take arrays and return counts or arrays; the per-query workspaces
(distance arrays, heaps, top-K buffers) are allocated once per worker by
``routing.index`` and left clean (all +inf / -1) after every call, so a query
touches only the memory of its own search space.

Distances are float64 deciseconds: CH weights are integers, the fractional part
comes only from positions inside an edge.

Bucket design (Knopp et al., "Computing many-to-many shortest paths using highway
hierarchies", with a K-th-best bound): unit u whose position leads into node v
with offset o is stored in bucket(x) as (u, d(v->x)) for every x settled by the
forward upward search from v. A query runs the backward upward search from the
incident and, at each settled x with d(x->incident) = D, scans bucket(x):
ETA = o + d(v->x) + D. Every bucket entry at x has ETA >= D, so the search stops
once the queue minimum exceeds the current K-th best ETA.
"""
# mypy: disallow-untyped-defs=False
# (numba kernels: numba infers their types from the arguments at the first call, so
# annotations would restate what it checks and could not name the array layouts it
# specialises on; the Python callers in routing.index / routing.ch are fully typed)

from __future__ import annotations

import llvmlite.ir as llvm_ir
import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.experimental import structref
from numba.extending import intrinsic

from routing.heap import heap_pop, heap_push_or_decrease, lazy_lower, lazy_pop
from routing.route_kernels import _up_search_arcs

INF = np.inf
SMALL_BUCKET = 16  # buckets up to this length close a removed entry's gap at once
# Large buckets: an insertion with no tombstone within SPREAD_REACH entries first spreads
# the bucket out with a tombstone after every SPREAD_EVERY live entries.
SPREAD_EVERY = 8
SPREAD_REACH = 24
# Bucket regions in the pool have power-of-two capacities from 4 up; scal[1 + k] heads the
# list of free regions of capacity 4 << k (scal[0]: the pool's end). See _region_get.
FREE_CLASSES = 40
# A unit's row of entries (u_nodes) holds each entry's node, its source label (0 or 1) in
# bit 30, so one source's entries can go while the other's stay, and in bit 29 MARK: the
# entry beats the other source's entry at its node, which was left out (bucket_insert).
LABEL_SHIFT = 30
MARK = 1 << 29
NODE_MASK = MARK - 1


# ------------------------------------------------------------------ upward search
@njit(cache=True)
def upward_search_q(r, q_node, q_arc, uf_indptr, uf_l, dist, dlen, hq, touched, out_node,
                    out_t, out_l, out_cap):
    """Dijkstra on the upward-forward graph from node r (offset 0), with stall-on-demand:
    the search a unit's move runs for its bucket entries. It reads the packed query layout
    (graph.query_layout: it relaxes the first part of a node's block and stall-tests on the
    second) and keeps the lazy (key, node) heap of ch_nearest_q (in-process A/B on 2,000
    NY nodes, quiet: 12.5 µs a search against 19.2 µs on the CSR arrays with the
    decrease-key heap, same nodes and distances). Writes the non-stalled settled nodes with
    their distance and length to out_* (the first out_cap of them) and returns their count
    (which may exceed out_cap). dist: +inf between calls, left so."""
    touched[0] = r
    nt = 1
    dist[r] = 0.0
    dlen[r] = 0.0
    hq[0, 0] = 0.0
    hq[0, 1] = r
    size = 1
    cnt = 0
    while size > 0:
        d = hq[0, 0]
        x = int(hq[0, 1])
        size = lazy_pop(hq, size)
        if size > 0:  # the next node's arcs, while this one is processed (_prefetch)
            _prefetch(q_arc, 2 * q_node[2 * int(hq[0, 1])])
        if d > dist[x]:
            continue  # a stale entry: x was pushed again with a smaller key
        a0 = q_node[2 * x]
        a1 = q_node[2 * x + 1]
        stalled = False
        for a in range(a1, q_node[2 * x + 2]):
            if dist[q_arc[2 * a]] + q_arc[2 * a + 1] < d:
                stalled = True
                break
        if stalled:
            continue
        if cnt < out_cap:
            out_node[cnt] = x
            out_t[cnt] = d
            out_l[cnt] = dlen[x]
        cnt += 1
        lx = dlen[x]
        base = uf_indptr[x] - a0
        for a in range(a0, a1):
            y = q_arc[2 * a]
            nd = d + q_arc[2 * a + 1]
            if nd < dist[y]:
                size, nt = lazy_lower(y, nd, dist, touched, nt, hq, size)
                dlen[y] = lx + uf_l[base + a]
                _prefetch(q_node, 2 * y)
    for i in range(nt):
        dist[touched[i]] = INF
    return cnt


# ----------------------------------------------------------------------- buckets

@njit(cache=True)
def _bucket_append(x, slot, t, length, j, b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal):
    for _attempt in range(2):  # a second pass only after a re-spread
        # keep the bucket sorted by distance so that queries stop scanning at their bound.
        # q = first entry farther than t (binary search; tombstones keep their distance, so
        # they are sorted like live entries)
        lo = b_start[x]
        end = lo + b_len[x]
        q = lo
        hi = end
        while q < hi:
            mid = (q + hi) >> 1
            if pool_t[mid] > t:
                hi = mid
            else:
                q = mid + 1
        if q == end and b_len[x] < b_cap[x]:
            b_len[x] += 1  # farthest so far, and room at the end: nothing moves
            _bucket_put(q, slot, j, t, length, pool_sj, pool_t, pool_l)
            return pool_sj, pool_t, pool_l
        if b_len[x] > SMALL_BUCKET:
            # reuse the tombstone nearest to q: only the entries between the two move. When
            # none is within SPREAD_REACH, first spread the bucket out with a tombstone every
            # SPREAD_EVERY entries (a packed-memory-array idea): moves then shift a handful
            # of entries instead of a third of a 500-entry bucket at the top of the hierarchy.
            left = q - 1
            right = q
            if (q - lo > SPREAD_REACH and end - q > SPREAD_REACH
                    and not _tombstone_near(pool_sj, q, lo, end)):
                pool_sj, pool_t, pool_l = _respread(x, b_start, b_len, b_cap, pool_sj, pool_t,
                                                    pool_l, scal)
                continue
            while left >= lo or right < end:
                if left >= lo:
                    if pool_sj[left, 0] < 0:
                        for i in range(left, q - 1):
                            pool_sj[i, 0] = pool_sj[i + 1, 0]
                            pool_sj[i, 1] = pool_sj[i + 1, 1]
                            pool_t[i] = pool_t[i + 1]
                            pool_l[i] = pool_l[i + 1]
                        _bucket_put(q - 1, slot, j, t, length, pool_sj, pool_t, pool_l)
                        return pool_sj, pool_t, pool_l
                    left -= 1
                if right < end:
                    if pool_sj[right, 0] < 0:
                        for i in range(right, q, -1):
                            pool_sj[i, 0] = pool_sj[i - 1, 0]
                            pool_sj[i, 1] = pool_sj[i - 1, 1]
                            pool_t[i] = pool_t[i - 1]
                            pool_l[i] = pool_l[i - 1]
                        _bucket_put(q, slot, j, t, length, pool_sj, pool_t, pool_l)
                        return pool_sj, pool_t, pool_l
                    right += 1
        if b_len[x] == b_cap[x]:
            newcap = max(4, 2 * b_cap[x])
            pool_sj, pool_t, pool_l, pe = _region_get(newcap, pool_sj, pool_t, pool_l, scal)
            s = b_start[x]
            for i in range(b_len[x]):
                p = pe + i
                pool_sj[p, 0] = pool_sj[s + i, 0]
                pool_sj[p, 1] = pool_sj[s + i, 1]
                pool_t[p] = pool_t[s + i]
                pool_l[p] = pool_l[s + i]
            _region_put(s, b_cap[x], pool_sj, scal)
            b_start[x] = pe
            b_cap[x] = newcap
            q += pe - lo
            lo = pe
            end = pe + b_len[x]
        for i in range(end, q, -1):
            pool_sj[i, 0] = pool_sj[i - 1, 0]
            pool_sj[i, 1] = pool_sj[i - 1, 1]
            pool_t[i] = pool_t[i - 1]
            pool_l[i] = pool_l[i - 1]
        b_len[x] += 1
        _bucket_put(q, slot, j, t, length, pool_sj, pool_t, pool_l)
        return pool_sj, pool_t, pool_l
    return pool_sj, pool_t, pool_l


@njit(cache=True)
def _tombstone_near(pool_sj, q, lo, end):
    for i in range(max(lo, q - SPREAD_REACH), min(end, q + SPREAD_REACH)):
        if pool_sj[i, 0] < 0:
            return True
    return False


@njit(cache=True)
def _respread(x, b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal):
    """Rewrite bucket x with its live entries and a tombstone (slot -1, the distance of
    the entry before it, so the bucket stays sorted) after every SPREAD_EVERY of them;
    moves the bucket to the end of the pool when it needs more room."""
    lo = b_start[x]
    live = 0
    for p in range(lo, lo + b_len[x]):
        if pool_sj[p, 0] >= 0:
            live += 1
    sj = np.empty((live, 2), np.int32)
    tt = np.empty(live, np.float64)
    ll = np.empty(live, np.float64)
    i = 0
    for p in range(lo, lo + b_len[x]):
        if pool_sj[p, 0] >= 0:
            sj[i, 0] = pool_sj[p, 0]
            sj[i, 1] = pool_sj[p, 1]
            tt[i] = pool_t[p]
            ll[i] = pool_l[p]
            i += 1
    need = live + (live - 1) // SPREAD_EVERY + 1
    if need > b_cap[x]:
        newcap = 4
        while newcap < 2 * need:
            newcap *= 2
        pool_sj, pool_t, pool_l, pe = _region_get(newcap, pool_sj, pool_t, pool_l, scal)
        _region_put(lo, b_cap[x], pool_sj, scal)  # (its live entries are in sj, tt, ll)
        b_start[x] = pe
        b_cap[x] = newcap
        lo = pe
    p = lo
    for i in range(live):
        if i > 0 and i % SPREAD_EVERY == 0:
            pool_sj[p, 0] = -1
            pool_sj[p, 1] = -1
            pool_t[p] = tt[i - 1]
            pool_l[p] = 0.0
            p += 1
        pool_sj[p, 0] = sj[i, 0]
        pool_sj[p, 1] = sj[i, 1]
        pool_t[p] = tt[i]
        pool_l[p] = ll[i]
        p += 1
    b_len[x] = p - lo
    return pool_sj, pool_t, pool_l


@njit(cache=True, inline="always")
def _pool_room(pool_sj, pool_t, pool_l, pe, newcap):
    """The bucket pool with room for ``newcap`` more entries after its first ``pe``: the
    same arrays when they have it, else copies at least twice the size."""
    if pe + newcap <= pool_sj.shape[0]:
        return pool_sj, pool_t, pool_l
    size = max(2 * pool_sj.shape[0], pe + newcap)
    sj2 = np.empty((size, 2), np.int32)
    t2 = np.empty(size, np.float64)
    l2 = np.empty(size, np.float64)
    sj2[:pe] = pool_sj[:pe]
    t2[:pe] = pool_t[:pe]
    l2[:pe] = pool_l[:pe]
    return sj2, t2, l2


@njit(cache=True, inline="always")
def _free_class(cap):
    k = 0
    while (4 << k) < cap:
        k += 1
    return k


@njit(cache=True)
def _region_get(cap, pool_sj, pool_t, pool_l, scal):
    """A region of ``cap`` entries (a power of two, at least 4) for a bucket: the one freed
    last of that size, else new room at the pool's end. Returns the pool arrays (copies
    when they had to grow) and the region's start.

    Regions are reused, so the pool grows only with the capacity live buckets hold: before,
    a bucket that outgrew its region and a bucket emptied left theirs unused for good, and
    the pool only grew (120,000 teleports of 500 units on NY: room for 813,512 entries in
    use for 30,155 live ones, 18.6 MiB per worker and still growing; AVL units crossing
    onto new streets spread it the same way). The last region freed is the first reused,
    so a move's removals and insertions stay in memory the cache has just seen."""
    k = _free_class(cap)
    h = scal[1 + k]
    if h >= 0:
        scal[1 + k] = pool_sj[h, 0]
        return pool_sj, pool_t, pool_l, h
    pe = scal[0]
    pool_sj, pool_t, pool_l = _pool_room(pool_sj, pool_t, pool_l, pe, cap)
    scal[0] = pe + cap
    return pool_sj, pool_t, pool_l, pe


@njit(cache=True, inline="always")
def _region_put(start, cap, pool_sj, scal):
    """Free the region of ``cap`` entries at ``start`` (nothing when cap is 0): its first
    slot links it into its size's list."""
    if cap > 0:
        k = _free_class(cap)
        pool_sj[start, 0] = scal[1 + k]
        scal[1 + k] = start


@njit(cache=True, inline="always")
def _bucket_put(p, slot, j, t, length, pool_sj, pool_t, pool_l):
    pool_sj[p, 0] = slot
    pool_sj[p, 1] = j
    pool_t[p] = t
    pool_l[p] = length


@njit(cache=True)
def bucket_insert(slot, src_rank, n_src, q_node, q_arc, uf_indptr, uf_l, b_start, b_len, b_cap,
                  pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes, u_dist, dist, dlen, hq, mark,
                  touched, tmp_node, tmp_t, tmp_l, src_w, u_bnd):
    """Add the forward upward search space of each of the unit's sources to the buckets:
    entry (slot, c) holds the distance from source c itself; the unit's offset to reach
    the source (kept in u_src_t/u_src_l) is added by the queries, so a move
    along the same edge changes no entry (bucket_move). ``src_w[c]`` bounds source c's
    offset for as long as these entries stay (its edge's time; INF: unbounded): with two
    sources, an entry at x that the other source beats at every such offset
    (d_other(x) + w_other <= d(x)) is left out, and the other's entry at x is marked
    (bucket_move restores the left-out one from it when the other source goes). Writes
    the bounds to u_bnd. Returns the pool arrays (reallocated when they grew) and the
    number of entries, or minus the needed row width when u_nodes is too narrow (nothing
    is changed then)."""
    cap = tmp_node.shape[0]
    cnt = 0
    split = 0
    for c in range(n_src):
        at = min(cnt, cap)
        cnt += upward_search_q(src_rank[c], q_node, q_arc, uf_indptr, uf_l, dist, dlen, hq,
                               touched, tmp_node[at:], tmp_t[at:], tmp_l[at:], cap - at)
        if c == 0:
            split = cnt
    if cnt > cap:
        return pool_sj, pool_t, pool_l, -cnt
    u_bnd[slot, 0] = INF
    u_bnd[slot, 1] = INF
    if n_src == 2:
        cnt, split = _drop_dominated(cnt, split, tmp_node, tmp_t, tmp_l, dist, mark, src_w)
        u_bnd[slot, 0] = src_w[0]
        u_bnd[slot, 1] = src_w[1]
    if cnt > u_nodes.shape[1]:
        return pool_sj, pool_t, pool_l, -cnt
    _prefetch_row(cnt, tmp_node, b_start, b_len, pool_t)
    for j in range(cnt):
        v = tmp_node[j]
        lab = 0 if j < split else 1
        u_nodes[slot, j] = v | (lab << LABEL_SHIFT)
        u_dist[slot, j] = tmp_t[j]
        pool_sj, pool_t, pool_l = _bucket_append(
            v & NODE_MASK, slot, tmp_t[j], tmp_l[j], lab, b_start, b_len, b_cap, pool_sj, pool_t,
            pool_l, scal)
    u_cnt[slot] = cnt
    return pool_sj, pool_t, pool_l, cnt


@njit(cache=True)
def _drop_dominated(cnt, split, tmp_node, tmp_t, tmp_l, dist, mark, src_w):
    """Leave out the entries one source beats at every offset: source 0's entries are
    tmp_*[:split], source 1's tmp_*[split:cnt]; the entry that beats a left-out one gets
    the MARK bit in tmp_node. ``dist`` (all INF) and ``mark`` (scratch) are borrowed to
    look up source 0's entries by node; dist is left all INF again. Returns (cnt, split)."""
    for j in range(split):
        dist[tmp_node[j]] = tmp_t[j]
        mark[tmp_node[j]] = 0
    for j in range(split, cnt):
        x = tmp_node[j]
        d0 = dist[x]
        if d0 == INF or d0 < 0:
            continue
        if d0 + src_w[0] <= tmp_t[j]:
            tmp_node[j] = -1  # source 1's entry is never the better one
            mark[x] = 1
        elif tmp_t[j] + src_w[1] <= d0:
            dist[x] = -1.0  # source 0's entry is never the better one
            tmp_node[j] = x | MARK
    out = 0
    for j in range(split):
        x = tmp_node[j]
        keep = dist[x] >= 0
        dist[x] = INF
        if keep:
            tmp_node[out] = x | MARK if mark[x] else x
            tmp_t[out] = tmp_t[j]
            tmp_l[out] = tmp_l[j]
            out += 1
    new_split = out
    for j in range(split, cnt):
        if tmp_node[j] >= 0:
            tmp_node[out] = tmp_node[j]
            tmp_t[out] = tmp_t[j]
            tmp_l[out] = tmp_l[j]
            out += 1
    return out, new_split


@njit(cache=True)
def _bucket_find(x, slot, lab, t, b_start, b_len, pool_sj, pool_t):
    """Position of entry (slot, lab) at distance t in bucket x, or -1: binary search on
    the distance (buckets are sorted by distance), then a scan of the entries at that
    same distance."""
    first = b_start[x]
    last = first + b_len[x] - 1
    lo = first
    hi = last + 1
    while lo < hi:  # first entry not nearer than t
        mid = (lo + hi) >> 1
        if pool_t[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    p = lo
    while p <= last and (pool_sj[p, 0] != slot or pool_sj[p, 1] != lab) and pool_t[p] == t:
        p += 1
    if p > last or pool_sj[p, 0] != slot or pool_sj[p, 1] != lab:
        # not where its distance says (never expected): fall back to a scan
        p = first
        while p <= last and (pool_sj[p, 0] != slot or pool_sj[p, 1] != lab):
            p += 1
        if p > last:
            return -1
    return p


@njit(cache=True)
def _bucket_drop(x, slot, lab, t, b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal):
    """Remove entry (slot, lab) at distance t from bucket x. In a small bucket the gap is
    closed at once; in a large one (the top of the hierarchy, where nearly every unit
    has an entry) the entry becomes a *tombstone* (slot -1, its distance kept, so the
    bucket stays sorted) that the next insertion nearby reuses: a move then shifts only
    the entries between its old and new place instead of half the bucket twice. Queries
    skip tombstones; trailing ones are dropped, and an emptied bucket frees its region."""
    p = _bucket_find(x, slot, lab, t, b_start, b_len, pool_sj, pool_t)
    if p < 0:
        return
    first = b_start[x]
    last = first + b_len[x] - 1
    if p == last or b_len[x] <= SMALL_BUCKET:
        while p < last:
            pool_sj[p, 0] = pool_sj[p + 1, 0]
            pool_sj[p, 1] = pool_sj[p + 1, 1]
            pool_t[p] = pool_t[p + 1]
            pool_l[p] = pool_l[p + 1]
            p += 1
        b_len[x] -= 1
        while b_len[x] > 0 and pool_sj[first + b_len[x] - 1, 0] < 0:
            b_len[x] -= 1
        if b_len[x] == 0:  # its region is free for another bucket (_region_get)
            _region_put(first, b_cap[x], pool_sj, scal)
            b_start[x] = 0
            b_cap[x] = 0
    else:
        pool_sj[p, 0] = -1
        pool_sj[p, 1] = -1


@njit(cache=True)
def _bucket_relabel(x, slot, lab, t, new_lab, add_t, add_l, b_start, b_len, pool_sj, pool_t,
                    pool_l):
    """Entry (slot, lab) at distance t in bucket x becomes (slot, new_lab) at t + add_t,
    add_l metres longer: it slides right past the entries now nearer (one pass over
    the bucket's entries between the two places, not a removal and an insertion)."""
    p = _bucket_find(x, slot, lab, t, b_start, b_len, pool_sj, pool_t)
    if p < 0:
        return
    nt = t + add_t
    nl = pool_l[p] + add_l
    end = b_start[x] + b_len[x]
    while p + 1 < end and pool_t[p + 1] <= nt:
        pool_sj[p, 0] = pool_sj[p + 1, 0]
        pool_sj[p, 1] = pool_sj[p + 1, 1]
        pool_t[p] = pool_t[p + 1]
        pool_l[p] = pool_l[p + 1]
        p += 1
    _bucket_put(p, slot, new_lab, nt, nl, pool_sj, pool_t, pool_l)


@njit(cache=True, inline="always")
def _prefetch_row(cnt, nodes, b_start, b_len, pool_t):
    """Before a unit's whole row of entries is removed or inserted: every entry's bucket
    record, then the middle of every bucket (where its binary search starts), into the
    cache, so that the ~60 misses of each kind overlap instead of following one another
    (in-process A/B, NY teleports, 500 units: removal 7.3 -> 6.2 µs; with the insertion's
    the same, a teleport 28.4 -> 25.6 µs, against one entry ahead before)."""
    for j in range(cnt):
        _prefetch(b_start, nodes[j] & NODE_MASK)
    for j in range(cnt):
        x = nodes[j] & NODE_MASK
        _prefetch(pool_t, b_start[x] + (b_len[x] >> 1))


@njit(cache=True)
def bucket_remove(slot, b_start, b_len, b_cap, pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes,
                  u_dist):
    """Remove all of a unit's entries (each found as _bucket_drop says), after the bucket
    records and then the middle of every bucket are asked into the cache (_prefetch_row)."""
    cnt = u_cnt[slot]
    _prefetch_row(cnt, u_nodes[slot], b_start, b_len, pool_t)
    for j in range(cnt):
        v = u_nodes[slot, j]
        _bucket_drop(v & NODE_MASK, slot, v >> LABEL_SHIFT, u_dist[slot, j], b_start, b_len,
                     b_cap, pool_sj, pool_t, pool_l, scal)
    u_cnt[slot] = 0


@njit(cache=True)
def _drop_source(slot, lab, keep, add_t, add_l, b_start, b_len, b_cap, pool_sj, pool_t, pool_l,
                 scal, u_cnt, u_nodes, u_dist):
    """Source ``lab`` goes; source ``keep`` (-1: none) stays and gets back the entries it
    was left without: each marked entry of ``lab`` (it beat keep's entry at its node,
    which was left out) becomes keep's, ``add_t``/``add_l`` longer (the street from keep
    to lab: a real path, no longer than the entry left out). The other entries of lab
    are removed; keep's lose their marks."""
    out = 0
    for j in range(u_cnt[slot]):
        v = u_nodes[slot, j]
        x = v & NODE_MASK
        if v >> LABEL_SHIFT != lab:
            u_nodes[slot, out] = x | (keep << LABEL_SHIFT)
            u_dist[slot, out] = u_dist[slot, j]
            out += 1
        elif keep >= 0 and v & MARK:
            t = u_dist[slot, j]
            _bucket_relabel(x, slot, lab, t, keep, add_t, add_l, b_start, b_len, pool_sj, pool_t,
                            pool_l)
            u_nodes[slot, out] = x | (keep << LABEL_SHIFT)
            u_dist[slot, out] = t + add_t
            out += 1
        else:
            _bucket_drop(x, slot, lab, u_dist[slot, j], b_start, b_len, b_cap, pool_sj, pool_t,
                         pool_l, scal)
    u_cnt[slot] = out


@njit(cache=True)
def bucket_live_entries(b_start, b_len, pool_sj):
    """Bucket entries that are not tombstones."""
    total = 0
    for x in range(b_start.shape[0]):
        for p in range(b_start[x], b_start[x] + b_len[x]):
            if pool_sj[p, 0] >= 0:
                total += 1
    return total


# ------------------------------------------------------------------------ top-K
@njit(cache=True, inline="always")
def _before(t1, s1, t2, s2, u_tie):
    return t1 < t2 or (t1 == t2 and u_tie[s1] < u_tie[s2])


@njit(cache=True)
def _offer(s, t, length, best, best_touched, nbt, u_tie, out_slot, out_t, out_l, cnt, k):
    """Offer unit s at ETA t; keeps out_* sorted by (ETA, tie key), one entry per unit."""
    if t >= best[s]:
        return cnt, nbt
    if best[s] == INF:
        best_touched[nbt] = s
        nbt += 1
    best[s] = t
    pos = -1
    for i in range(cnt):
        if out_slot[i] == s:
            pos = i
            break
    if pos < 0:
        if cnt < k:
            pos = cnt
            cnt += 1
        elif _before(t, s, out_t[cnt - 1], out_slot[cnt - 1], u_tie):
            pos = cnt - 1
        else:
            return cnt, nbt
    out_slot[pos] = s
    out_t[pos] = t
    out_l[pos] = length
    while pos > 0 and _before(out_t[pos], out_slot[pos], out_t[pos - 1], out_slot[pos - 1], u_tie):
        out_slot[pos], out_slot[pos - 1] = out_slot[pos - 1], out_slot[pos]
        out_t[pos], out_t[pos - 1] = out_t[pos - 1], out_t[pos]
        out_l[pos], out_l[pos - 1] = out_l[pos - 1], out_l[pos]
        pos -= 1
    return cnt, nbt


@njit(cache=True, inline="always")
def _eligible(s, need_avail, u_avail, u_type, u_caps, type_mask, caps_req):
    if need_avail and u_avail[s] == 0:
        return False
    return (u_type[s] & type_mask) != 0 and (u_caps[s] & caps_req) == caps_req


@njit(cache=True)
def _same_edge(seed_edge, seed_frac, n_seeds, u_edge, u_frac, n_slots, seed_et, seed_el,
               need_avail, u_avail, u_type, u_caps, type_mask, caps_req,
               best, best_touched, nbt, u_tie, out_slot, out_t, out_l, cnt, k):
    """Units behind the incident on its own edge drive straight to it (the search
    through the edge's head would send them around the block). seed_et/seed_el: time
    and length of each seed's whole edge."""
    for i in range(n_seeds):
        e = seed_edge[i]
        if e < 0:
            continue
        for s in range(n_slots):
            for c in range(2):
                if u_edge[s, c] == e and u_frac[s, c] <= seed_frac[i] and _eligible(
                        s, need_avail, u_avail, u_type, u_caps, type_mask, caps_req):
                    f = seed_frac[i] - u_frac[s, c]
                    cnt, nbt = _offer(s, f * seed_et[i], f * seed_el[i], best, best_touched,
                                      nbt, u_tie, out_slot, out_t, out_l, cnt, k)
    return cnt, nbt


# ------------------------------------------------------------------- CH nearest-K
@njit(cache=True, inline="always")
def _reset_search(size, hnode, hpos, nt, touched, dist, nbt, best_touched, best):
    """Leave the workspaces as the next query expects them (touched entries only)."""
    for i in range(size):
        hpos[hnode[i]] = -1
    for i in range(nt):
        dist[touched[i]] = INF
    for i in range(nbt):
        best[best_touched[i]] = INF


@njit(cache=True, inline="always")
def _seed_heap(seeds, seed_t, seed_l, n_seeds, dist, dlen, touched, hkey, hnode, hpos):
    """Start a search from its seeds (the incident's edge ends). Returns (touched, heap size)."""
    nt = 0
    size = 0
    for i in range(n_seeds):
        r = seeds[i]
        if seed_t[i] < dist[r]:
            if dist[r] == INF:
                touched[nt] = r
                nt += 1
            dist[r] = seed_t[i]
            dlen[r] = seed_l[i]
            size = heap_push_or_decrease(hkey, hnode, hpos, size, r, seed_t[i])
    return nt, size


# --------------------------------------------- nearest-K on the query layout
# The search reads a node's arcs from the packed query layout (Hierarchy.query_layout:
# per node [start, split) its upward-forward arcs, the stall test's, then [split, end) its
# upward-backward arcs, the relaxed ones, as (head, time) int32 pairs in one block), keeps
# a lazy binary heap of (key, node) pairs (no position array: a node improved again is
# pushed again and its stale entries are skipped when popped), and leaves lengths out:
# each touched node keeps its parent (PAR_SHIFT * tail + the arc's place in the tail's
# backward row) in the row the length used to be in, and route metres are summed for
# the K winners only, after the search.
PAR_SHIFT = 2097152.0  # 2**21: more than the arcs of any row (graph_check refuses longer)


@intrinsic
def _prefetch(typingctx, arr, i):
    """Hint the CPU to bring element i of the 1-D array ``arr`` into the cache (LLVM's
    llvm.prefetch: read, high locality); no effect on results, and no fault whatever i.
    A search's memory reads are its cost (NY nearest-5, quiet: 3.4 µs for a query whose
    data are all cached, 11-12 µs cold), and the next nodes' records are known a few
    steps before they are read: a node's record when it is pushed, the next node's arcs
    when the current one is popped."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ix = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [ix])  # strided too
        i8p = llvm_ir.IntType(8).as_pointer()
        i32 = llvm_ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, llvm_ir.FunctionType(llvm_ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.none(arr, i), codegen


@njit(cache=True)
def _offer_at(s, t, length, meet, best, best_touched, nbt, u_tie, out_slot, out_t, out_l,
              out_meet, cnt, k):
    """_offer that also keeps each result's meeting node (its length is completed later)."""
    if t >= best[s]:
        return cnt, nbt
    if best[s] == INF:
        best_touched[nbt] = s
        nbt += 1
    best[s] = t
    pos = -1
    for i in range(cnt):
        if out_slot[i] == s:
            pos = i
            break
    if pos < 0:
        if cnt < k:
            pos = cnt
            cnt += 1
        elif _before(t, s, out_t[cnt - 1], out_slot[cnt - 1], u_tie):
            pos = cnt - 1
        else:
            return cnt, nbt
    out_slot[pos] = s
    out_t[pos] = t
    out_l[pos] = length
    out_meet[pos] = meet
    while pos > 0 and _before(out_t[pos], out_slot[pos], out_t[pos - 1], out_slot[pos - 1], u_tie):
        out_slot[pos], out_slot[pos - 1] = out_slot[pos - 1], out_slot[pos]
        out_t[pos], out_t[pos - 1] = out_t[pos - 1], out_t[pos]
        out_l[pos], out_l[pos - 1] = out_l[pos - 1], out_l[pos]
        out_meet[pos], out_meet[pos - 1] = out_meet[pos - 1], out_meet[pos]
        pos -= 1
    return cnt, nbt


@njit(cache=True)
def _path_len(x, par, ub_indptr, ub_l, seed_l, scratch):
    """Metres of the backward search's path from its seed up to x, added from the seed
    up (the order a length carried along the search would have been summed in)."""
    m = 0
    p = par[x]
    while p >= 0:
        xp = int(p // PAR_SHIFT)
        scratch[m] = ub_l[ub_indptr[xp] + int(p - xp * PAR_SHIFT)]
        m += 1
        p = par[xp]
    length = seed_l[int(-1.0 - p)]
    for i in range(m - 1, -1, -1):
        length += scratch[i]
    return length


@njit(cache=True)
def ch_nearest_q(q_node, q_arc, ub_indptr, ub_l,
                 b_start, b_len, pool_sj, pool_t, pool_l,
                 u_avail, u_type, u_caps, u_tie, u_edge, u_frac, u_src_t, u_src_l, n_slots,
                 seed_rank, seed_t, seed_l, seed_edge, seed_frac, n_seeds, seed_et, seed_el,
                 need_avail, type_mask, caps_req, k,
                 dist, par, hq, touched, scratch, best, best_touched,
                 out_slot, out_t, out_l, out_meet):
    """K best eligible units by ETA (deciseconds) on the query layout (above), lengths included.
    dist: +inf between calls; par, hq, scratch: any content; out_meet: float, k rows."""
    cnt = 0
    nbt = 0
    cnt, nbt = _same_edge(seed_edge, seed_frac, n_seeds, u_edge, u_frac, n_slots, seed_et,
                          seed_el, need_avail, u_avail, u_type, u_caps, type_mask, caps_req,
                          best, best_touched, nbt, u_tie, out_slot, out_t, out_l, cnt, k)
    for i in range(cnt):
        out_meet[i] = -1.0
    nt = 0
    size = 0
    for i in range(n_seeds):
        r = seed_rank[i]
        if seed_t[i] < dist[r]:
            size, nt = lazy_lower(r, seed_t[i], dist, touched, nt, hq, size)
            par[r] = -1.0 - i
    while size > 0:
        d = hq[0, 0]
        x = int(hq[0, 1])
        if cnt == k and d > out_t[k - 1]:
            break
        size = lazy_pop(hq, size)
        if size > 0:  # the next node's arcs, while this one is processed
            _prefetch(q_arc, 2 * q_node[2 * int(hq[0, 1])])
        if d > dist[x]:
            continue  # a stale entry: x was pushed again with a smaller key
        a1 = q_node[2 * x + 1]
        stalled = False
        for a in range(q_node[2 * x], a1):
            if dist[q_arc[2 * a]] + q_arc[2 * a + 1] < d:
                stalled = True
                break
        if stalled:
            continue
        bs = b_start[x]
        for p in range(bs, bs + b_len[x]):
            t0 = pool_t[p] + d
            if cnt == k and t0 > out_t[k - 1]:
                break  # bucket is sorted: nothing further can enter the top K
            s = pool_sj[p, 0]
            if s < 0:
                continue
            c = pool_sj[p, 1]
            t = t0 + u_src_t[s, c]
            if t < best[s] and _eligible(s, need_avail, u_avail, u_type, u_caps, type_mask,
                                         caps_req):
                cnt, nbt = _offer_at(s, t, pool_l[p] + u_src_l[s, c], x, best, best_touched,
                                     nbt, u_tie, out_slot, out_t, out_l, out_meet, cnt, k)
        base = x * PAR_SHIFT - a1
        for a in range(a1, q_node[2 * x + 2]):
            y = q_arc[2 * a]
            nd = d + q_arc[2 * a + 1]
            if nd < dist[y]:
                size, nt = lazy_lower(y, nd, dist, touched, nt, hq, size)
                par[y] = base + a
                _prefetch(q_node, 2 * y)
                _prefetch(b_start, y)
    for i in range(cnt):
        if out_meet[i] >= 0:
            out_l[i] = out_l[i] + _path_len(int(out_meet[i]), par, ub_indptr, ub_l, seed_l,
                                            scratch)
    for i in range(nt):
        dist[touched[i]] = INF
    for i in range(nbt):
        best[best_touched[i]] = INF
    return cnt


@njit(cache=True)
def ch_table(ub_indptr, ub_head, ub_w, ub_l, uf_indptr, uf_head, uf_w,
             b_start, b_len, pool_sj, pool_t, pool_l, u_edge, u_frac, u_src_t, u_src_l, n_slots,
             seeds_rank, seeds_t, seeds_l, seeds_edge, seeds_frac, edge_time, edge_len,
             dist, dlen, hkey, hnode, hpos, touched, out_t, out_l):
    """ETA (ds) and route length (m) from every slot to every point: out_*[slot, point].
    seeds_* are (n_points, 2); unused seed columns have rank -1."""
    n_points = seeds_rank.shape[0]
    for q in range(n_points):
        for s in range(n_slots):
            out_t[s, q] = INF
            out_l[s, q] = INF
        for i in range(2):
            e = seeds_edge[q, i]
            if seeds_rank[q, i] < 0 or e < 0:
                continue
            for s in range(n_slots):
                for c in range(2):
                    if u_edge[s, c] == e and u_frac[s, c] <= seeds_frac[q, i]:
                        f = seeds_frac[q, i] - u_frac[s, c]
                        if f * edge_time[e] < out_t[s, q]:
                            out_t[s, q] = f * edge_time[e]
                            out_l[s, q] = f * edge_len[e]
        nt = 0
        size = 0
        for i in range(2):
            r = seeds_rank[q, i]
            if r >= 0 and seeds_t[q, i] < dist[r]:
                if dist[r] == INF:
                    touched[nt] = r
                    nt += 1
                dist[r] = seeds_t[q, i]
                dlen[r] = seeds_l[q, i]
                size = heap_push_or_decrease(hkey, hnode, hpos, size, r, seeds_t[q, i])
        while size > 0:
            d = hkey[0]
            x = hnode[0]
            size = heap_pop(hkey, hnode, hpos, size)
            stalled = False
            for a in range(uf_indptr[x], uf_indptr[x + 1]):
                if dist[uf_head[a]] + uf_w[a] < d:
                    stalled = True
                    break
            if stalled:
                continue
            bs = b_start[x]
            for p in range(bs, bs + b_len[x]):
                s = pool_sj[p, 0]
                if s < 0:
                    continue
                c = pool_sj[p, 1]
                t = pool_t[p] + u_src_t[s, c] + d
                if t < out_t[s, q]:
                    out_t[s, q] = t
                    out_l[s, q] = pool_l[p] + u_src_l[s, c] + dlen[x]
            for a in range(ub_indptr[x], ub_indptr[x + 1]):
                y = ub_head[a]
                nd = d + ub_w[a]
                if nd < dist[y]:
                    if dist[y] == INF:
                        touched[nt] = y
                        nt += 1
                    dist[y] = nd
                    dlen[y] = dlen[x] + ub_l[a]
                    size = heap_push_or_decrease(hkey, hnode, hpos, size, y, nd)
        for i in range(nt):
            dist[touched[i]] = INF


# ------------------------------------------------------------- plain Dijkstra
@njit(cache=True)
def dijkstra_nearest_k(bwd_indptr, bwd_tail, bwd_edge, edge_time, edge_len,
                       u_src, u_src_t, u_src_l, u_nsrc, u_avail, u_type, u_caps, u_tie, u_edge,
                       u_frac, n_slots, seed_node, seed_t, seed_l, seed_edge, seed_frac, n_seeds,
                       seed_et, seed_el, need_avail, type_mask, caps_req, k,
                       dist, dlen, hkey, hnode, hpos, touched, best, best_touched,
                       node_first, entry_next, out_slot, out_t, out_l):
    """Same answer as ch_nearest_q without preprocessing: a backward Dijkstra on the
    full graph that stops after the K-th best ETA (fallback while an index is built,
    and a second opinion in tests). Entry 2*slot+c is the unit's c-th source."""
    for s in range(n_slots):
        for c in range(u_nsrc[s]):
            entry_next[2 * s + c] = node_first[u_src[s, c]]
            node_first[u_src[s, c]] = 2 * s + c
    cnt = 0
    nbt = 0
    cnt, nbt = _same_edge(seed_edge, seed_frac, n_seeds, u_edge, u_frac, n_slots, seed_et,
                          seed_el, need_avail, u_avail, u_type, u_caps, type_mask, caps_req,
                          best, best_touched, nbt, u_tie, out_slot, out_t, out_l, cnt, k)
    nt, size = _seed_heap(seed_node, seed_t, seed_l, n_seeds, dist, dlen, touched,
                          hkey, hnode, hpos)
    while size > 0:
        d = hkey[0]
        x = hnode[0]
        if cnt == k and d > out_t[k - 1]:
            break
        size = heap_pop(hkey, hnode, hpos, size)
        en = node_first[x]
        while en >= 0:
            s = en >> 1
            c = en & 1
            if _eligible(s, need_avail, u_avail, u_type, u_caps, type_mask, caps_req):
                cnt, nbt = _offer(s, u_src_t[s, c] + d, u_src_l[s, c] + dlen[x], best,
                                  best_touched, nbt, u_tie, out_slot, out_t, out_l, cnt, k)
            en = entry_next[en]
        for a in range(bwd_indptr[x], bwd_indptr[x + 1]):
            y = bwd_tail[a]
            e = bwd_edge[a]
            nd = d + edge_time[e]
            if nd < dist[y]:
                if dist[y] == INF:
                    touched[nt] = y
                    nt += 1
                dist[y] = nd
                dlen[y] = dlen[x] + edge_len[e]
                size = heap_push_or_decrease(hkey, hnode, hpos, size, y, nd)
    _reset_search(size, hnode, hpos, nt, touched, dist, nbt, best_touched, best)
    for s in range(n_slots):
        for c in range(u_nsrc[s]):
            node_first[u_src[s, c]] = -1
    return cnt


@njit(cache=True)
def dijkstra_path(src, off_t, indptr, head, edge_tail, edge_time, targets, target_t, dist, parent, hkey,
                  hnode, hpos, touched, out_edges):
    """Forward Dijkstra from src (already off_t into the search) until the best of
    dist[target]+target_t is settled. Writes the edge ids of the path to out_edges
    (in order) and returns (total ds, index of the target used, number of edges)."""
    nt = 0
    dist[src] = off_t
    parent[src] = -1
    touched[nt] = src
    nt += 1
    size = heap_push_or_decrease(hkey, hnode, hpos, 0, src, off_t)
    best = INF
    best_i = -1
    while size > 0:
        d = hkey[0]
        x = hnode[0]
        if d >= best:
            break
        size = heap_pop(hkey, hnode, hpos, size)
        for i in range(targets.shape[0]):
            if targets[i] == x and d + target_t[i] < best:
                best = d + target_t[i]
                best_i = i
        for e in range(indptr[x], indptr[x + 1]):
            y = head[e]
            nd = d + edge_time[e]
            if nd < dist[y]:
                if dist[y] == INF:
                    touched[nt] = y
                    nt += 1
                dist[y] = nd
                parent[y] = e
                size = heap_push_or_decrease(hkey, hnode, hpos, size, y, nd)
    n_path = 0
    if best_i >= 0:
        x = targets[best_i]
        while parent[x] >= 0 and x != src:
            out_edges[n_path] = parent[x]
            n_path += 1
            x = edge_tail[parent[x]]
        out_edges[:n_path] = out_edges[:n_path][::-1].copy()
    for i in range(size):
        hpos[hnode[i]] = -1
    for i in range(nt):
        dist[touched[i]] = INF
        parent[touched[i]] = -1
    return best, best_i, n_path


# ------------------------------------------------------------ per-worker context
# A numba call pays for unboxing each array argument (measured on this machine, loaded:
# a no-op taking 23 arrays 6-7 µs, one array 0.5-0.8 µs). The hot calls of routing.index
# therefore take one *context*: a numba structref holding every array of one UnitIndex
# (the hierarchy's, the buckets, the unit table, the workspaces), made once per index and
# remade when it reallocates an array; a call then unboxes one pointer (a 30-array
# context: 0.7-1.4 µs). Seeds and parameters come as Python scalars. The context's
# constructor is a cached kernel (_new_ctx): numba's own proxy constructor compiles at
# every start and is never cached.
#   ws_f  float64 (5, n): dist, dlen (the nearest-K query: parent), hkey, tmp_t, tmp_l
#   ws_i  int32   (4, n): hnode, hpos, touched, tmp_node
#   bk    int32   (n, 3): bucket start, length, capacity of each node side by side
#   u_i64 int64   (4, capacity): available, type bits, capability bits, tie key
#   u_pos_f float64 (4, capacity, 2): frac, time and length offset per source label, and
#         the offset bound the other label's entries were pruned with (bucket_move)
#   seed_i int32 (2, 2): rank, edge per seed;  seed_f float64 (5, 2): t, length, frac,
#         and the time and length of the seed's whole edge (same-edge check)
#   mv_i int32 (2, 2): node, edge per source;  mv_f float64 (4, 2): t, length, frac,
#         and (row 3) each source's offset bound
#   out_f float64 (3, k_cap): eta, length, meeting node (slots in out_slot)
#   q_node, q_arc int32: the hierarchy's query layout (graph.Hierarchy.query_layout)
#   hq    float64 (n, 2): the nearest-K query's lazy heap of (key, node)
@structref.register
class IndexCtxType(types.StructRef):
    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class IndexCtx(structref.StructRefProxy):
    """The arrays of one UnitIndex, as one numba argument (see above)."""


CTX_FIELDS = ("rank", "uf_indptr", "uf_head", "uf_w", "uf_l", "ub_indptr", "ub_head", "ub_w",
              "ub_l", "bk", "pool_sj", "pool_t", "pool_l", "scal", "u_i64", "u_edge", "u_pos_f",
              "u_src", "u_nsrc", "u_cnt", "u_nodes", "u_dist", "seed_i", "seed_f", "mv_i",
              "mv_f", "ws_f", "ws_i", "best", "best_touched", "out_slot", "out_f", "edge_time",
              "edge_len", "uf_mid", "ub_mid", "fwd_indptr", "fwd_head", "edge_twin", "q_node",
              "q_arc", "hq")
structref.define_proxy(IndexCtx, IndexCtxType, list(CTX_FIELDS))


@njit(cache=True)
def _new_ctx(rank, uf_indptr, uf_head, uf_w, uf_l, ub_indptr, ub_head, ub_w, ub_l, bk, pool_sj,
             pool_t, pool_l, scal, u_i64, u_edge, u_pos_f, u_src, u_nsrc, u_cnt, u_nodes, u_dist,
             seed_i, seed_f, mv_i, mv_f, ws_f, ws_i, best, best_touched, out_slot, out_f,
             edge_time, edge_len, uf_mid, ub_mid, fwd_indptr, fwd_head, edge_twin, q_node, q_arc,
             hq):
    return IndexCtx(rank, uf_indptr, uf_head, uf_w, uf_l, ub_indptr, ub_head, ub_w, ub_l, bk,
                    pool_sj, pool_t, pool_l, scal, u_i64, u_edge, u_pos_f, u_src, u_nsrc, u_cnt,
                    u_nodes, u_dist, seed_i, seed_f, mv_i, mv_f, ws_f, ws_i, best, best_touched,
                    out_slot, out_f, edge_time, edge_len, uf_mid, ub_mid, fwd_indptr, fwd_head,
                    edge_twin, q_node, q_arc, hq)


def new_ctx(**arrays):
    """An IndexCtx from the arrays named in CTX_FIELDS."""
    return _new_ctx(*[arrays[f] for f in CTX_FIELDS])


# ----------------------------------------------------- the context by address
# Passing the context itself still costs a Python-level type lookup per call (a no-op
# kernel taking it: 0.69 µs, one taking an int: 0.22 µs, quiet 2-core machine). The
# Python callers' hot paths therefore pass its *address* (the meminfo pointer, an int,
# which the dispatcher types in C) and the kernel rebuilds the structref from it. That is
# only sound for a context of exactly CTX_TYPE that the caller keeps alive for the whole
# call: routing.index holds it and takes the address from ctx_address() on the same
# object. Every array field is C-contiguous; the graph's arrays are passed read-only
# (files are mapped read-only, so routing.index makes in-memory graphs' arrays read-only
# views too), the per-worker ones writable.
_CTX_SPEC = (
    ("rank", "i4", 1, True), ("uf_indptr", "i8", 1, True), ("uf_head", "i4", 1, True),
    ("uf_w", "i4", 1, True), ("uf_l", "f4", 1, True), ("ub_indptr", "i8", 1, True),
    ("ub_head", "i4", 1, True), ("ub_w", "i4", 1, True), ("ub_l", "f4", 1, True),
    ("bk", "i4", 2, False), ("pool_sj", "i4", 2, False), ("pool_t", "f8", 1, False),
    ("pool_l", "f8", 1, False), ("scal", "i8", 1, False), ("u_i64", "i8", 2, False),
    ("u_edge", "i4", 2, False), ("u_pos_f", "f8", 3, False), ("u_src", "i4", 2, False),
    ("u_nsrc", "i4", 1, False), ("u_cnt", "i8", 1, False), ("u_nodes", "i4", 2, False),
    ("u_dist", "f8", 2, False), ("seed_i", "i4", 2, False), ("seed_f", "f8", 2, False),
    ("mv_i", "i4", 2, False), ("mv_f", "f8", 2, False), ("ws_f", "f8", 2, False),
    ("ws_i", "i4", 2, False), ("best", "f8", 1, False), ("best_touched", "i4", 1, False),
    ("out_slot", "i4", 1, False), ("out_f", "f8", 2, False), ("edge_time", "i4", 1, True),
    ("edge_len", "f8", 1, True), ("uf_mid", "i4", 1, True), ("ub_mid", "i4", 1, True),
    ("fwd_indptr", "i8", 1, True), ("fwd_head", "i4", 1, True), ("edge_twin", "i4", 1, True),
    ("q_node", "i4", 1, True), ("q_arc", "i4", 1, True), ("hq", "f8", 2, False),
)
assert tuple(f[0] for f in _CTX_SPEC) == CTX_FIELDS
CTX_READONLY = frozenset(f[0] for f in _CTX_SPEC if f[3])


def read_only(a):
    """``a`` itself when read-only (a mapped file's arrays), else a read-only view of it: a
    context made of these has the fixed type the address kernels are built for."""
    if not a.flags.writeable:
        return a
    v = a.view()
    v.flags.writeable = False
    return v
CTX_TYPE = IndexCtxType([
    (name, types.Array(numba.from_dtype(np.dtype(dt)), nd, "C", readonly=ro))
    for name, dt, nd, ro in _CTX_SPEC])


@intrinsic
def _ctx_addr(typingctx, c):
    def codegen(context, builder, sig, args):
        ref = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(ref.meminfo, cgutils.intp_t)
    return types.intp(c), codegen


def ctx_at_intrinsic(ctx_type):
    """An intrinsic turning an address from ctx_address back into a structref of
    ``ctx_type`` (which the address's context must have)."""
    @intrinsic
    def at(typingctx, addr):
        def codegen(context, builder, sig, args):
            ref = cgutils.create_struct_proxy(ctx_type)(context, builder)
            ref.meminfo = builder.inttoptr(args[0], ref.meminfo.type)
            value = ref._getvalue()
            context.nrt.incref(builder, ctx_type, value)  # the caller's reference is borrowed
            return value
        return ctx_type(types.intp), codegen
    return at


_ctx_at = ctx_at_intrinsic(CTX_TYPE)


@njit(cache=True)
def ctx_address(c):
    """The address a_* kernels take for context ``c``, any structref (valid while ``c``
    lives)."""
    return _ctx_addr(c)


@njit(cache=True)
def ctx_pools(c):
    """The bucket pool arrays a context holds now (a move may have reallocated them)."""
    return c.pool_sj, c.pool_t, c.pool_l


@njit(cache=True)
def ctx_nearest(c, r0, e0, t0, l0, f0, r1, e1, t1, l1, f1, n_seeds, n_slots, k, type_mask,
                caps_req, need_avail):
    """ch_nearest_q for up to two seeds (hierarchy id r, edge e or -1, time t, length l,
    fraction f); results in c.out_slot / c.out_f. Returns the count."""
    si = c.seed_i
    sf = c.seed_f
    si[0, 0] = r0
    si[1, 0] = e0
    sf[0, 0] = t0
    sf[1, 0] = l0
    sf[2, 0] = f0
    si[0, 1] = r1
    si[1, 1] = e1
    sf[0, 1] = t1
    sf[1, 1] = l1
    sf[2, 1] = f1
    for i in range(n_seeds):
        e = si[1, i]
        if e >= 0:
            sf[3, i] = c.edge_time[e]
            sf[4, i] = c.edge_len[e]
    u_i64 = c.u_i64
    u_pos_f = c.u_pos_f
    ws_f = c.ws_f
    ws_i = c.ws_i
    bk = c.bk
    out_f = c.out_f
    return ch_nearest_q(c.q_node, c.q_arc, c.ub_indptr, c.ub_l,
                        bk[:, 0], bk[:, 1], c.pool_sj, c.pool_t, c.pool_l,
                        u_i64[0], u_i64[1], u_i64[2], u_i64[3], c.u_edge, u_pos_f[0],
                        u_pos_f[1], u_pos_f[2], n_slots,
                        si[0], sf[0], sf[1], si[1], sf[2], n_seeds, sf[3], sf[4], need_avail,
                        type_mask, caps_req, k,
                        ws_f[0], ws_f[1], c.hq, ws_i[2], ws_f[3], c.best, c.best_touched,
                        c.out_slot, out_f[0], out_f[1], out_f[2])


@njit(cache=True)
def ctx_nearest1(c, r, n_slots, k):
    """ctx_nearest from one node (hierarchy id r), any type, available units only: the
    common call with 3 scalars instead of 16 (each argument costs the dispatcher time)."""
    return ctx_nearest(c, r, -1, 0.0, 0.0, 0.0, r, -1, 0.0, 0.0, 0.0, 1, n_slots, k, -1, 0, True)


@njit(cache=True)
def a_nearest(a, r0, e0, t0, l0, f0, r1, e1, t1, l1, f1, n_seeds, n_slots, k, type_mask,
              caps_req, need_avail):
    """ctx_nearest on the context at address ``a`` (ctx_address)."""
    return ctx_nearest(_ctx_at(a), r0, e0, t0, l0, f0, r1, e1, t1, l1, f1, n_seeds, n_slots, k,
                       type_mask, caps_req, need_avail)


@njit(cache=True)
def a_nearest1(a, r, n_slots, k):
    """ctx_nearest1 on the context at address ``a`` (ctx_address)."""
    return ctx_nearest1(_ctx_at(a), r, n_slots, k)


@njit(cache=True)
def ctx_move(c, slot, ns, n0, e0, t0, l0, f0, n1, e1, t1, l1, f1):
    """bucket_move for up to two sources (node, edge, time, length, fraction each).
    Returns the entry count like bucket_insert (negative: widen the unit rows and call
    again); the pool arrays in the context are replaced when they grow."""
    mv_i = c.mv_i
    mv_f = c.mv_f
    mv_i[0, 0] = n0
    mv_i[1, 0] = e0
    mv_f[0, 0] = t0
    mv_f[1, 0] = l0
    mv_f[2, 0] = f0
    mv_i[0, 1] = n1
    mv_i[1, 1] = e1
    mv_f[0, 1] = t1
    mv_f[1, 1] = l1
    mv_f[2, 1] = f1
    pool_sj, pool_t, pool_l, cnt = bucket_move(
        slot, c.rank, c.q_node, c.q_arc, c.uf_indptr, c.uf_l, c.bk, c.pool_sj, c.pool_t,
        c.pool_l, c.scal, c.u_cnt, c.u_nodes, c.u_dist, c.u_src, c.u_pos_f[1], c.u_pos_f[2],
        c.u_nsrc, c.u_edge, c.u_pos_f[0], c.u_pos_f[3], mv_i, mv_f, ns, c.seed_i, c.ws_f, c.ws_i,
        c.hq, c.edge_time, c.edge_len, c.fwd_head, c.edge_twin)
    c.pool_sj = pool_sj
    c.pool_t = pool_t
    c.pool_l = pool_l
    return cnt


@njit(cache=True)
def ctx_move_edge(c, slot, edge, frac):
    """Place a unit on ``edge`` at ``frac`` from its tail (an AVL fix once snapped): its
    sources as routing.index.unit_sources gives them (the edge's head; on a two-way street
    also its tail, by the twin), then ctx_move. One call instead of building the sources in
    Python. Returns like ctx_move."""
    w = c.edge_time[edge]
    ln = c.edge_len[edge]
    h0 = c.fwd_head[edge]
    tw = c.edge_twin[edge]
    g = 1.0 - frac
    if tw < 0:
        return ctx_move(c, slot, 1, h0, edge, g * w, g * ln, frac, h0, edge, g * w, g * ln, frac)
    wt = c.edge_time[tw]
    lt = c.edge_len[tw]
    return ctx_move(c, slot, 2, h0, edge, g * w, g * ln, frac, c.fwd_head[tw], tw, frac * wt,
                    frac * lt, g)


@njit(cache=True)
def a_move(a, slot, ns, n0, e0, t0, l0, f0, n1, e1, t1, l1, f1):
    """ctx_move on the context at address ``a`` (ctx_address)."""
    return ctx_move(_ctx_at(a), slot, ns, n0, e0, t0, l0, f0, n1, e1, t1, l1, f1)


@njit(cache=True)
def a_move_edge(a, slot, edge, frac):
    """ctx_move_edge on the context at address ``a`` (ctx_address)."""
    return ctx_move_edge(_ctx_at(a), slot, edge, frac)


@njit(cache=True, inline="always")
def _set_source(slot, lab, c, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac):
    """Label ``lab`` of the unit takes new source ``c`` (c -1: the label is unused)."""
    if c < 0:
        u_src[slot, lab] = 0
        u_src_t[slot, lab] = 0.0
        u_src_l[slot, lab] = 0.0
        u_edge[slot, lab] = -1
        u_frac[slot, lab] = 0.0
    else:
        u_src[slot, lab] = mv_i[0, c]
        u_src_t[slot, lab] = mv_f[0, c]
        u_src_l[slot, lab] = mv_f[1, c]
        u_edge[slot, lab] = mv_i[1, c]
        u_frac[slot, lab] = mv_f[2, c]


@njit(cache=True, inline="always")
def _street_back(slot, lab, keep, u_src, u_edge, fwd_head, edge_twin):
    """The street from source ``keep`` to source ``lab`` when lab's edge is it (a unit on a
    two-way street: each source's edge leads from the other end), else -1."""
    e = u_edge[slot, lab]
    if e < 0 or fwd_head[e] != u_src[slot, lab]:
        return -1
    tw = edge_twin[e]
    if tw < 0 or fwd_head[tw] != u_src[slot, keep]:
        return -1
    return e


@njit(cache=True)
def bucket_move(slot, rank, q_node, q_arc, uf_indptr, uf_l, bk, pool_sj, pool_t, pool_l, scal,
                u_cnt, u_nodes, u_dist, u_src, u_src_t, u_src_l, u_nsrc, u_edge, u_frac, u_bnd,
                mv_i, mv_f, ns, seed_i, ws_f, ws_i, hq, edge_time, edge_len, fwd_head,
                edge_twin):
    """Place a unit at the sources in mv_i (node, edge per source) and mv_f (t, length,
    frac per source), ``ns`` of them. Bucket entries hold distances from a source node
    under that source's label (0 or 1), so a new source whose node already has entries
    keeps them under its label:

    * every new source has entries (a repeated fix, the next fix along the same street or
      its twin): only the positions change, provided each offset stays within the bound
      the other label's entries were pruned with;
    * one new source has entries (crossing onto the next street keeps the end just
      passed; a unit at one end of its street): the other old source goes, and the kept
      one gets back the entries it was left without (bucket_insert's marks); then, with
      two new sources, one upward search from the new end, whose entries go in pruned
      against the kept ones and the kept ones against them;
    * otherwise every entry goes and each source's upward search is inserted
      (bucket_insert).

    Returns like bucket_insert; when the row width is too small the old entries are gone
    and nothing is inserted (call again after widening)."""
    b_start = bk[:, 0]
    b_len = bk[:, 1]
    old_ns = u_nsrc[slot]
    lab0 = -1  # the label under which new source 0's node has entries, or -1; same for 1
    lab1 = -1
    if u_cnt[slot] > 0 and not (ns == 2 and mv_i[0, 0] == mv_i[0, 1]):
        for lab in range(old_ns):
            if u_src[slot, lab] == mv_i[0, 0]:
                lab0 = lab
            elif ns == 2 and u_src[slot, lab] == mv_i[0, 1]:
                lab1 = lab
    if ns == 2 and lab0 >= 0 and lab1 >= 0:
        if mv_f[0, 0] <= u_bnd[slot, lab0] and mv_f[0, 1] <= u_bnd[slot, lab1]:
            _set_source(slot, lab0, 0, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
            _set_source(slot, lab1, 1, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
            return pool_sj, pool_t, pool_l, u_cnt[slot]
    elif (lab0 >= 0) != (lab1 >= 0) and (ns == 2 or lab0 == 0):
        ck = 0 if lab0 >= 0 else 1  # the new source that keeps its entries; cn the other
        lab = lab0 if lab0 >= 0 else lab1
        e_back = -1
        if old_ns == 2:
            e_back = _street_back(slot, 1 - lab, lab, u_src, u_edge, fwd_head, edge_twin)
            if e_back >= 0 and edge_time[e_back] > u_bnd[slot, 1 - lab]:
                e_back = -1  # (not the street the entries were pruned with)
        if old_ns == 1 or e_back >= 0:
            if old_ns == 2:
                _drop_source(slot, 1 - lab, lab, float(edge_time[e_back]), edge_len[e_back],
                             b_start, b_len, bk[:, 2], pool_sj, pool_t, pool_l, scal, u_cnt,
                             u_nodes, u_dist)
            u_bnd[slot, 0] = INF
            u_bnd[slot, 1] = INF
            if ns == 1:
                _set_source(slot, 0, 0, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
                _set_source(slot, 1, -1, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
                u_nsrc[slot] = 1
                return pool_sj, pool_t, pool_l, u_cnt[slot]
            return _add_source(slot, lab, ck, 1 - ck, rank, q_node, q_arc, uf_indptr, uf_l, bk,
                               pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes, u_dist, u_src,
                               u_src_t, u_src_l, u_nsrc, u_edge, u_frac, u_bnd, mv_i, mv_f,
                               seed_i, ws_f, ws_i, hq, edge_time)
    for c in range(2):
        _set_source(slot, c, c if c < ns else -1, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge,
                    u_frac)
    u_nsrc[slot] = ns
    if u_cnt[slot] > 0:
        bucket_remove(slot, b_start, b_len, bk[:, 2], pool_sj, pool_t, pool_l, scal, u_cnt,
                      u_nodes, u_dist)
    src_rank = seed_i[0]
    src_w = mv_f[3]  # each source's offset bound (row 3 of the move buffer is scratch)
    for c in range(ns):
        src_rank[c] = rank[u_src[slot, c]]
        src_w[c] = _offset_bound(mv_i[1, c], mv_f[0, c], edge_time)
    return bucket_insert(slot, src_rank, ns, q_node, q_arc, uf_indptr, uf_l, b_start, b_len,
                         bk[:, 2], pool_sj, pool_t, pool_l, scal, u_cnt, u_nodes, u_dist, ws_f[0],
                         ws_f[1], hq, ws_i[0], ws_i[2], ws_i[3], ws_f[3], ws_f[4], src_w, u_bnd)


@njit(cache=True, inline="always")
def _offset_bound(e, t, edge_time):
    """A source's offset bound while its entries stay: its edge's time (INF at a node or
    beyond the edge)."""
    return float(edge_time[e]) if e >= 0 and t <= edge_time[e] else INF


@njit(cache=True)
def _add_source(slot, lab, ck, cn, rank, q_node, q_arc, uf_indptr, uf_l, bk, pool_sj, pool_t,
                pool_l, scal, u_cnt, u_nodes, u_dist, u_src, u_src_t, u_src_l, u_nsrc, u_edge,
                u_frac, u_bnd, mv_i, mv_f, seed_i, ws_f, ws_i, hq, edge_time):
    """bucket_move's crossing: the unit's one source (label ``lab``, whole) becomes new
    source ``ck``; new source ``cn`` gets label 1 - lab and the entries of its upward
    search. An entry of either that the other beats at every offset is left out (or
    removed) and the other's entry at its node marked, as bucket_insert does."""
    b_start = bk[:, 0]
    b_len = bk[:, 1]
    ln = 1 - lab
    src_rank = seed_i[0]
    src_rank[0] = rank[mv_i[0, cn]]
    dist = ws_f[0]
    mark = ws_i[0]  # heap nodes: free between searches
    tmp_node = ws_i[3]
    tmp_t = ws_f[3]
    tmp_l = ws_f[4]
    cap = tmp_node.shape[0]
    cnt_n = upward_search_q(src_rank[0], q_node, q_arc, uf_indptr, uf_l, dist, ws_f[1], hq,
                            ws_i[2], tmp_node, tmp_t, tmp_l, cap)
    _set_source(slot, lab, ck, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
    _set_source(slot, ln, cn, mv_i, mv_f, u_src, u_src_t, u_src_l, u_edge, u_frac)
    u_nsrc[slot] = 2
    row = u_cnt[slot]
    if cnt_n > cap or row + cnt_n > u_nodes.shape[1]:
        # too narrow: every entry goes, the caller widens the rows and moves again
        bucket_remove(slot, b_start, b_len, bk[:, 2], pool_sj, pool_t, pool_l, scal, u_cnt,
                      u_nodes, u_dist)
        return pool_sj, pool_t, pool_l, -(row + cnt_n)
    w_k = _offset_bound(mv_i[1, ck], mv_f[0, ck], edge_time)
    w_n = _offset_bound(mv_i[1, cn], mv_f[0, cn], edge_time)
    u_bnd[slot, lab] = w_k
    u_bnd[slot, ln] = w_n
    # the kept entries by node: distance in dist, row position in mark
    for j in range(row):
        x = u_nodes[slot, j] & NODE_MASK
        dist[x] = u_dist[slot, j]
        mark[x] = j
    for j in range(cnt_n):
        x = tmp_node[j]
        dk = dist[x]
        if dk == INF:
            continue
        jk = mark[x]
        if dk + w_k <= tmp_t[j]:
            tmp_node[j] = -1  # the new entry is never the better one
            u_nodes[slot, jk] |= MARK
        elif tmp_t[j] + w_n <= dk:
            tmp_node[j] = x | MARK  # the kept entry at x is never the better one
            u_nodes[slot, jk] = -1 - x
    out = 0
    for j in range(row):
        v = u_nodes[slot, j]
        if v < 0:  # beaten by the new source's entry: removed
            x = -1 - v
            dist[x] = INF
            _bucket_drop(x, slot, lab, u_dist[slot, j], b_start, b_len, bk[:, 2], pool_sj, pool_t,
                         pool_l, scal)
        else:
            dist[v & NODE_MASK] = INF
            u_nodes[slot, out] = v
            u_dist[slot, out] = u_dist[slot, j]
            out += 1
    for j in range(cnt_n):
        v = tmp_node[j]
        if v < 0:
            continue
        u_nodes[slot, out] = v | (ln << LABEL_SHIFT)
        u_dist[slot, out] = tmp_t[j]
        out += 1
        pool_sj, pool_t, pool_l = _bucket_append(v & NODE_MASK, slot, tmp_t[j], tmp_l[j], ln,
                                                 b_start, b_len, bk[:, 2], pool_sj, pool_t,
                                                 pool_l, scal)
    u_cnt[slot] = out
    return pool_sj, pool_t, pool_l, out


# ------------------------------------------------------------- CH routes
@njit(cache=True, inline="always")
def _find_arc(indptr, head, x, y):
    """Arc x->y by binary search: each CSR row is sorted by head (routing.ch._to_csr);
    rows at the top of the hierarchy hold hundreds of arcs."""
    lo = indptr[x]
    hi = indptr[x + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if head[mid] < y:
            lo = mid + 1
        else:
            hi = mid
    if lo < indptr[x + 1] and head[lo] == y:
        return lo
    return -1


@njit(cache=True)
def _unpack(p, q, at_q, uf_indptr, uf_head, uf_mid, ub_indptr, ub_head, ub_mid, ch_node,
            fwd_indptr, fwd_head, stack, out, n_out):
    """Append the road edges of the path that the hierarchy arc p->q (original
    direction) stands for. The arc is stored at whichever end was contracted first: at p
    as an upward arc p->q (``at_q`` False), or at q as a backward upward arc (``at_q``
    True). The two halves of a shortcut through m are both stored at m (contracted before
    either end): p->m at m as a backward arc, m->q at m as a forward one, so each lookup
    is one binary search in a low node's short row. An original arc carries its edge id
    (mid = -2 - edge), so unpacking touches only the hierarchy's arcs; mid = -1 (an
    older file) looks the edge up in the road graph. Returns the new count, or -1 if an
    arc is missing."""
    stack[0, 0] = p
    stack[0, 1] = q
    stack[0, 2] = 1 if at_q else 0
    sp = 1
    while sp > 0:
        sp -= 1
        a_ = stack[sp, 0]
        b_ = stack[sp, 1]
        if stack[sp, 2] == 0:
            arc = _find_arc(uf_indptr, uf_head, a_, b_)
            if arc >= 0:
                m = uf_mid[arc]
            else:  # not where the order says (never expected): the other side
                arc = _find_arc(ub_indptr, ub_head, b_, a_)
                if arc < 0:
                    return -1
                m = ub_mid[arc]
        else:
            arc = _find_arc(ub_indptr, ub_head, b_, a_)
            if arc >= 0:
                m = ub_mid[arc]
            else:
                arc = _find_arc(uf_indptr, uf_head, a_, b_)
                if arc < 0:
                    return -1
                m = uf_mid[arc]
        if m <= -2:
            out[n_out] = -2 - m
            n_out += 1
        elif m == -1:
            u = ch_node[a_]
            v = ch_node[b_]
            e = -1
            for f in range(fwd_indptr[u], fwd_indptr[u + 1]):
                if fwd_head[f] == v:
                    e = f
                    break
            if e < 0:
                return -1
            out[n_out] = e
            n_out += 1
        else:
            stack[sp, 0] = m  # second half (m->b_, a forward arc at m), done after the first
            stack[sp, 1] = b_
            stack[sp, 2] = 0
            stack[sp + 1, 0] = a_  # first half (a_->m, a backward arc at m)
            stack[sp + 1, 1] = m
            stack[sp + 1, 2] = 1
            sp += 2
    return n_out


@njit(cache=True)
def ch_path(src, src_t, n_src, seeds, seed_t, n_seeds,
            uf_indptr, uf_head, uf_w, uf_mid, ub_indptr, ub_head, ub_w, ub_mid,
            ch_node, fwd_indptr, fwd_head,
            dist, hkey, hnode, hpos, touched, dist_b, touched_b, par_f, par_b,
            stack, nodes, out_edges):
    """Fastest path from up to two unit sources (hierarchy ids, offsets) to up to two
    incident seeds, through the hierarchy: forward upward search from the sources,
    backward upward search from the seeds, best meeting node, then every shortcut
    expanded through its middle node. Writes the road edge ids in driving order to
    out_edges and returns (eta ds from the sources' offsets to the seeds' offsets,
    source index, seed index, number of edges); source index -1 when unreachable,
    -2 when the hierarchy cannot be unpacked. Workspaces are left clean."""
    # forward: the unit's whole upward space (a few dozen nodes); backward: stops once
    # its queue minimum reaches the best meeting found (stalled nodes keep upper bounds,
    # real path lengths, so every candidate is a real path and the least is exact)
    best_meet = np.empty(2)
    best_meet[0] = INF
    best_meet[1] = -1.0
    nt_f = _up_search_arcs(src, src_t, n_src, uf_indptr, uf_head, uf_w, ub_indptr, ub_head,
                           ub_w, dist_b, dist, hkey, hnode, hpos, touched, par_f, None, best_meet)
    best_meet[0] = INF
    nt_b = _up_search_arcs(seeds, seed_t, n_seeds, ub_indptr, ub_head, ub_w, uf_indptr,
                           uf_head, uf_w, dist, dist_b, hkey, hnode, hpos, touched_b, par_b, None,
                           best_meet)
    best = best_meet[0]
    meet = int(best_meet[1])
    si = -1
    qi = -1
    n_e = 0
    if meet >= 0:
        # forward chain source .. meet (collected backwards, then reversed)
        nn = 0
        x = meet
        while x >= 0:
            nodes[nn] = x
            nn += 1
            x = par_f[x]
        for i in range(nn // 2):
            nodes[i], nodes[nn - 1 - i] = nodes[nn - 1 - i], nodes[i]
        root = nodes[0]
        for i in range(n_src):
            if src[i] == root:
                si = i
        x = par_b[meet]
        while x >= 0:
            nodes[nn] = x
            nn += 1
            x = par_b[x]
        root_b = nodes[nn - 1]
        for i in range(n_seeds):
            if seeds[i] == root_b:
                qi = i
        # expand each hierarchy arc of the chain into road edges: up to the meeting node
        # the chain climbs forward arcs (stored at their tails), after it it descends
        # backward arcs (stored at their heads)
        n_up = 0
        while nodes[n_up] != meet:
            n_up += 1
        for i in range(1, nn):
            n_e = _unpack(nodes[i - 1], nodes[i], i > n_up, uf_indptr, uf_head, uf_mid,
                          ub_indptr, ub_head, ub_mid, ch_node, fwd_indptr, fwd_head, stack,
                          out_edges, n_e)
            if n_e < 0:
                si = -2
                n_e = 0
                break
    for i in range(nt_f):
        dist[touched[i]] = INF
    for i in range(nt_b):
        dist_b[touched_b[i]] = INF
    return best, si, qi, n_e


@njit(cache=True)
def ctx_path(c, slot, r0, t0, r1, t1, n_seeds, dist_b, pw, stack, edges):
    """ch_path from unit ``slot``'s sources to up to two seeds (hierarchy ids r, offsets t;
    with one seed r1/t1 are ignored). ``pw`` int32 (5, n): touched_b, par_f, par_b, nodes,
    ch_node (the route workspaces). Returns (eta ds, source index, seed index, edge count,
    metres along those edges); the edges are in ``edges``."""
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
    ws_f = c.ws_f
    ws_i = c.ws_i
    best, si, qi, n_e = ch_path(src, src_t, ns, seeds, seed_t, n_seeds,
                                c.uf_indptr, c.uf_head, c.uf_w, c.uf_mid, c.ub_indptr, c.ub_head,
                                c.ub_w, c.ub_mid, pw[4], c.fwd_indptr, c.fwd_head,
                                ws_f[0], ws_f[2], ws_i[0], ws_i[1], ws_i[2], dist_b, pw[0], pw[1],
                                pw[2], stack, pw[3], edges)
    length = 0.0
    el = c.edge_len
    for i in range(n_e):
        length += el[edges[i]]
    return best, si, qi, n_e, length
