"""The public pages in real headless Chromium: the crime map enhanced with Leaflet, the same
page without JavaScript (the table carries the essentials), the request-for-service lookup
form, both languages, each page under 200 kB, nothing loaded from elsewhere, and no serious
axe-core violation."""

from __future__ import annotations

from typing import Any

import pytest

from incidents.public.api import MAP_PAGE_ROWS
from tests.auth import Api
from tests.console.browser import Browser, browsers, require_chromium
from tests.incidents.public.conftest import STREET, intake, publish

PAGE_BUDGET_BYTES = 200_000


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


async def _page_bytes(b: Browser) -> int:
    """Bytes the page needed: the document and every resource it loaded (decoded sizes)."""
    total: Any = await b.js(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return n.decodedBodySize + performance.getEntriesByType('resource')"
        ".reduce((s, e) => s + e.decodedBodySize, 0);")
    return int(total)


async def _checked(b: Browser, screen: str) -> None:
    await b.screenshot(screen)
    foreign = await b.js(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(u => !u.startsWith(location.origin + '/'))")
    assert foreign == [], f"{screen} loaded {foreign}"
    assert await _page_bytes(b) < PAGE_BUDGET_BYTES, screen
    problems = await b.serious_accessibility_violations()
    assert not problems, f"{screen}: {problems}"


async def test_public_pages_in_a_real_browser(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    # more than a page: the budget holds with a full page (50 rows) on a cold cache
    older = [await intake(sup, location={"address": f"{4801 + 2 * (i % 40)} {STREET}"})
             for i in range(MAP_PAGE_ROWS + 3)]
    first = await intake(sup)
    second = await intake(sup, location={"address": f"4862 {STREET}"})
    base = public_api.running.base_url
    with browsers("public") as (b,):
        await b.get(f"{base}/public/SFFD/map?lang=es")
        n = await b.wait_for("const m = document.getElementById('map');"
                             "return m && !m.hidden && m.dataset.ready", what="the map drew")
        assert n == str(MAP_PAGE_ROWS)
        assert await b.js("return document.querySelectorAll('#map path.leaflet-interactive')"
                          ".length") == MAP_PAGE_ROWS
        assert await b.js("return document.documentElement.lang") == "es"
        assert await b.js("return document.querySelector('h1').textContent") == (
            "Mapa del delito: incidentes recientes")
        rows = await b.js("return [...document.querySelectorAll('tbody tr td:first-child')]"
                          ".map(td => td.textContent)")
        assert rows[:2] == [second["number"], first["number"]] and len(rows) == MAP_PAGE_ROWS
        assert await b.js("return document.querySelector('tbody tr td:nth-child(4)').textContent"
                          ) == f"Cuadra 4800 de {STREET}"
        await _checked(b, "public-map-es")

        # the rest on the next page, reached by a plain link
        await b.click("a[rel='next']")
        await b.wait_for("return new URLSearchParams(location.search).get('page') === '2'",
                         what="page 2")
        rows = await b.js("return [...document.querySelectorAll('tbody tr td:first-child')]"
                          ".map(td => td.textContent)")
        assert rows == [o["number"] for o in older[:5]][::-1]

        # the language switch keeps the page
        await b.click("a[hreflang='en']")
        await b.wait_for("return document.documentElement.lang === 'en'", what="English page")
        assert await b.js("return location.pathname") == "/public/SFFD/map"

        # the lookup: a plain form, no script needed
        await b.get(f"{base}/public/SFFD/lookup")
        await b.type_into("#number", second["number"])
        await b.click("form button")
        await b.wait_for("return document.querySelectorAll('tbody tr').length === 1",
                         what="the lookup's answer")
        cells = await b.js("return [...document.querySelectorAll('tbody td')].map(t => t.textContent)")
        assert cells[0] == second["number"] and cells[3] == f"4800 Block of {STREET}"
        await _checked(b, "public-lookup-en")

        # without JavaScript: the map's box stays hidden, the table has every incident
        await b.run(b.driver.execute_cdp_cmd, "Emulation.setScriptExecutionDisabled",
                    {"value": True})
        await b.get(f"{base}/public/SFFD/map")
        await b.run(b.driver.execute_cdp_cmd, "Emulation.setScriptExecutionDisabled",
                    {"value": False})
        assert await b.js("return document.getElementById('map').hidden") is True
        assert await b.js("return document.querySelectorAll('tbody tr').length") == MAP_PAGE_ROWS
        await b.screenshot("public-map-no-js")

        # community alerts in force, in the reader's language; plain HTML, no script
        approver = await public_api.as_("supervisor", fresh=True)
        info = {lang: {"headline": h, "description": d} for lang, h, d in (
            ("en", "Water main break: avoid the area", "Expect closures near the 4800 block."),
            ("es", "Rotura de tubería: evite la zona", "Se esperan cierres cerca de la cuadra 4800."))}
        r = await sup.post("/api/v1/alerts", json={
            "incident_id": first["id"], "event": "Water main break", "area": {"radius_m": 300},
            "info": info})
        assert r.status_code == 201, r.text
        assert (await approver.post(f"/api/v1/alerts/{r.json()['id']}/approve")).status_code == 200
        await b.get(f"{base}/public/SFFD/alerts?lang=es")
        assert await b.js("return document.querySelector('h1').textContent") == (
            "Alertas comunitarias vigentes")
        assert await b.js("return [...document.querySelectorAll('article.alert h2')]"
                          ".map(h => h.textContent)") == [info["es"]["headline"]]
        assert await b.js("return document.querySelector('nav a[aria-current=page]').textContent"
                          ) == "Alertas comunitarias"
        await _checked(b, "public-alerts-es")
