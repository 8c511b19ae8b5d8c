"""Plausible time and place: what every input carrying a timestamp or a location is checked
against before anything is written (docs/dispatch.md, "Plausible input").

Times: not before ``CAD_TIME_EARLIEST`` (1990-01-01), not more than ``CAD_TIME_MAX_FUTURE_S``
(300 s) ahead of the server's clock, with a UTC offset. PostgreSQL would store a year-1
timestamp as ``-infinity`` (and 9999-12-31 as ``infinity``), which no interval arithmetic
survives: one such intake stopped every timer.

Places: inside the agency's service area, which is, in this order of preference,

1. ``CAD_SERVICE_AREA``: GeoJSON (a file path, or the text itself) of Polygon / MultiPolygon
   geometries or features; a feature whose ``properties.agency`` names an agency bounds that
   agency, features without one bound every agency that has none of its own;
2. else the loaded road graph's bounding box grown by ``CAD_SERVICE_AREA_MARGIN_M``;
3. else anywhere but the 1-degree box around (0, 0) ("null island", the open Gulf of Guinea
   where no agency works and where a GPS or geocoder without a fix puts its zeros).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry
from shapely.prepared import PreparedGeometry, prep

from cad.errors import Invalid

METRES_PER_DEGREE_LAT = 111_320.0
NULL_ISLAND_BOX_DEG = 1.0


class ServiceAreaError(ValueError):
    """The configured service area cannot be read (raised at start-up, naming the problem)."""


@dataclass(frozen=True)
class ServiceArea:
    """Where locations are plausible. ``polygons``: agency (None = every agency without its
    own) -> prepared geometry; ``bounds``: (min_lat, min_lon, max_lat, max_lon) when there
    are no polygons; neither: only null island is refused."""

    polygons: Mapping[str | None, PreparedGeometry] = field(default_factory=dict)
    bounds: tuple[float, float, float, float] | None = None
    source: str = "null island only"

    @classmethod
    def from_geojson(cls, value: str, *, source: str | None = None) -> ServiceArea:
        """``value``: GeoJSON text, or the path of a file holding it."""
        text, where = value, source or "CAD_SERVICE_AREA (inline)"
        if not value.lstrip().startswith("{"):
            path = Path(value).expanduser()
            try:
                text = path.read_text()
            except OSError as exc:
                raise ServiceAreaError(f"CAD_SERVICE_AREA: cannot read {path}: {exc}") from None
            where = str(path)
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ServiceAreaError(f"{where}: not JSON: {exc}") from None
        by_agency: dict[str | None, list[BaseGeometry]] = {}
        for i, (agency, geometry) in enumerate(_geometries(doc, where)):
            try:
                geom = shape(geometry)
            except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad GeoJSON
                raise ServiceAreaError(f"{where}: geometry {i}: {exc}") from None
            if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
                raise ServiceAreaError(f"{where}: geometry {i} is a {geom.geom_type}, not a "
                                       "Polygon or MultiPolygon")
            if not geom.is_valid:
                raise ServiceAreaError(f"{where}: geometry {i} is invalid: "
                                       f"{shapely.is_valid_reason(geom)}")
            by_agency.setdefault(agency, []).append(geom)
        if not by_agency:
            raise ServiceAreaError(f"{where}: no polygon")
        return cls(polygons={a: prep(shapely.union_all(gs)) for a, gs in by_agency.items()},
                   source=where)

    @classmethod
    def from_points(cls, lats: Sequence[float] | Any, lons: Sequence[float] | Any, *,
                    margin_m: float, source: str) -> ServiceArea:
        """The bounding box of these points (a road graph's nodes) grown by ``margin_m``."""
        lat = np.asarray(lats, dtype=np.float64)
        lon = np.asarray(lons, dtype=np.float64)
        ok = np.isfinite(lat) & np.isfinite(lon)
        if not ok.any():
            return cls()
        min_lat, max_lat = float(lat[ok].min()), float(lat[ok].max())
        min_lon, max_lon = float(lon[ok].min()), float(lon[ok].max())
        dlat = margin_m / METRES_PER_DEGREE_LAT
        widest = max(abs(min_lat), abs(max_lat)) + dlat
        dlon = margin_m / (METRES_PER_DEGREE_LAT * max(math.cos(math.radians(min(widest, 89.0))),
                                                        0.01))
        return cls(bounds=(max(min_lat - dlat, -90.0), max(min_lon - dlon, -180.0),
                           min(max_lat + dlat, 90.0), min(max_lon + dlon, 180.0)),
                   source=f"{source} bounds + {margin_m:g} m")

    def refusal(self, *, agency: str | None, lat: float, lon: float) -> str | None:
        """Why (lat, lon) is not plausible for ``agency``; None when it is."""
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return "the location is not a finite number"
        if self.polygons:
            area = self.polygons.get(agency) if agency is not None else None
            if area is None:
                area = self.polygons.get(None)
            if area is None:
                return (f"no service area is configured for agency {agency} "
                        f"({self.source})")
            if not area.covers(Point(lon, lat)):
                return f"({lat}, {lon}) is outside the service area ({self.source})"
            return None
        if self.bounds is not None:
            min_lat, min_lon, max_lat, max_lon = self.bounds
            if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
                return f"({lat}, {lon}) is outside the service area ({self.source})"
            return None
        if abs(lat) < NULL_ISLAND_BOX_DEG and abs(lon) < NULL_ISLAND_BOX_DEG:
            return (f"({lat}, {lon}) is within {NULL_ISLAND_BOX_DEG:g} degree of (0, 0), open "
                    "sea where a device without a fix puts its zeros")
        return None


def _geometries(doc: Any, where: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(agency or None, geometry) of a GeoJSON geometry, Feature or FeatureCollection."""
    if not isinstance(doc, dict):
        raise ServiceAreaError(f"{where}: not a GeoJSON object")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise ServiceAreaError(f"{where}: a FeatureCollection needs a features list")
        out: list[tuple[str | None, dict[str, Any]]] = []
        for f in features:
            out += _geometries(f, where)
        return out
    if kind == "Feature":
        props = doc.get("properties") or {}
        agency = props.get("agency") if isinstance(props, dict) else None
        if agency is not None and not isinstance(agency, str):
            raise ServiceAreaError(f"{where}: properties.agency must be text")
        geometry = doc.get("geometry")
        if not isinstance(geometry, dict):
            raise ServiceAreaError(f"{where}: a Feature without a geometry")
        return [(agency, geometry)]
    if kind in ("Polygon", "MultiPolygon"):
        return [(None, doc)]
    raise ServiceAreaError(f"{where}: expected a Polygon, MultiPolygon, Feature or "
                           f"FeatureCollection, not {kind!r}")


@dataclass(frozen=True)
class Plausibility:
    """The checks every write applies to the times and places it was given."""

    earliest: datetime = datetime(1990, 1, 1, tzinfo=UTC)
    max_future_s: float = 300.0
    area: ServiceArea = field(default_factory=ServiceArea)

    def check_time(self, value: datetime | None, *, field: str,
                   now: datetime | None = None) -> None:
        """Invalid naming ``field`` unless ``value`` (None passes) has a UTC offset and lies
        between ``earliest`` and ``max_future_s`` from now."""
        if value is None:
            return
        if value.tzinfo is None or value.utcoffset() is None:
            raise Invalid(f"{field.rsplit('.', 1)[-1]} needs a UTC offset", field=field)
        if value < self.earliest:
            raise Invalid(f"{field.rsplit('.', 1)[-1]} {value.isoformat()} is before "
                          f"{self.earliest.isoformat()}", field=field)
        latest = (now or datetime.now(UTC)) + timedelta(seconds=self.max_future_s)
        if value > latest:
            raise Invalid(f"{field.rsplit('.', 1)[-1]} {value.isoformat()} is more than "
                          f"{self.max_future_s:g} s in the future", field=field)

    def check_place(self, *, agency: str | None, lat: float, lon: float,
                    fields: Sequence[str]) -> None:
        """Invalid naming every one of ``fields`` when (lat, lon) is outside ``agency``'s area."""
        reason = self.area.refusal(agency=agency, lat=lat, lon=lon)
        if reason is not None:
            raise Invalid(reason, extra={"errors": [{"field": f, "message": reason}
                                                    for f in fields]})
