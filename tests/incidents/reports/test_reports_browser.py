"""The report pages in real headless Chromium. With scripts disabled (the essentials need
none): the Spanish form filed with its form token and its status shown, the form again with
the reasons when a field is refused, the status lookup in English. With scripts: report.js
solves the proof of work and the same form is filed with it. Each page under 200 kB, nothing
loaded from elsewhere, and no serious axe-core violation. The form's minimum delay is 0 here
(a browser test must not wait on a clock; tests/incidents/reports/test_reports.py refuses a
fast post)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.console.browser import browsers, choose, require_chromium, set_scripts, text_of
from tests.incidents.public.test_public_browser import _checked
from tests.incidents.reports.conftest import AGENCY, TRACKING, start_reports_app
from tests.support import Apps, RunningApp


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


@pytest.fixture
async def browser_app(apps: Apps) -> AsyncIterator[RunningApp]:
    async for app in start_reports_app(apps, public_form_min_delay_s=0.0):
        yield app


async def test_filing_and_checking_a_report_without_javascript(browser_app: RunningApp) -> None:
    base = browser_app.base_url
    with browsers("reports") as (b,):
        await b.get(f"{base}/public/{AGENCY}/report?lang=es")
        assert await b.js("return document.documentElement.lang") == "es"
        assert await text_of(b, "h1") == "Reportar algo que no es una emergencia"
        await _checked(b, "public-report-es")

        # a refused field: the form again, the reason linked from a summary, the text kept
        await set_scripts(b, enabled=False)
        await b.get(f"{base}/public/{AGENCY}/report?lang=es")   # loaded without scripts
        await choose(b, "#report_type", "vandalism")
        await b.type_into("#description", "corto")
        await b.type_into("#address", "4817 QUILLFEATHER ST")
        await b.click("#send")
        await set_scripts(b, enabled=True)
        await b.wait_for("return document.getElementById('errors') !== null",
                         what="the form with its errors")
        assert await b.js("return document.getElementById('description').value") == "corto"
        assert await b.js("return document.getElementById('description')"
                          ".getAttribute('aria-invalid')") == "true"
        assert "Describa lo que pasó" in await text_of(b, "#errors")
        await _checked(b, "public-report-errors-es")

        # filed without scripts: 303 to the status page with the tracking number
        await set_scripts(b, enabled=False)
        await b.type_into("#description", "Rompieron la ventana de mi coche y se llevaron la radio.")
        await b.type_into("#contact_name", "Ana Ruiz")
        await b.type_into("#contact_phone", "415 555 0100")
        await b.click("#send")
        await set_scripts(b, enabled=True)
        await b.wait_for("return location.pathname.endsWith('/report/status')",
                         what="the status page")
        tracking = await b.js("return new URLSearchParams(location.search).get('tracking')")
        assert TRACKING.match(tracking)
        assert tracking in await text_of(b, "[role=status]")
        cells = await b.js("return [...document.querySelectorAll('tbody td')]"
                           ".map(t => t.textContent)")
        assert cells[0] == tracking and cells[1] == "Vandalismo"
        assert cells[2] == "Recibido, en espera de revisión"
        assert "Ana Ruiz" not in await b.js("return document.body.innerHTML")
        await _checked(b, "public-report-status-es")

        # later, in English: the lookup form on the report page
        await b.get(f"{base}/public/{AGENCY}/report?lang=en")
        await b.type_into("#tracking", tracking.lower())
        await b.click("form[method=get] button")
        await b.wait_for("return document.querySelectorAll('tbody tr').length === 6",
                         what="the status table")
        assert await text_of(b, "tbody tr:nth-child(3) td") == "Received, waiting for review"
        await _checked(b, "public-report-status-en")
        # the language switch keeps the report shown
        await b.click("a[hreflang='es']")
        await b.wait_for("return document.documentElement.lang === 'es'", what="Spanish status")
        assert await text_of(b, "tbody tr:nth-child(3) td") == "Recibido, en espera de revisión"

        # with scripts: report.js solves the proof of work, the same form is posted
        await b.get(f"{base}/public/{AGENCY}/report?lang=en")
        await _checked(b, "public-report-en")
        await choose(b, "#report_type", "noise")
        await b.type_into("#description", "Loud generator running all night behind the shop.")
        await b.type_into("#address", "4833 QUILLFEATHER ST")
        await b.click("#send")
        await b.wait_for("return location.pathname.endsWith('/report/status')",
                         what="the status page after the proof of work")
        with_js = await b.js("return new URLSearchParams(location.search).get('tracking')")
    rows = {r["tracking"]: r for r in await browser_app.pool.fetch(
        "SELECT tracking, via, contact_name, language FROM public_reports")}
    assert len(rows) == 2
    assert (rows[tracking]["via"], rows[tracking]["contact_name"],
            rows[tracking]["language"]) == ("form", "Ana Ruiz", "es")
    assert (rows[with_js]["via"], rows[with_js]["contact_name"]) == ("pow", None)
