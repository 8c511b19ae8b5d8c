"""Wire models of the public face: the request-for-service answers, the GeoJSON feed and the
publication table's management."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import Out, Strict


class RequestForService(Out):
    """Minn. Stat. 13.82 subd. 3 request-for-service data; the caller is withheld."""

    number: str = Field(description="The incident number.")
    agency: str
    nature: str = Field(description="The nature of the request (the incident type).")
    incident_type: str
    received_at: datetime = Field(description="Date and time the request was received.")
    response_initiated: bool = Field(description="Whether a unit was dispatched.")
    location: str | None = Field(description="Hundred block or intersection; never an address.")


class FeatureProperties(Out):
    number: str
    agency: str
    type: str
    description: str
    received_at: str
    closed_at: str
    location: str
    location_precision: Literal["block", "intersection", "area"]


class PointGeometry(Out):
    type: Literal["Point"]
    coordinates: list[float]


class Feature(Out):
    type: Literal["Feature"]
    geometry: PointGeometry
    properties: FeatureProperties


class FeatureCollection(Out):
    type: Literal["FeatureCollection"]
    features: list[Feature]


class PublicationIn(Strict):
    published: bool = Field(description="true: publish this type for the agency; false: stop.")


class PublicationOut(Out):
    agency: str
    incident_type: str
    published: bool
    enabled_by: str | None
    enabled_at: datetime | None


class PublicationRow(Out):
    agency: str
    incident_type: str
    enabled_by: str
    enabled_at: datetime
