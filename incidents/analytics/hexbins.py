"""Incident density on the H3 hexagonal grid (Uber's open hierarchical grid; cells of a
resolution have near-equal area), as GeoJSON for planners' and the public map. The database
counts incidents per distinct location; each location is assigned its cell here (a few
thousand lookups, not one per incident)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import h3

MIN_RESOLUTION, MAX_RESOLUTION = 5, 10


def hexbin_geojson(points: Iterable[tuple[float, float, int]], *, resolution: int) -> dict[str, Any]:
    """(lat, lon, incidents) -> a FeatureCollection of H3 cell polygons with their counts,
    densest first. Coordinates in GeoJSON order (lon, lat), rings closed."""
    counts: Counter[str] = Counter()
    for lat, lon, n in points:
        counts[h3.latlng_to_cell(lat, lon, resolution)] += n
    area_km2 = h3.average_hexagon_area(resolution, "km^2")
    features = []
    for cell, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        ring = [[lon, lat] for lat, lon in h3.cell_to_boundary(cell)]
        ring.append(ring[0])
        features.append({
            "type": "Feature", "id": cell,
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"h3": cell, "incidents": n,
                           "per_km2": round(n / h3.cell_area(cell, "km^2"), 3)},
        })
    return {"type": "FeatureCollection", "resolution": resolution,
            "average_cell_area_km2": round(area_km2, 4), "features": features}
