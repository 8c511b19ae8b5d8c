"""Dispatch on the wire: assignment requests, response plans, recommendations, status-change
answers, timers and the board."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from incidents.schemas import TypeCode
from schemas.board import BoardSnapshot, IncidentView, UnitView
from schemas.common import DbId, Out, ShortText, Strict, UnitId
from units.status import UnitStatus

Priority = Annotated[int, Field(ge=1, le=5)]
UnitTypeCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


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
    unit_type: UnitTypeCode
    count: int = Field(ge=1, le=20)
    capabilities: list[UnitTypeCode] = Field(default_factory=list, max_length=8)


class ResponsePlanIn(Strict):
    name: ShortText
    incident_type: TypeCode | None = None
    priority: Priority | None = None
    zone_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    slots: list[SlotIn] = Field(min_length=1, max_length=20)


class SubstitutionIn(Strict):
    slot_type: UnitTypeCode
    unit_type: UnitTypeCode


# --- answers ---------------------------------------------------------------------------------
class Pick(Out):
    slot: int = Field(description="Position of the slot in the plan.")
    slot_type: str
    unit_id: str
    unit_type: str
    substitute: bool = Field(description="The unit's type fills the slot as a substitute.")
    eta_s: float
    distance_m: float
    position_source: Literal["avl", "station", "avl_stale"]
    position_age_s: float | None
    stale_position: bool
    position_description: str | None = Field(
        default=None, description="Where the unit is, as the nearest address and its cross "
        "streets (reverse geocoding, docs/geocoding.md); null without address data or graph.")
    off_road: bool = Field(default=False, description=(
        "The unit's position is farther than CAD_SNAP_LIMIT_M from any road: its ETA starts "
        "from the nearest road and cannot be trusted (the reason says so too)."))
    snap_distance_m: float | None = Field(default=None, description=(
        "Distance from the unit's position to the road it was placed on (road-network ETAs)."))
    reason: str = Field(description="Why this unit, in words a dispatcher reads.")


class RunnerUp(Out):
    """The next nearest free unit for a slot type after the picks: an alternative a dispatcher
    may send instead (an override, which needs a reason)."""
    rank: int = Field(description="1 for the nearest runner-up of its slot type.")
    slot_type: str
    unit_id: str
    unit_type: str
    substitute: bool
    eta_s: float
    distance_m: float
    position_source: Literal["avl", "station", "avl_stale"]
    position_age_s: float | None
    stale_position: bool
    position_description: str | None = Field(default=None, description=(
        "Always null for runners-up: the reverse lookup is spent on the picks only."))
    off_road: bool = False
    snap_distance_m: float | None = None
    reason: str


class Shortfall(Out):
    slot_type: str
    capabilities: list[str]
    needed: int
    filled: int
    reason: str


class PlanSummary(Out):
    id: int | None
    name: str
    slots: list[str]


class AlreadyAssigned(Out):
    slot_type: str
    unit_id: str


class RecommendationOut(Out):
    id: int
    incident_id: int
    plan: PlanSummary
    eta_method: Literal["road_network", "straight_line_estimate"]
    incident_off_road: bool = Field(default=False, description=(
        "The incident's location is farther than CAD_SNAP_LIMIT_M from any road: every ETA "
        "ends at the nearest road, not at the incident."))
    incident_snap_distance_m: float | None = Field(default=None, description=(
        "Distance from the incident to the road it was placed on (road-network ETAs)."))
    already_assigned: list[AlreadyAssigned]
    picks: list[Pick] = Field(description="Nearest first.")
    runners_up: list[RunnerUp] = Field(default_factory=list, description=(
        "Per slot type, up to three next nearest available units that no slot took, nearest "
        "first; dispatching one instead of a pick is an override."))
    shortfalls: list[Shortfall]


class DispatchOut(Out):
    incident: IncidentView
    dispatched: list[str]
    units: list[UnitView]
    recommendation_id: int | None
    recommendation_outcome: Literal["accepted", "overridden"] | None
    mutual_aid: list[str] = Field(
        default_factory=list, description="Units dispatched to another agency's incident "
        "(CAD_MUTUAL_AID); flagged on the assignment, in the event and in the audit record.")


class StatusChangeOut(Out):
    unit: UnitView
    from_status: UnitStatus
    incident_id: int | None
    incident_can_close: bool = Field(description="Every unit on the incident has cleared.")
    incident_status: str | None = Field(default=None, description="When the unit is on one.")


class OverdueIncident(Out):
    incident_id: int
    number: str
    agency: str
    priority: int
    age_s: float
    threshold_s: float


class OverdueUnit(Out):
    unit_id: str
    agency: str
    status: UnitStatus
    incident_id: int | None
    age_s: float
    threshold_s: float


class TimersOut(Out):
    pending_incidents: list[OverdueIncident]
    units: list[OverdueUnit]


class BoardOut(BoardSnapshot):
    last_event_id: int = Field(description="Resume the board stream after this event.")


class SlotOut(Out):
    unit_type: str
    count: int
    capabilities: list[str] = Field(default_factory=list)


class ResponsePlanOut(Out):
    id: int
    name: str
    incident_type: str | None
    priority: int | None
    zone_id: str | None
    slots: list[SlotOut]


class SubstitutionOut(Out):
    slot_type: str
    unit_type: str



class UnitRouteOut(Out):
    unit_id: str
    incident_id: int
    eta_s: float = Field(description="Road ETA from where the routing index places the unit "
                         "(its AVL fix, else its home station), calibrated.")
    distance_m: float
    off_road: bool = Field(description="The unit is beyond CAD_SNAP_LIMIT_M from any road: the "
                           "route starts at the nearest road.")
    points: list[tuple[float, float]] = Field(description="The route as [lat, lon] pairs, unit first.")


class OverriddenRecommendation(Out):
    recommendation_id: int
    incident_id: int
    number: str
    agency: str
    recommended_at: datetime
    recommended_by: str
    recommended_units: list[str] = Field(description="The recommendation's picks.")
    dispatched_units: list[str] = Field(description="What the dispatcher sent instead.")
    reason: str | None = Field(description="The override reason given with the dispatch.")
    overridden_at: datetime | None
    overridden_by: str | None


# --- coverage (incidents/dispatch/coverage.py) ---------------------------------------------------
class CoverageCellProperties(Out):
    h3: str = Field(description="H3 cell index.")
    zones: list[str] = Field(description="Zones whose area holds the cell's centre.")
    weight: float = Field(description="Calls received in the cell over the demand window.")
    eta_s: float | None = Field(description="Road travel time of the n-th nearest available unit "
                                "counted, with the ETA factor; null when none reaches the cell.")
    unit_id: str | None = Field(description="That unit.")
    covered: bool = Field(description="eta_s <= threshold_s.")
    band: int = Field(ge=0, le=4, description="ETA band (summary.bands) the map colours by.")
    lost_coverage: bool = Field(description="What-if only: covered now, not with `without` committed.")


class CoveragePolygon(Out):
    type: Literal["Polygon"]
    coordinates: list[list[list[float]]] = Field(description="One closed ring of [lon, lat].")


class CoverageCell(Out):
    type: Literal["Feature"]
    id: str
    geometry: CoveragePolygon
    properties: CoverageCellProperties


class CoverageBand(Out):
    band: int
    label: str = Field(description="The band in words (the map legend's text equivalent).")
    covered: bool
    min_eta_s: float | None
    max_eta_s: float | None


class CoverageByType(Out):
    unit_type: str
    threshold_s: float = Field(description="This type's own threshold (CAD_COVERAGE_THRESHOLDS_S).")
    units_available: int = Field(description="Available units of the type with a known position, "
                                 "after `without`.")
    cells_covered: int
    covered_share: float | None
    demand_covered_share: float | None = Field(description="Share of the calls' weight covered; "
                                               "null when no call was received.")


class CoverageByZone(Out):
    zone_id: str
    agency: str
    name: str
    kind: str
    cells: int
    cells_covered: int
    covered_share: float | None
    demand: float
    demand_covered_share: float | None


class CoverageWhatIf(Out):
    covered_share_now: float | None = Field(description="The share covered with every unit as it is.")
    cells_losing_coverage: int = Field(description="Cells covered now that the what-if leaves uncovered.")
    demand_losing_coverage: float = Field(description="Their calls' weight.")


class CoverageSummary(Out):
    agencies: list[str] | None = Field(description="Whose units and area count; null: every agency.")
    unit_types: list[str] = Field(description="Types counted together in the picture; empty: any.")
    threshold_s: float
    nth: int = Field(description="Covered by the n-th nearest unit (2+: depth of coverage).")
    without: list[str] = Field(description="Units treated as committed (the what-if).")
    resolution: int
    area_source: Literal["zones", "graph_extent"]
    cells: int = Field(description="Demand cells: H3 cells of the area within the snapping limit "
                       "of a road.")
    cells_covered: int
    covered_share: float | None
    cells_off_road: int = Field(description="Cells of the area left out: no road near their centre.")
    demand_days: int
    demand: float = Field(description="Calls received in the cells over the demand window.")
    demand_covered_share: float | None
    calls_outside_cells: int
    eta_factor: float = Field(description="The recommendation's ETA factor, applied to every ETA.")
    units_counted: list[str]
    units_without_position: list[str] = Field(description="Available units the routing index has "
                                              "no position for (not counted).")
    what_if: CoverageWhatIf | None = Field(description="With `without`: the hole it leaves.")
    computed_at: datetime
    bands: list[CoverageBand]
    by_type: list[CoverageByType] = Field(description="Each unit type of the roster at its own "
                                          "threshold (first unit), after `without`.")
    zones: list[CoverageByZone]


class CoverageOut(Out):
    """A GeoJSON FeatureCollection of demand cells, with the summary as a foreign member."""

    type: Literal["FeatureCollection"]
    features: list[CoverageCell]
    summary: CoverageSummary
