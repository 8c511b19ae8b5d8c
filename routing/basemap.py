"""The console's base map, drawn from the agency's own road graph: simplified GeoJSON by zoom.

A pure function of the graph (no I/O): ``basemap_geojson(graph, zoom=z)`` returns a GeoJSON
FeatureCollection of MultiLineStrings, one per road tier, so a console shows streets with no
tile server. The tier comes from the edge's free-flow speed (length over time), not from its
class index, because class indices depend on the loader (OSM ``highway`` values, TIGER MTFCC
codes, none for DIMACS); speed means the same thing for all of them.

Per zoom band: which tiers are drawn, the Douglas-Peucker tolerance (metres) and how many
decimals coordinates keep. Segments of one tier are merged into polylines first
(``shapely.line_merge``) so simplification has whole streets to work on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from routing.graph import RoadGraph

# Tiers by free-flow speed: 0 = motorway/arterial, 1 = collector, 2 = local street.
# On TIGER San Francisco: freeways run at 90, arterials at 50-60, local streets at 40.
_TIER_MIN_KMH = (70.0, 45.0, 0.0)
TIER_NAMES = ("major", "collector", "local")
_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class ZoomBand:
    min_zoom: int
    tiers: tuple[int, ...]
    tolerance_m: float
    decimals: int


# Tuned on the San Francisco TIGER graph (70k arcs): a city view (zoom 12) shows every street
# in under 1 MB, the lowest band is 2 kB, the full-detail band 1.3 MB; each is drawn in
# about 0.2 s and Leaflet's canvas renderer draws it without stalling the page.
ZOOM_BANDS = (
    ZoomBand(min_zoom=0, tiers=(0,), tolerance_m=60.0, decimals=4),
    ZoomBand(min_zoom=11, tiers=(0, 1), tolerance_m=25.0, decimals=4),
    ZoomBand(min_zoom=12, tiers=(0, 1, 2), tolerance_m=12.0, decimals=5),
    ZoomBand(min_zoom=14, tiers=(0, 1, 2), tolerance_m=4.0, decimals=5),
    ZoomBand(min_zoom=16, tiers=(0, 1, 2), tolerance_m=0.0, decimals=6),
)


def band_for(zoom: int) -> ZoomBand:
    """The band drawn at ``zoom``: the last one whose ``min_zoom`` it reaches."""
    chosen = ZOOM_BANDS[0]
    for band in ZOOM_BANDS:
        if zoom >= band.min_zoom:
            chosen = band
    return chosen


def edge_tiers(graph: RoadGraph) -> np.ndarray:
    """Tier (0..2) of every forward edge, from its free-flow speed."""
    # Posted (free-flow) speed: a graph built with a travel-time factor (TIGER's measured SFFD
    # factor, routing.speeds) has every time multiplied by it, which is not a slower road.
    factor = float(graph.meta.get("time_factor", 1.0) or 1.0)
    speed_kmh = graph.edge_length_m / np.maximum(graph.edge_time_ds, 1) * 36.0 * factor
    tiers = np.full(graph.n_edges, len(_TIER_MIN_KMH) - 1, dtype=np.int8)
    for tier in range(len(_TIER_MIN_KMH) - 2, -1, -1):
        tiers[speed_kmh >= _TIER_MIN_KMH[tier]] = tier
    return tiers


def _undirected(graph: RoadGraph) -> np.ndarray:
    """One edge id per street segment: an edge and its twin (the reverse arc) draw the same
    line, so only the one with the smaller id is kept."""
    twin = np.asarray(graph.edge_twin)
    ids = np.arange(graph.n_edges)
    return ids[(twin < 0) | (ids < twin)]


def bounds(graph: RoadGraph) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the graph's nodes."""
    return (float(np.min(graph.node_lon)), float(np.min(graph.node_lat)),
            float(np.max(graph.node_lon)), float(np.max(graph.node_lat)))


def basemap_geojson(graph: RoadGraph, *, zoom: int) -> dict[str, Any]:
    """The road network for ``zoom`` as a GeoJSON FeatureCollection: one MultiLineString
    feature per tier drawn at that zoom, with ``properties.tier`` and ``properties.zoom``."""
    band = band_for(zoom)
    edges = _undirected(graph)
    tiers = edge_tiers(graph)[edges]
    tail = np.asarray(graph.edge_tail)[edges]
    head = np.asarray(graph.edge_head)[edges]
    lon, lat = np.asarray(graph.node_lon), np.asarray(graph.node_lat)
    features: list[dict[str, Any]] = []
    tolerance_deg = band.tolerance_m / _M_PER_DEG
    for tier in band.tiers:
        sel = tiers == tier
        if not np.any(sel):
            continue
        a, b = tail[sel], head[sel]
        coords = np.stack([np.column_stack([lon[a], lat[a]]), np.column_stack([lon[b], lat[b]])],
                          axis=1)
        lines = shapely.line_merge(shapely.multilinestrings(shapely.linestrings(coords)))
        if tolerance_deg > 0:
            lines = shapely.simplify(lines, tolerance_deg, preserve_topology=False)
        parts = shapely.get_parts(lines)
        out: list[list[list[float]]] = []
        for part in parts:
            xy = np.round(shapely.get_coordinates(part), band.decimals)
            if len(xy) >= 2:
                out.append(xy.tolist())
        features.append({
            "type": "Feature",
            "properties": {"tier": TIER_NAMES[tier], "zoom": band.min_zoom},
            "geometry": {"type": "MultiLineString", "coordinates": out},
        })
    return {"type": "FeatureCollection", "features": features}
