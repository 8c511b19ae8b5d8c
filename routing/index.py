"""Per-worker unit index over one RoadGraph: unit slots, CH buckets, query workspaces.

Works in internal ids only (node ids, edge ids, slot numbers, bitmasks); the
service (routing.service) maps unit ids, unit types and capabilities, OSM ids and
lat/lon to these. Not thread-safe: one query or update at a time (the service holds
the lock).

A unit stands at a node, or on edge u->v at fraction f. On a two-way street it may
turn round (emergency vehicles do), so such a unit has two *sources*: v reached
after (1-f)·w(u->v), and u reached after f·w(v->u). The sources' offsets are folded
into the unit's bucket entries, so a query needs no per-unit arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing import kernels as K
from routing.graph import RoadGraph

INITIAL_SEARCH_WIDTH = 256  # bucket entries per unit before the rows are widened


@dataclass(frozen=True)
class Seed:
    """A place a search starts from or ends at: ``node`` reached after ``t_ds``
    deciseconds and ``length_m`` metres; ``edge``/``frac`` name the arc position
    (edge -1 when the point is a node)."""

    node: int
    t_ds: float
    length_m: float
    edge: int = -1
    frac: float = 0.0


def unit_sources(graph: RoadGraph, edge: int, frac: float) -> list[Seed]:
    """Where a unit on edge ``edge`` at ``frac`` can head: the edge's head, and, on a
    two-way street, its tail via the twin arc."""
    w = float(graph.edge_time_ds[edge])
    ln = float(graph.edge_length_m[edge])
    out = [Seed(int(graph.fwd_head[edge]), (1.0 - frac) * w, (1.0 - frac) * ln, edge, frac)]
    twin = int(graph.edge_twin[edge])
    if twin >= 0:
        wt = float(graph.edge_time_ds[twin])
        lt = float(graph.edge_length_m[twin])
        out.append(Seed(int(graph.fwd_head[twin]), frac * wt, frac * lt, twin, 1.0 - frac))
    return out


def incident_seeds(graph: RoadGraph, edge: int, frac: float) -> list[Seed]:
    """Ways into a point on edge ``edge`` at ``frac``: from its tail along the edge
    (after frac·w), and on a two-way street from its head along the twin."""
    w = float(graph.edge_time_ds[edge])
    ln = float(graph.edge_length_m[edge])
    out = [Seed(int(graph.edge_tail[edge]), frac * w, frac * ln, edge, frac)]
    twin = int(graph.edge_twin[edge])
    if twin >= 0:
        wt = float(graph.edge_time_ds[twin])
        lt = float(graph.edge_length_m[twin])
        out.append(Seed(int(graph.edge_tail[twin]), (1.0 - frac) * wt, (1.0 - frac) * lt, twin,
                        1.0 - frac))
    return out


class UnitIndex:
    def __init__(self, graph: RoadGraph, *, capacity: int = 64, use_ch: bool | None = None):
        self.graph = graph
        h = graph.hierarchy
        self.use_ch = (h is not None) if use_ch is None else bool(use_ch)
        if self.use_ch and h is None:
            raise ValueError("graph has no contraction hierarchy; build it or use use_ch=False")
        n = graph.n_nodes
        self._dist = np.full(n, np.inf)
        self._dlen = np.zeros(n)
        self._hkey = np.empty(n, np.float64)
        self._hnode = np.empty(n, np.int32)
        self._hpos = np.full(n, -1, np.int32)
        self._touched = np.empty(n, np.int32)
        self._tmp_node = np.empty(n, np.int32)
        self._tmp_t = np.empty(n, np.float64)
        self._tmp_l = np.empty(n, np.float64)
        self._node_first = np.full(n, -1, np.int32)
        self._parent = np.full(n, -1, np.int64)
        self._path = np.empty(n, np.int64)
        self._b_start = np.zeros(n, np.int64)
        self._b_len = np.zeros(n, np.int64)
        self._b_cap = np.zeros(n, np.int64)
        self._pool_sj = np.empty((4096, 2), np.int32)
        self._pool_t = np.empty(4096, np.float64)
        self._pool_l = np.empty(4096, np.float64)
        self._scal = np.zeros(1, np.int64)
        self._edge_time = graph.edge_time_ds.astype(np.float64)
        self.capacity = 0
        self.n_slots = 0
        self._free: list[int] = []
        self._grow_units(max(1, capacity), INITIAL_SEARCH_WIDTH)
        self._k_cap = 0
        self._ensure_k(8)
        if h is not None:
            self._rank = h.rank

    # ---- storage -----------------------------------------------------------------
    def _grow_units(self, capacity: int, width: int) -> None:
        old = self.capacity

        def grow(arr: np.ndarray | None, shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
            new = np.full(shape, fill, dtype=dtype)
            if arr is not None:
                new[tuple(slice(0, s) for s in arr.shape)] = arr
            return new

        g = getattr
        self.u_avail = grow(g(self, "u_avail", None), (capacity,), np.uint8, 0)
        self.u_type = grow(g(self, "u_type", None), (capacity,), np.int64, 0)
        self.u_caps = grow(g(self, "u_caps", None), (capacity,), np.int64, 0)
        self.u_tie = grow(g(self, "u_tie", None), (capacity,), np.int64, 0)
        self.u_edge = grow(g(self, "u_edge", None), (capacity, 2), np.int32, -1)
        self.u_frac = grow(g(self, "u_frac", None), (capacity, 2), np.float64, 0.0)
        self.u_src = grow(g(self, "u_src", None), (capacity, 2), np.int32, 0)
        self.u_src_t = grow(g(self, "u_src_t", None), (capacity, 2), np.float64, 0.0)
        self.u_src_l = grow(g(self, "u_src_l", None), (capacity, 2), np.float64, 0.0)
        self.u_nsrc = grow(g(self, "u_nsrc", None), (capacity,), np.int32, 0)
        self.u_cnt = grow(g(self, "u_cnt", None), (capacity,), np.int64, 0)
        self.u_nodes = grow(g(self, "u_nodes", None), (capacity, width), np.int32, 0)
        self._best = np.full(capacity, np.inf)
        self._best_touched = np.empty(capacity, np.int32)
        self._entry_next = np.full(2 * capacity, -1, np.int32)
        self.capacity = capacity
        self._free.extend(range(capacity - 1, old - 1, -1))

    def _ensure_k(self, k: int) -> None:
        if k > self._k_cap:
            self._k_cap = max(k, 2 * self._k_cap)
            self._out_slot = np.empty(self._k_cap, np.int32)
            self._out_t = np.empty(self._k_cap, np.float64)
            self._out_l = np.empty(self._k_cap, np.float64)

    # ---- units ---------------------------------------------------------------------
    def new_slot(self) -> int:
        if not self._free:
            self._grow_units(2 * self.capacity, self.u_nodes.shape[1])
        slot = self._free.pop()
        self.n_slots = max(self.n_slots, slot + 1)
        return slot

    def set_unit(self, slot: int, sources: list[Seed], *, available: bool, type_bits: int,
                 cap_bits: int, tie_key: int) -> None:
        """Place (or move) a unit: drop its old bucket entries, insert the new ones."""
        if not 1 <= len(sources) <= 2:
            raise ValueError("a unit has one or two sources")
        self._clear_position(slot)
        self.u_avail[slot] = 1 if available else 0
        self.u_type[slot] = type_bits
        self.u_caps[slot] = cap_bits
        self.u_tie[slot] = tie_key
        self.u_nsrc[slot] = len(sources)
        for c, sd in enumerate(sources):
            self.u_src[slot, c] = sd.node
            self.u_src_t[slot, c] = sd.t_ds
            self.u_src_l[slot, c] = sd.length_m
            self.u_edge[slot, c] = sd.edge
            self.u_frac[slot, c] = sd.frac
        if self.use_ch:
            self._insert_buckets(slot)

    def _insert_buckets(self, slot: int) -> None:
        h = self.graph.hierarchy
        assert h is not None
        ns = int(self.u_nsrc[slot])
        src_rank = self._rank[self.u_src[slot, :ns]].astype(np.int32)
        src_t = self.u_src_t[slot, :ns].copy()
        src_l = self.u_src_l[slot, :ns].copy()
        while True:
            self._pool_sj, self._pool_t, self._pool_l, cnt = K.bucket_insert(
                slot, src_rank, src_t, src_l, ns, h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
                h.up_f_length_m, h.up_b_indptr, h.up_b_head, h.up_b_time_ds,
                self._b_start, self._b_len, self._b_cap, self._pool_sj, self._pool_t,
                self._pool_l, self._scal, self.u_cnt, self.u_nodes, self._dist, self._dlen, self._hkey, self._hnode, self._hpos, self._touched,
                self._tmp_node, self._tmp_t, self._tmp_l)
            if cnt >= 0:
                return
            self._grow_units(self.capacity, max(-cnt, 2 * self.u_nodes.shape[1]))

    def _clear_position(self, slot: int) -> None:
        if self.use_ch and self.u_cnt[slot]:
            K.bucket_remove(slot, self._b_start, self._b_len, self._pool_sj, self._pool_t,
                            self._pool_l, self.u_cnt, self.u_nodes)
        self.u_nsrc[slot] = 0
        self.u_edge[slot] = -1

    def set_available(self, slot: int, available: bool) -> None:
        self.u_avail[slot] = 1 if available else 0

    def set_tie(self, slot: int, tie_key: int) -> None:
        self.u_tie[slot] = tie_key

    def remove(self, slot: int) -> None:
        self._clear_position(slot)
        self.u_avail[slot] = 0
        self.u_type[slot] = 0
        self._free.append(slot)

    def bucket_entries(self) -> int:
        return int(self._b_len.sum())

    # ---- queries -------------------------------------------------------------------------
    def nearest(self, seeds: list[Seed], *, k: int, type_mask: int = -1, caps_req: int = 0,
                need_avail: bool = True, use_ch: bool | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """K best units for a point: (slots, eta_ds, length_m), sorted by (ETA, tie key)."""
        if k <= 0 or not seeds:
            return np.empty(0, np.int32), np.empty(0), np.empty(0)
        self._ensure_k(k)
        g = self.graph
        sn = np.array([s.node for s in seeds], np.int32)
        st = np.array([s.t_ds for s in seeds], np.float64)
        sl = np.array([s.length_m for s in seeds], np.float64)
        se = np.array([s.edge for s in seeds], np.int32)
        sf = np.array([s.frac for s in seeds], np.float64)
        ch = self.use_ch if use_ch is None else use_ch
        if ch:
            h = g.hierarchy
            assert h is not None
            cnt = K.ch_nearest_k(
                h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
                h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
                self._b_start, self._b_len, self._pool_sj, self._pool_t, self._pool_l,
                self.u_avail, self.u_type, self.u_caps, self.u_tie, self.u_edge, self.u_frac,
                self.n_slots, self._rank[sn].astype(np.int32), st, sl, se, sf, len(seeds),
                self._edge_time, g.edge_length_m, need_avail, np.int64(type_mask),
                np.int64(caps_req), k, self._dist, self._dlen, self._hkey, self._hnode,
                self._hpos, self._touched, self._best, self._best_touched,
                self._out_slot, self._out_t, self._out_l)
        else:
            cnt = K.dijkstra_nearest_k(
                g.bwd_indptr, g.bwd_tail, g.bwd_edge, self._edge_time, g.edge_length_m,
                self.u_src, self.u_src_t, self.u_src_l, self.u_nsrc, self.u_avail, self.u_type,
                self.u_caps, self.u_tie, self.u_edge, self.u_frac, self.n_slots,
                sn, st, sl, se, sf, len(seeds), need_avail, np.int64(type_mask),
                np.int64(caps_req), k, self._dist, self._dlen, self._hkey, self._hnode,
                self._hpos, self._touched, self._best, self._best_touched,
                self._node_first, self._entry_next, self._out_slot, self._out_t, self._out_l)
        return (self._out_slot[:cnt].copy(), self._out_t[:cnt].copy(), self._out_l[:cnt].copy())

    def nearest_raw(self, seed_rank: np.ndarray, seed_t: np.ndarray, seed_l: np.ndarray,
                    seed_edge: np.ndarray, seed_frac: np.ndarray, k: int, type_mask: int,
                    caps_req: int) -> int:
        """Allocation-free hot path for benchmarks: results stay in out_* buffers."""
        h = self.graph.hierarchy
        assert h is not None
        return K.ch_nearest_k(
            h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
            h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
            self._b_start, self._b_len, self._pool_sj, self._pool_t, self._pool_l,
            self.u_avail, self.u_type, self.u_caps, self.u_tie, self.u_edge, self.u_frac,
            self.n_slots, seed_rank, seed_t, seed_l, seed_edge, seed_frac, seed_rank.size,
            self._edge_time, self.graph.edge_length_m, True, type_mask, caps_req, k,
            self._dist, self._dlen, self._hkey, self._hnode, self._hpos, self._touched,
            self._best, self._best_touched, self._out_slot, self._out_t, self._out_l)

    def table(self, seeds_per_point: list[list[Seed]]) -> tuple[np.ndarray, np.ndarray]:
        """ETA (ds) and length (m) from every slot to every point: arrays [slot, point]."""
        g = self.graph
        n_p = len(seeds_per_point)
        if not self.use_ch:
            t = np.full((self.n_slots, n_p), np.inf)
            ln = np.full((self.n_slots, n_p), np.inf)
            k = max(self.n_slots, 1)
            for q, seeds in enumerate(seeds_per_point):
                slots, et, el = self.nearest(seeds, k=k, need_avail=False)
                t[slots, q] = et
                ln[slots, q] = el
            return t, ln
        h = g.hierarchy
        assert h is not None
        sr = np.full((n_p, 2), -1, np.int32)
        st = np.zeros((n_p, 2))
        sl = np.zeros((n_p, 2))
        se = np.full((n_p, 2), -1, np.int32)
        sf = np.zeros((n_p, 2))
        for q, seeds in enumerate(seeds_per_point):
            for i, s in enumerate(seeds[:2]):
                sr[q, i] = self._rank[s.node]
                st[q, i] = s.t_ds
                sl[q, i] = s.length_m
                se[q, i] = s.edge
                sf[q, i] = s.frac
        out_t = np.empty((self.n_slots, n_p))
        out_l = np.empty((self.n_slots, n_p))
        K.ch_table(h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
                   h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
                   self._b_start, self._b_len, self._pool_sj, self._pool_t, self._pool_l,
                   self.u_edge, self.u_frac, self.n_slots, sr, st, sl, se, sf,
                   self._edge_time, g.edge_length_m, self._dist, self._dlen, self._hkey,
                   self._hnode, self._hpos, self._touched, out_t, out_l)
        return out_t, out_l

    def path(self, slot: int, seeds: list[Seed]) -> tuple[float, float, list[int], Seed | None,
                                                          Seed | None]:
        """Fastest way from a unit to a point: (eta_ds, length_m, edge ids of the full
        edges driven, the unit source used, the seed reached). When the unit is behind
        the point on the point's own edge the path is empty and both seeds are None."""
        g = self.graph
        best = (np.inf, np.inf, [], None, None)
        for c in range(int(self.u_nsrc[slot])):
            e_u, f_u = int(self.u_edge[slot, c]), float(self.u_frac[slot, c])
            for sd in seeds:
                if e_u >= 0 and e_u == sd.edge and f_u <= sd.frac:
                    f = sd.frac - f_u
                    t = f * self._edge_time[e_u]
                    if t < best[0]:
                        best = (t, f * float(g.edge_length_m[e_u]), [], None, None)
        targets = np.array([s.node for s in seeds], np.int64)
        target_t = np.array([s.t_ds for s in seeds], np.float64)
        for c in range(int(self.u_nsrc[slot])):
            src = Seed(int(self.u_src[slot, c]), float(self.u_src_t[slot, c]),
                       float(self.u_src_l[slot, c]), int(self.u_edge[slot, c]),
                       float(self.u_frac[slot, c]))
            t, ti, n_path = K.dijkstra_path(src.node, src.t_ds, g.fwd_indptr, g.fwd_head,
                                            g.edge_tail, self._edge_time, targets, target_t,
                                            self._dist, self._parent, self._hkey, self._hnode,
                                            self._hpos, self._touched, self._path)
            if ti >= 0 and t < best[0]:
                edges = self._path[:n_path].tolist()
                length = src.length_m + float(g.edge_length_m[edges].sum()) + seeds[ti].length_m
                best = (float(t), length, edges, src, seeds[ti])
        return best
