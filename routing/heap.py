"""Indexed binary min-heap on plain arrays, for numba kernels.

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
