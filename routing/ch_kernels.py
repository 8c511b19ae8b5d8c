"""Numba kernels of the contraction-hierarchy preprocessing (see routing.ch for the
algorithm and the Python entry points).

Exempt from mypy's disallow_untyped_defs (inline option below): numba infers these
functions' types from their arguments at the first call, so annotations would restate
what numba checks anyway and could not say the array dtypes and layouts it specialises on.
"""
# mypy: disallow-untyped-defs=False

from __future__ import annotations

import numpy as np
from numba import njit

from routing.heap import heap_pop, heap_push_or_decrease, heap_set

INF32 = np.int32(2**31 - 1)
INF64 = np.int64(2**62)

# Witness-search settle limits, tuned on DIMACS NY (264k nodes): higher limits gave
# the same query search spaces and slower preprocessing.
WITNESS_LIMIT_SIMULATE = 60
WITNESS_LIMIT_CONTRACT = 400

# indices into the scalar state vector
_POOL_END, _PQ_SIZE, _NEXT_RANK, _N_UF, _N_UB, _STAMP = 0, 1, 2, 3, 4, 5
_N_SEARCHES, _N_REQUEUED = 6, 7  # statistics: witness searches, lazy re-queues
# statistics: nodes settled by witness searches (all, and those of the contractions
# themselves), priority simulations
_N_SETTLED, _N_SIMS, _N_SETTLED_CONTRACT = 8, 9, 11
_SYMMETRIC = 15  # 1 when every arc has a reverse of the same time (TIGER, DIMACS): see _process
_NCOL = 7  # columns of the dynamic graph's rows (see routing.ch's docstring)


@njit(cache=True)
def _entry(NW, astart, alen, x, y):
    s = astart[x]
    for i in range(s, s + alen[x]):
        if NW[i, 0] == y:
            return i
    return -1


@njit(cache=True)
def _append(A, L, NW, astart, alen, acap, scal, x, y):
    """Append a blank row for neighbour y to x's slice; may reallocate the pool."""
    if alen[x] == acap[x]:
        newcap = max(4, 2 * acap[x])
        pe = scal[_POOL_END]
        if pe + newcap > A.shape[0]:
            size = max(2 * A.shape[0], pe + newcap)
            A2 = np.empty((size, _NCOL), np.int32)
            L2 = np.empty((size, 2), np.float64)
            NW2 = np.empty((size, 2), np.int32)
            A2[:pe] = A[:pe]
            L2[:pe] = L[:pe]
            NW2[:pe] = NW[:pe]
            A, L, NW = A2, L2, NW2
        s = astart[x]
        for i in range(alen[x]):
            for c in range(_NCOL):
                A[pe + i, c] = A[s + i, c]
            NW[pe + i, 0] = NW[s + i, 0]
            NW[pe + i, 1] = NW[s + i, 1]
            L[pe + i, 0] = L[s + i, 0]
            L[pe + i, 1] = L[s + i, 1]
        astart[x] = pe
        acap[x] = newcap
        scal[_POOL_END] = pe + newcap
    i = astart[x] + alen[x]
    alen[x] += 1
    A[i, 0] = y
    A[i, 1] = INF32
    A[i, 2] = INF32
    A[i, 3] = 0
    A[i, 4] = 0
    A[i, 5] = -1
    A[i, 6] = -1
    L[i, 0] = 0.0
    L[i, 1] = 0.0
    NW[i, 0] = y
    NW[i, 1] = INF32
    return A, L, NW, i


@njit(cache=True)
def _add_arc(A, L, NW, astart, alen, acap, scal, x, y, w, length, hops, mid):
    """Arc x->y (keeps the minimum weight if it exists already; the middle node
    follows the weight, so unpacking a shortcut always reproduces its weight)."""
    i = _entry(NW, astart, alen, x, y)
    if i < 0:
        A, L, NW, i = _append(A, L, NW, astart, alen, acap, scal, x, y)
    if w < A[i, 1]:
        A[i, 1] = w
        NW[i, 1] = w
        L[i, 0] = length
        A[i, 3] = hops
        A[i, 5] = mid
    j = _entry(NW, astart, alen, y, x)
    if j < 0:
        A, L, NW, j = _append(A, L, NW, astart, alen, acap, scal, y, x)
    if w < A[j, 2]:
        A[j, 2] = w
        L[j, 1] = length
        A[j, 4] = hops
        A[j, 6] = mid
    return A, L, NW


