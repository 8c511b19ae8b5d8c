"""Incidents and zones on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.board import IncidentView, NarrativeEntry
from schemas.common import (
    Agency,
    DbId,
    IsoTime,
    Latitude,
    Longitude,
    Out,
    ShortText,
    Strict,
    Version,
)

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

    @field_validator("incident_type", "priority", "location", "version", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Leaving a field out keeps it; null would clear a value that cannot be empty.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class NarrativeIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=4000)]


class CloseIn(Strict):
    disposition: Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_ -]{0,31}$")] = Field(
        description="A code of the managed disposition list (GET /api/v1/analytics/dispositions), "
                    "e.g. REPORT, NO_MERIT, CANCELLED, TRANSPORTED.")


class LinkIn(Strict):
    other_id: DbId
    kind: Literal["related", "duplicate"] = "duplicate"


class MergeIn(Strict):
    into_id: DbId = Field(description="The incident this one is merged into.")


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


# --- answers ---------------------------------------------------------------------------------
IncidentStatus = Literal["pending", "dispatched", "en_route", "on_scene", "cleared", "closed"]


class DuplicateCandidate(Out):
    incident_id: int
    number: str
    incident_type: str
    distance_m: float
    seconds_apart: float


class IntakeOut(IncidentView):
    possible_duplicates: list[DuplicateCandidate]
    zones: list[str] = Field(description="Zones containing the location, the deciding one first.")


class LinkedIncident(Out):
    incident_id: int
    kind: Literal["related", "duplicate"]


class CallerRecord(Out):
    name: str | None
    callback_number: str | None
    recorded_at: IsoTime


class IncidentDetail(IncidentView):
    narrative: list[NarrativeEntry]
    links: list[LinkedIncident]
    callers: list[CallerRecord] | None = Field(
        default=None, description="Only for field units, and only when CAD_FIELD_UNIT_CALLER_DATA "
        "grants it; consoles read callers through GET /incidents/{id}/caller.")


class CallerData(Out):
    incident_id: int
    callers: list[CallerRecord]


class LinkOut(Out):
    incident_id: int
    other_id: int
    kind: Literal["related", "duplicate"]


class IncidentTypeOut(Out):
    code: str
    description: str
    apco_type: str
    discipline: Literal["police", "fire", "ems"]
    default_priority: int
    duplicate_group: str


class ZoneOut(Out):
    id: str
    agency: str
    kind: str
    name: str
    first_due_station: str | None


class ZoneWithGeometry(ZoneOut):
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (WGS84).")


class ZonesImported(Out):
    imported: int
    removed: list[str]
