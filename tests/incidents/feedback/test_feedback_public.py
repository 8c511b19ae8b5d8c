"""The public side of feedback: counts with small counts hidden (a property over every grid,
and the real endpoint), no personal data in any public output, another agency's feedback
never counted nor shown, and the page's form post without JavaScript (receipt, refused
fields kept, a form token used twice)."""

from __future__ import annotations

import re
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from incidents.feedback import service
from tests.auth import Api
from tests.incidents.feedback.conftest import COMPLAINT, AppMaker, case_id, submitted

PERSONAL = (COMPLAINT["name"], COMPLAINT["email"], COMPLAINT["phone"], "Quarrington",
            "4155550199", "rude to my neighbour")


@given(grid=st.dictionaries(st.sampled_from(service.outcome_codes("complaint")),
                            st.integers(min_value=0, max_value=40), min_size=1),
       min_cell=st.integers(min_value=2, max_value=10))
def test_no_small_count_can_be_seen_or_worked_out(grid: dict[str, int], min_cell: int) -> None:
    total, shown = service.suppress(grid, min_cell=min_cell)
    true_total = sum(grid.values())
    if total is None:
        assert true_total < min_cell and all(v is None for v in shown.values())
        return
    assert total == true_total and set(shown) == set(grid)
    for code, count in shown.items():
        assert count is None or count == grid[code]          # shown counts are true
        assert count is None or not 0 < count < min_cell     # and never small
    hidden = [code for code, count in shown.items() if count is None]
    # one hidden count would be the total minus the shown ones
    assert len(hidden) != 1
    # and every small count is hidden
    assert all(code in hidden for code, n in grid.items() if 0 < n < min_cell)


async def _complaints_and_compliments(api: Api) -> int:
    """Six complaints (one resolved as sustained) and two compliments; the sustained id."""
    base, pool = api.running.base_url, api.running.pool
    refs = [(await submitted(base))["reference"] for _ in range(6)]
    for _ in range(2):
        await submitted(base, {"category": "compliment", "description": "Thank you, E07."})
    sup = await api.as_("supervisor")
    me = api.auth.users[0].username
    fid = await case_id(pool, refs[0])
    assert (await sup.post(f"/api/v1/feedback/{fid}/assign",
                           json={"assignee": me})).status_code == 200
    r = await sup.post(f"/api/v1/feedback/{fid}/status",
                       json={"status": "resolved", "outcome": "sustained"})
    assert r.status_code == 200, r.text
    return fid


async def test_public_counts_hide_small_counts_and_what_gives_them_away(fb_api: Api) -> None:
    await _complaints_and_compliments(fb_api)
    sup = await fb_api.as_("supervisor")
    staff = (await sup.get("/api/v1/feedback/stats")).json()
    period = staff[0]["period"]
    assert sorted((r["category"], r["subcategory"], r["outcome"], r["count"]) for r in staff) == [
        ("complaint", "conduct", "pending", 5), ("complaint", "conduct", "sustained", 1),
        ("compliment", None, "pending", 2)]
    async with httpx.AsyncClient(base_url=fb_api.running.base_url) as anon:
        r = await anon.get("/public/SFFD/feedback/stats.json")
        assert r.status_code == 200, r.text
        stats = r.json()
        assert (stats["agency"], stats["min_cell"], stats["months"]) == ("SFFD", 5, 12)
        [month] = stats["periods"]
        assert month["period"] == period
        compliment, complaint = month["categories"]
        assert (complaint["category"], complaint["received"]) == ("complaint", 6)
        counts = {o["outcome"]: o["count"] for o in complaint["outcomes"]}
        # sustained (1) is small; pending (5) would then be 6 - 0 - ... = 5: hidden as well
        assert counts["sustained"] is None and counts["pending"] is None
        assert set(counts) == set(service.outcome_codes("complaint"))
        assert {k: v for k, v in counts.items() if v is not None} == {
            k: 0 for k in service.outcome_codes("complaint") if k not in ("sustained", "pending")}
        assert compliment == {"category": "compliment", "received": None, "suppressed": True,
                              "outcomes": [{"outcome": k, "count": None, "suppressed": True}
                                           for k in service.outcome_codes("compliment")]}
        # another agency's counts: nothing of SFFD's
        assert (await anon.get("/public/SFPD/feedback/stats.json")).json()["periods"] == []
        page = await anon.get("/public/SFFD/feedback")
        assert page.status_code == 200
        table = page.text[page.text.index('id="feedback-stats"'):]
        assert "<td>6</td>" in table and "fewer than 5" in table
        assert "Sustained: not shown" in table and "Pending: not shown" in table
        assert "<td>2</td>" not in table
        es = await anon.get("/public/SFFD/feedback?lang=es")
        assert "menos de 5" in es.text and es.headers["content-language"] == "es"


