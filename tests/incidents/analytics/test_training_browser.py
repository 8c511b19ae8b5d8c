"""Training mode in a real browser (headless Chromium, tests/console/browser.py): a trainee's
console shows the TRAINING banner on every screen and a TRAINING tag on the training
incident, on the board and in its detail; a real agency's dispatcher sees no banner and no
training incident. Screenshots to test-artifacts/screenshots; axe-core finds no serious
violation."""

from __future__ import annotations

import pytest

from tests.auth import Api, make_user
from tests.console.browser import Browser, browsers, require_chromium
from tests.dispatch_fixtures import create_unit
from tests.incidents.analytics.conftest import TRAINING
from tests.support import RunningApp

DOWNTOWN = {"lat": 37.7837, "lon": -122.4075}


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


async def _checked(b: Browser, screen: str) -> None:
    await b.screenshot(screen)
    problems = await b.serious_accessibility_violations()
    assert not problems, f"{screen}: {problems}"


async def test_trainee_console_shows_training_banner_and_tags(training_app: RunningApp) -> None:
    app = training_app
    api = Api(app)
    try:
        admin = await api.as_("admin")
        r = await admin.put("/api/v1/stations/TR-S1", json={
            "id": "TR-S1", "agency": TRAINING, "name": "Station 1 (training)", **DOWNTOWN})
        assert r.status_code == 200, r.text
        unit = await create_unit(admin, "TR-E01", "engine", station="TR-S1", agency=TRAINING)
        assert unit["training"] is True
        incidents = {}
        for agency in (TRAINING, "SFFD"):
            r = await admin.post("/api/v1/incidents", json={
                "agency": agency, "incident_type": "OTHER", "location": DOWNTOWN})
            assert r.status_code == 201, r.text
            incidents[agency] = r.json()
        exercise, real = incidents[TRAINING], incidents["SFFD"]
        trainee, trainee_pw = await make_user(app.pool, "dispatcher", agency=TRAINING,
                                              agencies=[TRAINING])
        dispatcher, dispatcher_pw = await make_user(app.pool, "dispatcher", agency="SFFD")

        with browsers("trainee", "dispatcher") as (tb, db):
            await tb.login(app.base_url, "board", trainee, trainee_pw)
            banner = await tb.wait_for(
                "const b = document.querySelector('#training-banner');"
                "return b && !b.hidden && b.offsetHeight > 0 && b.textContent;",
                what="the TRAINING banner")
            assert banner.startswith("TRAINING") and TRAINING in banner
            tag = await tb.wait_for(
                "const t = document.querySelector("
                "`#incidents tr[data-incident='${arguments[0]}'] .training-tag`);"
                "return t && t.textContent;", exercise["id"], what="the incident's TRAINING tag")
            assert tag == "TRAINING"
            assert await tb.js("return document.querySelector("
                               "`#units tr[data-unit='TR-E01'] .training-tag`) !== null")
            assert await tb.js("return document.querySelector("
                               f"\"#incidents tr[data-incident='{real['id']}']\") === null")
            await _checked(tb, "training-board")

            # The incident's detail says it too (command line: I <id>).
            await tb.type_into("#cmd", f"I {exercise['id']}")
            await tb.keys("#cmd", "\n")
            marker = await tb.wait_for(
                "const m = document.querySelector('#detail-training');"
                "return m && !document.querySelector('#detail').hidden && m.textContent;",
                what="the detail's TRAINING marker")
            assert marker.startswith("TRAINING incident")
            assert await tb.js("return !document.querySelector('#training-banner').hidden")
            await _checked(tb, "training-detail")

            # A real agency's dispatcher: no banner, the real call only.
            await db.login(app.base_url, "board", dispatcher, dispatcher_pw)
            await db.wait_for("return document.querySelector("
                              f"\"#incidents tr[data-incident='{real['id']}']\") !== null",
                              what="the real incident on the real board")
            assert await db.js("return document.querySelector('#training-banner').hidden")
            assert await db.js("return document.querySelectorAll('.training-tag').length") == 0
            await db.screenshot("training-real-board")
    finally:
        await api.close()


async def test_a_reset_clears_the_trainee_console(training_app: RunningApp) -> None:
    """The exercise on a trainee's board (a dispatched unit, its incident) is gone from the
    open console once an admin resets the agency: the incident at once (the event names it),
    the unit back in quarters from the fresh snapshot the console reconnects for."""
    app = training_app
    api = Api(app)
    try:
        admin = await api.as_("admin")
        r = await admin.put("/api/v1/stations/TR-S1", json={
            "id": "TR-S1", "agency": TRAINING, "name": "Station 1 (training)", **DOWNTOWN})
        assert r.status_code == 200, r.text
        await create_unit(admin, "TR-E01", "engine", station="TR-S1", agency=TRAINING)
        r = await admin.post("/api/v1/incidents", json={
            "agency": TRAINING, "incident_type": "OTHER", "location": DOWNTOWN})
        assert r.status_code == 201, r.text
        exercise = r.json()
        r = await admin.post(f"/api/v1/incidents/{exercise['id']}/dispatch",
                             json={"unit_ids": ["TR-E01"], "override_reason": "the only one"})
        assert r.status_code == 200, r.text
        trainee, trainee_pw = await make_user(app.pool, "dispatcher", agency=TRAINING,
                                              agencies=[TRAINING])
        incident_row = f"#incidents tr[data-incident='{exercise['id']}']"
        unit_status = ("const u = document.querySelector(\"#units tr[data-unit='TR-E01']\");"
                       "return u && u.dataset.status;")

        with browsers("trainee") as (tb,):
            await tb.login(app.base_url, "board", trainee, trainee_pw)
            await tb.wait_for(f"return document.querySelector(\"{incident_row}\") !== null",
                              what="the exercise incident")
            assert await tb.wait_for(unit_status, what="the unit") == "dispatched"

            r = await admin.post("/api/v1/training/reset", json={"agency": TRAINING})
            assert r.status_code == 200, r.text

            await tb.wait_for(f"return document.querySelector(\"{incident_row}\") === null",
                              what="the incident gone")
            await tb.wait_for(unit_status.replace("return u && u.dataset.status;",
                                                  "return u && u.dataset.status === "
                                                  "'available_in_quarters';"),
                              what="the unit back in quarters")
            history = await tb.wait_for(
                "const c = document.querySelector('#conn');"
                "return c.dataset.state === 'live' && c.dataset.history;", what="live again")
            assert history.split().count("live") >= 2, history   # it reconnected
            await tb.screenshot("training-after-reset")
    finally:
        await api.close()
