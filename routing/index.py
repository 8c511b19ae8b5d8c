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

import math
import mmap
from dataclasses import dataclass
from typing import Any

import numpy as np

from routing import kernels as K
from routing import route_kernels as RK
from routing.graph import RoadGraph

INITIAL_SEARCH_WIDTH = 256  # bucket entries per unit before the rows are widened


def node_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed array on an anonymous mapping of its own, in 4 KiB pages: a page becomes
    resident when first written, and all go back to the system when the array is freed.
    For the per-node workspaces, the bucket pool and the unit rows, which numpy's memory
    kept resident beyond their use: numpy asks for transparent huge pages on arrays of 4
    MiB and more, and a search writes such a row at scattered nodes or only from its start
    (heaps, a unit's entries), so one write made 2 MiB resident; and once numba has loaded
    its kernels, glibc's (dynamic) mmap threshold is above a MiB, so outgrown rows freed by
    ``_grow_units`` stayed in the heap, resident. NY (benchmarks/routing_bench.py
    two_workers: 500 units, 1,000 queries), the second worker +18.8 -> +13.7 MiB for the 4
    KiB pages alone, +10.1 with the rest (docs/routing.md, "Worker memory"); queries and
    moves as fast (in-process A/B: nearest-5 9.78 before / 9.59 µs, teleports 43.4 / 43.1
    µs). Plain numpy where madvise has no such flag."""
    count = math.prod(shape)
    nbytes = count * np.dtype(dtype).itemsize
    if not hasattr(mmap, "MADV_NOHUGEPAGE") or nbytes < mmap.PAGESIZE:
        return np.zeros(shape, dtype)
    # private: shared anonymous memory is shmem, which fork shares and smaps counts apart
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mm.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mm, dtype, count).reshape(shape)  # the array keeps the mapping


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
        # the arrays below as one numba argument (routing.kernels, "per-worker context"),
        # remade whenever one of them is reallocated; None without a hierarchy
        self._ctx: Any = None
        # its address for the hot calls (routing.kernels, "the context by address"); 0: the
        # context's type is not the one those kernels are built for, pass the context
        self._ctx_a = 0
        # Workspaces packed as rows of a few arrays (the context holds the 2-D arrays);
        # the names are row views.
        self._alloc_ws(max(n, 2 * INITIAL_SEARCH_WIDTH))
        self._seed_i = np.full((2, 2), -1, np.int32)  # rank, edge per seed
        # t_ds, length_m, frac per seed, and its edge's whole time and length
        self._seed_f = np.zeros((5, 2), np.float64)
        self._mv_i = np.full((2, 2), -1, np.int32)  # node, edge per source of a unit move
        # t_ds, length_m, frac per source; row 3: scratch for the kernel (offset bounds)
        self._mv_f = np.zeros((4, 2), np.float64)
        self._node_first: np.ndarray | None = None  # Dijkstra fallback only: made on first use
        self._path_ws: dict[str, np.ndarray] | None = None  # allocated by the first route
        # start, length, capacity of each node's bucket side by side: a move or query
        # touching a node's bucket then misses the cache once, not three times
        self._bk = node_array((n, 3), np.int32)  # int32: 3 MB less per worker on NY
        self._b_start, self._b_len, self._b_cap = self._bk.T
        # the bucket pool (entry's slot and label, time, length) until the context holds it.
        # Room for n entries from the start (node_array: its pages become resident as the
        # pool's end advances): each time a move grows the pool, the kernel copies it and
        # frees the old arrays into the heap, where they stay resident. NY, 500 units: the
        # pool ends at 83,000 entries; from 4,096, grown five times, it cost 2.2 MiB more
        pool_cap = max(4096, n)
        self._pool: tuple[np.ndarray, np.ndarray, np.ndarray] | None = (
            node_array((pool_cap, 2), np.int32), node_array((pool_cap,), np.float64),
            node_array((pool_cap,), np.float64))
        # the pool's end, then the heads of its lists of free regions by size (kernels)
        self._scal = np.full(1 + K.FREE_CLASSES, -1, np.int64)
        self._scal[0] = 0
        self._edge_time = graph.edge_time_ds  # int32, shared (no per-worker float copy)
        self._h_args: tuple[np.ndarray, ...] = ()
        self.capacity = 0
        self.n_slots = 0
        self._free: list[int] = []
        self._grow_units(max(1, capacity), INITIAL_SEARCH_WIDTH)
        self._k_cap = 0
        self._ensure_k(8)
        if h is not None:
            self._rank = h.rank
            # the nearest-K query's arcs (packed per node) and its heap of (key, node): a
            # node improved again is pushed again, so the heap compacts itself when full
            self._q_node, self._q_arc = h.query_layout()
            self._hq = node_array((max(n, 2), 2), np.float64)
            self._h_args = (h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
                            h.up_f_indptr, h.up_f_head, h.up_f_time_ds)
            self._hf_args = (h.up_f_indptr, h.up_f_head, h.up_f_time_ds, h.up_f_length_m,
                             h.up_b_indptr, h.up_b_head, h.up_b_time_ds)
            self._refresh_ctx()

    def _refresh_ctx(self) -> None:
        """(Re)make the kernels' context after an array was reallocated. The bucket pool
        lives in the context once it exists (a move may reallocate it there)."""
        if not self._h_args:
            return
        pool_sj, pool_t, pool_l = self._pools()
        h = self.graph.hierarchy
        assert h is not None
        g = self.graph
        # the graph's arrays read-only whatever their origin (a mapped file's are; one built
        # in memory is not), so the context always has the type the address kernels expect
        ro = {
            "rank": self._rank, "uf_indptr": h.up_f_indptr, "uf_head": h.up_f_head,
            "uf_w": h.up_f_time_ds, "uf_l": h.up_f_length_m, "ub_indptr": h.up_b_indptr,
            "ub_head": h.up_b_head, "ub_w": h.up_b_time_ds, "ub_l": h.up_b_length_m,
            "edge_time": self._edge_time, "edge_len": g.edge_length_m,
            # routes unpack through the middle nodes (files without them: Dijkstra routes)
            "uf_mid": h.up_f_mid if h.up_f_mid is not None else np.empty(0, np.int32),
            "ub_mid": h.up_b_mid if h.up_b_mid is not None else np.empty(0, np.int32),
            "fwd_indptr": g.fwd_indptr, "fwd_head": g.fwd_head, "edge_twin": g.edge_twin,
            "q_node": self._q_node, "q_arc": self._q_arc,
        }
        assert set(ro) == K.CTX_READONLY
        ro = {name: K.read_only(arr) for name, arr in ro.items()}
        self._ctx = K.new_ctx(
            **ro, bk=self._bk, pool_sj=pool_sj, pool_t=pool_t, pool_l=pool_l, scal=self._scal,
            u_i64=self._u_i64, u_edge=self.u_edge, u_pos_f=self._u_pos_f, u_src=self.u_src,
            u_nsrc=self.u_nsrc, u_cnt=self.u_cnt, u_nodes=self.u_nodes, u_dist=self.u_dist,
            seed_i=self._seed_i, seed_f=self._seed_f, mv_i=self._mv_i, mv_f=self._mv_f,
            ws_f=self._ws_f, ws_i=self._ws_i, best=self._best, best_touched=self._best_touched,
            out_slot=self._out_slot, out_f=self._out_f, hq=self._hq)
        self._ctx_a = K.ctx_address(self._ctx) if self._ctx._type == K.CTX_TYPE else 0
        # no reference here: one kept to pools a move has since outgrown kept them alive
        # (1.5 MiB on NY with 500 units from 4,096 entries; the first pool now has n)
        self._pool = None

    @property
    def ctx_address(self) -> int:
        """The kernels' context by address (routing.kernels.ctx_address) for the CH path, 0
        when there is none to use (no hierarchy, use_ch off, or an unexpected type)."""
        return self._ctx_a if self.use_ch else 0

    def _pools(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The bucket pool arrays as they are now."""
        if self._pool is None:
            return K.ctx_pools(self._ctx)  # type: ignore[no-any-return]  # numba
        return self._pool

    # ---- storage -----------------------------------------------------------------
    def _alloc_ws(self, size: int) -> None:
        """Search workspaces of ``size`` >= n columns: the rows tmp_* hold a unit's
        per-source search spaces one after the other, so they need the unit row width
        too (more than n only on tiny graphs)."""
        self._ws_f = node_array((5, size), np.float64)
        self._ws_f[0] = np.inf
        # dlen (row 1) needs no fill: every kernel writes a node's length with its distance
        self._ws_i = node_array((4, size), np.int32)
        self._dist, self._dlen, self._hkey, self._tmp_t, self._tmp_l = self._ws_f
        self._hnode, self._hpos, self._touched, self._tmp_node = self._ws_i
        # hpos (-1 between searches) is filled by the first decrease-key search (_heap_ws):
        # the nearest-K query and the moves use the lazy heap, so most workers never fill it
        self._hpos_ready = False
        if self._ctx is not None:
            self._refresh_ctx()

    def _heap_ws(self) -> None:
        """Make the decrease-key heap's positions ready (Dijkstra fallback, ch_table, routes
        on files without child arcs); the first such search fills them."""
        if not self._hpos_ready:
            self._hpos.fill(-1)
            self._hpos_ready = True

    def _grow_units(self, capacity: int, width: int) -> None:
        old = self.capacity

        def grow(arr: np.ndarray | None, shape: tuple[int, ...], dtype: type, fill: float) -> np.ndarray:
            # node_array: the rows outgrown here go back to the system when freed (the
            # heap kept them, resident: 0.7 MiB on NY with 500 units)
            new = node_array(shape, dtype)
            if fill:
                new.fill(fill)
            if arr is not None:
                new[tuple(slice(0, s) for s in arr.shape)] = arr
            return new

        g = getattr
        # rows: available (0/1), type bits, capability bits, tie key
        self._u_i64 = grow(g(self, "_u_i64", None), (4, capacity), np.int64, 0)
        self.u_avail, self.u_type, self.u_caps, self.u_tie = self._u_i64
        self.u_edge = grow(g(self, "u_edge", None), (capacity, 2), np.int32, -1)
        # rows: frac, time and length offset to reach each of the two sources. The offsets
        # are added when a query reads a bucket entry (entries hold distances from the
        # source node itself), so a move that keeps its source nodes writes only these.
        # Row 3, per source label, kept by the move kernel: the offset bound the other
        # label's entries were pruned with (routing.kernels.bucket_move).
        self._u_pos_f = grow(g(self, "_u_pos_f", None), (4, capacity, 2), np.float64, 0.0)
        self.u_frac, self.u_src_t, self.u_src_l, self.u_bnd = self._u_pos_f
        self.u_src = grow(g(self, "u_src", None), (capacity, 2), np.int32, 0)
        self.u_nsrc = grow(g(self, "u_nsrc", None), (capacity,), np.int32, 0)
        self.u_cnt = grow(g(self, "u_cnt", None), (capacity,), np.int64, 0)
        self.u_nodes = grow(g(self, "u_nodes", None), (capacity, width), np.int32, 0)
        # each entry's distance, to find it again by binary search in its sorted bucket
        self.u_dist = grow(g(self, "u_dist", None), (capacity, width), np.float64, 0.0)
        self._best = np.full(capacity, np.inf)
        self._best_touched = np.empty(capacity, np.int32)
        self._entry_next = np.full(2 * capacity, -1, np.int32)
        self.capacity = capacity
        self._free.extend(range(capacity - 1, old - 1, -1))
        if self._ctx is not None:
            self._refresh_ctx()

    def _ensure_k(self, k: int) -> None:
        if k > self._k_cap:
            self._k_cap = max(k, 2 * self._k_cap)
            self._out_slot = np.empty(self._k_cap, np.int32)
            # eta, length, and the meeting node the query completes each length from
            self._out_f = np.empty((3, self._k_cap), np.float64)
            self._out_t, self._out_l = self._out_f[0], self._out_f[1]
            if self._ctx is not None:
                self._refresh_ctx()

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
        u = self._u_i64
        u[0, slot] = 1 if available else 0
        u[1, slot] = type_bits
        u[2, slot] = cap_bits
        u[3, slot] = tie_key
        ns = len(sources)
        if not self.use_ch:
            self._clear_position(slot)
            for c in range(2):
                if c < ns:
                    sd = sources[c]
                    self.u_src[slot, c] = sd.node
                    self.u_edge[slot, c] = sd.edge
                    self.u_src_t[slot, c] = sd.t_ds
                    self.u_src_l[slot, c] = sd.length_m
                    self.u_frac[slot, c] = sd.frac
                else:
                    self.u_src[slot, c] = 0
                    self.u_edge[slot, c] = -1
                    self.u_src_t[slot, c] = 0.0
                    self.u_src_l[slot, c] = 0.0
                    self.u_frac[slot, c] = 0.0
            self.u_nsrc[slot] = ns
            return
        a = sources[0]
        b = sources[1] if ns == 2 else a
        while True:
            # Python scalars only: one numba specialisation (see _nearest_ch)
            args = (slot, ns, int(a.node), int(a.edge), float(a.t_ds), float(a.length_m),
                    float(a.frac), int(b.node), int(b.edge), float(b.t_ds), float(b.length_m),
                    float(b.frac))
            cnt = (K.a_move(self._ctx_a, *args) if self._ctx_a
                   else K.ctx_move(self._ctx, *args))
            if cnt >= 0:
                return
            self._widen(-cnt)

    def move(self, slot: int, *, node: int = -1, edge: int = -1, frac: float = 0.0) -> None:
        """Move a placed unit to a node, or to ``edge`` at ``frac`` (its sources as
        unit_sources gives them); availability, type and capabilities stay. The AVL path:
        one kernel call with the hierarchy (sources built in the kernel)."""
        if not self.use_ch:
            srcs = [Seed(node, 0.0, 0.0)] if edge < 0 else unit_sources(self.graph, edge, frac)
            u = self._u_i64
            self.set_unit(slot, srcs, available=bool(u[0, slot]), type_bits=int(u[1, slot]),
                          cap_bits=int(u[2, slot]), tie_key=int(u[3, slot]))
            return
        while True:
            if edge >= 0:
                cnt = (K.a_move_edge(self._ctx_a, slot, int(edge), float(frac)) if self._ctx_a
                       else K.ctx_move_edge(self._ctx, slot, int(edge), float(frac)))
            else:
                n_ = int(node)
                args = (slot, 1, n_, -1, 0.0, 0.0, 0.0, n_, -1, 0.0, 0.0, 0.0)
                cnt = (K.a_move(self._ctx_a, *args) if self._ctx_a
                       else K.ctx_move(self._ctx, *args))
            if cnt >= 0:
                return
            self._widen(-cnt)

    def move_edge(self, slot: int, edge: int, frac: float) -> None:
        """move(slot, edge=edge, frac=frac) for Python ``int``/``float`` arguments (the
        service's AVL path: one kernel call, nothing converted)."""
        if self.use_ch and self._ctx_a:
            if K.a_move_edge(self._ctx_a, slot, edge, frac) < 0:
                self.move(slot, edge=edge, frac=frac)
        elif not self.use_ch or K.ctx_move_edge(self._ctx, slot, edge, frac) < 0:
            self.move(slot, edge=edge, frac=frac)

    def _widen(self, need: int) -> None:
        """Unit rows (and the search workspaces) wide enough for ``need`` entries."""
        width = max(need, 2 * self.u_nodes.shape[1])
        self._grow_units(self.capacity, width)
        if self._ws_f.shape[1] < width:
            self._alloc_ws(width)

    def _clear_position(self, slot: int) -> None:
        if self.use_ch and self.u_cnt[slot]:
            sj, t, ln = self._pools()
            K.bucket_remove(slot, self._b_start, self._b_len, self._b_cap, sj, t, ln, self._scal,
                            self.u_cnt, self.u_nodes, self.u_dist)
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
        return int(K.bucket_live_entries(self._b_start, self._b_len, self._pools()[0]))

    # ---- queries -------------------------------------------------------------------------
    def nearest(self, seeds: list[Seed], *, k: int, type_mask: int = -1, caps_req: int = 0,
                need_avail: bool = True, use_ch: bool | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """K best units for a point: (slots, eta_ds, length_m), sorted by (ETA, tie key)."""
        if k <= 0 or not seeds:
            return np.empty(0, np.int32), np.empty(0), np.empty(0)
        self._ensure_k(k)
        g = self.graph
        ch = self.use_ch if use_ch is None else use_ch
        if ch:
            n_seeds = len(seeds)
            if n_seeds > 2:
                raise ValueError("a point has one or two seeds")
            s0 = seeds[0]
            s1 = seeds[1] if n_seeds == 2 else s0
            rank = self._rank
            cnt = self._nearest_ch(s0, int(rank[s0.node]), s1, int(rank[s1.node]), n_seeds, k,
                                   type_mask, caps_req, need_avail)
            return (self._out_slot[:cnt].copy(), self._out_t[:cnt].copy(),
                    self._out_l[:cnt].copy())
        sn = np.array([s.node for s in seeds], np.int32)
        st = np.array([s.t_ds for s in seeds], np.float64)
        sl = np.array([s.length_m for s in seeds], np.float64)
        se = np.array([s.edge for s in seeds], np.int32)
        sf_ = np.array([s.frac for s in seeds], np.float64)
        s_et = np.array([g.edge_time_ds[s.edge] if s.edge >= 0 else 0 for s in seeds], np.float64)
        s_el = np.array([g.edge_length_m[s.edge] if s.edge >= 0 else 0 for s in seeds], np.float64)
        self._heap_ws()
        cnt = K.dijkstra_nearest_k(
            g.bwd_indptr, g.bwd_tail, g.bwd_edge, self._edge_time, g.edge_length_m,
            self.u_src, self.u_src_t, self.u_src_l, self.u_nsrc, self.u_avail, self.u_type,
            self.u_caps, self.u_tie, self.u_edge, self.u_frac, self.n_slots,
            sn, st, sl, se, sf_, len(seeds), s_et, s_el, need_avail, np.int64(type_mask),
            np.int64(caps_req), k, self._dist, self._dlen, self._hkey, self._hnode,
            self._hpos, self._touched, self._best, self._best_touched,
            self._fallback_heads(), self._entry_next, self._out_slot, self._out_t, self._out_l)
        return (self._out_slot[:cnt].copy(), self._out_t[:cnt].copy(), self._out_l[:cnt].copy())

    def _fallback_heads(self) -> np.ndarray:
        """Per-node list heads of the Dijkstra fallback (all -1 between queries)."""
        if self._node_first is None:
            self._node_first = node_array((self.graph.n_nodes,), np.int32)
            self._node_first.fill(-1)
        return self._node_first

    def _nearest_ch(self, s0: Seed, r0: int, s1: Seed, r1: int, n_seeds: int, k: int,
                    type_mask: int, caps_req: int, need_avail: bool) -> int:
        """The CH query from one or two seeds (r*: their hierarchy ids; with one seed, s1 is
        ignored); results in out_*. Every scalar is converted to its Python type: numba
        compiles one specialisation per argument type, and numpy scalars would add more."""
        args = (r0, int(s0.edge), float(s0.t_ds), float(s0.length_m), float(s0.frac), r1,
                int(s1.edge), float(s1.t_ds), float(s1.length_m), float(s1.frac), n_seeds,
                self.n_slots, k, int(type_mask), int(caps_req), bool(need_avail))
        if self._ctx_a:
            return int(K.a_nearest(self._ctx_a, *args))
        return int(K.ctx_nearest(self._ctx, *args))

    def nearest_raw(self, seed_rank: int, k: int) -> int:
        """Allocation-free hot path for benchmarks: the query from one node (hierarchy id
        ``seed_rank``), any type, available units only; results stay in out_* buffers
        (``k`` must not exceed the capacity set by ``_ensure_k``)."""
        if self._ctx_a:
            return K.a_nearest1(self._ctx_a, seed_rank, self.n_slots, k)  # type: ignore[no-any-return]  # numba
        return int(K.ctx_nearest1(self._ctx, seed_rank, self.n_slots, k))

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
        self._heap_ws()
        K.ch_table(h.up_b_indptr, h.up_b_head, h.up_b_time_ds, h.up_b_length_m,
                   h.up_f_indptr, h.up_f_head, h.up_f_time_ds,
                   self._b_start, self._b_len, *self._pools(),
                   self.u_edge, self.u_frac, self.u_src_t, self.u_src_l, self.n_slots, sr, st, sl, se, sf,
                   self._edge_time, g.edge_length_m, self._dist, self._dlen, self._hkey,
                   self._hnode, self._hpos, self._touched, out_t, out_l)
        return out_t, out_l

    def path(self, slot: int, seeds: list[Seed]) -> tuple[float, float, np.ndarray, Seed | None,
                                                          Seed | None]:
        """Fastest way from a unit to a point (one or two seeds): (eta_ds, length_m, edge
        ids of the full edges driven (int64 array), the unit source used, the seed reached).
        When the unit is behind the point on the point's own edge the path is empty and
        both seeds are None."""
        return self._path(slot, seeds, None)[:5]

    def route_line(self, slot: int, seeds: list[Seed], x0: float, y0: float, x1: float,
                   y1: float) -> tuple[float, float, np.ndarray]:
        """path() as the console draws it: (eta_ds, length_m, points), the points a (k, 2)
        lon/lat array, possibly a view of a workspace (valid until the next route of this
        index): (x0, y0), the source node, the head of every driven edge, (x1, y1), a point
        equal to the one before dropped. No points when the point cannot be reached."""
        t, length, edges, src, _seed, xy = self._path(slot, seeds, (x0, y0, x1, y1))
        if xy is None:
            if not math.isfinite(t):
                return t, length, np.empty((0, 2))
            g = self.graph
            xy = np.empty((len(edges) + 3, 2))
            k = RK.route_polyline(edges, len(edges), -1 if src is None else src.node, g.fwd_head,
                                  g.node_lon, g.node_lat, x0, y0, x1, y1, xy)
            xy = xy[:k]
        return t, length, xy

    def _path(self, slot: int, seeds: list[Seed], ends: tuple[float, float, float, float] | None
              ) -> tuple[float, float, np.ndarray, Seed | None, Seed | None, np.ndarray | None]:
        """path(), and with ``ends`` the polyline (route_line) when the route kernel drew
        it (else None: the caller draws it from the edges). With the polyline the other
        parts are not made (no edges, no seeds): route_line does not use them."""
        g = self.graph
        no_edges = np.empty(0, np.int64)
        best: tuple[float, float, np.ndarray, Seed | None, Seed | None] = (
            np.inf, np.inf, no_edges, None, None)
        n_seeds = len(seeds)
        if not 1 <= n_seeds <= 2:
            raise ValueError("a point has one or two seeds")
        if seeds[0].edge >= 0 or seeds[-1].edge >= 0:  # a point on an edge: the unit's too?
            for c in range(int(self.u_nsrc[slot])):
                e_u, f_u = int(self.u_edge[slot, c]), float(self.u_frac[slot, c])
                for sd in seeds:
                    if e_u >= 0 and e_u == sd.edge and f_u <= sd.frac:
                        f = sd.frac - f_u
                        t = f * self._edge_time[e_u]
                        if t < best[0]:
                            best = (t, f * float(g.edge_length_m[e_u]), no_edges, None, None)
        ws = self._route_ws()
        h = g.hierarchy
        if self.use_ch and h is not None and h.can_unpack:
            s0 = seeds[0]
            s1 = seeds[1] if n_seeds == 2 else s0
            rank = self._rank
            # Python scalars only: one numba specialisation (see _nearest_ch)
            if h.up_f_down is not None and h.up_b_down is not None:  # child arcs: no arc lookups
                xy = ws["xy"] if ends is not None else ws["no_xy"]
                x0, y0, x1, y1 = ends if ends is not None else (0.0, 0.0, 0.0, 0.0)
                t, si, qi, n_e, metres, k = RK.ctx_route(
                    self._ctx, slot, int(rank[s0.node]), float(s0.t_ds), int(rank[s1.node]),
                    float(s1.t_ds), n_seeds, h.up_f_down, h.up_b_down, ws["dist_b"], ws["hq_b"],
                    ws["pw"], ws["rstack"], ws["edges"], g.node_lon, g.node_lat, x0, y0, x1, y1,
                    xy)
                if si >= 0 and t < best[0]:
                    length = float(self.u_src_l[slot, si]) + metres + seeds[qi].length_m
                    if k:  # route_line wants the points only
                        return float(t), length, no_edges, None, None, xy[:k]
                    return (float(t), length, ws["edges"][:n_e].copy(), self._source(slot, si),
                            seeds[qi], None)
            else:
                self._heap_ws()
                t, si, qi, n_e, metres = K.ctx_path(
                    self._ctx, slot, int(rank[s0.node]), float(s0.t_ds), int(rank[s1.node]),
                    float(s1.t_ds), n_seeds, ws["dist_b"], ws["pw"], ws["stack"], ws["edges"])
                if si >= 0 and t < best[0]:
                    length = float(self.u_src_l[slot, si]) + metres + seeds[qi].length_m
                    best = (float(t), length, ws["edges"][:n_e].copy(), self._source(slot, si),
                            seeds[qi])
            if si != -2:
                return best + (None,)
            # si == -2: the hierarchy could not be unpacked (never expected): Dijkstra below
        targets = np.array([s.node for s in seeds], np.int64)
        target_t = np.array([s.t_ds for s in seeds], np.float64)
        self._heap_ws()
        if "parent" not in ws:  # -1 between searches; only this fallback uses it
            ws["parent"] = node_array((self.graph.n_nodes,), np.int64)
            ws["parent"].fill(-1)
        for c in range(int(self.u_nsrc[slot])):
            src_seed = self._source(slot, c)
            t, ti, n_path = K.dijkstra_path(src_seed.node, src_seed.t_ds, g.fwd_indptr,
                                            g.fwd_head, g.edge_tail, self._edge_time, targets,
                                            target_t, self._dist, ws["parent"], self._hkey,
                                            self._hnode, self._hpos, self._touched, ws["edges"])
            if ti >= 0 and t < best[0]:
                edges = ws["edges"][:n_path].copy()
                length = (src_seed.length_m + float(g.edge_length_m[edges].sum())
                          + seeds[ti].length_m)
                best = (float(t), length, edges, src_seed, seeds[ti])
        return best + (None,)

    def _source(self, slot: int, c: int) -> Seed:
        return Seed(int(self.u_src[slot, c]), float(self.u_src_t[slot, c]),
                    float(self.u_src_l[slot, c]), int(self.u_edge[slot, c]),
                    float(self.u_frac[slot, c]))

    def _route_ws(self) -> dict[str, np.ndarray]:
        """Workspaces of route queries, made by the first one (most workers never draw a
        route, and the arrays are a few MB on a city graph)."""
        if self._path_ws is None:
            n = self.graph.n_nodes
            h = self.graph.hierarchy
            child = h is not None and h.has_child_arcs
            # pw rows: touched_b, par_f, par_b, then arc_f, arc_b (route_kernels.ctx_route)
            # or nodes, ch_node (kernels.ctx_path, files without child arcs)
            # node_array: most rows are written at a route's nodes only, or from their start
            ws: dict[str, np.ndarray] = {
                "dist_b": node_array((n,), np.float64), "pw": node_array((5, n), np.int32),
                "edges": node_array((n,), np.int64),
                # a route's points (route_line); no_xy: none wanted (same array layout)
                "xy": node_array((n + 3, 2), np.float64), "no_xy": np.empty((0, 2)),
            }
            ws["dist_b"].fill(np.inf)
            if child:
                ws["rstack"] = node_array((n + 64,), np.int32)
                ws["hq_b"] = node_array((max(n, 2), 2), np.float64)  # the backward search's heap
            else:
                ws["stack"] = node_array((n + 2, 3), np.int32)
                if h is not None:
                    ws["pw"][4, h.rank] = np.arange(n, dtype=np.int32)
            self._path_ws = ws
        return self._path_ws
