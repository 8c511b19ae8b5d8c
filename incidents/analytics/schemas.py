"""Wire models of the analytics endpoints."""

from __future__ import annotations

from typing import Any, Literal

from schemas.common import Out


class IntervalStats(Out):
    n: int                      # valid intervals (both timestamps recorded, end >= start)
    missing: int                # a timestamp not recorded
    out_of_order: int           # end before start: excluded, counted here
    median_s: float | None
    p90_s: float | None
    threshold_s: float | None   # None: per discipline (turnout's default), next field
    threshold_by_discipline_s: dict[str, float] | None = None
    within_share: float | None  # share of the valid intervals within their threshold


class ReportRow(Out):
    group: dict[str, Any]
    incidents: int | None       # incidents in the group (incident-level metrics)
    unit_responses: int | None  # unit responses in the group (unit-level metrics)
    metrics: dict[str, IntervalStats]


class ReportOut(Out):
    metrics: list[str]
    group_by: list[str]
    start: str | None           # the range asked for: received_at >= start
    end: str | None             # received_at < end
    source: str | None
    timezone: str
    percentiles: str
    rows: list[ReportRow]


class DispositionOut(Out):
    code: str
    description: str
    active: bool


class SearchRow(Out):
    source: str                 # live | imported
    incident_id: int            # live: the incident's id; imported: minus the call's row id
    number: str                 # incident number, or the imported call number
    agency: str
    incident_type: str
    call_type_group: str | None
    priority: str | None
    zone: str | None
    station: str | None
    disposition: str | None     # a code of the managed list
    received_at: str
    first_dispatched_at: str | None
    first_on_scene_at: str | None
    closed_at: str | None
    lat: float | None
    lon: float | None
    call_processing_s: float | None
    total_response_s: float | None


class SearchPage(Out):
    items: list[SearchRow]
    next: str | None            # pass as `after` for the next page; None: this was the last


class AreaStats(IntervalStats):
    area: str | None
    p90_minus_overall_s: float | None   # this area's 90th percentile minus the whole area's


class EquityOut(Out):
    metric: str
    by: str
    start: str | None
    end: str | None
    source: str | None
    percentiles: str
    overall: IntervalStats | None
    areas: list[AreaStats]          # slowest 90th percentile first


class HexGeometry(Out):
    type: Literal["Polygon"]
    coordinates: list[list[list[float]]]


class HexProperties(Out):
    h3: str
    incidents: int
    per_km2: float


class HexFeature(Out):
    type: Literal["Feature"]
    id: str
    geometry: HexGeometry
    properties: HexProperties


class HexbinsOut(Out):
    type: Literal["FeatureCollection"]
    resolution: int
    average_cell_area_km2: float
    features: list[HexFeature]


class Interval(Out):
    seconds: float | None
    excluded: Literal["missing", "out_of_order"] | None   # why seconds is null


class UnitIntervals(Out):
    unit_id: str
    unit_type: str | None
    dispatched_at: str | None
    en_route_at: str | None
    on_scene_at: str | None
    cleared_at: str | None
    first_arriving: bool
    intervals: dict[str, Interval]     # turnout, travel, unit_response, committed


class IncidentIntervals(Out):
    source: str
    incident_id: int
    number: str
    agency: str
    incident_type: str
    priority: str | None
    received_at: str
    intervals: dict[str, Interval]     # call_processing, total_response
    units: list[UnitIntervals]
