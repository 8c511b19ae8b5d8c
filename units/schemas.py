"""Units and stations on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from schemas.common import (
    Agency,
    Code,
    DbId,
    IsoTime,
    Latitude,
    Longitude,
    Out,
    ShortText,
    Strict,
    UnitId,
    Version,
)
from units.status import UnitStatus

Discipline = Literal["police", "fire", "ems"]
Capability = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Source = Literal["console", "mdt"]


class StationIn(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
    agency: Agency
    name: ShortText
    address: ShortText | None = None
    lat: Latitude
    lon: Longitude


class UnitCreate(Strict):
    id: UnitId = Field(description="Call sign, e.g. E01, M85, 2A12.")
    agency: Agency
    discipline: Discipline
    unit_type: Code = Field(description="engine, ladder, quint, medic_als, medic_bls, "
                                        "battalion_chief, patrol, supervisor, k9 ...")
    capabilities: list[Capability] = Field(default_factory=list, max_length=32)
    home_station: str | None = Field(default=None, max_length=32)
    staffing: int = Field(default=0, ge=0, le=50)
    status: Literal["off_duty", "out_of_service", "available_in_quarters",
                    "available_on_radio"] = "off_duty"


class UnitPatch(Strict):
    agency: Agency | None = None
    discipline: Discipline | None = None
    unit_type: Code | None = None
    capabilities: list[Capability] | None = Field(default=None, max_length=32)
    home_station: str | None = Field(default=None, max_length=32)
    staffing: int | None = Field(default=None, ge=0, le=50)
    version: Version | None = Field(default=None, description="Refuse (409) unless current.")

    @field_validator("agency", "discipline", "unit_type", "capabilities", "staffing",
                     "version", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Leaving a field out keeps it; null would clear a value that cannot be empty.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class StatusChange(Strict):
    status: UnitStatus
    incident_id: DbId | None = Field(
        default=None, description="When given, the unit must be on this incident (guards a "
        "late MDT message about an earlier incident).")
    reported_at: datetime | None = Field(
        default=None, description="The device's clock; stored apart, never used for ordering.")
    source: Source | None = Field(default=None, description="Defaults from the caller's role.")


class CheckIn(Strict):
    note: ShortText | None = None


# --- answers ---------------------------------------------------------------------------------
class StationOut(Out):
    id: str
    agency: str
    name: str
    address: str | None
    lat: float
    lon: float


class StationsImported(Out):
    imported: int


class ImportCounts(Out):
    created: int
    updated: int


class StatusTableEntry(Out):
    apco_code: str
    allowed_next: list[UnitStatus]


class StatusHistoryEntry(Out):
    id: int
    from_status: UnitStatus | None
    to_status: UnitStatus
    at: IsoTime
    reported_at: IsoTime | None
    incident_id: int | None
    actor: str
    source: str


class UnitRoute(Out):
    unit_id: str
    eta_s: float = Field(description="Road ETA in seconds (the graph's speeds, no factor)")
    distance_m: float
    coordinates: list[list[float]] = Field(
        description="The path as [lon, lat] pairs, from the unit's position to the point")
