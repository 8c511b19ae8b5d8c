"""Geocoding and places on the wire."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.common import IsoTime, Latitude, Longitude, Out, Strict

Precision = Literal["address_point", "interpolated", "block", "intersection", "street", "place"]
PlaceId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class CandidateOut(Out):
    lat: float
    lon: float
    label: str = Field(description="The matched address, corner or place.")
    score: float = Field(ge=0, le=1, description="How sure the name match is (1 = exact); "
                         "intake refuses below CAD_GEOCODE_MIN_SCORE.")
    precision: Precision
    unit: str | None = Field(description="Apartment, suite ... as typed; never moves the point.")
    access_lat: float | None = Field(description="Where the address meets its street's edge on "
                                     "its side: the routing target. Null without a road graph.")
    access_lon: float | None
    side: Literal["left", "right"] | None = Field(
        description="The address's side of its street edge (of the edge's drawn direction).")


class GeocodeOut(Out):
    query: str
    candidates: list[CandidateOut]


class ReverseOut(Out):
    lat: float
    lon: float
    address: str | None = Field(description="The nearest known address point.")
    distance_m: float | None = Field(description="From the point to that address.")
    street: str | None
    cross_streets: list[str] = Field(description="The corners on either side along the street.")
    description: str = Field(description="The point as a dispatcher reads it on the board.")


class PlaceIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    aliases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50)
    lat: Latitude
    lon: Longitude


class PlaceOut(Out):
    id: str
    name: str
    aliases: list[str]
    lat: float
    lon: float
    updated_at: IsoTime
