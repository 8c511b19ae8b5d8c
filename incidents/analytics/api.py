"""Analytics over HTTP: interval reports (JSON, CSV) and charts (PNG, SVG). Who may call
what: cad/security/policy.py (analysts, supervisors, admins); rows are limited to the
caller's agencies (cad.security.scope)."""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from cad.errors import Invalid
from cad.security import CurrentScope
from incidents.analytics import service
from incidents.analytics.schemas import (
    DispositionOut,
    EquityOut,
    HexbinsOut,
    IncidentIntervals,
    ReportOut,
    SearchPage,
)
from incidents.deps import IncidentsDep

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Metrics = Annotated[list[str], Query(alias="metric", description=(
    f"Intervals to report: {', '.join(service.INTERVALS)}."))]
GroupBy = Annotated[list[str], Query(description=f"Dimensions: {', '.join(service.DIMENSIONS)}.")]
Thresholds = Annotated[list[str], Query(alias="threshold", description=(
    "metric:seconds, e.g. turnout:60 (defaults: NFPA 1710/1225, docs/analytics.md)."))]
Start = Annotated[datetime | None, Query(alias="from", description="received_at >= from")]
End = Annotated[datetime | None, Query(alias="to", description="received_at < to")]
Source = Annotated[Literal["live", "imported"] | None, Query()]
Filter = Annotated[list[str] | None, Query()]
AgencyFilter = Annotated[list[str] | None, Query(
    alias="agency", description="Only these agencies (within the caller's). Training agencies "
    "(CAD_TRAINING_AGENCIES) are left out unless named here, or unless the caller acts only "
    "for training agencies.")]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {
    "schema": {"type": "string", "description": "One header row, then one row per group."}}}}}


def _thresholds(raw: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in raw:
        name, _, value = item.partition(":")
        try:
            out[name] = float(value)
        except ValueError:
            raise Invalid(f"threshold {item!r} is not metric:seconds", field="threshold") from None
    return out


def _query(metrics: list[str], group_by: list[str], thresholds: list[str], start: datetime | None,
           end: datetime | None, source: str | None, filters: dict[str, list[str] | None]
           ) -> service.ReportQuery:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"'{name}' needs a UTC offset (e.g. 2020-04-07T00:00:00-07:00)", field=name)
    return service.ReportQuery(metrics=metrics, group_by=group_by, start=start, end=end,
                               source=source, thresholds=_thresholds(thresholds),
                               filters={k: v for k, v in filters.items() if v})


@router.get("/report", response_model=ReportOut,
            summary="Interval report: count, median, 90th percentile, share within threshold")
async def report(deps: IncidentsDep, scope: CurrentScope, metrics: Metrics,
                 group_by: GroupBy = [], thresholds: Thresholds = [],  # noqa: B006 - FastAPI query
                 start: Start = None, end: End = None, source: Source = None,
                 incident_type: Filter = None, call_type_group: Filter = None,
                 priority: Filter = None, zone: Filter = None, station: Filter = None,
                 unit_type: Filter = None, agency: AgencyFilter = None) -> dict[str, Any]:
    query = _query(metrics, group_by, thresholds, start, end, source, {
        "agency": agency, "incident_type": incident_type, "call_type_group": call_type_group,
        "priority": priority, "zone": zone, "station": station, "unit_type": unit_type})
    return await service.report(pool=deps.pool, scope=scope, query=query,
                                timezone=deps.settings.analytics_timezone)


@router.get("/report.csv", response_class=Response, responses=CSV_RESPONSE,
            summary="The interval report as CSV (the same parameters)")
async def report_csv(deps: IncidentsDep, scope: CurrentScope, metrics: Metrics,
                     group_by: GroupBy = [], thresholds: Thresholds = [],  # noqa: B006
                     start: Start = None, end: End = None, source: Source = None,
                     incident_type: Filter = None, call_type_group: Filter = None,
                     priority: Filter = None, zone: Filter = None, station: Filter = None,
                     unit_type: Filter = None, agency: AgencyFilter = None) -> Response:
    query = _query(metrics, group_by, thresholds, start, end, source, {
        "agency": agency, "incident_type": incident_type, "call_type_group": call_type_group,
        "priority": priority, "zone": zone, "station": station, "unit_type": unit_type})
    result = await service.report(pool=deps.pool, scope=scope, query=query,
                                  timezone=deps.settings.analytics_timezone)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(service.report_csv_rows(result))
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="report.csv"'})


IMAGE_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/svg+xml": {"schema": {"type": "string", "description": "SVG document"}}}}}


@router.get("/charts/{chart}", response_class=Response, responses=IMAGE_RESPONSE,
            summary="A chart rendered on the server: distribution (with the threshold), "
                    "p90 by hour of day, weekly trend")
