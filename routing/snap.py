"""Snapping lat/lon points to the nearest drivable edge (vectorised, numba).

Coordinates are projected to a local equirectangular plane in metres (accurate to
well under 1 % over a city or a county), segments go into a uniform grid, and each
point searches rings of cells outward until no closer segment can exist. Each
road segment is indexed once; for a two-way street the twin arc is reported too,
so the caller can seed both travel directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from numba import njit, types
from numba.experimental import structref

from routing import kernels as K
from routing.build import EARTH_RADIUS_M
from routing.graph import RoadGraph

# Grid cell edge, tuned on SF TIGER and NY: 3-10 segments per occupied cell.
CELL_M = 150.0


@dataclass(frozen=True)
class SnapResult:
    """Per point: ``edge`` (tail->head arc id), ``frac`` along it (0 at the tail),
    ``twin`` (head->tail arc id or -1 on one-ways), ``distance_m`` from the point to
    the road, ``to_tail_s``/``to_head_s`` travel-time offsets from the snapped position
    back to the edge's tail and on to its head, ``beyond_limit`` when the road is
    farther than the snapper's limit."""

    edge: np.ndarray
    frac: np.ndarray
    twin: np.ndarray
    distance_m: np.ndarray
    to_tail_s: np.ndarray
    to_head_s: np.ndarray
    beyond_limit: np.ndarray

    def __len__(self) -> int:
        return int(self.edge.size)


