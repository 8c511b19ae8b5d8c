"""Validation of a graph file's arrays before anything uses them.

The kernels trust their arrays (numba does no bounds checks): a head index past the
node count reads or writes outside a workspace (a segmentation fault, or a wrong
answer), a negative travel time makes every ETA through that edge too small. So a file
is checked on load, whole: ranges and weights with numpy reductions, the agreement
between arrays in one numba pass (no temporaries; numpy gathers took 28 ms on NY):

* every required array is present, one-dimensional, of its dtype and length;
* CSR row pointers start at 0, never decrease, and end at their arc count;
* every node / edge / rank / segment index is within its range, and the arrays that
  repeat each other agree (``edge_tail`` with the row pointers, the backward CSR with
  the forward one, twins with their arcs, the external-id index with the ids);
* weights are finite and non-negative (travel times at least 1 decisecond);
* the hierarchy's ``rank`` is a permutation.

What these checks cannot see (a shortcut whose stored time is not its path's, a middle
node that is in range but wrong) is covered by the file's checksum (routing.graph).
Each check raises :class:`GraphFileError` naming the file, the array and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from routing.errors import GraphFileError

# Raised whenever the checks below change: stamps of files checked by older code are void
# (routing.graph, RoadGraph.load).
CHECKS_VERSION = 1
# the longest upward row graph.query_layout encodes (kernels.PAR_SHIFT)
MAX_QUERY_ROW = 1 << 21

_SNAP_ARRAYS = ("seg_edge", "x0", "y0", "x1", "y1", "cell_start", "cell_items")
_SNAP_PARAMS = ("cell_m", "kx", "ky", "lon0", "lat0", "nx", "ny")


class _Checker:
    def __init__(self, path: str | Path, raw: Mapping[str, np.ndarray]):
        self.path = path
        self.raw = raw

    def fail(self, problem: str) -> GraphFileError:
        return GraphFileError(self.path, problem)

    def get(self, name: str, dtype: Any, size: int | None = None) -> np.ndarray:
        a = self.raw.get(name)
        if a is None:
            raise self.fail(f"array {name} is missing")
        if a.dtype != np.dtype(dtype):
            raise self.fail(f"array {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
        if a.ndim != 1:
            raise self.fail(f"array {name} has shape {a.shape}, expected one dimension")
        if size is not None and a.size != size:
            raise self.fail(f"array {name} has {a.size} entries, expected {size}")
        return a

    def in_range(self, name: str, a: np.ndarray, lo: int, hi: int) -> None:
        """Every value within [lo, hi)."""
        if a.size and (int(a.min()) < lo or int(a.max()) >= hi):
            bad = int(a[(a < lo) | (a >= hi)][0])
            raise self.fail(f"array {name} holds {bad}, outside [{lo}, {hi})")

    def finite_non_negative(self, name: str, a: np.ndarray) -> None:
        if a.size and not (np.isfinite(a).all() and float(a.min()) >= 0.0):
            bad = a[~np.isfinite(a) | (a < 0)][0]
            raise self.fail(f"array {name} holds {bad}: weights must be finite and non-negative")

    def times(self, name: str, a: np.ndarray) -> None:
        if a.size and int(a.min()) < 1:
            raise self.fail(f"array {name} holds {int(a.min())}: travel times must be at least "
                            "1 decisecond")

    def indptr(self, name: str, a: np.ndarray, total: int) -> None:
        if a[0] != 0 or a[-1] != total:
            raise self.fail(f"array {name} runs from {int(a[0])} to {int(a[-1])}, expected 0 to {total}")
        if a.size > 1 and (np.diff(a) < 0).any():
            raise self.fail(f"array {name} decreases")


def check_members(path: str | Path, raw: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                  graph_dtypes: Mapping[str, Any], ch_dtypes: Mapping[str, Any],
                  ch_optional: Mapping[str, Any]) -> None:
    """Raise GraphFileError unless ``raw`` (arrays by file member name) is a consistent
    graph. ``meta`` supplies ``class_names``, ``street_names`` and ``snap_params``."""
    c = _Checker(path, raw)
    n = c.get("node_lat", graph_dtypes["node_lat"]).size
    if n == 0:
        raise c.fail("the graph has no nodes")
    lat = c.get("node_lat", graph_dtypes["node_lat"])
    lon = c.get("node_lon", graph_dtypes["node_lon"], n)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or np.abs(lat).max() > 90 \
            or np.abs(lon).max() > 180:
        raise c.fail("node coordinates are not finite lat/lon")
    ext = c.get("node_ext_id", graph_dtypes["node_ext_id"], n)
    fwd_head = c.get("fwd_head", graph_dtypes["fwd_head"])
    m = fwd_head.size
    fwd_indptr = c.get("fwd_indptr", graph_dtypes["fwd_indptr"], n + 1)
    c.indptr("fwd_indptr", fwd_indptr, m)
    c.in_range("fwd_head", fwd_head, 0, n)
    tail = c.get("edge_tail", graph_dtypes["edge_tail"], m)
    c.times("edge_time_ds", c.get("edge_time_ds", graph_dtypes["edge_time_ds"], m))
    c.finite_non_negative("edge_length_m", c.get("edge_length_m", graph_dtypes["edge_length_m"], m))
    n_classes = len(meta.get("class_names") or ())
    c.in_range("edge_class", c.get("edge_class", graph_dtypes["edge_class"], m), 0, max(n_classes, 1))
    c.get("edge_way_id", graph_dtypes["edge_way_id"], m)
    twin = c.get("edge_twin", graph_dtypes["edge_twin"], m)
    c.in_range("edge_twin", twin, -1, m)
    bwd_indptr = c.get("bwd_indptr", graph_dtypes["bwd_indptr"], n + 1)
    c.indptr("bwd_indptr", bwd_indptr, m)
    bwd_tail = c.get("bwd_tail", graph_dtypes["bwd_tail"], m)
    bwd_edge = c.get("bwd_edge", graph_dtypes["bwd_edge"], m)
    c.in_range("bwd_tail", bwd_tail, 0, n)
    c.in_range("bwd_edge", bwd_edge, 0, m)
    # every index is in range now: the pass below reads nothing out of bounds
    problem = _csr_agreement(fwd_indptr, fwd_head, tail, twin, bwd_indptr, bwd_tail, bwd_edge)
    if problem:
        raise c.fail(("array edge_tail disagrees with fwd_indptr",
                      "array edge_twin pairs arcs that are not each other's reverse",
                      "the backward CSR (bwd_*) disagrees with the forward one")[problem - 1])
    if "edge_name" in raw:
        c.in_range("edge_name", c.get("edge_name", np.int32, m), -1,
                   max(len(meta.get("street_names") or ()), 0))
    if "ext_order" in raw or "sorted_ext" in raw:
        order = c.get("ext_order", raw["ext_order"].dtype if "ext_order" in raw else np.int64, n)
        if order.dtype.kind not in "iu":
            raise c.fail(f"array ext_order has dtype {order.dtype}, expected integers")
        c.in_range("ext_order", order, 0, n)
        sorted_ext = c.get("sorted_ext", ext.dtype, n)
        if not _ext_index_agrees(ext, order.astype(np.int64, copy=False), sorted_ext):
            raise c.fail("the external-id index (ext_order, sorted_ext) disagrees with node_ext_id")
    if any(name.startswith("ch_") for name in raw):
        _check_hierarchy(c, n, m, ch_dtypes, ch_optional)
    if "snap_params" in meta or any(name.startswith("snap_") for name in raw):
        _check_snap(c, m, meta.get("snap_params"))


def _check_hierarchy(c: _Checker, n: int, m: int, ch_dtypes: Mapping[str, Any],
                     ch_optional: Mapping[str, Any]) -> None:
    rank = c.get("ch_rank", ch_dtypes["rank"], n)
    c.in_range("ch_rank", rank, 0, n)
    if not _is_permutation(rank):
        raise c.fail("array ch_rank is not a permutation of the nodes")
    for side in ("f", "b"):
        head = c.get(f"ch_up_{side}_head", ch_dtypes[f"up_{side}_head"])
        arcs = head.size
        c.indptr(f"ch_up_{side}_indptr", c.get(f"ch_up_{side}_indptr", ch_dtypes[f"up_{side}_indptr"],
                                               n + 1), arcs)
        c.in_range(f"ch_up_{side}_head", head, 0, n)
        c.times(f"ch_up_{side}_time_ds", c.get(f"ch_up_{side}_time_ds", ch_dtypes[f"up_{side}_time_ds"],
                                               arcs))
        c.finite_non_negative(f"ch_up_{side}_length_m",
                              c.get(f"ch_up_{side}_length_m", ch_dtypes[f"up_{side}_length_m"], arcs))
        mid_name = f"ch_up_{side}_mid"
        if mid_name in c.raw:
            # a middle node, or -2 - edge id for an original arc (-1: unknown edge)
            c.in_range(mid_name, c.get(mid_name, ch_optional[f"up_{side}_mid"], arcs), -1 - m, n)
    downs = ("ch_up_f_down", "ch_up_b_down")
    if any(name in c.raw for name in downs):
        # child arcs (routing.route_kernels): per arc, the first half (a backward arc) or
        # -1 - edge id, then the second half (a forward arc) or -1. In range is what the
        # route kernel needs to stay in bounds (its walk is bounded by its workspaces);
        # that the halves are the right ones is the CRC's job, as for middle nodes
        # (route_kernels.check_down verifies it in full, for the tests and tools).
        nf = c.raw["ch_up_f_head"].size
        nb = c.raw["ch_up_b_head"].size
        for side, arcs in (("f", nf), ("b", nb)):
            name = f"ch_up_{side}_down"
            down = c.get(name, ch_optional[f"up_{side}_down"], 2 * arcs)
            c.in_range(name, down[0::2], -m, nb)
            c.in_range(name, down[1::2], -1, nf)
    if "ch_q_node" in c.raw or "ch_q_arc" in c.raw:
        _check_query_layout(c, n, ch_optional)


def _check_query_layout(c: _Checker, n: int, ch_optional: Mapping[str, Any]) -> None:
    """The packed query layout (graph.query_layout): its blocks are the upward rows, in
    order, with their arc counts; heads in range; times at least 1 ds. (That the pairs repeat
    the CSR arrays' heads and times is the checksum's to confirm.)"""
    deg_f = np.diff(c.raw["ch_up_f_indptr"])
    deg_b = np.diff(c.raw["ch_up_b_indptr"])
    total = int(deg_f.sum() + deg_b.sum())
    q_node = c.get("ch_q_node", ch_optional["q_node"], 2 * n + 2)
    q_arc = c.get("ch_q_arc", ch_optional["q_arc"], 2 * total)
    widths = np.empty(2 * n + 1, np.int64)
    widths[0:2 * n:2] = deg_f
    widths[1:2 * n:2] = deg_b
    widths[2 * n] = 0
    if q_node[0] != 0 or q_node[-1] != total or not np.array_equal(np.diff(q_node), widths):
        raise c.fail("array ch_q_node does not match the upward rows (ch_up_f_indptr, "
                     "ch_up_b_indptr)")
    if n and max(int(deg_f.max()), int(deg_b.max())) >= MAX_QUERY_ROW:
        raise c.fail(f"an upward row has more than {MAX_QUERY_ROW - 1} arcs, more than the "
                     "query layout encodes")
    c.in_range("ch_q_arc (heads)", q_arc[0::2], 0, n)
    c.times("ch_q_arc (times)", q_arc[1::2])


def _check_snap(c: _Checker, m: int, params: Any) -> None:
    if not isinstance(params, dict) or any(p not in params for p in _SNAP_PARAMS):
        raise c.fail("the snapping grid's parameters (snap_params) are missing or incomplete")
    for p in _SNAP_PARAMS:
        v = params[p]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise c.fail(f"snapping grid parameter {p} is {v!r}, not a finite number")
    if params["cell_m"] <= 0 or params["kx"] <= 0 or params["ky"] <= 0:
        raise c.fail("snapping grid parameters cell_m, kx, ky must be positive")
    nx, ny = params["nx"], params["ny"]
    if not (isinstance(nx, int) and isinstance(ny, int) and nx >= 1 and ny >= 1):
        raise c.fail(f"snapping grid size {nx!r} x {ny!r} is not a positive whole number of cells")
    seg = c.get("snap_seg_edge", np.int32)
    c.in_range("snap_seg_edge", seg, 0, m)
    if seg.size == 0 and m:
        raise c.fail("the snapping grid holds no road segments")
    for name in ("x0", "y0", "x1", "y1"):
        a = c.get("snap_" + name, np.float64, seg.size)
        if not np.isfinite(a).all():
            raise c.fail(f"array snap_{name} holds non-finite coordinates")
    items = c.get("snap_cell_items", c.raw["snap_cell_items"].dtype if "snap_cell_items" in c.raw
                  else np.int32)
    start = c.get("snap_cell_start", c.raw["snap_cell_start"].dtype if "snap_cell_start" in c.raw
                  else np.int64, nx * ny + 1)
    if items.dtype.kind not in "iu" or start.dtype.kind not in "iu":
        raise c.fail("the snapping grid's cell arrays are not integers")
    c.indptr("snap_cell_start", start, items.size)
    c.in_range("snap_cell_items", items, 0, seg.size)


# numba kernels: typed by numba from the arguments (see docs/routing.md, "Why numba")
@njit(cache=True)
def _csr_agreement(fwd_indptr, fwd_head, tail, twin, bwd_indptr, bwd_tail, bwd_edge):  # type: ignore[no-untyped-def]  # numba kernel
    """0 when edge_tail matches the row pointers, twins are each other's reverse and the
    backward CSR lists every forward arc at its head; else 1, 2 or 3 (which failed)."""
    n = fwd_indptr.shape[0] - 1
    for v in range(n):
        for e in range(fwd_indptr[v], fwd_indptr[v + 1]):
            if tail[e] != v:
                return 1
    for v in range(n):
        for e in range(fwd_indptr[v], fwd_indptr[v + 1]):
            t = twin[e]
            if t >= 0 and (tail[t] != fwd_head[e] or fwd_head[t] != v):
                return 2
    for v in range(n):
        for a in range(bwd_indptr[v], bwd_indptr[v + 1]):
            e = bwd_edge[a]
            if tail[e] != bwd_tail[a] or fwd_head[e] != v:
                return 3
    return 0


@njit(cache=True)
def _ext_index_agrees(ext, order, sorted_ext):  # type: ignore[no-untyped-def]  # numba kernel
    for i in range(order.shape[0]):
        if ext[order[i]] != sorted_ext[i] or (i > 0 and sorted_ext[i] < sorted_ext[i - 1]):
            return False
    return True


@njit(cache=True)
def _is_permutation(a):  # type: ignore[no-untyped-def]  # numba kernel
    seen = np.zeros(a.shape[0], np.bool_)
    for i in range(a.shape[0]):
        if seen[a[i]]:
            return False
        seen[a[i]] = True
    return True
