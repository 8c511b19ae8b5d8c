"""Alert actions: draft, approve (two-person rule), subscriptions, and the delivery worker
that retries failed deliveries with exponential backoff. Each state change writes its row,
its event and its audit record in one transaction (cad.uow)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog

from cad.errors import Conflict, Forbidden, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, unit_of_work
from incidents.alerts import cap, repository
from incidents.alerts.channels import Channel, Message, channels
from incidents.alerts.deps import AlertsDeps
from incidents.alerts.schemas import AlertDraft, SubscriptionIn

log = structlog.get_logger("incidents.alerts")
DELIVERY_BATCH = 20
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _infos(*, body: AlertDraft, languages: list[str]) -> list[dict[str, Any]]:
    missing = [lang for lang in languages if lang not in body.info]
    extra = [lang for lang in body.info if lang not in languages]
    if missing or extra:
        raise Invalid(f"info needs exactly the configured languages {languages}; "
                      f"missing {missing}, not configured {extra}", field="info")
    return [{"language": lang, **body.info[lang].model_dump()} for lang in languages]


async def draft_alert(*, deps: AlertsDeps, ctx: RequestContext, scope: Scope,
                      body: AlertDraft) -> dict[str, Any]:
    infos = _infos(body=body, languages=deps.settings.alert_languages)
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise Invalid("expires_at needs a UTC offset (e.g. 2026-12-01T18:00:00-08:00)",
                      field="expires_at")
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("alert.draft", details={"msg_type": body.msg_type})
        original = None
        if body.msg_type == "Alert":
            if body.references is not None:
                raise Invalid("a new Alert references nothing (use Update or Cancel)",
                              field="references")
            if body.incident_id is None:
                raise Invalid("incident_id is required for a new Alert", field="incident_id")
            if body.area is None:
                raise Invalid("area is required for a new Alert", field="area")
            incident_id = body.incident_id
        else:
            if body.references is None:
                raise Invalid(f"{body.msg_type} needs the alert it references",
                              field="references")
            original = await repository.get_alert(uow.conn, alert_id=body.references)
            if original is None or not scope.covers(original["agency"]):
                raise NotFound(f"alert {body.references} not found")
            if original["state"] != "published":
                raise Conflict("only a published alert can be updated or cancelled",
                               extra={"state": original["state"]})
            incident_id = original["incident_id"]
        incident = await repository.incident_location(uow.conn, incident_id=incident_id)
        if incident is None or not scope.covers(incident["agency"]):
            raise NotFound(f"incident {incident_id} not found")
        scope.require(incident["agency"], field="incident_id")
        if incident["training"]:
            # Alerts go to the public and to subscribers: an exercise must never reach them.
            raise Invalid(f"incident {incident_id} is a training incident: training is never "
                          "published", field="incident_id")
        if body.area is None and original is not None:
            polygons, area_desc = original["polygons"], original["area_desc"]
        else:
            polygons, area_desc = await _area(uow.conn, body=body, incident=incident)
        alert_id = await repository.insert_alert(uow.conn, values={
            "agency": incident["agency"], "incident_id": incident_id,
            "msg_type": body.msg_type, "references_id": body.references, "event": body.event,
            "category": body.category, "urgency": body.urgency, "severity": body.severity,
            "certainty": body.certainty, "area_desc": area_desc,
            "polygons": [[list(p) for p in ring] for ring in polygons], "infos": infos,
            "expires_at": body.expires_at, "drafted_by": ctx.actor})
        identifier = _ID_UNSAFE.sub("_", f"{incident['agency']}-alert-{alert_id}")
        await repository.set_identifier(uow.conn, alert_id=alert_id, identifier=identifier)
        record.target = f"alert:{alert_id}"
        uow.emit("alert.drafted", aggregate=("alert", alert_id), agency=incident["agency"],
                 data={"incident_id": incident_id, "msg_type": body.msg_type})
        alert = await repository.get_alert(uow.conn, alert_id=alert_id)
    assert alert is not None
    return alert


async def _area(conn: asyncpg.Connection, *, body: AlertDraft, incident: asyncpg.Record
                ) -> tuple[list[cap.Ring], str]:
    area = body.area
    assert area is not None
    if (area.radius_m is None) == (area.zone_id is None):
        raise Invalid("the area is either radius_m (around the incident) or zone_id",
                      field="area")
    if area.radius_m is not None:
        rings = cap.circle_polygon(lat=incident["lat"], lon=incident["lon"],
                                   radius_m=area.radius_m)
        return rings, area.description or f"Within {area.radius_m:.0f} m of the incident"
    assert area.zone_id is not None
    zone = await repository.zone(conn, zone_id=area.zone_id)
    if zone is None or zone["agency"] != incident["agency"]:
        raise Invalid(f"zone {area.zone_id!r} of agency {incident['agency']} not found",
                      field="area.zone_id")
    geometry = zone["geometry"]
    rings = cap.zone_polygons(orjson.loads(geometry) if isinstance(geometry, str) else geometry)
    return rings, area.description or zone["name"]


async def approve_alert(*, deps: AlertsDeps, ctx: RequestContext, scope: Scope,
                        alert_id: int) -> dict[str, Any]:
    """Publish a draft. The two-person rule: whoever drafted it can never approve it."""
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("alert.approve", target=f"alert:{alert_id}")
        alert = await repository.get_alert(uow.conn, alert_id=alert_id, for_update=True)
        if alert is None or not scope.covers(alert["agency"]):
            raise NotFound(f"alert {alert_id} not found")
        if alert["drafted_by"] == ctx.actor:
            raise Forbidden("two-person rule: the supervisor who drafted an alert cannot "
                            "approve it; another supervisor must",
                            extra={"drafted_by": alert["drafted_by"], "rule": "two_person"})
        if alert["state"] != "draft":
            raise Conflict("the alert is already published", extra={"state": alert["state"]})
        reference = None
        if alert["references_id"] is not None:
            # CAP 1.2 3.2.1: every earlier message of the chain, oldest first, so a receiver
            # that missed an Update still ties a Cancel to the original Alert.
            chain = await repository.reference_chain(uow.conn, alert_id=alert["references_id"])
            reference = " ".join(
                cap.reference_of(sender=deps.settings.alert_sender,
                                 identifier=r["identifier"], sent=r["sent_at"]) for r in chain)
        sent = datetime.now(UTC).replace(microsecond=0)
        xml = cap.alert_xml(alert=alert, sender=deps.settings.alert_sender, sent=sent,
                            reference=reference)
        if not await repository.publish(uow.conn, alert_id=alert_id, approved_by=ctx.actor,
                                        sent_at=sent, cap_xml=xml):
            raise Conflict("the alert changed meanwhile")
        queued = await repository.queue_deliveries(uow.conn, alert_id=alert_id,
                                                   agency=alert["agency"])
        uow.emit("alert.published", aggregate=("alert", alert_id), agency=alert["agency"],
                 data={"identifier": alert["identifier"], "msg_type": alert["msg_type"],
                       "deliveries": queued})

        async def wake() -> None:
            deps.wake.set()

        uow.after_commit(wake)
    published = await repository.get_alert(deps.pool, alert_id=alert_id)
    assert published is not None
    return published


async def get_alert(*, deps: AlertsDeps, scope: Scope, alert_id: int) -> dict[str, Any]:
    alert = await repository.get_alert(deps.pool, alert_id=alert_id)
    if alert is None or not scope.covers(alert["agency"]):
        raise NotFound(f"alert {alert_id} not found")
    return alert


async def list_alerts(*, deps: AlertsDeps, scope: Scope, limit: int) -> list[dict[str, Any]]:
    return await repository.list_alerts(deps.pool, agencies=scope.agency_list, limit=limit)


async def deliveries(*, deps: AlertsDeps, scope: Scope, alert_id: int) -> list[dict[str, Any]]:
    await get_alert(deps=deps, scope=scope, alert_id=alert_id)
    return await repository.deliveries(deps.pool, alert_id=alert_id)


async def subscribe(*, deps: AlertsDeps, ctx: RequestContext, scope: Scope,
                    body: SubscriptionIn) -> dict[str, Any]:
    scope.require(body.agency, field="agency")
    if body.channel == "webhook":
        if not body.target.startswith(("http://", "https://")):
            raise Invalid("a webhook target is an http(s) URL", field="target")
        if body.secret is None:
            raise Invalid("a webhook needs a secret to sign its deliveries", field="secret")
    if body.channel == "email" and "@" not in body.target:
        raise Invalid("an email target is an address", field="target")
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("alert.subscribe", details={"channel": body.channel,
                                                       "agency": body.agency})
        row = await repository.insert_subscription(
            uow.conn, agency=body.agency, channel=body.channel, target=body.target,
            secret=body.secret, created_by=ctx.actor)
        record.target = f"alert_subscription:{row['id']}"
        uow.emit("alert.subscribed", aggregate=("alert_subscription", row["id"]),
                 agency=body.agency, data={"channel": body.channel})
    return dict(row)


async def unsubscribe(*, deps: AlertsDeps, ctx: RequestContext, scope: Scope,
                      subscription_id: int) -> None:
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("alert.unsubscribe", target=f"alert_subscription:{subscription_id}")
        agency = await repository.deactivate_subscription(
            uow.conn, subscription_id=subscription_id, agencies=scope.agency_list)
        if agency is None:
            raise NotFound(f"subscription {subscription_id} not found")
        uow.emit("alert.unsubscribed", aggregate=("alert_subscription", subscription_id),
                 agency=agency)


async def list_subscriptions(*, deps: AlertsDeps, scope: Scope) -> list[dict[str, Any]]:
    rows = await repository.list_subscriptions(deps.pool, agencies=scope.agency_list)
    return [dict(r) for r in rows]


def retry_delay_s(*, base_s: float, attempts_done: int) -> float:
    """Exponential backoff: base, 2 base, 4 base ... after the 1st, 2nd, 3rd failure."""
    return base_s * 2 ** (attempts_done - 1)


async def deliver_due(*, deps: AlertsDeps, by_channel: dict[str, Channel]) -> int:
    """One pass over due deliveries; returns how many were attempted."""
    settings = deps.settings
    async with deps.pool.acquire() as conn, conn.transaction():
        due = await repository.claim_due(conn, limit=DELIVERY_BATCH)
        for d in due:
            message = Message(identifier=d["identifier"], msg_type=d["msg_type"],
                              cap_xml=d["cap_xml"], infos=d["infos"])
            error = None
            try:
                channel = by_channel.get(d["channel"])
                if channel is None:
                    raise RuntimeError(f"no channel {d['channel']!r}")
                await channel.send(message=message, target=d["target"], secret=d["secret"])
            except Exception as exc:  # noqa: BLE001 - any channel failure is one failed attempt, retried
                error = f"{type(exc).__name__}: {exc}"[:500]
            done = d["attempts"] + 1
            retry = (None if error is None or done >= settings.alert_max_attempts
                     else retry_delay_s(base_s=settings.alert_retry_base_s, attempts_done=done))
            await repository.record_attempt(conn, delivery_id=d["id"], error=error,
                                            retry_in_s=retry)
            log.info("alert_delivery_attempt", delivery_id=d["id"], channel=d["channel"],
                     attempt=done, ok=error is None, error=error, retry_in_s=retry)
    return len(due)


async def run_delivery_worker(*, deps: AlertsDeps, stop: asyncio.Event) -> None:
    """Deliver what is due, then sleep until a publication wakes it, the earliest pending
    retry falls due, or the interval passes (a safety net for rows another worker released)."""
    by_channel = channels(deps.settings)
    interval = deps.settings.alert_delivery_interval_s
    while not stop.is_set():
        deps.wake.clear()   # before the pass: a publication during it wakes the next one
        timeout = interval
        try:
            while await deliver_due(deps=deps, by_channel=by_channel) == DELIVERY_BATCH:
                pass
            due_in = await repository.next_due_in_s(deps.pool)
            if due_in is not None:
                timeout = min(interval, max(due_in, 0.01))
        except Exception:
            log.exception("alert_delivery_pass_failed")
        waits = [asyncio.ensure_future(deps.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