@njit(cache=True)
def _build_grid(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, nx: int, ny: int,
                cell: float, n_seg: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(nx * ny + 1, np.int64)
    for pas in range(2):
        if pas == 1:
            for i in range(nx * ny):
                counts[i + 1] += counts[i]
            fill = counts[:-1].copy()
            items = np.empty(counts[nx * ny], np.int32)
        for s in range(n_seg):
            cx0 = int(min(x0[s], x1[s]) / cell)
            cx1 = int(max(x0[s], x1[s]) / cell)
            cy0 = int(min(y0[s], y1[s]) / cell)
            cy1 = int(max(y0[s], y1[s]) / cell)
            for cy in range(max(cy0, 0), min(cy1, ny - 1) + 1):
                for cx in range(max(cx0, 0), min(cx1, nx - 1) + 1):
                    c = cy * nx + cx
                    if pas == 0:
                        counts[c + 1] += 1
                    else:
                        items[fill[c]] = s
                        fill[c] += 1
    return counts, items


@njit(cache=True, inline="always")
def _seg_dist2(px: float, py: float, ax: float, ay: float, bx: float, by: float
               ) -> tuple[float, float]:
    dx = bx - ax
    dy = by - ay
    L2 = dx * dx + dy * dy
    t = 0.0
    if L2 > 0.0:
        t = ((px - ax) * dx + (py - ay) * dy) / L2
        t = min(1.0, max(0.0, t))
    qx = ax + t * dx - px
    qy = ay + t * dy - py
    return qx * qx + qy * qy, t


@njit(cache=True, inline="always")
def _snap_xy(px: float, py: float, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
             y1: np.ndarray, cell_start: np.ndarray, cell_items: np.ndarray, nx: int, ny: int,
             cell: float) -> tuple[int, float, float]:
    """The nearest segment to one projected point: (segment, fraction, squared distance)."""
    n_seg = x0.shape[0]
    best = np.inf
    bs = -1
    bt = 0.0
    cx = math.floor(px / cell)  # an int64 in numba as in Python
    cy = math.floor(py / cell)
    inside = 0 <= cx < nx and 0 <= cy < ny
    if inside:
        r = 0
        while True:
            for yy in range(cy - r, cy + r + 1):
                if yy < 0 or yy >= ny:
                    continue
                step = 1 if (yy == cy - r or yy == cy + r) else 2 * r
                if step == 0:
                    step = 1
                xx = cx - r
                while xx <= cx + r:
                    if 0 <= xx < nx:
                        c = yy * nx + xx
                        for k in range(cell_start[c], cell_start[c + 1]):
                            s = cell_items[k]
                            d2, t = _seg_dist2(px, py, x0[s], y0[s], x1[s], y1[s])
                            if d2 < best or (d2 == best and s < bs):
                                best = d2
                                bs = s
                                bt = t
                    xx += step
            # every segment not yet seen lies at least r*cell away
            if bs >= 0 and math.sqrt(best) <= r * cell:
                break
            r += 1
            if r > nx + ny:
                break
    if bs < 0:  # outside the grid: brute force (rare)
        for s in range(n_seg):
            d2, t = _seg_dist2(px, py, x0[s], y0[s], x1[s], y1[s])
            if d2 < best:
                best = d2
                bs = s
                bt = t
    return bs, bt, best


@njit(cache=True)
def _snap_points(px: np.ndarray, py: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                 x1: np.ndarray, y1: np.ndarray, cell_start: np.ndarray, cell_items: np.ndarray,
                 nx: int, ny: int, cell: float, out_seg: np.ndarray, out_t: np.ndarray,
                 out_d: np.ndarray) -> None:
    for i in range(px.shape[0]):
        bs, bt, best = _snap_xy(px[i], py[i], x0, y0, x1, y1, cell_start, cell_items, nx, ny,
                                cell)
        out_seg[i] = bs
        out_t[i] = bt
        out_d[i] = math.sqrt(best)


# One point (each AVL fix, each lat/lon query) through one argument: a numba structref
# holding the grid, so a call unboxes one pointer instead of ten arrays (as
# routing.kernels.IndexCtx does for the queries; made by a cached kernel for the same reason).
@structref.register
class SnapCtxType(types.StructRef):
    def preprocess_fields(self, fields: Any) -> Any:
        return tuple((name, types.unliteral(typ)) for name, typ in fields)


class SnapCtx(structref.StructRefProxy):
    """The snapping grid of one Snapper, as one numba argument."""


SNAP_CTX_FIELDS = ("x0", "y0", "x1", "y1", "cell_start", "cell_items", "seg_edge", "edge_twin",
                   "grid_f", "grid_i")
structref.define_proxy(SnapCtx, SnapCtxType, list(SNAP_CTX_FIELDS))
# The context's type when passed by address (routing.kernels, "the context by address"): the
# graph's arrays read-only (Snapper makes in-memory ones read-only views), its own writable.
_SNAP_SPEC = (("x0", "f8", True), ("y0", "f8", True), ("x1", "f8", True), ("y1", "f8", True),
              ("cell_start", "i8", True), ("cell_items", "i4", True), ("seg_edge", "i4", True),
              ("edge_twin", "i4", True), ("grid_f", "f8", False), ("grid_i", "i8", False))
assert tuple(f[0] for f in _SNAP_SPEC) == SNAP_CTX_FIELDS
SNAP_CTX_TYPE = SnapCtxType([(name, types.Array(numba.from_dtype(np.dtype(dt)), 1, "C", readonly=ro))
                             for name, dt, ro in _SNAP_SPEC])
_snap_at = K.ctx_at_intrinsic(SNAP_CTX_TYPE)


@njit(cache=True)
def _new_snap_ctx(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray,
                  cell_start: np.ndarray, cell_items: np.ndarray, seg_edge: np.ndarray,
                  edge_twin: np.ndarray, grid_f: np.ndarray, grid_i: np.ndarray) -> Any:
    return SnapCtx(x0, y0, x1, y1, cell_start, cell_items, seg_edge, edge_twin, grid_f, grid_i)


@njit(cache=True)
def _snap_one_ctx(c: Any, lat: float, lon: float) -> tuple[int, float, int, float]:
    """One point: (edge, frac, twin, distance_m). grid_f: cell_m, kx, ky, lon0, lat0;
    grid_i: nx, ny."""
    gf = c.grid_f
    gi = c.grid_i
    bs, bt, best = _snap_xy((lon - gf[3]) * gf[1], (lat - gf[4]) * gf[2], c.x0, c.y0, c.x1, c.y1,
                            c.cell_start, c.cell_items, gi[0], gi[1], gf[0])
    e = c.seg_edge[bs]
    return e, bt, c.edge_twin[e], math.sqrt(best)


@njit(cache=True)
def a_snap_move(sa: int, ia: int, slot: int, lat: float,
                lon: float) -> tuple[int, float, int, float, int]:
    """An AVL fix in one call: snap (lat, lon) with the snapping context at address ``sa``
    and move unit ``slot`` of the unit index whose context is at ``ia`` to the point
    (routing.kernels.ctx_move_edge). Returns (edge, frac, twin, distance_m, the move's
    entry count: negative when the index must widen its rows and move again)."""
    e, f, tw, d = _snap_one_ctx(_snap_at(sa), lat, lon)
    return e, f, tw, d, K.ctx_move_edge(K._ctx_at(ia), slot, e, f)


SNAP_INDEX_ARRAYS = ("seg_edge", "x0", "y0", "x1", "y1", "cell_start", "cell_items")
SNAP_INDEX_PARAMS = ("cell_m", "kx", "ky", "lon0", "lat0", "nx", "ny")


def build_snap_index(graph: RoadGraph, *, cell_m: float = CELL_M) -> dict[str, Any]:
    """The snapping grid of a graph: arrays (SNAP_INDEX_ARRAYS) and parameters
    (SNAP_INDEX_PARAMS). ``RoadGraph.with_snap_index`` stores it in the graph file, so
    workers map it instead of each building a private copy (about 40 MB on NY)."""
    lat0 = float(np.mean(graph.node_lat)) if graph.n_nodes else 0.0
    kx = math.radians(1.0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    ky = math.radians(1.0) * EARTH_RADIUS_M
    lon_min = float(graph.node_lon.min()) if graph.n_nodes else 0.0
    lat_min = float(graph.node_lat.min()) if graph.n_nodes else 0.0
    nx_ = (np.asarray(graph.node_lon, dtype=np.float64) - lon_min) * kx
    ny_ = (np.asarray(graph.node_lat, dtype=np.float64) - lat_min) * ky
    twin = graph.edge_twin
    eid = np.arange(graph.n_edges)
    # one segment per road piece: the one-way arc, or the lower id of a two-way pair
    seg_edge = eid[(twin < 0) | (eid < twin)].astype(np.int32)
    tail = graph.edge_tail[seg_edge]
    head = graph.fwd_head[seg_edge]
    x0, y0, x1, y1 = nx_[tail], ny_[tail], nx_[head], ny_[head]
    n_x = max(1, math.ceil((nx_.max() if nx_.size else 0) / cell_m) + 1)
    n_y = max(1, math.ceil((ny_.max() if ny_.size else 0) / cell_m) + 1)
    cell_start, cell_items = _build_grid(x0, y0, x1, y1, n_x, n_y, float(cell_m), seg_edge.size)
    return {"seg_edge": seg_edge, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
            "cell_start": cell_start, "cell_items": cell_items, "cell_m": float(cell_m),
            "kx": kx, "ky": ky, "lon0": lon_min, "lat0": lat_min, "nx": n_x, "ny": n_y}


class Snapper:
    """Spatial index over a graph's segments. Build once per graph (tens of ms)."""

    def __init__(self, graph: RoadGraph, *, limit_m: float = 200.0, cell_m: float = CELL_M):
        self.graph = graph
        self.limit_m = float(limit_m)
        self.cell_m = float(cell_m)
        pre = graph.snap_index
        if pre is None or pre.get("cell_m") != self.cell_m:
            pre = build_snap_index(graph, cell_m=self.cell_m)
        # a graph file carries the index (memory-mapped, shared by the workers); otherwise
        # it is built here, in private memory
        self._kx, self._ky = float(pre["kx"]), float(pre["ky"])
        self._lon0, self._lat0 = float(pre["lon0"]), float(pre["lat0"])
        self._nx, self._ny = int(pre["nx"]), int(pre["ny"])
        self._seg_edge = pre["seg_edge"]
        self._x0, self._y0, self._x1, self._y1 = pre["x0"], pre["y0"], pre["x1"], pre["y1"]
        self._cell_start, self._cell_items = pre["cell_start"], pre["cell_items"]
        # snap_one's context (one numba argument for the whole grid), and its address
        ro = K.read_only
        self._ctx = _new_snap_ctx(
            ro(self._x0), ro(self._y0), ro(self._x1), ro(self._y1), ro(self._cell_start),
            ro(self._cell_items), ro(self._seg_edge), ro(graph.edge_twin),
            np.array([self.cell_m, self._kx, self._ky, self._lon0, self._lat0], np.float64),
            np.array([self._nx, self._ny], np.int64))
        self.ctx_address = K.ctx_address(self._ctx) if self._ctx._type == SNAP_CTX_TYPE else 0

    def _project(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(lon, dtype=np.float64) - self._lon0) * self._kx
        y = (np.asarray(lat, dtype=np.float64) - self._lat0) * self._ky
        return x, y

    def snap_one(self, lat: float, lon: float) -> tuple[int, float, int, float, bool]:
        """One point: (edge, frac, twin, distance_m, beyond_limit), as snap() gives."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise ValueError("lat/lon must be finite")
        e, f, tw, d = _snap_one_ctx(self._ctx, float(lat), float(lon))
        return e, f, tw, d, d > self.limit_m

    def snap_one_checked(self, lat: float, lon: float) -> tuple[int, float, int, float]:
        """snap_one for a point already checked to be finite floats (the service's AVL
        path): (edge, frac, twin, distance_m). Thread-safe (no shared buffers)."""
        return _snap_one_ctx(self._ctx, lat, lon)  # type: ignore[no-any-return]  # numba

    def snap(self, lat: np.ndarray | float, lon: np.ndarray | float) -> SnapResult:
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        if lat_a.shape != lon_a.shape:
            raise ValueError("lat and lon must have the same shape")
        if not (np.all(np.isfinite(lat_a)) and np.all(np.isfinite(lon_a))):
            raise ValueError("lat/lon must be finite")
        px, py = self._project(lat_a, lon_a)
        n = px.size
        seg = np.empty(n, np.int64)
        t = np.empty(n, np.float64)
        d = np.empty(n, np.float64)
        _snap_points(px, py, self._x0, self._y0, self._x1, self._y1, self._cell_start,
                     self._cell_items, self._nx, self._ny, self.cell_m, seg, t, d)
        g = self.graph
        edge = self._seg_edge[seg]
        time_s = g.edge_time_ds[edge] / 10.0
        return SnapResult(
            edge=edge.astype(np.int32), frac=t, twin=g.edge_twin[edge].astype(np.int32),
            distance_m=d, to_tail_s=t * time_s, to_head_s=(1.0 - t) * time_s,
            beyond_limit=d > self.limit_m,
        )
