"""Wire models of online reports: what the public sends and sees, what staff send and see.
The reporter's contact appears in exactly one response model (``ContactOut``, served by an
audited staff endpoint); the public status model has no field for staff notes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from incidents.schemas import LocationIn, Priority, TypeCode
from schemas.common import Latitude, Longitude, Out, Strict

# What the public may report online: non-emergency matters with no suspect on scene. Labels
# are in the public pages' catalogue (incidents.public.i18n, "rt_<type>").
REPORT_TYPES = ("theft", "vehicle_breakin", "vandalism", "lost_property", "noise",
                "abandoned_vehicle", "other")
ReportType = Literal["theft", "vehicle_breakin", "vandalism", "lost_property", "noise",
                     "abandoned_vehicle", "other"]
Tracking = Annotated[str, StringConstraints(
    pattern=r"^R-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")]
Status = Literal["received", "accepted", "declined"]
PHONE = r"^[0-9+() .#*x-]{3,32}$"
# Deliberately loose (one @, a dot in the domain, no spaces): mail is checked by sending it.
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$"


class ReportLocation(Strict):
    """Where it happened: an address or description of the place, coordinates, or both."""

    address: Annotated[str, Field(min_length=3, max_length=200)] | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None

    @model_validator(mode="after")
    def _something(self) -> ReportLocation:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        if self.address is None and self.lat is None:
            raise ValueError("give an address or lat and lon")
        return self


class ContactIn(Strict):
    """Optional: how staff may reach the reporter. Never shown publicly."""

    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    phone: Annotated[str, Field(pattern=PHONE)] | None = None
    email: Annotated[str, Field(pattern=EMAIL, max_length=254)] | None = None


class ProofIn(Strict):
    challenge: Annotated[str, Field(min_length=1, max_length=200,
                                    description="From GET /public/{agency}/reports/challenge.")]
    solution: Annotated[str, Field(min_length=1, max_length=64)]


class ReportFields(Strict):
    """A report as the form collects it."""

    report_type: ReportType
    description: Annotated[str, Field(min_length=10, max_length=4000)]
    location: ReportLocation
    occurred_at: datetime | None = Field(default=None, description="When it happened "
                                         "(with a UTC offset), if known.")
    contact: ContactIn | None = None
    language: Literal["en", "es"] = Field(default="en", description="For staff replying.")

    @model_validator(mode="after")
    def _aware(self) -> ReportFields:
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset")
        return self


class ReportIn(ReportFields):
    """A report sent by a script or a page with JavaScript: with a solved proof of work."""

    proof: ProofIn = Field(description="A solved proof-of-work challenge (docs/public.md).")


class ReportStatus(Out):
    """What the reporter sees: never staff notes, the contact or the incident."""

    tracking: str
    report_type: str
    status: Status
    submitted_at: datetime
    decided_at: datetime | None
    public_reason: str | None = Field(description="The reason given with the decision.")


# --- staff ---------------------------------------------------------------------------------
class ReportOut(Out):
    id: int
    tracking: str
    agency: str
    report_type: str
    description: str
    location_text: str | None
    lat: float | None
    lon: float | None
    occurred_at: datetime | None
    language: str
    has_contact: bool = Field(description="The contact itself: GET .../contact (audited). "
                              "false also once it was erased (contact_erased_at).")
    via: Literal["pow", "form"] = Field(description="The challenge it passed: proof of work "
                                        "or the form token (no JavaScript).")
    status: Status
    submitted_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    accepted_as: Literal["incident", "record"] | None
    incident_id: int | None
    public_reason: str | None
    staff_note: str | None
    contact_erased_at: datetime | None = Field(
        description="When the retention sweep erased the contact (CAD_CONTACT_RETENTION_DAYS "
                    "after the decision); null while it is kept or none was given.")


class ContactOut(Out):
    """The reporter's contact. All three null with ``erased_at`` null: none was given; with
    ``erased_at`` set: it was erased under the retention period, and cannot be recovered."""

    report_id: int
    name: str | None
    phone: str | None
    email: str | None
    erased_at: datetime | None = Field(
        description="When the retention sweep erased the contact (CAD_CONTACT_RETENTION_DAYS "
                    "after the decision); null while it is kept or none was given.")


class AcceptIn(Strict):
    kind: Literal["incident", "record"] = Field(
        description="incident: intake through the incident service; record: kept "
        "as a report only.")
    incident_type: TypeCode | None = Field(default=None, description="Required for an incident.")
    priority: Priority | None = None
    location: LocationIn | None = Field(default=None, description="Required for an incident "
                                        "when the report has no coordinates.")
    public_reason: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    staff_note: Annotated[str, Field(min_length=1, max_length=2000)] | None = None

    @model_validator(mode="after")
    def _type_for_incident(self) -> AcceptIn:
        if self.kind == "incident" and self.incident_type is None:
            raise ValueError("incident_type is required to accept as an incident")
        return self


class DeclineIn(Strict):
    public_reason: Annotated[str, Field(min_length=3, max_length=500,
                                        description="Shown to the reporter.")]
    staff_note: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
