"""Community alerts over HTTP. Staff endpoints (supervisors, admins; the caller's agencies):
draft, approve, subscriptions, delivery log. Public endpoints (no authentication by design,
rate-limited by the security middleware): the CAP message, Atom and JSON feeds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from cad.errors import NotFound
from cad.security import Context, CurrentScope
from incidents.alerts import cap, repository, service
from incidents.alerts.deps import AlertsDep
from incidents.alerts.schemas import (
    AlertDraft,
    AlertOut,
    DeliveryOut,
    JsonFeed,
    SubscriptionIn,
    SubscriptionOut,
)

router = APIRouter(prefix="/api/v1", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1)]
FEED_SIZE = 50
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


# --- public: published alerts only ----------------------------------------------------------

def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/public/alerts/{identifier}.xml", response_class=Response, responses=XML_RESPONSE,
            summary="A published alert as CAP 1.2 XML (public)")
async def public_alert_xml(identifier: Annotated[str, Path(max_length=200)],
                           deps: AlertsDep) -> Response:
    xml = await repository.published_xml(deps.pool, identifier=identifier)
    if xml is None:
        raise NotFound(f"no published alert {identifier!r}")
    return Response(xml, media_type=CAP_MEDIA)


@router.get("/public/alerts.atom", response_class=Response, responses=ATOM_RESPONSE,
            summary="Published alerts as an Atom feed (public)")
async def public_alerts_atom(request: Request, deps: AlertsDep) -> Response:
    alerts = await repository.published(deps.pool, limit=FEED_SIZE)
    updated = alerts[0]["sent_at"] if alerts else datetime(2000, 1, 1, tzinfo=UTC)
    return Response(cap.atom_feed(alerts=alerts, base_url=_base_url(request), updated=updated),
                    media_type="application/atom+xml")


@router.get("/public/alerts.json", response_model=JsonFeed, response_model_by_alias=True,
            summary="Published alerts as a JSON Feed 1.1 (public)")
async def public_alerts_json(request: Request, deps: AlertsDep) -> dict[str, Any]:
    base = _base_url(request)
    alerts = await repository.published(deps.pool, limit=FEED_SIZE)
    items = []
    for a in alerts:
        first = a["infos"][0]
        items.append({
            "id": a["identifier"], "url": f"{base}/api/v1/public/alerts/{a['identifier']}.xml",
            "title": first["headline"], "content_text": first["description"],
            "date_published": a["sent_at"], "language": first["language"],
            "_cap": {"msgType": a["msg_type"], "references": a["references_identifier"],
                "event": a["event"], "urgency": a["urgency"], "severity": a["severity"],
                "certainty": a["certainty"], "areaDesc": a["area_desc"],
                "polygons": a["polygons"], "info": a["infos"]}})
    return {"version": "https://jsonfeed.org/version/1.1", "title": "Community alerts",
            "feed_url": f"{base}/api/v1/public/alerts.json", "items": items}
