"""The public feed, request-for-service data and the publication gate over HTTP: what a
published incident looks like in every format, and that every public endpoint shows nothing of
an incident whose type is not enabled, is sensitive, is not past the delay, or belongs to
another agency."""

from __future__ import annotations

import csv
import io
import math
from xml.etree import ElementTree

import httpx
import pytest

from incidents.public import i18n
from tests.auth import Api
from tests.incidents.public.conftest import (
    PUBLIC_ENDPOINTS,
    STREET,
    address_point,
    intake,
    public_outputs,
    publish,
    start_public_app,
)
from tests.support import Apps, RunningApp

ATOM = "{http://www.w3.org/2005/Atom}"


def _m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    kx = 111_320.0 * math.cos(math.radians(lat1))
    return math.hypot((lat1 - lat2) * 111_320.0, (lon1 - lon2) * kx)


async def test_a_published_incident_in_every_format(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    inc = await intake(sup, narrative="suspect fled north")
    number, day = inc["number"], inc["received_at"][:10]
    out = await public_outputs(public_api.running.base_url, agency="SFFD", number=number, day=day)
    assert {ep: r.status_code for ep, r in out.items()} == {ep: 200 for ep in PUBLIC_ENDPOINTS}

    fc = out["incidents.geojson"].json()
    [f] = fc["features"]
    props = f["properties"]
    assert props == {"number": number, "agency": "SFFD", "type": "ROBBERY",
                     "description": "Robbery in progress", "received_at": props["received_at"],
                     "closed_at": props["closed_at"], "location": f"4800 Block of {STREET}",
                     "location_precision": "block"}
    lon, lat = f["geometry"]["coordinates"]
    house = address_point(4817)
    # the block's middle: between its lowest (4800) and highest (4899) points, not the house
    lo, hi = address_point(4800), address_point(4899)
    assert _m(lat, lon, (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2) < 2
    assert _m(lat, lon, *house) > 15

    rows = list(csv.reader(io.StringIO(out["incidents.csv"].text)))
    assert rows[0] == ["number", "agency", "type", "description", "received_at", "closed_at",
                       "location", "location_precision", "lat", "lon"]
    assert rows[1][:3] == [number, "SFFD", "ROBBERY"] and rows[1][6] == f"4800 Block of {STREET}"
    assert len(rows) == 2

    feed = ElementTree.fromstring(out["incidents.atom"].content)
    entries = feed.findall(f"{ATOM}entry")
    assert [(e.findtext(f"{ATOM}id") or "").rsplit("#", 1)[1] for e in entries] == [number]
    assert feed.findtext(f"{ATOM}updated") == props["closed_at"]

    rfs = out["requests/{number}"].json()
    assert rfs == {"number": number, "agency": "SFFD", "nature": "Robbery in progress",
                   "incident_type": "ROBBERY", "received_at": rfs["received_at"],
                   "response_initiated": False, "location": f"4800 Block of {STREET}"}
    assert [r["number"] for r in out["requests?date={day}"].json()] == [number]
    assert number in out["map"].text and f"4800 Block of {STREET}" in out["map"].text
    assert number in out["lookup?number={number}&date={day}"].text


async def _hidden(api: Api, number: str, day: str, agency: str = "SFFD") -> None:
    """Every public endpoint answers without a trace of ``number``."""
    out = await public_outputs(api.running.base_url, agency=agency, number=number, day=day)
    for ep, r in out.items():
        if ep == "requests/{number}":
            # the same answer as for a number that never existed; only the asked path echoes
            assert r.status_code == 404, (ep, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            assert problem.pop("instance") == f"/public/{agency}/requests/{number}"
            assert number not in str(problem), ep
            continue
        assert r.status_code == 200, (ep, r.text)
        # the lookup page echoes the number asked for in its form, and says it is not found
        text = r.text.replace(f"number={number}", "").replace(f'value="{number}"', "")
        assert number not in text, ep
        if ep.startswith("lookup"):
            assert 'role="status">No public request for service with that number.' in text


async def test_nothing_is_published_until_the_type_is_enabled(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    inc = await intake(sup)
    await _hidden(public_api, inc["number"], inc["received_at"][:10])
    # enabled, then withdrawn: hidden again
    assert (await publish(sup, "ROBBERY")).status_code == 200
    r = await httpx.AsyncClient(base_url=public_api.running.base_url).get(
        f"/public/SFFD/requests/{inc['number']}")
    assert r.status_code == 200
    assert (await publish(sup, "ROBBERY", published=False)).json()["published"] is False
    await _hidden(public_api, inc["number"], inc["received_at"][:10])


async def test_open_incidents_are_not_published(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    inc = await intake(sup, close=False)
    await _hidden(public_api, inc["number"], inc["received_at"][:10])


async def test_sensitive_types_are_never_published(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    for code, description, apco, discipline in (
            ("SEXASLT", "Sexual assault", "ASSAULT-SEXUAL", "police"),
            ("DOMESTIC", "Domestic disturbance", "DISTURBANCE", "police"),
            ("JUV", "Juvenile problem", "JUVENILE", "police"),
            ("WELFARE", "Check the welfare", "CHECK-WELFARE", "police")):
        r = await sup.put(f"/api/v1/incident-types/{code}", json={
            "description": description, "apco_type": apco, "discipline": discipline,
            "default_priority": 2, "duplicate_group": "crime"})
        assert r.status_code == 200, r.text
    for code in ("SEXASLT", "DOMESTIC", "JUV", "WELFARE", "MED", "CARDIAC", "TCI"):
        r = await publish(sup, code)
        assert r.status_code == 422, (code, r.text)
        assert r.json()["errors"][0]["field"] == "path.code"
    assert await public_api.running.pool.fetchval("SELECT count(*) FROM public_incident_types") == 0
    # Even a row written behind the API's back publishes nothing: the read filters again.
    await public_api.running.pool.execute(
        "INSERT INTO public_incident_types (agency, incident_type, enabled_by) VALUES "
        "('SFFD', 'SEXASLT', 'x'), ('SFFD', 'MED', 'x')")
    for code in ("SEXASLT", "MED"):
        inc = await intake(sup, incident_type=code)
        await _hidden(public_api, inc["number"], inc["received_at"][:10])


async def test_another_agencys_incident_is_not_published(public_api: Api) -> None:
    sup = await public_api.as_("supervisor", agencies=["SFFD", "OAK"])
    assert (await publish(sup, "ROBBERY", agency="SFFD")).status_code == 200
    inc = await intake(sup, agency="OAK")
    # OAK has not enabled ROBBERY: nowhere, neither under SFFD nor under OAK
    await _hidden(public_api, inc["number"], inc["received_at"][:10], agency="SFFD")
    await _hidden(public_api, inc["number"], inc["received_at"][:10], agency="OAK")


async def test_nothing_is_published_before_the_delay(apps: Apps) -> None:
    app = await start_public_app(apps, public_delay_s=3600.0)
    api = apps.api(app)
    sup = await api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    inc = await intake(sup)
    await _hidden(api, inc["number"], inc["received_at"][:10])
    async with httpx.AsyncClient(base_url=app.base_url) as anon:
        page = (await anon.get("/public/SFFD/map")).text
    assert "at least one hour after they closed" in page


async def test_publication_is_managed_by_supervisors_of_the_agency(public_api: Api) -> None:
    base = public_api.running.base_url
    async with httpx.AsyncClient(base_url=base) as anon:
        r = await anon.put("/api/v1/publication/SFFD/ROBBERY", json={"published": True})
        assert r.status_code == 401
        assert (await anon.get("/api/v1/publication")).status_code == 401
    disp = await public_api.as_("dispatcher")
    assert (await publish(disp, "ROBBERY")).status_code == 403
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY", agency="OAK")).status_code == 403
    assert (await publish(sup, "NOSUCH")).status_code == 404
    r = await sup.put("/api/v1/publication/SFFD/ROBBERY", json={"published": "yes please"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.published"
    r = await publish(sup, "ROBBERY")
    assert r.status_code == 200
    body = r.json()
    assert (body["agency"], body["incident_type"], body["published"]) == ("SFFD", "ROBBERY", True)
    listed = (await sup.get("/api/v1/publication")).json()
    assert [(x["agency"], x["incident_type"]) for x in listed] == [("SFFD", "ROBBERY")]
    oak = await public_api.as_("supervisor", agency="OAK")
    assert (await oak.get("/api/v1/publication")).json() == []
    pool = public_api.running.pool
    audit = await pool.fetch("SELECT action, target FROM audit_log WHERE action LIKE 'publication.%'"
                             " ORDER BY id")
    assert [(a["action"], a["target"]) for a in audit][-1] == (
        "publication.enable", "publication:SFFD:ROBBERY")
    events = await pool.fetch("SELECT type, data FROM event_log WHERE type = 'publication.changed'")
    assert len(events) == 1


async def test_public_endpoints_are_rate_limited(apps: Apps) -> None:
    app = await start_public_app(apps, rate_limit_public_per_s=0.01, rate_limit_public_burst=3)
    async with httpx.AsyncClient(base_url=app.base_url) as anon:
        codes = [(await anon.get("/public/SFFD/incidents.geojson")).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await anon.get("/public/SFFD/requests/X-1")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("path", ["/public/sffd/incidents.geojson", "/public/SFFD/incidents.csv?days=0",
                                  "/public/SFFD/requests?date=2026-02-30",
                                  "/public/SFFD/requests", "/public/SFFD/requests/a%20b",
                                  "/public/SFFD/map?lang=xx1", "/public/SFFD/lookup?date=2026-13-01",
                                  "/public/SFFD/lookup?number=%3Cscript%3E"])
async def test_bad_input_is_a_problem_naming_the_field(public_app: RunningApp, path: str) -> None:
    async with httpx.AsyncClient(base_url=public_app.base_url) as anon:
        r = await anon.get(path)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"]


def test_every_language_has_every_message() -> None:
    keys = set(i18n.MESSAGES["en"])
    assert {lang: set(m) ^ keys for lang, m in i18n.MESSAGES.items()} == {
        lang: set() for lang in i18n.MESSAGES}
    assert i18n.choose(None, "fr-CA, es;q=0.8, en;q=0.5") == "es"
    assert i18n.choose("en", "es") == "en"
    assert i18n.choose("xx", None) == "en"
    assert i18n.choose(None, "es-MX;q=0") == "en"


async def test_far_from_any_address_only_a_grid_cell_is_published(public_api: Api) -> None:
    """No address within reach and no road graph (no corners): the point is snapped to the
    0.005° grid and the place has no name."""
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    inc = await intake(sup, location={"lat": 37.70123, "lon": -122.45678})
    async with httpx.AsyncClient(base_url=public_api.running.base_url) as anon:
        [f] = (await anon.get("/public/SFFD/incidents.geojson")).json()["features"]
        rfs = (await anon.get(f"/public/SFFD/requests/{inc['number']}")).json()
    assert f["geometry"]["coordinates"] == [-122.455, 37.7]
    assert (f["properties"]["location"], f["properties"]["location_precision"]) == ("", "area")
    assert rfs["location"] is None
