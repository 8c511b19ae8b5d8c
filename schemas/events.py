"""The event envelope every consumer (board, MDT, analytics) reads from the event log, and the
registry of event types with the model of each one's ``data``.

An event is written by ``cad.uow.UnitOfWork.emit(type, aggregate=..., data=...)`` in the
transaction of the change it records. ``EVENT_TYPES`` names every type the application
emits (``tests/schemas/test_event_registry.py`` fails on an ``emit`` of an unregistered type)
and its payload model; ``/asyncapi.json`` publishes them, and the websocket tests validate
the events real actions wrote against them. Names are past tense: ``incident.created``.

Events that concern units carry ``data.unit_ids``: an MDT receives every event whose
aggregate is its unit or whose ``unit_ids`` names it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas.board import IncidentView, NarrativeEntry, UnitView

# --- the envelope --------------------------------------------------------------------------


class EventEnvelope(BaseModel):
    """One row of the event log as it goes on the wire (field order = wire order)."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="Commit-ordered: a reader of id > cursor never skips one")
    type: str = Field(description="A registered event type (EVENT_TYPES)")
    occurred_at: datetime
    aggregate_type: str = Field(description="incident, unit, station, zone, ...")
    aggregate_id: str = Field(description="'*' when the event concerns every aggregate "
                              "of its type (an import)")
    agency: str | None = Field(default=None, description="None: system-wide, every board")
    actor: str | None = None
    request_id: str | None = None
    training: bool = Field(default=False, description="An event of a training agency "
                           "(CAD_TRAINING_AGENCIES): exercise data, never real")
    data: dict[str, Any]


# The envelope's wire keys, in order: the gateway serialises rows with exactly these.
ENVELOPE_FIELDS: tuple[str, ...] = tuple(EventEnvelope.model_fields)

UnitIds = Annotated[list[str], Field(description="Units this event concerns (MDT routing)")]


# --- payloads ------------------------------------------------------------------------------

class IncidentPayload(BaseModel):
    incident: IncidentView
    unit_ids: UnitIds


class IncidentCreated(IncidentPayload):
    pass


class DuplicateCandidate(BaseModel):
    incident_id: int
    number: str
    incident_type: str
    distance_m: float
    seconds_apart: float


class IncidentDuplicateFlagged(IncidentPayload):
    candidates: list[DuplicateCandidate]


class IncidentUpdated(IncidentPayload):
    changed: list[str] = Field(description="Names of the fields that changed")


class IncidentNarrativeAdded(IncidentPayload):
    entry: NarrativeEntry


class IncidentClosed(IncidentPayload):
    disposition: str


class IncidentLinked(IncidentPayload):
    other_id: int
    kind: str


class IncidentMerged(IncidentPayload):
    into_id: int


class IncidentMergeReceived(IncidentPayload):
    from_id: int


class IncidentUnitsDispatched(IncidentPayload):
    units_after: list[UnitView]
    dispatched: list[str]
    recommendation_id: int | None
    recommendation_outcome: Literal["accepted", "overridden"] | None
    override_reason: str | None


class IncidentUnitStatusChanged(IncidentPayload):
    unit_id: str
    to: str
    all_units_cleared: bool


class RecommendedPlan(BaseModel):
    id: int | None
    name: str
    slots: list[str]


class Recommendation(BaseModel):
    id: int
    incident_id: int
    plan: RecommendedPlan
    eta_method: str
    already_assigned: list[dict[str, Any]]
    picks: list[dict[str, Any]]
    runners_up: list[dict[str, Any]] = Field(default_factory=list)  # absent before issue 13's round 2
    shortfalls: list[dict[str, Any]]


class RecommendationMade(BaseModel):
    recommendation: Recommendation
    unit_ids: UnitIds


class TimerPendingOverdue(IncidentPayload):
    age_s: float
    threshold_s: float


class UnitPayload(BaseModel):
    unit: UnitView


class UnitStatusChanged(UnitPayload):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    incident_id: int | None
    source: str
    unit_ids: UnitIds


class UnitCheckedIn(UnitPayload):
    unit_ids: UnitIds


class TimerUnitStatusOverdue(UnitPayload):
    status: str
    age_s: float
    threshold_s: float
    incident_id: int | None
    unit_ids: UnitIds


class Station(BaseModel):
    id: str
    agency: str
    name: str
    address: str | None
    lat: float
    lon: float


class StationUpserted(BaseModel):
    station: Station


class StationImported(BaseModel):
    station_ids: list[str]


class IncidentTypeUpserted(BaseModel):
    code: str
    description: str
    apco_type: str
    discipline: str
    default_priority: int
    duplicate_group: str


class ResponsePlanUpserted(BaseModel):
    id: int
    name: str
    incident_type: str | None
    priority: int | None
    zone_id: str | None
    slots: list[dict[str, Any]]


class ResponsePlanDeleted(BaseModel):
    id: int


class SubstitutionAdded(BaseModel):
    slot_type: str
    unit_type: str


class ZoneImported(BaseModel):
    zone_ids: list[str]
    removed: list[str]