async def chart(chart: Literal["distribution", "p90_by_hour", "trend_by_week"],
                deps: IncidentsDep, scope: CurrentScope,
                metric: Annotated[str, Query(description="One interval.")] = "total_response",
                format: Annotated[Literal["png", "svg"], Query()] = "png",
                thresholds: Thresholds = [],  # noqa: B006
                start: Start = None, end: End = None, source: Source = None) -> Response:
    # matplotlib loads on the first chart, not with the app (its import and font cache cost
    # seconds at a cold start), and that import runs off the event loop too.
    charts = await asyncio.to_thread(importlib.import_module, "incidents.analytics.charts")

    query = _query([metric], [], thresholds, start, end, source, {})
    service.validate_report(query)
    threshold = query.thresholds.get(metric, service.INTERVALS[metric][2])
    tz = deps.settings.analytics_timezone
    if chart == "distribution":
        hist = await service.histogram(pool=deps.pool, scope=scope, query=query, timezone=tz)
        body = await charts.render_off_loop(charts.distribution, hist=hist, metric=metric,
                                            threshold_s=threshold, fmt=format)
    else:
        dim = "hour_of_day" if chart == "p90_by_hour" else "week"
        q = service.ReportQuery(metrics=[metric], group_by=[dim], start=start, end=end,
                                source=source, thresholds=query.thresholds)
        result = await service.report(pool=deps.pool, scope=scope, query=q, timezone=tz)
        points = [(row["group"][dim], row["metrics"][metric]["p90_s"]) for row in result["rows"]]
        body = await charts.render_off_loop(charts.series, points=points, metric=metric,
                                            threshold_s=threshold, fmt=format, by=dim)
    return Response(body, media_type="image/png" if format == "png" else "image/svg+xml")


@router.get("/dispositions", response_model=list[DispositionOut],
            summary="The managed disposition code list")
async def dispositions(deps: IncidentsDep) -> list[dict[str, Any]]:
    return await service.list_dispositions(pool=deps.pool)


# --- analyst search and export -----------------------------------------------------------------
async def _search_query(start: Start = None, end: End = None, source: Source = None,
                        incident_type: Filter = None, priority: Filter = None, zone: Filter = None,
                        station: Filter = None, disposition: Filter = None,
                        unit: Filter = None, agency: AgencyFilter = None) -> service.SearchQuery:
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise Invalid(f"'{name}' needs a UTC offset (e.g. 2020-04-07T00:00:00-07:00)", field=name)
    return service.SearchQuery(start=start, end=end, source=source,
                               incident_type=incident_type or [], priority=priority or [],
                               zone=zone or [], station=station or [],
                               disposition=disposition or [], unit=unit or [],
                               agency=agency or [])


SearchFilters = Annotated[service.SearchQuery, Depends(_search_query)]


@router.get("/incidents", response_model=SearchPage,
            summary="Search incidents (live and imported) in received order, keyset-paged")
async def search_incidents(
        deps: IncidentsDep, scope: CurrentScope, query: SearchFilters,
        after: Annotated[str | None, Query(max_length=200, description=(
            "The `next` cursor of the previous page."))] = None,
        limit: Annotated[int, Query(ge=1, le=service.SEARCH_PAGE_MAX)] = 100) -> dict[str, Any]:
    return await service.search(pool=deps.pool, scope=scope, query=query, after=after, limit=limit)


EXPORT_CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {
    "schema": {"type": "string", "description": "Header row, then every matching incident."}}}}}
EXPORT_PARQUET: dict[int | str, dict[str, Any]] = {200: {"content": {
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/incidents.csv", response_class=StreamingResponse, responses=EXPORT_CSV,
            summary="Export every matching incident as CSV (streamed, no row limit)")
async def export_incidents_csv(deps: IncidentsDep, scope: CurrentScope,
                               query: SearchFilters) -> StreamingResponse:
    chunks = await service.export_csv(pool=deps.pool, scope=scope, query=query)
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="incidents.csv"'})


@router.get("/incidents.parquet", response_class=StreamingResponse, responses=EXPORT_PARQUET,
            summary="Export every matching incident as Parquet (streamed, no row limit)")
async def export_incidents_parquet(deps: IncidentsDep, scope: CurrentScope,
                                   query: SearchFilters) -> StreamingResponse:
    chunks = await service.export_parquet(pool=deps.pool, scope=scope, query=query)
    return StreamingResponse(chunks, media_type="application/vnd.apache.parquet", headers={
        "Content-Disposition": 'attachment; filename="incidents.parquet"'})


# --- equity and hotspots -------------------------------------------------------------------------
@router.get("/equity", response_model=EquityOut,
            summary="One interval's percentiles per zone or station, side by side with the whole")
async def equity(deps: IncidentsDep, scope: CurrentScope,
                 metric: Annotated[str, Query()] = "total_response",
                 by: Annotated[Literal["zone", "station"], Query()] = "zone",
                 thresholds: Thresholds = [],  # noqa: B006
                 start: Start = None, end: End = None, source: Source = None) -> dict[str, Any]:
    query = _query([metric], [], thresholds, start, end, source, {})
    service.validate_report(query)
    return await service.equity(pool=deps.pool, scope=scope, metric=metric, by=by, start=start,
                                end=end, source=source, thresholds=query.thresholds,
                                timezone=deps.settings.analytics_timezone)


@router.get("/hexbins", response_model=HexbinsOut,
            summary="Incident density on the H3 hexagonal grid (GeoJSON FeatureCollection)")
async def hexbins(deps: IncidentsDep, scope: CurrentScope,
                  resolution: Annotated[int, Query(description="H3 resolution 5..10 (8: ~0.74 km2)")] = 8,
                  start: Start = None, end: End = None, source: Source = None) -> dict[str, Any]:
    _query(["call_processing"], [], [], start, end, source, {})   # the same checks of from/to
    return await service.hexbins(pool=deps.pool, scope=scope, resolution=resolution, start=start,
                                 end=end, source=source)


@router.get("/incidents/{incident_id}/intervals", response_model=IncidentIntervals,
            summary="One incident's intervals and each unit's (imported calls: negative ids)")
async def incident_intervals(
        incident_id: Annotated[int, Path(ge=-(2**63 - 1), le=2**63 - 1)],
        deps: IncidentsDep, scope: CurrentScope) -> dict[str, Any]:
    return await service.incident_intervals(pool=deps.pool, scope=scope, incident_id=incident_id)
