"""Numba kernels of the contraction-hierarchy preprocessing (see routing.ch for the
algorithm and the Python entry points).

Exempt from mypy's disallow_untyped_defs (inline option below): numba infers these
functions' types from their arguments at the first call, so annotations would restate
what numba checks anyway and could not say the array dtypes and layouts it specialises on.
"""
# mypy: disallow-untyped-defs=False

from __future__ import annotations

import numpy as np
from numba import njit, prange

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
_N_ROUNDS, _N_ROUND_NODES = 13, 14  # statistics of the rounds: how many, nodes contracted in them
_ALIVE_LEN = 12  # rounds (_par_step): how many entries of ``alive`` are current
_SYMMETRIC = 15  # 1 when every arc has a reverse of the same time (TIGER, DIMACS): see _process
# columns of a witness search's per-node workspace W (int32, one row of 16 bytes per node:
# what a relaxation reads comes in one cache line): tentative distance (INF32 = not
# reached), heap position (-1 = not queued), target mark (a search's stamp) and need
_WDIST, _WPOS, _WMARK, _WNEED = 0, 1, 2, 3
_NCOL = 7  # columns of the dynamic graph's rows (see routing.ch's docstring)


@njit(cache=True)
def _new_ws(n):
    W = np.empty((n, 4), np.int32)
    for y in range(n):
        W[y, _WDIST] = INF32
        W[y, _WPOS] = -1
        W[y, _WMARK] = 0
        W[y, _WNEED] = 0
    return W


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
def _wpush(key, node, W, size, v, k):
    """Insert v with key k or lower its key (witness-search heap: keys only, no tie
    order, which routing.heap keeps for the queries' determinism; the searches here are
    deterministic anyway and their decisions do not depend on the order of ties)."""
    i = W[v, _WPOS]
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
        W[pv, _WPOS] = i
        i = parent
    key[i] = k
    node[i] = v
    W[v, _WPOS] = i
    return size


@njit(cache=True)
def _wpop(key, node, W, size):
    """Remove the minimum (read key[0], node[0] before). Returns the new size."""
    W[node[0], _WPOS] = -1
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
        W[cv, _WPOS] = i
        i = c
    key[i] = k
    node[i] = v
    W[v, _WPOS] = i
    return size


@njit(cache=True)
def _bound(tnodes, n_t, W, stamp):
    """The largest need among the targets not yet witnessed."""
    m = np.int64(-1)
    for k in range(n_t):
        y = tnodes[k]
        if W[y, _WMARK] == stamp and W[y, _WNEED] > m:
            m = np.int64(W[y, _WNEED])
    return m


@njit(cache=True)
def _witness(src, skip, limit, NW, astart, alen, W, hkey, hnode, touched, stamp, tnodes, n_t, scal):
    """Witness search: a Dijkstra from src avoiding skip, bounded by ``limit`` settled
    nodes. Targets are the nodes whose W mark is ``stamp``, each with its need (the
    length of the path through skip). A target is witnessed as soon as a tentative
    distance reaches its need (distances only fall; the mark is cleared then); the search
    stops when every target is witnessed or when the queue's minimum exceeds the largest
    need still open: no later path can witness anything."""
    nt = 0
    W[src, _WDIST] = 0
    touched[nt] = src
    nt += 1
    size = _wpush(hkey, hnode, W, 0, src, np.int64(0))
    settled = 0
    left = n_t
    maxd = _bound(tnodes, n_t, W, stamp)
    while size > 0:
        d = hkey[0]
        x = hnode[0]
        size = _wpop(hkey, hnode, W, size)
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
            if W[y, _WMARK] == stamp and nd <= W[y, _WNEED]:
                W[y, _WMARK] = 0
                left -= 1
                if left == 0:
                    break
                if W[y, _WNEED] == maxd:
                    maxd = _bound(tnodes, n_t, W, stamp)
            dy = W[y, _WDIST]
            if nd < dy:
                if dy == INF32:
                    touched[nt] = y
                    nt += 1
                W[y, _WDIST] = nd
                size = _wpush(hkey, hnode, W, size, y, nd)
        if left == 0:
            break
    scal[_N_SETTLED] += settled
    for i in range(size):
        W[hnode[i], _WPOS] = -1
    for t in range(nt):
        W[touched[t], _WDIST] = INF32
    return left


