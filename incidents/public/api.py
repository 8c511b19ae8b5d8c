"""The public face over HTTP. Everything under ``/public`` is unauthenticated by design
(cad/security/policy.py lists each route PUBLIC, and the security middleware rate-limits them
per client address); what it answers passes the publication gate of
``incidents.public.repository``. Managing the gate is ``/api/v1/publication`` (supervisors,
admins; their agencies only)."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path as FsPath
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from cad.errors import Invalid, NotFound
from cad.security import Context, CurrentScope
from incidents.deps import IncidentsDep
from incidents.public import i18n, pages, service, views
from incidents.public.schemas import (
    FeatureCollection,
    PublicationIn,
    PublicationOut,
    PublicationRow,
    RequestForService,
)

STATIC_DIR = FsPath(__file__).parent / "static"
AGENCY_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{0,15}$"

AgencyPath = Annotated[str, Path(pattern=AGENCY_PATTERN, description="The agency's code.")]
NumberPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$",
                                 description="The incident number.")]
Days = Annotated[int, Query(ge=1, le=365, description="Incidents closed within this many days.")]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$", description="Page language (en, es).")]
AcceptLanguage = Annotated[str | None, Header(max_length=500)]

# Public pages: their own origin only; Leaflet's tiles are not used (the map draws points on
# a plain background unless a tile server is configured for the console).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'self'")
# Rows per map page: with Leaflet (about 163 kB, cached after the first visit) a page of 50
# stays under the 200 kB budget (measured: 50 rows add about 16 kB).
MAP_PAGE_ROWS = 50
# Feeds are fresh for a minute: they change when the delay passes, not by the second.
FEED_CACHE = "public, max-age=60"

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {
    "schema": {"type": "string", "description": "One header row, then one row per incident."}}}}}
ATOM_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/atom+xml": {
    "schema": {"type": "string", "description": "An Atom 1.0 feed (RFC 4287)."}}}}}

router = APIRouter(tags=["public"])


@router.get("/public/{agency}/incidents.geojson", response_model=FeatureCollection,
            summary="Published incidents as GeoJSON (crime-map data)")
async def incidents_geojson(agency: AgencyPath, deps: IncidentsDep, response: Response,
                            days: Days = 30) -> dict[str, Any]:
    rows = await service.feed(deps=deps, agency=agency, days=days)
    response.headers["cache-control"] = FEED_CACHE
    return {"type": "FeatureCollection", "features": [views.feature(p) for p in rows]}


def _csv_cell(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not value[1:2].isdigit() else value


@router.get("/public/{agency}/incidents.csv", response_class=Response, responses=CSV_RESPONSE,
            summary="Published incidents as CSV")
async def incidents_csv(agency: AgencyPath, deps: IncidentsDep, days: Days = 30) -> Response:
    rows = await service.feed(deps=deps, agency=agency, days=days)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(views.CSV_COLUMNS)
    for p in rows:
        w.writerow([_csv_cell(v) for v in views.csv_row(p)])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"cache-control": FEED_CACHE,
                             "content-disposition": f'attachment; filename="{agency}-incidents.csv"'})


@router.get("/public/{agency}/incidents.atom", response_class=Response, responses=ATOM_RESPONSE,
            summary="Published incidents as an Atom feed")
async def incidents_atom(agency: AgencyPath, deps: IncidentsDep, request: Request,
                         days: Days = 30) -> Response:
    rows = await service.feed(deps=deps, agency=agency, days=days)
    base_url = str(request.base_url).rstrip("/")
    return Response(pages.atom(agency=agency, base_url=base_url, rows=rows),
                    media_type="application/atom+xml", headers={"cache-control": FEED_CACHE})


@router.get("/public/{agency}/requests/{number}", response_model=RequestForService,
            summary="Public request-for-service data of one incident (Minn. Stat. 13.82 subd. 3)")
async def request_for_service(agency: AgencyPath, number: NumberPath,
                              deps: IncidentsDep) -> dict[str, Any]:
    return views.rfs(await service.request_for_service(deps=deps, agency=agency, number=number))


@router.get("/public/{agency}/requests", response_model=list[RequestForService],
            summary="Public request-for-service data of one day, in the order received")
async def requests_of_day(agency: AgencyPath, deps: IncidentsDep,
                          day: Annotated[date, Query(alias="date", description="YYYY-MM-DD, "
                                                     "the agency's local day")]) -> list[dict[str, Any]]:
    return [views.rfs(p) for p in await service.requests_of_day(deps=deps, agency=agency, day=day)]


# --- pages -----------------------------------------------------------------------------------
@router.get("/public/{agency}/map", response_class=HTMLResponse, include_in_schema=False)
async def map_page(agency: AgencyPath, deps: IncidentsDep, lang: Lang = None,
                   accept_language: AcceptLanguage = None,
                   page: Annotated[int, Query(ge=1, le=1000)] = 1) -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    rows = await service.feed(deps=deps, agency=agency, days=30)
    shown = rows[(page - 1) * MAP_PAGE_ROWS:page * MAP_PAGE_ROWS]
    html = pages.map_page(lang=chosen, agency=agency, rows=shown,
                          delay=i18n.delay_text(i18n.MESSAGES[chosen], deps.settings.public_delay_s),
                          tz=ZoneInfo(deps.settings.analytics_timezone), page=page,
                          has_next=len(rows) > page * MAP_PAGE_ROWS)
    return HTMLResponse(html, headers={"content-security-policy": PAGE_CSP,
                                       "content-language": chosen, "vary": "accept-language"})


@router.get("/public/{agency}/lookup", response_class=HTMLResponse, include_in_schema=False)
async def lookup_page(agency: AgencyPath, deps: IncidentsDep, lang: Lang = None,
                      accept_language: AcceptLanguage = None,
                      number: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{0,32}$")] = None,
                      day_text: Annotated[str | None, Query(
                          alias="date", pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$",
                          description="YYYY-MM-DD; empty (a form left blank) = none")] = None,
                      ) -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    try:
        day = date.fromisoformat(day_text) if day_text else None
    except ValueError:
        raise Invalid(f"{day_text!r} is not a date", field="query.date") from None
    found = None
    if number:
        try:
            found = await service.request_for_service(deps=deps, agency=agency, number=number)
        except NotFound:
            found = None
    day_rows = (await service.requests_of_day(deps=deps, agency=agency, day=day)
                if day is not None else None)
    html = pages.lookup_page(lang=chosen, agency=agency, number=number or None, found=found,
                             day=day, day_rows=day_rows,
                             tz=ZoneInfo(deps.settings.analytics_timezone))
    return HTMLResponse(html, headers={"content-security-policy": PAGE_CSP,
                                       "content-language": chosen, "vary": "accept-language"})


@router.get("/public/static/map.js", response_class=Response, include_in_schema=False)
async def map_script() -> Response:
    return Response((STATIC_DIR / "map.js").read_text(), media_type="text/javascript",
                    headers={"cache-control": "public, max-age=3600"})


# --- the publication table (authenticated) ---------------------------------------------------
@router.get("/api/v1/publication", response_model=list[PublicationRow],
            summary="Incident types published per agency (the caller's agencies)")
async def list_publication(deps: IncidentsDep, scope: CurrentScope) -> list[dict[str, Any]]:
    return await service.list_publication(deps=deps, scope=scope)


@router.put("/api/v1/publication/{agency}/{code}", response_model=PublicationOut,
            summary="Publish (or stop publishing) an incident type for an agency",
            description="Sensitive types (sexual assault, domestic, juvenile, medical, welfare "
                        "and the like) are refused with 422: they are never published.")
async def put_publication(agency: AgencyPath,
                          code: Annotated[str, Path(pattern=r"^[A-Z][A-Z0-9_-]{0,15}$")],
                          body: PublicationIn, deps: IncidentsDep, ctx: Context,
                          scope: CurrentScope) -> dict[str, Any]:
    return await service.set_publication(deps=deps, ctx=ctx, scope=scope, agency=agency,
                                         code=code, published=body.published)
