"""Community alerts over HTTP. Staff endpoints (supervisors, admins; the caller's agencies):
draft, approve, subscriptions, delivery log. Public endpoints (no authentication by design,
rate-limited by the security middleware), per agency beside its crime map under
``/public/{agency}/``: the CAP message, Atom and JSON feeds, and the page of alerts in force."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from cad.errors import NotFound
from cad.security import Context, CurrentScope
from incidents.alerts import cap, pages, repository, service
from incidents.alerts.deps import AlertsDep
from incidents.alerts.schemas import (
    AlertDraft,
    AlertOut,
    DeliveryOut,
    JsonFeed,
    SubscriptionIn,
    SubscriptionOut,
)
from incidents.public import i18n
from incidents.public.api import FEED_CACHE, PAGE_CSP, AcceptLanguage, AgencyPath, Lang

router = APIRouter(prefix="/api/v1", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1)]
FEED_SIZE = 50
PAGE_SIZE = 50      # alerts in force at once: a handful in practice; 50 keeps the page small
CAP_MEDIA = "application/cap+xml"
XML_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {CAP_MEDIA: {
    "schema": {"type": "string", "description": "An OASIS CAP 1.2 alert message."}}}}}
ATOM_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/atom+xml": {
    "schema": {"type": "string", "description": "Atom feed; entries link to CAP messages."}}}}}


@router.post("/alerts", status_code=201, response_model=AlertOut,
             summary="Draft a community alert (or an Update / Cancel of a published one)")
async def draft_alert(body: AlertDraft, deps: AlertsDep, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    return await service.draft_alert(deps=deps, ctx=ctx, scope=scope, body=body)


@router.get("/alerts", response_model=list[AlertOut], summary="Alerts, newest first")
async def list_alerts(deps: AlertsDep, scope: CurrentScope,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await service.list_alerts(deps=deps, scope=scope, limit=limit)


@router.get("/alerts/{alert_id}", response_model=AlertOut, summary="One alert")
async def get_alert(alert_id: AlertId, deps: AlertsDep, scope: CurrentScope) -> dict[str, Any]:
    return await service.get_alert(deps=deps, scope=scope, alert_id=alert_id)


@router.post("/alerts/{alert_id}/approve", response_model=AlertOut,
             summary="Approve and publish a draft (never by its drafter: two-person rule)")
async def approve_alert(alert_id: AlertId, deps: AlertsDep, ctx: Context,
                        scope: CurrentScope) -> dict[str, Any]:
    return await service.approve_alert(deps=deps, ctx=ctx, scope=scope, alert_id=alert_id)


@router.get("/alerts/{alert_id}/deliveries", response_model=list[DeliveryOut],
            summary="Delivery log of an alert: every subscriber, every attempt")
async def alert_deliveries(alert_id: AlertId, deps: AlertsDep,
                           scope: CurrentScope) -> list[dict[str, Any]]:
    return await service.deliveries(deps=deps, scope=scope, alert_id=alert_id)


@router.post("/alert-subscriptions", status_code=201, response_model=SubscriptionOut,
             summary="Subscribe a webhook, an email address or a log channel to an agency")
async def subscribe(body: SubscriptionIn, deps: AlertsDep, ctx: Context,
                    scope: CurrentScope) -> dict[str, Any]:
    return await service.subscribe(deps=deps, ctx=ctx, scope=scope, body=body)


@router.get("/alert-subscriptions", response_model=list[SubscriptionOut],
            summary="Active subscriptions (secrets are never shown)")
async def list_subscriptions(deps: AlertsDep, scope: CurrentScope) -> list[dict[str, Any]]:
    return await service.list_subscriptions(deps=deps, scope=scope)


@router.delete("/alert-subscriptions/{subscription_id}", status_code=204, response_class=Response,
               summary="End a subscription")
async def unsubscribe(subscription_id: Annotated[int, Path(ge=1)], deps: AlertsDep,
                      ctx: Context, scope: CurrentScope) -> Response:
    await service.unsubscribe(deps=deps, ctx=ctx, scope=scope, subscription_id=subscription_id)
    return Response(status_code=204)


# --- public: published alerts only, per agency, beside the crime map (/public/{agency}/...) ---

public_router = APIRouter(tags=["alerts", "public"])


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _feed_urls(request: Request, agency: str) -> tuple[str, str, str]:
    """(Atom feed, JSON feed, CAP message with ``{identifier}``) URLs of an agency."""
    base = f"{_base_url(request)}/public/{quote(agency)}/alerts"
    return f"{base}.atom", f"{base}.json", base + "/{identifier}.xml"


@public_router.get("/public/{agency}/alerts/{identifier}.xml", response_class=Response,
                   responses=XML_RESPONSE, summary="A published alert as CAP 1.2 XML (public)")
async def public_alert_xml(agency: AgencyPath, identifier: Annotated[str, Path(max_length=200)],
                           deps: AlertsDep) -> Response:
    xml = await repository.published_xml(deps.pool, agency=agency, identifier=identifier)
    if xml is None:
        raise NotFound(f"no published alert {identifier!r}")
    return Response(xml, media_type=CAP_MEDIA, headers={"cache-control": FEED_CACHE})


@public_router.get("/public/{agency}/alerts.atom", response_class=Response,
                   responses=ATOM_RESPONSE,
                   summary="An agency's published alerts as an Atom feed (public)")
async def public_alerts_atom(agency: AgencyPath, request: Request, deps: AlertsDep) -> Response:
    alerts = await repository.published(deps.pool, agency=agency, limit=FEED_SIZE)
    updated = alerts[0]["sent_at"] if alerts else datetime(2000, 1, 1, tzinfo=UTC)
    atom_url, _, message_url = _feed_urls(request, agency)
    return Response(cap.atom_feed(alerts=alerts, feed_url=atom_url, message_url=message_url,
                                  updated=updated),
                    media_type="application/atom+xml", headers={"cache-control": FEED_CACHE})


@public_router.get("/public/{agency}/alerts.json", response_model=JsonFeed,
                   response_model_by_alias=True,
                   summary="An agency's published alerts as a JSON Feed 1.1 (public)")
async def public_alerts_json(agency: AgencyPath, request: Request,
                             deps: AlertsDep) -> dict[str, Any]:
    alerts = await repository.published(deps.pool, agency=agency, limit=FEED_SIZE)
    _, json_url, message_url = _feed_urls(request, agency)
    items = []
    for a in alerts:
        first = a["infos"][0]
        items.append({
            "id": a["identifier"], "url": message_url.format(identifier=quote(a["identifier"])),
            "title": first["headline"], "content_text": first["description"],
            "date_published": a["sent_at"], "language": first["language"],
            "_cap": {"msgType": a["msg_type"], "references": a["references_identifier"],
                "event": a["event"], "urgency": a["urgency"], "severity": a["severity"],
                "certainty": a["certainty"], "areaDesc": a["area_desc"],
                "polygons": a["polygons"], "info": a["infos"]}})
    return {"version": "https://jsonfeed.org/version/1.1", "title": f"Community alerts: {agency}",
            "feed_url": json_url, "items": items}


@public_router.get("/public/{agency}/alerts", response_class=HTMLResponse, include_in_schema=False)
async def public_alerts_page(agency: AgencyPath, request: Request, deps: AlertsDep,
                             lang: Lang = None, accept_language: AcceptLanguage = None
                             ) -> HTMLResponse:
    """The alerts in force, in the reader's language where the alert carries it: a plain
    server-rendered page (no script), under the public pages' budget and policy."""
    chosen = i18n.choose(lang, accept_language)
    alerts = await repository.current(deps.pool, agency=agency, now=datetime.now(UTC),
                                      limit=PAGE_SIZE)
    atom_url, json_url, message_url = _feed_urls(request, agency)
    html = pages.alerts_page(lang=chosen, agency=agency, alerts=alerts, atom_url=atom_url,
                             json_url=json_url, message_url=message_url,
                             tz=ZoneInfo(deps.settings.analytics_timezone))
    return HTMLResponse(html, headers={"content-security-policy": PAGE_CSP,
                                       "content-language": chosen, "vary": "accept-language",
                                       "cache-control": FEED_CACHE})