@njit(cache=True)
def _process(v, record, limit, A, L, NW, astart, alen, acap, scal, W, hkey, hnode, touched, scr_i, scr_f,
             pairs):
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
            W[:, _WMARK] = 0
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
                W[y, _WMARK] = stamp
                W[y, _WNEED] = wi[a] + wo[b]
                tnodes[n_t] = y
                n_t += 1
        if n_t == 0:
            continue
        scal[_N_SEARCHES] += 1
        left = _witness(nbr[a], v, limit, NW, astart, alen, W, hkey, hnode, touched, stamp, tnodes, n_t,
                        scal)
        if left == 0:
            continue
        for b in range(b0, deg):
            if b != a and wo[b] != INF32 and W[nbr[b], _WMARK] == stamp:
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
    W = _new_ws(n)
    hkey = np.empty(n, np.int64)
    hnode = np.empty(n, np.int32)
    touched = np.empty(n, np.int32)
    pq_key = np.empty(n, np.float64)
    pq_node = np.empty(n, np.int32)
    pq_pos = np.full(n, -1, np.int32)
    scr_i = np.empty((8, n), np.int64)
    scr_f = np.empty((2, n), np.float64)
    pairs = np.empty((256, 2), np.int32)  # shortcuts found for the node being contracted
    size_pq = 0
    for v in range(n):
        ad, adh, rm, rmh = _process(v, False, limit_sim, A, L, NW, astart, alen, acap, scal,
                                    W, hkey, hnode, touched, scr_i, scr_f, pairs)
        size_pq = heap_push_or_decrease(pq_key, pq_node, pq_pos, size_pq, v,
                                        _priority(level[v], ad, adh, rm, rmh))
    scal[_PQ_SIZE] = size_pq
    cap_up = 2 * indptr[n] + 16
    UF = np.empty((cap_up, 4), np.int64)
    UFL = np.empty(cap_up, np.float64)
    UB = np.empty((cap_up, 4), np.int64)
    UBL = np.empty(cap_up, np.float64)
    return (A, L, NW, astart, alen, acap, scal, level, rank, W, hkey, hnode, touched,
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
def _ch_step(A, L, NW, astart, alen, acap, scal, level, rank, W, hkey, hnode, touched,
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
                                    W, hkey, hnode, touched, scr_i, scr_f, pairs)
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
                                        W, hkey, hnode, touched, scr_i, scr_f, pairs)
            heap_set(pq_key, pq_node, pq_pos, scal[_PQ_SIZE], x,
                     _priority(level[x], ad, adh, rm, rmh))
    return (A, L, NW, astart, alen, acap, scal, level, rank, W, hkey, hnode, touched,
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


# ---------------------------------------------------------------------------------------
# Contraction in rounds of independent nodes, on several threads (routing.ch, "rounds")


@njit(cache=True)
def _key_less(prio, tie, a, b):
    """a before b: lower priority, then a per-node pseudo-random tie key (node ids run
    along a Hilbert curve, so ties broken by id would select one node per stretch of equal
    priorities), then the id."""
    if prio[a] != prio[b]:
        return prio[a] < prio[b]
    if tie[a] != tie[b]:
        return tie[a] < tie[b]
    return a < b


@njit(cache=True)
def _select(alive, n_alive, NW, astart, alen, prio, tie, best, sel):
    """The nodes that come first (by _key_less) among every node within two hops: no two
    of them are adjacent or share a neighbour, which is what lets their witness searches
    run against the same graph, each avoiding only its own node (docs/routing.md,
    "Preprocessing, round three", for why the hierarchy stays exact). ``best[x]`` is the
    first node of x's closed neighbourhood; v is taken when it is best[x] for x = v and
    every neighbour x. Returns how many were written to sel (in alive's order)."""
    for i in range(n_alive):
        x = alive[i]
        b = x
        s = astart[x]
        for k in range(s, s + alen[x]):
            y = NW[k, 0]
            if _key_less(prio, tie, y, b):
                b = y
        best[x] = b
    m = 0
    for i in range(n_alive):
        v = alive[i]
        if best[v] != v:
            continue
        ok = True
        s = astart[v]
        for k in range(s, s + alen[v]):
            if best[NW[k, 0]] != v:
                ok = False
                break
        if ok:
            sel[m] = v
            m += 1
    return m


@njit(cache=True, parallel=True)
def _simulate_many(nodes, m, limit, prio, level, A, L, NW, astart, alen, acap, scal_t, W_t, hkey_t,
                   hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t):
    """prio[v] for nodes[:m], on the threads: thread t takes nodes t, t + T, ... with its
    own workspace (the graph is only read), so the result does not depend on T."""
    T = scal_t.shape[0]
    for t in prange(T):
        for i in range(t, m, T):
            v = nodes[i]
            ad, adh, rm, rmh = _process(v, False, limit, A, L, NW, astart, alen, acap, scal_t[t], W_t[t],
                                        hkey_t[t], hnode_t[t], touched_t[t],
                                        scr_i_t[t], scr_f_t[t], pairs_t[t])
            prio[v] = _priority(level[v], ad, adh, rm, rmh)


@njit(cache=True, parallel=True)
def _shortcuts_many(sel, m, limit, off, cnt, out_i, out_l, A, L, NW, astart, alen, acap, scal_t, W_t,
                    hkey_t, hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t):
    """The shortcuts of contracting each of sel[:m], on the threads: rows
    ``[from, to, time, hops]`` and lengths from off[i], cnt[i] of them."""
    T = scal_t.shape[0]
    for t in prange(T):
        scr_i = scr_i_t[t]
        scr_f = scr_f_t[t]
        pairs = pairs_t[t]
        for i in range(t, m, T):
            v = sel[i]
            ad, _adh, _rm, _rmh = _process(v, True, limit, A, L, NW, astart, alen, acap, scal_t[t], W_t[t],
                                        hkey_t[t], hnode_t[t], touched_t[t],
                                        scr_i, scr_f, pairs)
            o = off[i]
            for p in range(ad):
                a = pairs[p, 0]
                b = pairs[p, 1]
                out_i[o + p, 0] = scr_i[0, a]
                out_i[o + p, 1] = scr_i[0, b]
                out_i[o + p, 2] = scr_i[2, a] + scr_i[1, b]
                out_i[o + p, 3] = scr_i[4, a] + scr_i[3, b]
                out_l[o + p] = scr_f[1, a] + scr_f[0, b]
            cnt[i] = ad


@njit(cache=True)
def _par_init(n, indptr, head, w, lenm, edge_id, n_threads, limit_sim):
    """The dynamic graph, per-thread workspaces, and every node's first priority."""
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
    NW = np.empty((size, 2), np.int32)
    L = np.empty((size, 2), np.float64)
    alen = np.zeros(n, np.int64)
    scal = np.zeros(16, np.int64)
    scal[_POOL_END] = total
    for u in range(n):
        for e in range(indptr[u], indptr[u + 1]):
            A, L, NW = _add_arc(A, L, NW, astart, alen, acap, scal, u, head[e], np.int64(w[e]), lenm[e], 1,
                                -2 - edge_id[e])
    scal[_SYMMETRIC] = 1
    for u in range(n):
        for i in range(astart[u], astart[u] + alen[u]):
            if NW[i, 1] != A[i, 2]:
                scal[_SYMMETRIC] = 0
    T = n_threads
    scal_t = np.zeros((T, 16), np.int64)
    for t in range(T):
        scal_t[t, _SYMMETRIC] = scal[_SYMMETRIC]
    W_t = np.empty((T, n, 4), np.int32)
    for t in range(T):
        W_t[t] = _new_ws(n)
    hkey_t = np.empty((T, n), np.int64)
    hnode_t = np.empty((T, n), np.int32)
    touched_t = np.empty((T, n), np.int32)
    scr_i_t = np.empty((T, 8, n), np.int64)
    scr_f_t = np.empty((T, 2, n), np.float64)
    pairs_t = np.empty((T, 256, 2), np.int32)
    level = np.zeros(n, np.int64)
    rank = np.full(n, -1, np.int32)
    prio = np.empty(n, np.float64)
    tie = np.empty(n, np.int64)
    for v in range(n):  # a fixed pseudo-random permutation key (splitmix64's mixer)
        z = np.uint64(v + 1) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        tie[v] = np.int64(z >> np.uint64(1))
    alive = np.arange(n).astype(np.int32)
    scal[_ALIVE_LEN] = n
    _simulate_many(alive, n, limit_sim, prio, level, A, L, NW, astart, alen, acap, scal_t, W_t, hkey_t,
                   hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t)
    cap_up = 2 * indptr[n] + 16
    UF = np.empty((cap_up, 4), np.int64)
    UFL = np.empty(cap_up, np.float64)
    UB = np.empty((cap_up, 4), np.int64)
    UBL = np.empty(cap_up, np.float64)
    return (A, L, NW, astart, alen, acap, scal, level, rank, prio, tie, alive, scal_t, W_t, hkey_t,
            hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t, UF, UFL, UB, UBL)


@njit(cache=True)
def _record_up(v, A, L, astart, alen, scal, UF, UFL, UB, UBL):
    """v's upward arcs (all its remaining neighbours rank above it)."""
    s = astart[v]
    deg = alen[v]
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
    return UF, UFL, UB, UBL


@njit(cache=True)
def _par_step(A, L, NW, astart, alen, acap, scal, level, rank, prio, tie, alive, scal_t, W_t, hkey_t,
              hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t, UF, UFL, UB, UBL,
              limit_sim, limit_contract, max_contract, min_round):
    """Rounds until max_contract nodes are contracted, or until a round would contract
    fewer than min_round nodes (then the caller goes on one node at a time: _ch_step).
    A round: select (serial), find every selected node's shortcuts (threads), add them and
    detach the nodes in node order (serial), re-prioritise their neighbours (threads)."""
    n = astart.size
    best = np.empty(n, np.int32)
    nmark = np.zeros(n, np.bool_)
    sel = np.empty(n, np.int32)
    nbrs = np.empty(n, np.int32)
    done = 0
    n_alive = n - scal[_NEXT_RANK]
    while n_alive > 0 and done < max_contract:
        k = 0
        for i in range(scal[_ALIVE_LEN]):  # alive[:k] keeps node order
            v = alive[i]
            if rank[v] < 0:
                alive[k] = v
                k += 1
        scal[_ALIVE_LEN] = k
        n_alive = k
        if n_alive == 0:
            break
        m = _select(alive, n_alive, NW, astart, alen, prio, tie, best, sel)
        if m < min_round:
            break
        off = np.empty(m + 1, np.int64)
        off[0] = 0
        maxdd = 0
        for i in range(m):
            d = alen[sel[i]]
            off[i + 1] = off[i] + d * d
            maxdd = max(maxdd, d * d)
        if pairs_t.shape[1] < maxdd:
            pairs_t = np.empty((pairs_t.shape[0], max(maxdd, 2 * pairs_t.shape[1]), 2), np.int32)
        cnt = np.zeros(m, np.int64)
        out_i = np.empty((off[m], 4), np.int64)
        out_l = np.empty(off[m], np.float64)
        _shortcuts_many(sel, m, limit_contract, off, cnt, out_i, out_l, A, L, NW, astart, alen, acap, scal_t,
                        W_t, hkey_t, hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t)
        nn = 0
        for i in range(m):
            v = sel[i]
            UF, UFL, UB, UBL = _record_up(v, A, L, astart, alen, scal, UF, UFL, UB, UBL)
            for p in range(off[i], off[i] + cnt[i]):
                A, L, NW = _add_arc(A, L, NW, astart, alen, acap, scal, out_i[p, 0], out_i[p, 1], out_i[p, 2],
                                    out_l[p], out_i[p, 3], v)
            rank[v] = scal[_NEXT_RANK]
            scal[_NEXT_RANK] += 1
        for i in range(m):
            v = sel[i]
            s = astart[v]
            deg = alen[v]
            for k2 in range(s, s + deg):
                x = NW[k2, 0]
                if not nmark[x]:
                    nmark[x] = True
                    nbrs[nn] = x
                    nn += 1
            for k2 in range(s, s + deg):
                x = A[k2, 0]
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
            alen[v] = 0
        for i in range(nn):
            nmark[nbrs[i]] = False
        _simulate_many(nbrs, nn, limit_sim, prio, level, A, L, NW, astart, alen, acap, scal_t, W_t, hkey_t,
                       hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t)
        done += m
        n_alive -= m
        scal[_N_ROUNDS] += 1
        scal[_N_ROUND_NODES] += m
    return (A, L, NW, astart, alen, acap, scal, level, rank, prio, tie, alive, scal_t, W_t, hkey_t,
            hnode_t, touched_t, scr_i_t, scr_f_t, pairs_t, UF, UFL, UB, UBL)


@njit(cache=True)
def _to_sequential(n, rank, prio, scal, scal_t):
    """The queue of the remaining nodes at their current priorities and the counters of
    the threads, for _ch_step to finish the contraction one node at a time."""
    pq_key = np.empty(n, np.float64)
    pq_node = np.empty(n, np.int32)
    pq_pos = np.full(n, -1, np.int32)
    size = 0
    for v in range(n):
        if rank[v] < 0:
            size = heap_push_or_decrease(pq_key, pq_node, pq_pos, size, v, prio[v])
    scal[_PQ_SIZE] = size
    for t in range(scal_t.shape[0]):
        for c in (_N_SEARCHES, _N_REQUEUED, _N_SETTLED, _N_SIMS, _N_SETTLED_CONTRACT):
            scal[c] += scal_t[t, c]
            scal_t[t, c] = 0
        scal[_STAMP] = max(scal[_STAMP], scal_t[t, _STAMP])
    return pq_key, pq_node, pq_pos
