"""Geocoding over HTTP: addresses, places and corners to points, suggestions while typing,
points to addresses; the managed places table (cad/security/policy.py says who may call)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from cad.security import Context
from incidents.deps import IncidentsDep
from incidents.geocoding import service
from incidents.geocoding.index import candidate_json
from incidents.geocoding.schemas import GeocodeOut, PlaceId, PlaceIn, PlaceOut, ReverseOut
from schemas.common import Latitude, Longitude

router = APIRouter(prefix="/api/v1", tags=["geocoding"])
QueryText = Annotated[str, Query(min_length=1, max_length=200)]


@router.get("/geocode", response_model=GeocodeOut, summary="Address, place or corner to points",
            description="Ranked candidates, each with its precision and score; the same geocoder "
                        "as incident intake.")
async def geocode(q: QueryText, deps: IncidentsDep,
                  limit: Annotated[int, Query(ge=1, le=20)] = 5) -> dict[str, Any]:
    found = deps.geocoder.current.geocode(q, limit=limit)
    return {"query": q, "candidates": [candidate_json(c) for c in found]}


@router.get("/geocode/suggest", response_model=GeocodeOut,
            summary="Completions while typing: addresses, corners and places by prefix")
async def suggest(q: QueryText, deps: IncidentsDep,
                  limit: Annotated[int, Query(ge=1, le=20)] = 10) -> dict[str, Any]:
    found = deps.geocoder.current.suggest(q, limit=limit)
    return {"query": q, "candidates": [candidate_json(c) for c in found]}


@router.get("/geocode/reverse", response_model=ReverseOut,
            summary="A point (map click, AVL fix) as the nearest address and its cross streets")
async def reverse(lat: Latitude, lon: Longitude, deps: IncidentsDep) -> dict[str, Any]:
    r = deps.geocoder.current.reverse(lat, lon)
    return {"lat": r.lat, "lon": r.lon, "address": r.address, "distance_m": r.distance_m,
            "street": r.street, "cross_streets": list(r.cross_streets),
            "description": service.describe(r)}


@router.get("/places", response_model=list[PlaceOut], summary="Managed places and aliases")
async def list_places(deps: IncidentsDep) -> list[dict[str, Any]]:
    return await service.list_places(pool=deps.pool)


@router.put("/places/{place_id}", response_model=PlaceOut,
            summary="Create or change a place (\"CITY HALL\", \"SFO TERMINAL 2\")",
            responses={201: {"model": PlaceOut, "description": "Created"}})
async def put_place(place_id: Annotated[PlaceId, Path()], body: PlaceIn, deps: IncidentsDep,
                    ctx: Context, response: Response) -> dict[str, Any]:
    view, created, places = await service.put_place(
        pool=deps.pool, ctx=ctx, place_id=place_id, name=body.name, aliases=body.aliases,
        lat=body.lat, lon=body.lon)
    deps.geocoder.current = deps.geocoder.current.with_places(places)
    response.status_code = 201 if created else 200
    return view


@router.delete("/places/{place_id}", status_code=204, response_class=Response,
               summary="Remove a place")
async def delete_place(place_id: Annotated[PlaceId, Path()], deps: IncidentsDep,
                       ctx: Context) -> Response:
    places = await service.delete_place(pool=deps.pool, ctx=ctx, place_id=place_id)
    deps.geocoder.current = deps.geocoder.current.with_places(places)
    return Response(status_code=204)
