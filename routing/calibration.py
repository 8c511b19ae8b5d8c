"""Calibration support, pure functions over a ``RoadGraph``: the time a route spends on each
road class, and a graph whose travel times are scaled per road class.

Both serve travel-time calibration (fit a factor per road class from recorded trips, then let
the routing core drive on the calibrated speeds); neither touches the routing index or the
contraction-hierarchy internals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from routing.graph import RoadGraph


def class_times(graph: RoadGraph, edges: Sequence[int] | np.ndarray, *,
                partial: Iterable[tuple[int, float]] = (),
                total_s: float | None = None) -> dict[str, float]:
    """Seconds per road class (``graph.class_names``) along a path: the full ``edges`` driven,
    plus ``partial`` (edge, deciseconds) pieces driven on the first and last edge. When
    ``total_s`` is given the times are scaled to sum to it exactly (the path's ETA; it differs
    from the sum of edge times only by rounding). Classes not driven are left out."""
    by_class = np.zeros(len(graph.class_names), dtype=np.float64)
    if len(edges):
        e = np.asarray(edges, dtype=np.int64)
        np.add.at(by_class, graph.edge_class[e].astype(np.int64),
                  graph.edge_time_ds[e].astype(np.float64))
    for edge, t_ds in partial:
        if edge >= 0 and t_ds > 0:
            by_class[int(graph.edge_class[edge])] += float(t_ds)
    by_class /= 10.0
    s = float(by_class.sum())
    if total_s is not None and s > 0 and math.isfinite(total_s):
        by_class *= total_s / s
    return {graph.class_names[i]: float(v) for i, v in enumerate(by_class) if v > 0}


def with_class_factors(graph: RoadGraph, factors: Mapping[str, float]) -> RoadGraph:
    """A copy of ``graph`` whose edge travel times are multiplied by ``factors[class]``
    (a class not listed keeps its time). The contraction hierarchy is dropped (it encodes the
    old times): rebuild it (routing.ch.build_hierarchy) before saving. The applied factors
    are recorded in ``meta["class_time_factors"]`` (multiplied with any already there)."""
    unknown = sorted(set(factors) - set(graph.class_names))
    if unknown:
        raise ValueError(f"unknown road classes {unknown} (the graph has {list(graph.class_names)})")
    per_class = np.ones(len(graph.class_names), dtype=np.float64)
    for name, f in factors.items():
        if not (math.isfinite(f) and f > 0):
            raise ValueError(f"factor for {name!r} must be a positive number, got {f}")
        per_class[graph.class_names.index(name)] = f
    scaled = graph.edge_time_ds.astype(np.float64) * per_class[graph.edge_class.astype(np.int64)]
    # Rounded to whole deciseconds (the graph's unit); a driven edge never drops to zero.
    times = np.where(graph.edge_time_ds > 0, np.maximum(np.rint(scaled), 1), 0
                     ).astype(graph.edge_time_ds.dtype)
    meta = dict(graph.meta)
    before = dict(meta.get("class_time_factors") or {})
    meta["class_time_factors"] = {name: round(float(before.get(name, 1.0)) * float(per_class[i]), 6)
                                  for i, name in enumerate(graph.class_names)}
    kwargs = {f: getattr(graph, f) for f in graph.__dataclass_fields__
              if f not in ("hierarchy", "edge_time_ds", "meta", "snap_index", "_ext_order",
                           "_sorted_ext")}
    return RoadGraph(**kwargs, edge_time_ds=times, meta=meta, hierarchy=None,
                     snap_index=graph.snap_index)
