"""Incidents, zones and response plans on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from schemas.common import Agency, DbId, Latitude, Longitude, ShortText, Strict, UnitId, Version

TypeCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_-]{0,15}$")]
Priority = Annotated[int, Field(ge=1, le=5)]


class LocationIn(Strict):
    """Exactly one of: lat+lon, a street address ("1200 MARKET ST"), or an intersection
    ("MARKET ST & 5TH ST")."""

    lat: Latitude | None = None
    lon: Longitude | None = None
    address: Annotated[str, Field(min_length=3, max_length=200)] | None = None
    intersection: Annotated[str, Field(min_length=3, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> LocationIn:
        kinds = [self.lat is not None or self.lon is not None, self.address is not None,
                 self.intersection is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of lat+lon, address or intersection")
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class CallerIn(Strict):
    name: Annotated[str, Field(max_length=200)] | None = None
    callback_number: Annotated[str, Field(pattern=r"^[0-9+() .#*x-]{3,32}$")] | None = None


class IncidentCreate(Strict):
    agency: Agency
    incident_type: TypeCode
    priority: Priority | None = Field(default=None, description="Defaults from the incident type.")
    location: LocationIn
    received_at: datetime | None = Field(default=None, description="Call received (PSAP clock); "
                                         "defaults to the server's time of this request.")
    answered_at: datetime | None = None
    caller: CallerIn | None = None
    narrative: Annotated[str, Field(min_length=1, max_length=4000)] | None = None

    @model_validator(mode="after")
    def _times(self) -> IncidentCreate:
        for name in ("received_at", "answered_at"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset")
        if self.received_at and self.answered_at and self.answered_at < self.received_at:
            raise ValueError("answered_at is before received_at")
        return self


class IncidentPatch(Strict):
    incident_type: TypeCode | None = None
    priority: Priority | None = None
    location: LocationIn | None = None
    version: Version | None = None


class NarrativeIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class CloseIn(Strict):
    disposition: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_ -]{0,31}$")] = Field(
        description="Disposition code, e.g. REPORT, NO_MERIT, CANCELLED, TRANSPORTED.")


class LinkIn(Strict):
    other_id: DbId
    kind: Literal["related", "duplicate"] = "duplicate"


class MergeIn(Strict):
    into_id: DbId = Field(description="The incident this one is merged into.")


class DispatchIn(Strict):
    unit_ids: list[UnitId] = Field(min_length=1, max_length=50)
    recommendation_id: DbId | None = None
    override_reason: Annotated[str, Field(min_length=3, max_length=500)] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> DispatchIn:
        if len(set(self.unit_ids)) != len(self.unit_ids):
            raise ValueError("unit_ids has duplicates")
        return self


class SlotIn(Strict):
    unit_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    count: int = Field(ge=1, le=20)
    capabilities: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]] = Field(
        default_factory=list, max_length=8)


class ResponsePlanIn(Strict):
    name: ShortText
    incident_type: TypeCode | None = None
    priority: Priority | None = None
    zone_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    slots: list[SlotIn] = Field(min_length=1, max_length=20)


class SubstitutionIn(Strict):
    slot_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    unit_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class IncidentTypeIn(Strict):
    description: ShortText
    apco_type: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_-]{0,31}$")]
    discipline: Literal["police", "fire", "ems"]
    default_priority: Priority
    duplicate_group: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class ZoneImport(Strict):
    """A GeoJSON FeatureCollection of Polygon/MultiPolygon features. Each feature's
    properties: id, name, kind (beat, first_due ...), agency, first_due_station (optional)."""

    type: Literal["FeatureCollection"]
    features: list[dict[str, Any]] = Field(min_length=1, max_length=5000)
    replace_kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] | None = Field(
        default=None, description="Drop zones of this kind that the file does not contain.")


__all__ = [
    "CallerIn",
    "CloseIn",
    "DispatchIn",
    "IncidentCreate",
    "IncidentPatch",
    "IncidentTypeIn",
    "LinkIn",
    "LocationIn",
    "MergeIn",
    "NarrativeIn",
    "ResponsePlanIn",
    "SlotIn",
    "SubstitutionIn",
    "UnitId",
    "ZoneImport",
]
