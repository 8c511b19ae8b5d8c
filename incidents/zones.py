"""Zones (beats, first-due areas) as GeoJSON polygons; point -> zone lookup with shapely."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
import shapely
from shapely.geometry import Point, shape

from cad.errors import Invalid
from cad.security.scope import Scope
from cad.uow import RequestContext, retry_transient, unit_of_work
from incidents import repository as repo
from incidents.deps import IncidentsDeps

# When several zones contain a point, the first-due area decides the response plan.
KIND_PREFERENCE = {"first_due": 0, "station_area": 0, "beat": 1, "district": 2, "battalion": 3}


def parse_feature(i: int, feature: dict[str, Any]) -> dict[str, Any]:
    where = f"body.features[{i}]"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise Invalid("each feature must be a GeoJSON Feature", field=where)
    props = feature.get("properties") or {}
    zid = props.get("id")
    if not isinstance(zid, str) or not zid or len(zid) > 64:
        raise Invalid("properties.id must be a non-empty string (at most 64 characters)",
                      field=f"{where}.properties.id")
    try:
        geom = shape(feature.get("geometry") or {})
    except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad GeoJSON
        raise Invalid(f"geometry is not valid GeoJSON: {exc}", field=f"{where}.geometry") from None
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise Invalid(f"geometry must be a Polygon or MultiPolygon, not {geom.geom_type}",
                      field=f"{where}.geometry")
    if geom.is_empty or not geom.is_valid:
        raise Invalid(f"geometry is invalid: {shapely.is_valid_reason(geom)}", field=f"{where}.geometry")
    min_lon, min_lat, max_lon, max_lat = geom.bounds
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise Invalid("coordinates must be WGS84 lon/lat", field=f"{where}.geometry")
    agency = props.get("agency")
    if not isinstance(agency, str) or not agency:
        raise Invalid("properties.agency is required", field=f"{where}.properties.agency")
    return {
        "id": zid, "agency": agency, "kind": str(props.get("kind") or "beat"),
        "name": str(props.get("name") or zid),
        "first_due_station": props.get("first_due_station"),
        "geometry": feature["geometry"],
        "min_lat": min_lat, "min_lon": min_lon, "max_lat": max_lat, "max_lon": max_lon,
    }


@retry_transient
async def import_zones(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope,
                       features: list[dict[str, Any]], replace_kind: str | None) -> dict[str, Any]:
    """Zones are per agency: a caller imports only its agencies' zones, and ``replace_kind``
    removes only its agencies' zones of that kind."""
    zones = [parse_feature(i, f) for i, f in enumerate(features)]
    ids = [z["id"] for z in zones]
    if len(set(ids)) != len(ids):
        raise Invalid("zone ids must be unique", field="body.features")
    for i, z in enumerate(zones):
        scope.require(z["agency"], field=f"body.features[{i}].properties.agency")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("zone.import", details={"count": len(zones), "replace_kind": replace_kind})
        existing = await repo.zone_agencies(uow.conn, ids)
        for i, z in enumerate(zones):
            if z["id"] in existing and not scope.covers(existing[z["id"]]):
                raise Invalid(f"zone id {z['id']} is taken",
                              field=f"body.features[{i}].properties.id")
        stations = await repo.known_station_ids(uow.conn)
        for i, z in enumerate(zones):
            if z["first_due_station"] is not None and z["first_due_station"] not in stations:
                raise Invalid(f"station {z['first_due_station']} does not exist",
                              field=f"body.features[{i}].properties.first_due_station")
            await repo.upsert_zone(uow.conn, z)
        removed: list[str] = []
        if replace_kind is not None:
            removed = await repo.delete_zones_not_in(uow.conn, kind=replace_kind, keep=ids,
                                                     agencies=scope.agency_list)
        uow.emit("zone.imported", aggregate=("zone", "*"), data={"zone_ids": ids, "removed": removed})
    return {"imported": len(zones), "removed": removed}


ZONE_FIELDS = ("id", "agency", "kind", "name", "first_due_station")


def containing(candidates: Iterable[Mapping[str, Any]], lat: float, lon: float) -> list[dict[str, Any]]:
    """Of the bounding-box candidates, the zones that contain the point, the deciding one
    first (first-due areas, then the smallest)."""
    pt = Point(lon, lat)
    hits = []
    for z in candidates:
        geom = shape(z["geometry"])
        if geom.covers(pt):
            hits.append((KIND_PREFERENCE.get(z["kind"], 9), geom.area, z["id"],
                         {k: z[k] for k in ZONE_FIELDS}))
    hits.sort(key=lambda h: h[:3])
    return [h[3] for h in hits]


async def zones_at(conn: asyncpg.Connection, *, lat: float, lon: float) -> list[dict[str, Any]]:
    """Every zone containing the point, the deciding one first."""
    return containing(await repo.zone_candidates(conn, lat, lon), lat, lon)


async def list_zones(*, deps: IncidentsDeps, scope: Scope) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        return [dict(r) for r in await repo.list_zones(conn, agencies=scope.agency_list)]


async def lookup_zones(*, deps: IncidentsDeps, scope: Scope, lat: float,
                       lon: float) -> list[dict[str, Any]]:
    async with deps.pool.acquire() as conn:
        return [z for z in await zones_at(conn, lat=lat, lon=lon) if scope.covers(z["agency"])]