async def test_no_public_output_shows_personal_data(fb_api: Api) -> None:
    base = fb_api.running.base_url
    receipt = await submitted(base)
    ref = receipt["reference"]
    sup = await fb_api.as_("supervisor")
    fid = await case_id(fb_api.running.pool, ref)
    me = fb_api.auth.users[0].username
    await sup.post(f"/api/v1/feedback/{fid}/assign", json={"assignee": me})
    await sup.post(f"/api/v1/feedback/{fid}/notes", json={"text": "internal: Quarrington"})
    async with httpx.AsyncClient(base_url=base) as anon:
        outputs: dict[str, httpx.Response] = {}
        for path in (f"/public/SFFD/feedback/{ref}", f"/public/SFFD/feedback/status?reference={ref}",
                     "/public/SFFD/feedback/stats.json", "/public/SFFD/feedback",
                     "/public/SFFD/feedback?lang=es", f"/public/SFPD/feedback/{ref}",
                     f"/public/SFPD/feedback/status?reference={ref}"):
            outputs[path] = await anon.get(path)
    for path, r in outputs.items():
        assert r.status_code in (200, 404), (path, r.status_code)
        for value in PERSONAL + ("internal:", me):
            assert value not in r.text, (path, value)
    assert outputs[f"/public/SFPD/feedback/{ref}"].status_code == 404
    assert "No feedback with that reference." in outputs[
        f"/public/SFPD/feedback/status?reference={ref}"].text


def _token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def _post_form(client: httpx.AsyncClient, fields: dict[str, Any],
                     html: bool = True) -> httpx.Response:
    return await client.post("/public/SFFD/feedback", data=fields,
                              headers={"accept": "text/html"} if html else {})


async def test_the_form_works_without_javascript(fb_api: Api) -> None:
    pool = fb_api.running.pool
    async with httpx.AsyncClient(base_url=fb_api.running.base_url) as browser:
        page = await browser.get("/public/SFFD/feedback?lang=es")
        fields = {"lang": "es", "form_token": _token(page.text), "category": "suggestion",
                  "subcategory": "", "description": "Más patrullas a pie, por favor.",
                  "incident_number": "", "unit": "", "occurred_at": "2026-11-01T18:30",
                  "name": "", "email": "", "phone": ""}
        r = await _post_form(browser, fields)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-language"] == "es" and "Gracias" in r.text
        ref = re.search(r'<strong id="reference">([^<]+)</strong>', r.text)
        assert ref is not None
        row = await pool.fetchrow("SELECT category, language, contact_name, occurred_at "
                                  "FROM feedback WHERE reference = $1", ref.group(1))
        assert (row["category"], row["language"], row["contact_name"]) == (
            "suggestion", "es", None)
        assert row["occurred_at"] is not None
        # the same token again: refused, the text kept, a new token to send it with
        again = await _post_form(browser, fields)
        assert again.status_code == 422
        assert "Este formulario ya se envió" in again.text
        assert "Más patrullas a pie, por favor." in again.text
        assert _token(again.text) != fields["form_token"]
        # a refused field: named, marked invalid, the answers kept, nothing stored
        bad = {**fields, "form_token": _token(again.text), "lang": "en", "email": "nope",
               "category": "complaint", "subcategory": "courtesy"}
        r = await _post_form(browser, bad)
        assert r.status_code == 422
        assert 'id="email-error"' in r.text and 'aria-invalid="true" aria-describedby=' \
            '"email-error"' in r.text
        assert 'value="nope"' in r.text and 'value="complaint" required checked' in r.text
        assert '<option value="courtesy" selected>' in r.text
        assert await pool.fetchval("SELECT count(*) FROM feedback") == 1
        # a script posting the form gets JSON
        page = await browser.get("/public/SFFD/feedback")
        r = await _post_form(browser, {**fields, "form_token": _token(page.text)}, html=False)
        assert r.status_code == 201 and r.json()["category"] == "suggestion", r.text


async def test_a_form_sent_at_once_is_refused(feedback_app: AppMaker) -> None:
    async with feedback_app(public_form_min_delay_s=600) as api, \
            httpx.AsyncClient(base_url=api.running.base_url) as browser:
        page = await browser.get("/public/SFFD/feedback")
        fields = {"form_token": _token(page.text), "category": "other",
                  "description": "A question."}
        r = await _post_form(browser, fields)
        assert r.status_code == 422 and "The form was sent very quickly" in r.text
        r = await _post_form(browser, fields, html=False)
        assert r.status_code == 422 and r.json()["reason"] == "too_soon"
        assert r.json()["errors"][0]["field"] == "body.form_token"
        assert await api.running.pool.fetchval("SELECT count(*) FROM feedback") == 0


async def test_every_public_feedback_route_is_rate_limited(feedback_app: AppMaker) -> None:
    async with feedback_app(rate_limit_public_per_s=0.01, rate_limit_public_burst=3) as api, \
            httpx.AsyncClient(base_url=api.running.base_url) as anon:
        codes = [(await anon.get("/public/SFFD/feedback/stats.json")).status_code
                 for _ in range(3)]
        assert codes == [200, 200, 200]
        for method, path in (("GET", "/public/SFFD/feedback"),
                             ("GET", "/public/SFFD/feedback/challenge"),
                             ("GET", "/public/SFFD/feedback/status?reference=x"),
                             ("GET", "/public/SFFD/feedback/FB-2222-2222-2222"),
                             ("POST", "/public/SFFD/feedback")):
            r = await anon.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 429, (path, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")


def test_feedback_messages_are_not_overwritten_by_another_page() -> None:
    """The catalogue is one dict per language that several pages add to: a key another page
    reuses would change this page's wording (the reports' st_received did once)."""
    from incidents.public import i18n

    for lang, messages in i18n.FEEDBACK_MESSAGES.items():
        assert {k: i18n.MESSAGES[lang][k] for k in messages} == messages
