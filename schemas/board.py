"""Wire shapes of units and incidents as boards and MDTs see them: in snapshots and inside
event payloads alike (one serialiser per entity, so a board can be rebuilt from events).

The domain packages build these as plain dicts (``incidents/board.py``); these models are
their published schema (``/asyncapi.json``). Times are ISO 8601 strings with an offset,
passed through as the views write them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.common import IsoTime


class UnitView(BaseModel):
    id: str = Field(description="Call sign, e.g. E01")
    agency: str
    discipline: str = Field(description="police | fire | ems")
    unit_type: str
    capabilities: list[str]
    home_station: str | None
    staffing: int
    status: str = Field(description="Unit status (units/status.py holds the transition table)")
    apco_code: str = Field(description="APCO common status code of ``status``")
    status_changed_at: IsoTime | None
    last_checkin_at: IsoTime | None
    incident_id: int | None = Field(description="The incident the unit is assigned to")
    active: bool
    version: int
    training: bool = Field(default=False, description="True when the unit belongs to a training "
                           "agency (CAD_TRAINING_AGENCIES): exercise data, never real")


class AssignmentView(BaseModel):
    """One unit on one incident, with its append-only progress timestamps."""

    unit_id: str
    status: str
    dispatched_at: IsoTime | None
    en_route_at: IsoTime | None
    on_scene_at: IsoTime | None
    transporting_at: IsoTime | None
    at_hospital_at: IsoTime | None
    cleared_at: IsoTime | None


class IncidentView(BaseModel):
    id: int
    number: str
    agency: str
    incident_type: str
    priority: int = Field(ge=1, le=5)
    status: str
    lat: float | None
    lon: float | None
    location_text: str | None
    location_source: str | None
    location_precision: str | None = Field(
        default=None, description="How exact the point is: coordinates, address_point, "
        "interpolated, block, intersection, street or place (incidents.geocoding).")
    location_unit: str | None = Field(default=None, description="Apartment, suite: kept with "
                                      "the incident, never moves the point.")
    access_lat: float | None = Field(default=None, description="The routing target of a "
                                     "geocoded address: its access point on its street's edge, "
                                     "on its side. Null: units are routed to lat/lon.")
    access_lon: float | None = None
    zone_id: str | None
    received_at: IsoTime | None
    answered_at: IsoTime | None
    created_at: IsoTime | None
    first_dispatched_at: IsoTime | None
    first_en_route_at: IsoTime | None
    first_on_scene_at: IsoTime | None
    cleared_at: IsoTime | None
    closed_at: IsoTime | None
    disposition: str | None
    duplicate_candidates: list[int]
    merged_into: int | None
    version: int
    training: bool = Field(default=False, description="True when the incident belongs to a training "
                           "agency (CAD_TRAINING_AGENCIES): exercise data, never real")
    units: list[AssignmentView]


class NarrativeEntry(BaseModel):
    id: int | None = None
    at: IsoTime
    author: str
    text: str


class MdtIncidentView(IncidentView):
    """The incident an MDT's unit is assigned to, with its narrative (no caller data)."""

    narrative: list[NarrativeEntry]


class BoardSnapshot(BaseModel):
    """A dispatch board's state: open incidents by id, active units by id."""

    incidents: dict[str, IncidentView]
    units: dict[str, UnitView]


class UnitSnapshot(BaseModel):
    """An MDT's state: its unit and, when assigned, the incident."""

    unit: UnitView
    incident: MdtIncidentView | None
