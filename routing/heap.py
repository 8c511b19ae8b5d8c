"""Binary min-heaps on plain arrays, for numba kernels: an indexed one (decrease-key) and a
lazy one (below).

``pos[node]`` is the node's slot in the heap or -1; keys are whatever numeric dtype
the caller's ``key`` array has (int64 in preprocessing, float64 in queries).
Ties are broken by node id so that searches are deterministic.
"""
# mypy: disallow-untyped-defs=False
# (numba kernels: numba infers their types from the arguments at the first call, so
# annotations would restate what it checks and could not name the array layouts it
# specialises on; the Python callers in routing.index / routing.ch are fully typed)

from __future__ import annotations

from numba import njit

INF = float("inf")


@njit(cache=True, inline="always")
def _less(key, node, i, j):
    return key[i] < key[j] or (key[i] == key[j] and node[i] < node[j])


@njit(cache=True)
def _sift_up(key, node, pos, i):
    while i > 0:
        parent = (i - 1) >> 1
        if _less(key, node, i, parent):
            k, n = key[i], node[i]
            key[i], node[i] = key[parent], node[parent]
            key[parent], node[parent] = k, n
            pos[node[i]] = i
            pos[node[parent]] = parent
            i = parent
        else:
            break


@njit(cache=True)
def _sift_down(key, node, pos, i, size):
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        best = left
        right = left + 1
        if right < size and _less(key, node, right, left):
            best = right
        if _less(key, node, best, i):
            k, n = key[i], node[i]
            key[i], node[i] = key[best], node[best]
            key[best], node[best] = k, n
            pos[node[i]] = i
            pos[node[best]] = best
            i = best
        else:
            break


@njit(cache=True)
def heap_push_or_decrease(key, node, pos, size, v, k):
    """Insert v with key k, or lower its key. Returns the new size."""
    i = pos[v]
    if i < 0:
        i = size
        size += 1
        key[i] = k
        node[i] = v
        pos[v] = i
        _sift_up(key, node, pos, i)
    elif k < key[i]:
        key[i] = k
        _sift_up(key, node, pos, i)
    return size


@njit(cache=True)
def heap_set(key, node, pos, size, v, k):
    """Insert or change v's key in either direction. Returns the new size."""
    i = pos[v]
    if i < 0:
        return heap_push_or_decrease(key, node, pos, size, v, k)
    old = key[i]
    key[i] = k
    if k < old:
        _sift_up(key, node, pos, i)
    else:
        _sift_down(key, node, pos, i, size)
    return size


@njit(cache=True)
def heap_pop(key, node, pos, size):
    """Remove the minimum; caller reads key[0], node[0] before. Returns the new size."""
    pos[node[0]] = -1
    size -= 1
    if size > 0:
        key[0] = key[size]
        node[0] = node[size]
        pos[node[0]] = 0
        _sift_down(key, node, pos, 0, size)
    return size


# ---- lazy heap
# A binary heap of (key, node) float64 rows and no position array, for the query searches:
# a node improved again is pushed again, and the caller skips an entry whose key is above
# its node's distance when it pops it (a stale one). Fewer writes per step than the indexed
# heap above; the caller compacts it (lazy_compact) when it is full.
@njit(cache=True, inline="always")
def lazy_push(hq, size, key, node):
    i = size
    while i > 0:
        pa = (i - 1) >> 1
        if hq[pa, 0] <= key:
            break
        hq[i, 0] = hq[pa, 0]
        hq[i, 1] = hq[pa, 1]
        i = pa
    hq[i, 0] = key
    hq[i, 1] = node
    return size + 1


@njit(cache=True, inline="always")
def lazy_sift_down(hq, i, size, key, node):
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and hq[c + 1, 0] < hq[c, 0]:
            c += 1
        if hq[c, 0] >= key:
            break
        hq[i, 0] = hq[c, 0]
        hq[i, 1] = hq[c, 1]
        i = c
    hq[i, 0] = key
    hq[i, 1] = node


@njit(cache=True, inline="always")
def lazy_pop(hq, size):
    """Remove the minimum (the caller read hq[0] before). Returns the new size."""
    size -= 1
    lazy_sift_down(hq, 0, size, hq[size, 0], hq[size, 1])
    return size


@njit(cache=True)
def lazy_compact(hq, size, dist):
    """The heap is full: drop its stale entries (key above the node's distance; at most
    one live entry per node remains, so fewer than the node count) and heapify."""
    j = 0
    for i in range(size):
        if hq[i, 0] == dist[int(hq[i, 1])]:
            hq[j, 0] = hq[i, 0]
            hq[j, 1] = hq[i, 1]
            j += 1
    for i in range(j // 2 - 1, -1, -1):
        lazy_sift_down(hq, i, j, hq[i, 0], hq[i, 1])
    return j


@njit(cache=True, inline="always")
def lazy_lower(y, nd, dist, touched, nt, hq, size):
    """A search's relaxation once ``nd < dist[y]`` holds: y's distance becomes nd (y goes to
    ``touched`` when first reached, for the caller's reset) and (nd, y) onto the lazy heap,
    compacted first when full. Returns (heap size, touched count)."""
    if dist[y] == INF:
        touched[nt] = y
        nt += 1
    dist[y] = nd
    if size == hq.shape[0]:
        size = lazy_compact(hq, size, dist)
    return lazy_push(hq, size, nd, y), nt
