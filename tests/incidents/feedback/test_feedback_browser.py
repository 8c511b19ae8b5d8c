"""The feedback pages in real headless Chromium with scripts disabled (the essentials need
none): a complaint sent in Spanish and followed by its reference, a refused field shown with
the answers kept, the status page in English; each page under 200 kB, nothing loaded from
elsewhere, and no serious axe-core violation. The form token's minimum delay is 0 here (a
browser test must not wait on a clock; test_feedback_public.py refuses a fast post)."""

from __future__ import annotations

import pytest

from tests.console.browser import browsers, choose, require_chromium, set_scripts, text_of
from tests.incidents.feedback.conftest import AppMaker
from tests.incidents.public.test_public_browser import _checked


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


async def test_sending_and_following_feedback_without_javascript(
        feedback_app: AppMaker) -> None:
    async with feedback_app() as api:
        base = api.running.base_url
        with browsers("feedback") as (b,):
            await b.get(f"{base}/public/SFFD/feedback?lang=es")
            assert await b.js("return document.documentElement.lang") == "es"
            assert await text_of(b, "h1") == "Comentarios, felicitaciones y quejas"
            assert await b.js("return document.scripts.length") == 0
            await _checked(b, "public-feedback-es")

            # a refused field: the form again, the reason linked from the summary, answers kept
            await set_scripts(b, enabled=False)
            await b.click("input[name=category][value=complaint]")
            await choose(b, "#subcategory", "response_time")
            await b.type_into("#description", "Esperamos cuarenta minutos a la ambulancia.")
            await b.type_into("#phone", "llámeme")
            await b.click("form[method=post] button")
            await set_scripts(b, enabled=True)
            await b.wait_for("return document.querySelector('[role=alert]') !== null",
                             what="the form with its errors")
            assert await b.js("return document.getElementById('description').value") == (
                "Esperamos cuarenta minutos a la ambulancia.")
            assert await b.js("return document.getElementById('phone')"
                              ".getAttribute('aria-invalid')") == "true"
            assert "Indique un teléfono" in await text_of(b, "[role=alert]")
            assert await b.js("return document.querySelector("
                              "'input[name=category][value=complaint]').checked") is True
            await _checked(b, "public-feedback-errors-es")

            # sent without scripts: the receipt with the reference
            await set_scripts(b, enabled=False)
            await b.type_into("#phone", "415 555 0100")
            await b.type_into("#name", "Ana Ruiz")
            await b.click("form[method=post] button")
            await set_scripts(b, enabled=True)
            await b.wait_for("return document.getElementById('reference') !== null",
                             what="the receipt")
            reference = await text_of(b, "#reference")
            assert reference.startswith("FB-")
            assert "Ana Ruiz" not in await b.js("return document.body.innerHTML")
            await _checked(b, "public-feedback-receipt-es")

            # its status, by the link on the receipt; then in English
            await b.click(f"a[href*='reference={reference}']")
            await b.wait_for("return document.getElementById('status') !== null",
                             what="the status")
            cells = await b.js("return [...document.querySelectorAll('#status td')]"
                               ".map(t => t.textContent)")
            assert cells[:3] == [reference, "Una queja", "Recibido"]
            await b.click("a[hreflang='en']")
            await b.wait_for("return document.documentElement.lang === 'en'",
                             what="English status page")
            cells = await b.js("return [...document.querySelectorAll('#status td')]"
                               ".map(t => t.textContent)")
            assert cells[:3] == [reference, "A complaint", "Received"]
            await _checked(b, "public-feedback-status-en")
        row = await api.running.pool.fetchrow(
            "SELECT category, subcategory, contact_name, contact_phone, language FROM feedback")
        assert dict(row) == {"category": "complaint", "subcategory": "response_time",
                             "contact_name": "Ana Ruiz", "contact_phone": "415 555 0100",
                             "language": "es"}
        assert await api.running.pool.fetchval(
            "SELECT kind FROM public_challenge_uses") == "form"