@njit(cache=True)
def _wpush(key, node, pos, size, v, k):
    """Insert v with key k or lower its key (witness-search heap: keys only, no tie
    order, which routing.heap keeps for the queries' determinism; the searches here are
    deterministic anyway and their decisions do not depend on the order of ties)."""
    i = pos[v]
    if i < 0:
        i = size
        size += 1
    elif k >= key[i]:
        return size
    while i > 0:
        parent = (i - 1) >> 1
        if key[parent] <= k:
            break
        pv = node[parent]
        key[i] = key[parent]
        node[i] = pv
        pos[pv] = i
        i = parent
    key[i] = k
    node[i] = v
    pos[v] = i
    return size


@njit(cache=True)
def _wpop(key, node, pos, size):
    """Remove the minimum (read key[0], node[0] before). Returns the new size."""
    pos[node[0]] = -1
    size -= 1
    if size == 0:
        return 0
    k = key[size]
    v = node[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and key[c + 1] < key[c]:
            c += 1
        if key[c] >= k:
            break
        cv = node[c]
        key[i] = key[c]
        node[i] = cv
        pos[cv] = i
        i = c
    key[i] = k
    node[i] = v
    pos[v] = i
    return size


@njit(cache=True)
def _bound(tnodes, n_t, tmark, stamp, tneed):
    """The largest need among the targets not yet witnessed."""
    m = np.int64(-1)
    for k in range(n_t):
        y = tnodes[k]
        if tmark[y] == stamp and tneed[y] > m:
            m = tneed[y]
    return m


@njit(cache=True)
def _witness(src, skip, limit, NW, astart, alen, dist, hkey, hnode, hpos, touched,
             tmark, stamp, tneed, tnodes, n_t, scal):
    """Witness search: a Dijkstra from src avoiding skip, bounded by ``limit`` settled
    nodes. Targets are the nodes marked ``tmark == stamp``, each with its ``tneed`` (the
    length of the path through skip). A target is witnessed as soon as a tentative
    distance reaches its need (distances only fall; the mark is cleared then); the search
    stops when every target is witnessed or when the queue's minimum exceeds the largest
    need still open: no later path can witness anything."""
    nt = 0
    dist[src] = 0
    touched[nt] = src
    nt += 1
    size = _wpush(hkey, hnode, hpos, 0, src, np.int64(0))
    settled = 0
    left = n_t
    maxd = _bound(tnodes, n_t, tmark, stamp, tneed)
    while size > 0:
        d = hkey[0]
        x = hnode[0]
        size = _wpop(hkey, hnode, hpos, size)
        if d > maxd:
            break
        settled += 1
        if settled > limit:
            break
        s = astart[x]
        for i in range(s, s + alen[x]):
            wo = NW[i, 1]
            if wo == INF32:
                continue
            y = NW[i, 0]
            if y == skip:
                continue
            nd = d + wo
            if nd > maxd:
                continue  # could never witness anything: the search stops above maxd
            if tmark[y] == stamp and nd <= tneed[y]:
                tmark[y] = 0
                left -= 1
                if left == 0:
                    break
                if tneed[y] == maxd:
                    maxd = _bound(tnodes, n_t, tmark, stamp, tneed)
            dy = dist[y]
            if nd < dy:
                if dy == INF64:
                    touched[nt] = y
                    nt += 1
                dist[y] = nd
                size = _wpush(hkey, hnode, hpos, size, y, nd)
        if left == 0:
            break
    scal[_N_SETTLED] += settled
    for i in range(size):
        hpos[hnode[i]] = -1
    for t in range(nt):
        dist[touched[t]] = INF64
    return left


@njit(cache=True)
def _process(v, record, limit, A, L, NW, astart, alen, acap, scal, dist, hkey, hnode, hpos, touched, tmark,
             scr_i, scr_f, pairs):
    """Simulate the contraction of v: the priority terms (shortcuts added and their hops,
    arcs removed and their hops), and with ``record`` the shortcuts as (in, out) index
    pairs into v's arcs, which stay in scratch rows 0-4 of scr_i and 0-1 of scr_f.
    scr_i (8, n) int64 and scr_f (2, n) float64 are scratch rows (a degree never exceeds
    n): allocating them per call cost 7 allocations per simulation."""
    deg = alen[v]
    s = astart[v]
    scal[_N_SIMS] += 1
    settled_before = scal[_N_SETTLED]
    nbr = scr_i[0]
    wo = scr_i[1]
    wi = scr_i[2]
    ho = scr_i[3]
    hi = scr_i[4]
    tnodes = scr_i[5]
    tneed = scr_i[6]  # indexed by node
    lo = scr_f[0]
    li = scr_f[1]
    removed = 0
    removed_hops = 0
    # v's arcs by out-time, longest first: on a symmetric graph the search from the
    # k-th neighbour then looks for the later (shorter) ones only, so its radius is
    # w_k + w_k+1 rather than w_k + the longest (the searches settled 13 % fewer nodes
    # on SF)
    order = scr_i[7]
    for k in range(deg):
        x = NW[s + k, 1]
        j = k
        while j > 0 and NW[s + order[j - 1], 1] < x:
            order[j] = order[j - 1]
            j -= 1
        order[j] = k
    for k in range(deg):
        r = s + order[k]
        nbr[k] = A[r, 0]
        wo[k] = A[r, 1]
        wi[k] = A[r, 2]
        ho[k] = A[r, 3]
        hi[k] = A[r, 4]
        lo[k] = L[r, 0]
        li[k] = L[r, 1]
        if wo[k] != INF32:
            removed += 1
            removed_hops += ho[k]
        if wi[k] != INF32:
            removed += 1
            removed_hops += hi[k]
    added = 0
    added_hops = 0
    sym = scal[_SYMMETRIC] == 1
    for a in range(deg):
        if wi[a] == INF32:
            continue
        if scal[_STAMP] >= 2**31 - 2:  # int32 marks: start over (never on NY: 4 M stamps)
            tmark[:] = 0
            scal[_STAMP] = 0
        scal[_STAMP] += 1
        stamp = scal[_STAMP]
        n_t = 0
        # on a symmetric graph a witness u->..->w reversed is one for w->..->u, of the
        # same length: the search from u decides the pairs (u, w) and (w, u) for every
        # w after u in v's list, and the last neighbour needs no search at all
        b0 = a + 1 if sym else 0
        for b in range(b0, deg):
            if b != a and wo[b] != INF32:
                y = nbr[b]
                tmark[y] = stamp
                tneed[y] = wi[a] + wo[b]
                tnodes[n_t] = y
                n_t += 1
        if n_t == 0:
            continue
        scal[_N_SEARCHES] += 1
        left = _witness(nbr[a], v, limit, NW, astart, alen, dist, hkey, hnode, hpos, touched,
                        tmark, stamp, tneed, tnodes, n_t, scal)
        if left == 0:
            continue
        for b in range(b0, deg):
            if b != a and wo[b] != INF32 and tmark[nbr[b]] == stamp:
                added += 1
                added_hops += hi[a] + ho[b]
                if record:
                    pairs[added - 1, 0] = a
                    pairs[added - 1, 1] = b
                if sym:
                    added += 1
                    added_hops += hi[b] + ho[a]
                    if record:
                        pairs[added - 1, 0] = b
                        pairs[added - 1, 1] = a
    if record:
        scal[_N_SETTLED_CONTRACT] += scal[_N_SETTLED] - settled_before
    return added, added_hops, removed, removed_hops


@njit(cache=True)
def _priority(level, added, added_hops, removed, removed_hops):
    return level + added / max(removed, 1) + added_hops / max(removed_hops, 1)


@njit(cache=True)
def _ch_init(n, indptr, head, w, lenm, edge_id, limit_sim):
    deg = np.zeros(n, np.int64)
    for u in range(n):
        for e in range(indptr[u], indptr[u + 1]):
            deg[u] += 1
            deg[head[e]] += 1
    acap = deg + 2
    astart = np.zeros(n, np.int64)
    total = 0
    for u in range(n):
        astart[u] = total
        total += acap[u]
    size = 2 * total + 1024
    A = np.empty((size, _NCOL), np.int32)
    NW = np.empty((size, 2), np.int32)  # columns 0-1 of A again, packed for the witness scans
    L = np.empty((size, 2), np.float64)
    alen = np.zeros(n, np.int64)
    scal = np.zeros(16, np.int64)
    scal[_POOL_END] = total
    for u in range(n):
        for e in range(indptr[u], indptr[u + 1]):
            A, L, NW = _add_arc(A, L, NW, astart, alen, acap, scal, u, head[e], np.int64(w[e]), lenm[e], 1,
                            -2 - edge_id[e])  # an original arc: its edge id, coded below -1
    scal[_SYMMETRIC] = 1
    for u in range(n):
        for i in range(astart[u], astart[u] + alen[u]):
            if NW[i, 1] != A[i, 2]:
                scal[_SYMMETRIC] = 0
    level = np.zeros(n, np.int64)
    rank = np.full(n, -1, np.int32)
    dist = np.full(n, INF64, np.int64)
    hkey = np.empty(n, np.int64)
    hnode = np.empty(n, np.int32)
    hpos = np.full(n, -1, np.int32)
    touched = np.empty(n, np.int32)
    tmark = np.zeros(n, np.int32)  # int32: half the cache lines of int64 on NY
    pq_key = np.empty(n, np.float64)
    pq_node = np.empty(n, np.int32)
    pq_pos = np.full(n, -1, np.int32)
    scr_i = np.empty((8, n), np.int64)
    scr_f = np.empty((2, n), np.float64)
    pairs = np.empty((256, 2), np.int32)  # shortcuts found for the node being contracted
    size_pq = 0
    for v in range(n):
        ad, adh, rm, rmh = _process(v, False, limit_sim, A, L, NW, astart, alen, acap, scal,
                                    dist, hkey, hnode, hpos, touched, tmark, scr_i, scr_f, pairs)
        size_pq = heap_push_or_decrease(pq_key, pq_node, pq_pos, size_pq, v,
                                        _priority(level[v], ad, adh, rm, rmh))
    scal[_PQ_SIZE] = size_pq
    cap_up = 2 * indptr[n] + 16
    UF = np.empty((cap_up, 4), np.int64)
    UFL = np.empty(cap_up, np.float64)
    UB = np.empty((cap_up, 4), np.int64)
    UBL = np.empty(cap_up, np.float64)
    return (A, L, NW, astart, alen, acap, scal, level, rank, dist, hkey, hnode, hpos, touched, tmark,
            pq_key, pq_node, pq_pos, UF, UFL, UB, UBL, scr_i, scr_f, pairs)


@njit(cache=True)
def _compact(A, L, NW, astart, alen, acap, scal, rank):
    """Copy the rows of the nodes not yet contracted into a new pool, in node order and
    without the gaps that contracted nodes and moved slices leave: the shrinking graph
    keeps its rows together (its nodes are numbered along a Hilbert curve)."""
    n = astart.size
    total = 0
    for u in range(n):
        if rank[u] < 0:
            total += alen[u] + max(2, alen[u] // 2)
    size = total + total // 2 + 1024
    A2 = np.empty((size, _NCOL), np.int32)
    L2 = np.empty((size, 2), np.float64)
    NW2 = np.empty((size, 2), np.int32)
    pos = 0
    for u in range(n):
        s = astart[u]
        k = alen[u]
        for i in range(k):
            for c in range(_NCOL):
                A2[pos + i, c] = A[s + i, c]
            L2[pos + i, 0] = L[s + i, 0]
            L2[pos + i, 1] = L[s + i, 1]
            NW2[pos + i, 0] = NW[s + i, 0]
            NW2[pos + i, 1] = NW[s + i, 1]
        astart[u] = pos
        cap = k + max(2, k // 2) if rank[u] < 0 else 0
        acap[u] = cap
        pos += cap
    scal[_POOL_END] = pos
    return A2, L2, NW2


@njit(cache=True)
def _grow_up(U, UL, need):
    if need <= U.shape[0]:
        return U, UL
    size = max(2 * U.shape[0], need)
    U2 = np.empty((size, 4), np.int64)
    UL2 = np.empty(size, np.float64)
    U2[: U.shape[0]] = U
    UL2[: U.shape[0]] = UL
    return U2, UL2


@njit(cache=True)
def _ch_step(A, L, NW, astart, alen, acap, scal, level, rank, dist, hkey, hnode, hpos, touched, tmark,
             pq_key, pq_node, pq_pos, UF, UFL, UB, UBL, scr_i, scr_f, pairs, limit_sim, limit_contract,
             max_contract):
    done = 0
    while scal[_PQ_SIZE] > 0 and done < max_contract:
        v = pq_node[0]
        deg = alen[v]
        if pairs.shape[0] < deg * deg:
            pairs = np.empty((max(deg * deg, 2 * pairs.shape[0]), 2), np.int32)
        # the lazy check and the contraction share their witness searches: v's priority
        # is recomputed with the contraction's limit, and v is contracted with the
        # shortcuts found if it is still the cheapest, else re-queued (rarely: under 3 %
        # of the pops on SF and NY, since neighbours are re-prioritised after each step)
        ad, adh, rm, rmh = _process(v, True, limit_contract, A, L, NW, astart, alen, acap, scal,
                                    dist, hkey, hnode, hpos, touched, tmark, scr_i, scr_f, pairs)
        heap_set(pq_key, pq_node, pq_pos, scal[_PQ_SIZE], v, _priority(level[v], ad, adh, rm, rmh))
        if pq_node[0] != v:
            scal[_N_REQUEUED] += 1
            continue
        scal[_PQ_SIZE] = heap_pop(pq_key, pq_node, pq_pos, scal[_PQ_SIZE])
        # record v's upward arcs (all remaining neighbours rank above v)
        s = astart[v]
        UF, UFL = _grow_up(UF, UFL, scal[_N_UF] + deg)
        UB, UBL = _grow_up(UB, UBL, scal[_N_UB] + deg)
        for k in range(s, s + deg):
            x = A[k, 0]
            if A[k, 1] != INF32:
                i = scal[_N_UF]
                UF[i, 0] = v
                UF[i, 1] = x
                UF[i, 2] = A[k, 1]
                UF[i, 3] = A[k, 5]
                UFL[i] = L[k, 0]
                scal[_N_UF] = i + 1
            if A[k, 2] != INF32:
                i = scal[_N_UB]
                UB[i, 0] = v
                UB[i, 1] = x
                UB[i, 2] = A[k, 2]
                UB[i, 3] = A[k, 6]
                UBL[i] = L[k, 1]
                scal[_N_UB] = i + 1
        # v's arcs, copied to scratch by _process (rows 0-4: neighbour, w_out, w_in,
        # hops_out, hops_in; lengths out, in)
        nbr = scr_i[0]
        wo = scr_i[1]
        wi = scr_i[2]
        ho = scr_i[3]
        hi = scr_i[4]
        lo = scr_f[0]
        li = scr_f[1]
        for p in range(ad):
            a = pairs[p, 0]
            b = pairs[p, 1]
            A, L, NW = _add_arc(A, L, NW, astart, alen, acap, scal, nbr[a], nbr[b], wi[a] + wo[b],
                            li[a] + lo[b], hi[a] + ho[b], v)
        rank[v] = scal[_NEXT_RANK]
        scal[_NEXT_RANK] += 1
        done += 1
        # detach v from its neighbours, then re-prioritise them
        nbrs = np.empty(deg, np.int32)
        for k in range(deg):
            nbrs[k] = nbr[k]
        alen[v] = 0
        for k in range(deg):
            x = nbrs[k]
            j = _entry(NW, astart, alen, x, v)
            last = astart[x] + alen[x] - 1
            if j != last:
                for c in range(_NCOL):
                    A[j, c] = A[last, c]
                NW[j, 0] = NW[last, 0]
                NW[j, 1] = NW[last, 1]
                L[j, 0] = L[last, 0]
                L[j, 1] = L[last, 1]
            alen[x] -= 1
            level[x] = max(level[x], level[v] + 1)
        for k in range(deg):
            x = nbrs[k]
            ad, adh, rm, rmh = _process(x, False, limit_sim, A, L, NW, astart, alen, acap, scal,
                                        dist, hkey, hnode, hpos, touched, tmark, scr_i, scr_f, pairs)
            heap_set(pq_key, pq_node, pq_pos, scal[_PQ_SIZE], x,
                     _priority(level[x], ad, adh, rm, rmh))
    return (A, L, NW, astart, alen, acap, scal, level, rank, dist, hkey, hnode, hpos, touched, tmark,
            pq_key, pq_node, pq_pos, UF, UFL, UB, UBL, scr_i, scr_f, pairs)


@njit(cache=True)
def _levels(n, rank, uf, nf, ub, nb):
    """Level of every node: 0 for nodes with no arc from below, else one above the
    highest node below it (arcs of U go from the contracted node to higher ones)."""
    order = np.empty(n, np.int64)
    for v in range(n):
        order[rank[v]] = v
    first_f = np.full(n + 1, 0, np.int64)
    first_b = np.full(n + 1, 0, np.int64)
    for i in range(nf):
        first_f[rank[uf[i, 0]] + 1] += 1
    for i in range(nb):
        first_b[rank[ub[i, 0]] + 1] += 1
    for r in range(n):
        first_f[r + 1] += first_f[r]
        first_b[r + 1] += first_b[r]
    head_f = np.empty(nf, np.int64)
    head_b = np.empty(nb, np.int64)
    fill_f = first_f[:n].copy()
    fill_b = first_b[:n].copy()
    for i in range(nf):
        r = rank[uf[i, 0]]
        head_f[fill_f[r]] = uf[i, 1]
        fill_f[r] += 1
    for i in range(nb):
        r = rank[ub[i, 0]]
        head_b[fill_b[r]] = ub[i, 1]
        fill_b[r] += 1
    level = np.zeros(n, np.int64)
    for r in range(n):
        v = order[r]
        for a in range(first_f[r], first_f[r + 1]):
            y = head_f[a]
            level[y] = max(level[y], level[v] + 1)
        for a in range(first_b[r], first_b[r + 1]):
            y = head_b[a]
            level[y] = max(level[y], level[v] + 1)
    return level


@njit(cache=True)
def _hilbert(x, y, bits):
    """Distance of integer point (x, y) along a Hilbert curve of side 2**bits."""
    d = np.empty(x.size, np.int64)
    side = np.int64(1) << bits
    for i in range(x.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        h = np.int64(0)
        s = side >> 1
        while s > 0:
            rx = 1 if (xi & s) > 0 else 0
            ry = 1 if (yi & s) > 0 else 0
            h += s * s * ((3 * rx) ^ ry)
            if ry == 0:
                if rx == 1:
                    xi = side - 1 - xi
                    yi = side - 1 - yi
                xi, yi = yi, xi
            s >>= 1
        d[i] = h
    return d
