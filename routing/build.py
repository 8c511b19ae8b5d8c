"""Arc lists -> RoadGraph: validation, parallel-arc reduction, largest SCC, CSR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from routing.graph import RoadGraph

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike,
                lon2: npt.ArrayLike) -> Any:
    """Great-circle metres, elementwise: an array for arrays, a numpy float for scalars."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def travel_time_ds(length_m: np.ndarray, speed_kmh: np.ndarray) -> np.ndarray:
    """Deciseconds, rounded, at least 1 (zero weights break Dijkstra-based tools and CH)."""
    t = np.rint(np.asarray(length_m, dtype=np.float64) / (np.asarray(speed_kmh) / 3.6) * 10.0)
    return np.maximum(t, 1).astype(np.int32)


def build_graph(
    *,
    tail_ext: np.ndarray,
    head_ext: np.ndarray,
    time_ds: np.ndarray,
    length_m: np.ndarray,
    road_class: np.ndarray,
    way_id: np.ndarray,
    node_ext_id: np.ndarray,
    node_lat: np.ndarray,
    node_lon: np.ndarray,
    class_names: Sequence[str],
    meta: dict[str, Any] | None = None,
    largest_scc: bool = True,
    edge_name: np.ndarray | None = None,
    street_names: Sequence[str] = (),
) -> RoadGraph:
    """Build a RoadGraph from directed arcs given by external node ids.

    Self-loops are dropped (never on a shortest path), parallel arcs are reduced to
    the fastest one (scipy would otherwise *sum* them), and the graph is cut to its
    largest strongly connected component so every unit can reach every incident.

    ``edge_name`` (per arc, an index into ``street_names`` or -1) follows its arc through
    all of that. Where parallel arcs carrying different names collapse into one (TIGER
    lists a segment once per route using it: "Van Ness Ave" and "US Hwy 101"), the kept
    arc gets all of them joined by ``;`` so that no street loses the segment. The
    returned table holds only names still in use.
    """
    tail_ext = np.asarray(tail_ext, dtype=np.int64)
    head_ext = np.asarray(head_ext, dtype=np.int64)
    time_ds = np.asarray(time_ds, dtype=np.int64)
    length_m = np.asarray(length_m, dtype=np.float64)
    road_class = np.asarray(road_class, dtype=np.int16)
    way_id = np.asarray(way_id, dtype=np.int64)
    node_ext_id = np.asarray(node_ext_id, dtype=np.int64)
    names = list(street_names)
    name_id = (np.full(tail_ext.size, -1, dtype=np.int64) if edge_name is None
               else np.asarray(edge_name, dtype=np.int64))
    if not (tail_ext.size == head_ext.size == time_ds.size == length_m.size == road_class.size
            == way_id.size == name_id.size):
        raise ValueError("arc arrays must have equal lengths")
    if name_id.size and (name_id.min() < -1 or name_id.max() >= len(names)):
        raise ValueError("edge_name refers outside street_names")
    if time_ds.size and (time_ds.min() < 1 or time_ds.max() >= 2**31 // 4):
        raise ValueError("travel times must be integer deciseconds in [1, 2**29)")
    if not np.all(np.isfinite(length_m)) or (length_m.size and length_m.min() < 0):
        raise ValueError("lengths must be finite and non-negative")

    # map external ids -> dense ids over the nodes we have coordinates for
    order = np.argsort(node_ext_id, kind="stable")
    sorted_ext = node_ext_id[order]
    if sorted_ext.size and np.any(sorted_ext[1:] == sorted_ext[:-1]):
        raise ValueError("duplicate node ids")

    def lookup(ext: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(sorted_ext, ext)
        pos_c = np.minimum(pos, max(sorted_ext.size - 1, 0))
        found = (sorted_ext.size > 0) & (sorted_ext[pos_c] == ext)
        return np.where(found, order[pos_c], -1)

    t_idx, h_idx = lookup(tail_ext), lookup(head_ext)
    keep = (t_idx >= 0) & (h_idx >= 0) & (t_idx != h_idx)
    t_idx, h_idx = t_idx[keep], h_idx[keep]
    time_ds, length_m, road_class, way_id = time_ds[keep], length_m[keep], road_class[keep], way_id[keep]
    name_id = name_id[keep]

    # parallel arcs: keep the fastest, then the shortest
    srt = np.lexsort((length_m, time_ds, h_idx, t_idx))
    t_idx, h_idx = t_idx[srt], h_idx[srt]
    first = np.ones(t_idx.size, dtype=bool)
    first[1:] = (t_idx[1:] != t_idx[:-1]) | (h_idx[1:] != h_idx[:-1])
    sel = srt[first]
    kept_name = name_id[sel]
    if names and not first.all():
        kept_name = _merge_parallel_names(name_id[srt], first, kept_name, names)
    t_idx, h_idx = t_idx[first], h_idx[first]
    time_ds, length_m, road_class, way_id = time_ds[sel], length_m[sel], road_class[sel], way_id[sel]
    name_id = kept_name

    n_all = node_ext_id.size
    if largest_scc and t_idx.size:
        mat = coo_matrix((np.ones(t_idx.size), (t_idx, h_idx)), shape=(n_all, n_all)).tocsr()
        _, labels = connected_components(mat, directed=True, connection="strong")
        # only nodes that carry arcs count; isolated coordinates form singleton components
        used = np.zeros(n_all, dtype=bool)
        used[t_idx] = True
        used[h_idx] = True
        counts = np.bincount(labels[used], minlength=labels.max() + 1)
        big = int(np.argmax(counts))
        node_keep = used & (labels == big)
    else:
        node_keep = np.zeros(n_all, dtype=bool)
        node_keep[t_idx] = True
        node_keep[h_idx] = True
    new_id = np.full(n_all, -1, dtype=np.int64)
    new_id[node_keep] = np.arange(int(node_keep.sum()))
    arc_keep = node_keep[t_idx] & node_keep[h_idx]
    tail = new_id[t_idx[arc_keep]]
    head = new_id[h_idx[arc_keep]]
    time_ds, length_m, road_class, way_id = (
        time_ds[arc_keep], length_m[arc_keep], road_class[arc_keep], way_id[arc_keep])
    name_id = name_id[arc_keep]
    n = int(node_keep.sum())

    # forward CSR sorted by (tail, head)
    srt = np.lexsort((head, tail))
    tail, head = tail[srt], head[srt]
    time_ds, length_m, road_class, way_id = time_ds[srt], length_m[srt], road_class[srt], way_id[srt]
    name_id = name_id[srt]

    # keep only the names still in use, numbered in table order
    used_names = np.unique(name_id[name_id >= 0])
    remap = np.full(len(names) + 1, -1, dtype=np.int64)  # slot -1 (last) stays -1
    remap[used_names] = np.arange(used_names.size)
    name_id = remap[name_id]
    street_names_out = tuple(names[i] for i in used_names.tolist())
    fwd_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(tail, minlength=n), out=fwd_indptr[1:])

    # backward CSR: arcs grouped by head
    bsrt = np.lexsort((tail, head))
    bwd_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(head, minlength=n), out=bwd_indptr[1:])

    # twin: the arc head->tail, found by key lookup in the (tail, head)-sorted keys
    key = tail * n + head
    twin_key = head * n + tail
    pos = np.searchsorted(key, twin_key)
    pos_c = np.minimum(pos, max(key.size - 1, 0))
    twin = np.where((key.size > 0) & (key[pos_c] == twin_key), pos_c, -1)

    meta = dict(meta or {})
    meta.setdefault("n_nodes_before_scc", int(n_all))
    return RoadGraph(
        node_lat=np.asarray(node_lat, dtype=np.float64)[node_keep],
        node_lon=np.asarray(node_lon, dtype=np.float64)[node_keep],
        node_ext_id=node_ext_id[node_keep],
        fwd_indptr=fwd_indptr,
        fwd_head=head.astype(np.int32),
        edge_tail=tail.astype(np.int32),
        edge_time_ds=time_ds.astype(np.int32),
        edge_length_m=length_m,
        edge_class=road_class,
        edge_way_id=way_id,
        edge_twin=twin.astype(np.int32),
        bwd_indptr=bwd_indptr,
        bwd_tail=tail[bsrt].astype(np.int32),
        bwd_edge=bsrt.astype(np.int32),
        class_names=tuple(class_names),
        meta=meta,
        edge_name=name_id.astype(np.int32),
        street_names=street_names_out,
    )


def _merge_parallel_names(sorted_names: np.ndarray, first: np.ndarray, kept: np.ndarray,
                          names: list[str]) -> np.ndarray:
    """Per group of parallel arcs (``first`` marks each group's start in ``sorted_names``),
    the kept arc's name followed by the group's other distinct names, joined by ``;``.
    New combined entries are appended to ``names``."""
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, first.size))
    out = kept.copy()
    combined: dict[str, int] = {}
    for g in np.flatnonzero(sizes > 1).tolist():
        group = sorted_names[starts[g]:starts[g] + sizes[g]].tolist()
        parts: list[str] = []
        for i in group:  # the kept (fastest) arc comes first in each group
            if i >= 0:
                for part in names[i].split(";"):
                    if part not in parts:
                        parts.append(part)
        if len(parts) < 2:
            if parts and out[g] < 0:
                out[g] = next(i for i in group if i >= 0)
            continue
        label = ";".join(parts)
        idx = combined.get(label)
        if idx is None:
            idx = combined[label] = len(names)
            names.append(label)
        out[g] = idx
    return out
