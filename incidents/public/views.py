"""Where an incident row becomes public: the one place that decides what a member of the
public sees. Nothing of the row is copied through except the incident number, the type, the
times and whether a response was initiated; the place is generalised from the coordinates
alone (the typed location text, unit, narrative and caller never reach this module)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from incidents.geocoding.index import Geocoder
from incidents.geocoding.normalize import normalize_street

# A hundred block is used when the nearest address point is this close: beyond it the
# incident was not at an address (a park, a freeway) and the street's corner is used.
BLOCK_WITHIN_M = 60.0
# A block's middle this close to the incident's own point would point at the house (a block
# with one known address, or the incident at the middle house): the corner is used instead.
HOUSE_RADIUS_M = 15.0
# Without any street data the point is snapped to this grid (degrees, ~550 m north-south) and
# published with no place name.
GRID_DEG = 0.005
EARTH_M_PER_DEG = 111_320.0


@dataclass(frozen=True)
class PublicPlace:
    lat: float
    lon: float
    label: str            # "1200 Block of MARKET ST", "MARKET ST & 5TH ST" or ""
    precision: str        # block | intersection | area
    street: str = ""      # the block's street (pages word the block in their language)
    block: int = 0        # the block's first number


@dataclass(frozen=True)
class PublicIncident:
    number: str
    agency: str
    incident_type: str
    type_description: str
    received_at: datetime
    closed_at: datetime
    response_initiated: bool
    place: PublicPlace


def _dist_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    kx = EARTH_M_PER_DEG * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot((lat1 - lat2) * EARTH_M_PER_DEG, (lon1 - lon2) * kx)


def _grid(lat: float, lon: float) -> PublicPlace:
    return PublicPlace(round(round(lat / GRID_DEG) * GRID_DEG, 4),
                       round(round(lon / GRID_DEG) * GRID_DEG, 4), "", "area")


def generalise(geocoder: Geocoder, lat: float, lon: float) -> PublicPlace:
    """The hundred block's middle, else the nearest corner, else a coarse grid cell: never an
    address nor a point that identifies a house."""
    rev = geocoder.reverse(lat, lon)
    if rev.address is not None and rev.street is not None and rev.distance_m is not None \
            and rev.distance_m <= BLOCK_WITHIN_M:
        head = rev.address.split(" ", 1)[0]
        if head.isdigit():
            start = int(head) - int(head) % 100
            c = geocoder.block(normalize_street(rev.street), start)
            if c is not None and c.precision == "block" \
                    and _dist_m(c.lat, c.lon, lat, lon) > HOUSE_RADIUS_M:
                return PublicPlace(round(c.lat, 5), round(c.lon, 5),
                                   f"{start} Block of {rev.street}", "block", rev.street, start)
    if rev.street is not None and rev.cross_streets:
        for cross in rev.cross_streets:
            for c in geocoder.geocode(f"{rev.street} & {cross}", limit=1):
                if c.precision == "intersection":
                    return PublicPlace(round(c.lat, 5), round(c.lon, 5),
                                       f"{rev.street} & {cross}", "intersection")
    return _grid(lat, lon)


def public_incident(row: Any, geocoder: Geocoder) -> PublicIncident:
    return PublicIncident(
        number=row["number"], agency=row["agency"], incident_type=row["incident_type"],
        type_description=row["type_description"], received_at=row["received_at"],
        closed_at=row["closed_at"], response_initiated=row["first_dispatched_at"] is not None,
        place=generalise(geocoder, row["lat"], row["lon"]))


def feature(p: PublicIncident) -> dict[str, Any]:
    """One GeoJSON Feature."""
    return {"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p.place.lon, p.place.lat]},
            "properties": {"number": p.number, "agency": p.agency, "type": p.incident_type,
                           "description": p.type_description,
                           "received_at": p.received_at.isoformat(),
                           "closed_at": p.closed_at.isoformat(), "location": p.place.label,
                           "location_precision": p.place.precision}}


def rfs(p: PublicIncident) -> dict[str, Any]:
    """Request-for-service data, Minn. Stat. 13.82 subd. 3: nature of the request, date and
    time, whether a response was initiated, the incident number. The caller is withheld."""
    return {"number": p.number, "agency": p.agency, "nature": p.type_description,
            "incident_type": p.incident_type, "received_at": p.received_at,
            "response_initiated": p.response_initiated, "location": p.place.label or None}


CSV_COLUMNS = ("number", "agency", "type", "description", "received_at", "closed_at",
               "location", "location_precision", "lat", "lon")


def csv_row(p: PublicIncident) -> list[str]:
    return [p.number, p.agency, p.incident_type, p.type_description, p.received_at.isoformat(),
            p.closed_at.isoformat(), p.place.label, p.place.precision, f"{p.place.lat:.5f}",
            f"{p.place.lon:.5f}"]