class AlertDrafted(BaseModel):
    incident_id: int
    msg_type: str   # CAP msgType: Alert | Update | Cancel


class AlertPublished(BaseModel):
    identifier: str
    msg_type: str
    deliveries: int   # subscriber deliveries queued


class AlertSubscribed(BaseModel):
    channel: str


class AlertUnsubscribed(BaseModel):
    pass
class PublicationChanged(BaseModel):
    agency: str
    incident_type: str
    published: bool


class FeedbackReceived(BaseModel):
    feedback_id: int
    category: str
    status: str


class FeedbackAssigned(BaseModel):
    feedback_id: int
    assigned_to: str
    status: str


class FeedbackStatusChanged(BaseModel):
    feedback_id: int
    from_status: str
    status: str
    outcome: str | None


class FeedbackNoteAdded(BaseModel):
    feedback_id: int
    note_id: int


class ReportChanged(BaseModel):
    """An online report received or decided (no description, contact or staff note)."""

    report_id: int
    tracking: str
    report_type: str
    status: str
    accepted_as: str | None
    incident_id: int | None


class TrainingReset(BaseModel):
    """A training agency's exercise was deleted (cad.training.reset): a board or MDT showing
    that agency drops what it holds of it and takes a fresh snapshot."""

    agency: str
    roster: Literal["kept", "wiped"] = Field(description="kept: the units are back in "
                                             "quarters at their stations; wiped: deleted")
    unit_ids: list[str] = Field(description="The agency's units (reset or deleted) and other "
                                "training agencies' units released from its incidents")
    incident_ids: list[int] = Field(description="The incidents deleted")
    counts: dict[str, int] = Field(description="Rows deleted or reset, per table")


# --- the registry --------------------------------------------------------------------------

EVENT_TYPES: dict[str, type[BaseModel]] = {
    "incident.created": IncidentCreated,
    "incident.duplicate_flagged": IncidentDuplicateFlagged,
    "incident.updated": IncidentUpdated,
    "incident.narrative_added": IncidentNarrativeAdded,
    "incident.closed": IncidentClosed,
    "incident.linked": IncidentLinked,
    "incident.merged": IncidentMerged,
    "incident.merge_received": IncidentMergeReceived,
    "incident.units_dispatched": IncidentUnitsDispatched,
    "incident.unit_status_changed": IncidentUnitStatusChanged,
    "recommendation.made": RecommendationMade,
    "timer.pending_overdue": TimerPendingOverdue,
    "timer.unit_status_overdue": TimerUnitStatusOverdue,
    "unit.created": UnitPayload,
    "unit.updated": UnitPayload,
    "unit.deactivated": UnitPayload,
    "unit.status_changed": UnitStatusChanged,
    "unit.checked_in": UnitCheckedIn,
    "station.upserted": StationUpserted,
    "station.imported": StationImported,
    "incident_type.upserted": IncidentTypeUpserted,
    "response_plan.upserted": ResponsePlanUpserted,
    "response_plan.deleted": ResponsePlanDeleted,
    "substitution.added": SubstitutionAdded,
    "zone.imported": ZoneImported,
    "alert.drafted": AlertDrafted,
    "alert.published": AlertPublished,
    "alert.subscribed": AlertSubscribed,
    "alert.unsubscribed": AlertUnsubscribed,
    "publication.changed": PublicationChanged,
    "feedback.received": FeedbackReceived,
    "feedback.assigned": FeedbackAssigned,
    "feedback.status_changed": FeedbackStatusChanged,
    "feedback.note_added": FeedbackNoteAdded,
    "report.received": ReportChanged,
    "report.accepted": ReportChanged,
    "report.declined": ReportChanged,
    "training.reset": TrainingReset,
}


def _typed_envelope(event_type: str, payload: type[BaseModel]) -> type[EventEnvelope]:
    name = "".join(p.capitalize() for p in event_type.replace(".", "_").split("_")) + "Event"
    model: type[EventEnvelope] = create_model(
        name, __base__=EventEnvelope,
        type=(Literal[event_type], Field(description=f"``{event_type}``")),  # type: ignore[valid-type]  # a Literal built from a runtime string
        data=(payload, ...),
    )
    return model


# One envelope model per event type (``type`` fixed, ``data`` typed): the schema of the
# ``events`` items of a websocket batch, discriminated by ``type``.
TYPED_ENVELOPES: dict[str, type[EventEnvelope]] = {
    t: _typed_envelope(t, m) for t, m in EVENT_TYPES.items()}


def validate_event_data(event_type: str, data: dict[str, Any]) -> BaseModel:
    """The payload model of ``event_type`` validated from ``data`` (KeyError: unregistered).
    For tests and producers that want to check what they emit; the gateway never calls this."""
    return EVENT_TYPES[event_type].model_validate(data)


# Any registered event, told apart by ``type``: what a websocket batch carries.
AnyEvent = Annotated[  # type: ignore[valid-type]  # a Union built from the registry at import
    Union[tuple(TYPED_ENVELOPES.values())],  # noqa: UP007 - X | Y cannot unpack a tuple
    Field(discriminator="type"),
]
