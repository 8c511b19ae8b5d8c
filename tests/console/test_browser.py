"""The console in a real browser (headless Chromium) against a real server with the San
Francisco road graph: a dispatcher takes a call by intersection and dispatches the
recommendation; a board in a second browser sees it, and the unit's statuses and positions,
within 2 seconds; the board's network is cut and restored and it shows every missed event in
order; the MDT screen moves the unit through its statuses. Screenshots of every screen go to
test-artifacts/screenshots; axe-core finds no serious accessibility violation on any screen."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.auth import Api, make_user
from tests.console.browser import Browser, CuttableLink, browsers, require_chromium
from tests.dispatch_fixtures import create_incident, create_unit, stations_csv

API = "/api/v1"
# The bound for the board to show what the dispatcher and the MDT did.
BOARD_LAG_S = 2.0
INTERSECTION = "Market St & 5th St"


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


async def _seed(api: Api, stations: list[dict[str, Any]]) -> None:
    sup = await api.as_("supervisor")
    r = await sup.post(f"{API}/stations/import?agency=SFFD", content=stations_csv(stations),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    for station in ("1", "8", "36"):
        await create_unit(sup, f"E{int(station):02d}", "engine", station=station)


async def _board_row(board: Browser, unit: str, status: str, what: str) -> float:
    t0 = time.monotonic()
    await board.wait_for(
        "const r = document.querySelector(`#units tr[data-unit='${arguments[0]}']`);"
        "return r && r.dataset.status === arguments[1];", unit, status,
        timeout_s=BOARD_LAG_S, what=what)
    return time.monotonic() - t0


async def _local_only(b: Browser) -> None:
    """Every resource the page loaded came from the app itself (air-gapped centres)."""
    foreign = await b.js(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(u => !u.startsWith(location.origin + '/') && !u.startsWith('data:')"
        " && !u.startsWith(location.origin.replace('http', 'ws') + '/'))")
    assert foreign == [], f"{b.name} loaded {foreign}"


async def _accessible(b: Browser, screen: str) -> None:
    await b.screenshot(screen)
    await _local_only(b)
    problems = await b.serious_accessibility_violations()
    assert not problems, f"{screen}: {problems}"


async def test_docs_render_offline_in_a_browser(app) -> None:
    """Swagger UI, served by the app, renders the OpenAPI document with nothing from outside."""
    with browsers("docs") as (b,):
        await b.get(f"{app.base_url}/docs")
        title = await b.wait_for(
            "const t = document.querySelector('.swagger-ui .info .title');"
            "return t && document.querySelectorAll('.opblock').length > 20 && t.textContent;",
            timeout_s=20, what="Swagger UI rendered the operations")
        assert title.startswith("CAD backend")
        await b.screenshot("docs")
        await _local_only(b)


async def test_dispatch_board_and_mdt_in_real_browsers(sf_api: Api, sffd_stations) -> None:
    running = sf_api.running
    pool = running.pool
    await _seed(sf_api, sffd_stations)
    disp_user, disp_pw = await make_user(pool, "dispatcher")
    board_user, board_pw = await make_user(pool, "supervisor")
    link = CuttableLink(int(running.base_url.rsplit(":", 1)[1]))
    await link.start()
    board_url = f"http://127.0.0.1:{link.port}"
    mdt_link = CuttableLink(int(running.base_url.rsplit(":", 1)[1]))
    await mdt_link.start()
    mdt_url = f"http://127.0.0.1:{mdt_link.port}"
    try:
        with browsers("dispatcher", "board", "mdt") as (disp, board, mdt):
            await board.login(board_url, "board", board_user, board_pw)
            await disp.login(running.base_url, "dispatch", disp_user, disp_pw)
            await board.wait_for("return document.querySelectorAll('#units tbody tr').length === 3",
                                 what="three units on the board")
            await _accessible(board, "board")

            # --- intake by intersection, keyboard only ------------------------------------
            await disp.run(lambda: disp.driver.find_element("css selector", "#in-type")
                           .send_keys("VEHFIRE"))
            await disp.type_into("#in-location", INTERSECTION)
            await disp.type_into("#in-narrative", "car burning under the overpass")
            await disp.keys("#in-narrative", "\ue009\ue007")   # Ctrl+Enter
            await disp.wait_for("return document.querySelector('#picks tbody tr')",
                                what="recommendation")
            pick = await disp.js(
                "const r = document.querySelector('#picks tbody tr');"
                "return [r.dataset.unit, r.children[2].textContent, r.children[3].textContent,"
                " r.children[4].textContent, r.children[5].textContent];")
            unit, eta, distance, source, reason = pick
            assert unit.startswith("E") and ":" in eta and distance.endswith("km")
            assert source == "station" and "road ETA" in reason
            inc = await pool.fetchrow("SELECT id, number, location_source FROM incidents")
            assert inc["location_source"] == "intersection"
            await disp.wait_for(
                "return document.activeElement && document.activeElement.id === 'dispatch-picks'",
                what="the dispatch button has the focus")
            await _accessible(disp, "dispatch-recommendation")

            # --- the board sees the incident and the unit dispatched within 2 s ------------
            t0 = time.monotonic()
            await disp.keys("#dispatch-picks", "\ue007")   # Enter
            await _board_row(board, unit, "dispatched", "unit dispatched on the board")
            await board.wait_for(
                "return document.querySelector(`#incidents tr[data-incident='${arguments[0]}']`)",
                inc["id"], timeout_s=BOARD_LAG_S, what="incident on the board")
            dispatch_to_board_s = time.monotonic() - t0
            assert await pool.fetchval("SELECT status FROM units WHERE id = $1", unit) == "dispatched"
            # the detail opens with the call's first timeline entry and fills in as its
            # events arrive: wait for the narrative and the dispatch themselves (under load
            # the text was read between the two, 2026-11-30)
            await disp.wait_for(
                "const d = document.querySelector('#detail');"
                "return !d.hidden && d.querySelector('.timeline li')"
                " && d.textContent.includes(arguments[0]) && d.textContent.includes(arguments[1])",
                "car burning under the overpass", f"{unit} dispatched",
                what="incident detail with the narrative and the dispatch in its timeline")
            detail = await disp.js("return document.querySelector('#detail').textContent")
            assert "car burning under the overpass" in detail and f"{unit} dispatched" in detail
            await _accessible(disp, "dispatch-detail")

            # --- a second call at the same corner: the duplicate warning, the pending queue -
            await disp.run(lambda: disp.driver.find_element("css selector", "#in-type")
                           .send_keys("VEHFIRE"))
            await disp.type_into("#in-location", INTERSECTION)
            await disp.keys("#in-location", "\ue009\ue007")   # Ctrl+Enter
            await disp.wait_for("return !document.querySelector('#duplicates').hidden",
                                what="duplicate warning")
            warning = await disp.js("return document.querySelector('#duplicates').textContent")
            assert inc["number"] in warning and "VEHFIRE" in warning
            second = await pool.fetchval("SELECT max(id) FROM incidents")
            await disp.wait_for(
                "return document.querySelector(`#pending tr[data-incident='${arguments[0]}']`)",
                second, what="second call in the pending queue")
            await _accessible(disp, "dispatch-duplicate")

            # --- the command line: dispatch another unit with a reason, then its statuses ---
            await disp.wait_for("return document.querySelector('#picks tbody tr')",
                                what="recommendation for the second call")
            pick2 = await disp.js("return document.querySelector('#picks tbody tr').dataset.unit")
            other = min({"E01", "E08", "E36"} - {unit, pick2})
            await disp.keys("body", "\ue032")   # F2: the command line
            assert await disp.js("return document.activeElement.id") == "cmd"
            await disp.keys("#cmd", f"D {second} {other}\ue007")   # no reason: refused
            await disp.wait_for("return document.querySelector('#flash').textContent"
                                ".includes('override reason')", what="reason demanded")
            assert await pool.fetchval("SELECT status FROM units WHERE id = $1", other) == \
                "available_in_quarters"
            await disp.type_into("#cmd", f"D {second} {other} / crew already on that block\ue007")
            await _board_row(board, other, "dispatched", "command-line dispatch on the board")
            await disp.keys("#cmd", f"S {other} ER\ue007")
            await _board_row(board, other, "en_route", "S ... ER on the board")
            await disp.keys("#cmd", f"S {other} AV\ue007")
            await _board_row(board, other, "available_on_radio", "S ... AV on the board")
            await disp.keys("#cmd", f"C {second} no_merit\ue007")
            await board.wait_for(
                "return !document.querySelector(`#incidents tr[data-incident='${arguments[0]}']`)",
                second, timeout_s=BOARD_LAG_S, what="closed incident leaves the board")
            assert await pool.fetchrow(
                "SELECT status, disposition FROM incidents WHERE id = $1", second) == \
                ("closed", "NO_MERIT")
            outcome = await pool.fetchrow(
                "SELECT data->>'recommendation_outcome' AS outcome, data->>'override_reason' AS reason "
                "FROM event_log WHERE type = 'incident.units_dispatched' ORDER BY id DESC LIMIT 1")
            assert dict(outcome) == {"outcome": "overridden", "reason": "crew already on that block"}

            # --- the MDT: geolocation positions and status buttons -------------------------
            mdt_user, mdt_pw = await make_user(pool, "field_unit", unit_id=unit)
            station = next(s for s in sffd_stations if f"E{int(s['station']):02d}" == unit)
            lat, lon = float(station["lat"]), float(station["lon"])
            await mdt.run(mdt.driver.execute_cdp_cmd, "Browser.grantPermissions",
                          {"origin": mdt_url, "permissions": ["geolocation"]})
            await mdt.run(mdt.driver.execute_cdp_cmd, "Emulation.setGeolocationOverride",
                          {"latitude": lat, "longitude": lon, "accuracy": 10})
            await mdt.login(mdt_url, "mdt", mdt_user, mdt_pw)
            await mdt.wait_for("return document.querySelector('#mdt-assignment h3')",
                               what="the assignment on the MDT")
            assignment = await mdt.js("return document.querySelector('#mdt-assignment').textContent")
            assert inc["number"] in assignment and "car burning" in assignment
            offered = await mdt.js("return [...document.querySelectorAll('#mdt-buttons button')]"
                                   ".map(b => b.dataset.status).sort()")
            assert offered == ["available_in_quarters", "available_on_radio", "en_route", "on_scene"]
            await _accessible(mdt, "mdt")
            await board.wait_for(
                "const r = document.querySelector(`#units tr[data-unit='${arguments[0]}']`);"
                "return r && r.dataset.pos === arguments[1];", unit, f"{lat:.5f},{lon:.5f}",
                timeout_s=BOARD_LAG_S + 3, what="first AVL position on the board")
            moved = (lat + 0.002, lon + 0.002)
            t0 = time.monotonic()
            await mdt.run(mdt.driver.execute_cdp_cmd, "Emulation.setGeolocationOverride",
                          {"latitude": moved[0], "longitude": moved[1], "accuracy": 10})
            await board.wait_for(
                "const r = document.querySelector(`#units tr[data-unit='${arguments[0]}']`);"
                "return r && r.dataset.pos === arguments[1];", unit,
                f"{moved[0]:.5f},{moved[1]:.5f}", timeout_s=BOARD_LAG_S, what="unit moved")
            move_to_board_s = time.monotonic() - t0

            status_lags = []
            for status, then_offered in (("en_route", "on_scene"), ("on_scene", "transporting"),
                                         ("available_on_radio", "out_of_service")):
                await mdt.click(f"#mdt-buttons button[data-status='{status}']")
                status_lags.append(await _board_row(board, unit, status, f"{unit} {status}"))
                await mdt.wait_for(
                    "return document.querySelector(`#mdt-buttons button[data-status='${arguments[0]}']`)",
                    then_offered, what=f"MDT offers {then_offered} after {status}")
            history = [r["to_status"] for r in await pool.fetch(
                "SELECT to_status FROM unit_status_log WHERE unit_id = $1 ORDER BY id", unit)]
            assert history[-4:] == ["dispatched", "en_route", "on_scene", "available_on_radio"]
            # the board shows the status once the server broadcast it; the MDT clears its
            # outbox when its own request's answer arrives, which can come after that
            await mdt.wait_for("return document.querySelector('#mdt-queue').textContent === ''",
                               what="the MDT's outbox empties once the server has the presses")
            assert await mdt.js(
                "return document.querySelector('#mdt-assignment').textContent") == "No assignment"

            # --- the MDT's link drops: the status press and the fixes wait, then go --------
            mdt_link.cut()
            await mdt.wait_for("return document.querySelector('#conn').dataset.state !== 'live'",
                               what="MDT notices the cut")
            offline_place = (lat - 0.003, lon + 0.001)
            await mdt.run(mdt.driver.execute_cdp_cmd, "Emulation.setGeolocationOverride",
                          {"latitude": offline_place[0], "longitude": offline_place[1],
                           "accuracy": 10})
            await mdt.click("#mdt-buttons button[data-status='out_of_service']")
            await mdt.wait_for("return document.querySelector('#mdt-queue').textContent"
                               ".includes('1 waiting to send: OOS')", what="status queued")
            assert await pool.fetchval("SELECT status FROM units WHERE id = $1", unit) == \
                "available_on_radio"
            await mdt.screenshot("mdt-offline")
            mdt_link.restore()
            await _board_row(board, unit, "out_of_service", "queued status sent on reconnect")
            await board.wait_for(
                "const r = document.querySelector(`#units tr[data-unit='${arguments[0]}']`);"
                "return r && r.dataset.pos === arguments[1];", unit,
                f"{offline_place[0]:.5f},{offline_place[1]:.5f}", timeout_s=BOARD_LAG_S + 5,
                what="fix taken offline reaches the board")
            await mdt.wait_for("return document.querySelector('#mdt-queue').textContent === ''",
                               what="queue empty")
            assert await pool.fetchval(
                "SELECT count(*) FROM unit_status_log WHERE unit_id = $1 "
                "AND to_status = 'out_of_service'", unit) == 1

            # --- the board's network is cut and restored: every missed event, in order -----
            before = await pool.fetchval("SELECT max(id) FROM event_log")
            await board.wait_for(
                "return Number(document.querySelector('#events li:last-child').dataset.eventId)"
                " === arguments[0]", before, what="board caught up before the cut")
            link.cut()
            await board.wait_for("return document.querySelector('#conn').dataset.state !== 'live'",
                                 what="board notices the cut")
            sup = await sf_api.as_("dispatcher")
            missed_incidents = []
            for k in range(3):
                r = await sup.post(f"{API}/incidents", json={
                    "agency": "SFFD", "incident_type": "ALARM",
                    "location": {"lat": lat + 0.001 * k, "lon": lon - 0.003}})
                assert r.status_code == 201, r.text
                missed_incidents.append(r.json()["id"])
            r = await sup.post(f"{API}/units/{unit}/status", json={"status": "available_in_quarters"})
            assert r.status_code == 200, r.text
            missed = [row["id"] for row in await pool.fetch(
                "SELECT id FROM event_log WHERE id > $1 ORDER BY id", before)]
            assert len(missed) >= 4
            await board.screenshot("board-offline")
            link.restore()
            await board.wait_for(
                "return document.querySelector('#conn').dataset.state === 'live' && "
                "Number(document.querySelector('#events li:last-child').dataset.eventId) === arguments[0]",
                missed[-1], timeout_s=15, what="board resumed and caught up")
            shown = await board.js("return [...document.querySelectorAll('#events li')]"
                                   ".map(li => Number(li.dataset.eventId))")
            assert shown == sorted(set(shown)), "events shown out of order or twice"
            assert shown[-len(missed):] == missed, "a missed event is not shown"
            history_states = (await board.js(
                "return document.querySelector('#conn').dataset.history")).split()
            assert "resyncing" in history_states[history_states.index("offline"):]
            for inc_id in missed_incidents:
                assert await board.js(
                    "return !!document.querySelector(`#incidents tr[data-incident='${arguments[0]}']`)",
                    inc_id)
            assert await board.js(
                "return document.querySelector(`#units tr[data-unit='${arguments[0]}']`).dataset.status",
                unit) == "available_in_quarters"
            await _accessible(board, "board-resumed")

            # --- the other screens, for the record and the accessibility check -------------
            await disp.js("location.hash = '#supervisor'")
            await disp.wait_for("return document.querySelectorAll('#sv-roster tbody tr').length === 3",
                                what="supervisor roster")
            await _accessible(disp, "supervisor")
            overrides = await disp.js("return document.querySelector('#sv-overrides').textContent")
            assert f"{other} — crew already on that block" in overrides
            others = sorted({"E01", "E08", "E36"} - {unit})
            for other in others:
                await disp.click(f"#sv-roster input[value='{other}']")
            await disp.click("[data-bulk='off_duty']")
            await disp.wait_for(
                "return arguments[0].every(u => document.querySelector("
                "`#sv-roster tr td .st-off_duty`) && [...document.querySelectorAll('#sv-roster tr')]"
                ".some(r => r.textContent.includes(u) && r.querySelector('.st-off_duty')))", others,
                what="bulk off duty on the roster")
            assert {r["status"] for r in await pool.fetch(
                "SELECT status FROM units WHERE id = ANY($1::text[])", others)} == {"off_duty"}
            await disp.js("location.hash = '#help'; document.querySelector('#help').hidden = false")
            print(f"\ndispatch -> board {dispatch_to_board_s:.3f} s, move -> board "
                  f"{move_to_board_s:.3f} s, MDT status -> board "
                  f"{', '.join(f'{s:.3f}' for s in status_lags)} s")
    finally:
        await link.close()
        await mdt_link.close()


# The page's fetch, with the first answer to a request matching arguments[0] (a regular
# expression on the URL) with method arguments[1] held back until the test releases it
# (window.__release): the network, or a loaded server, answering an older request last.
# __held becomes 'handled' in the task after the page has read that answer's body, so
# everything the page does with it synchronously (up to the handler's next await) is done.
_HOLD_FIRST = """
const pattern = new RegExp(arguments[0]), method = arguments[1];
const orig = window.fetch;
window.__held = 'waiting';
window.fetch = async (url, opts) => {
  const r = await orig(url, opts);
  if (window.__held === 'waiting' && pattern.test(String(url))
      && ((opts && opts.method) || 'GET') === method) {
    window.__held = 'holding';
    await new Promise((done) => { window.__release = done; });
    const text = r.text.bind(r);
    r.text = async () => {
      const t = await text();
      setTimeout(() => { window.__held = 'handled'; }, 0);
      return t;
    };
  }
  return r;
};
"""


async def test_the_detail_keeps_the_newest_answer_when_an_older_one_comes_last(
        sf_api: Api, sffd_stations) -> None:
    """Taking a call opens its detail (the incident pending) and dispatching opens it again:
    when the first answer arrives after the second, the panel must keep the dispatch, not
    paint the call as still pending with no unit on the way (it did: a console test on a
    loaded machine read "pending" after the dispatch, 2026-11-30)."""
    running = sf_api.running
    await _seed(sf_api, sffd_stations)
    user, pw = await make_user(running.pool, "dispatcher")
    with browsers("dispatcher-race") as (disp,):
        await disp.login(running.base_url, "dispatch", user, pw)
        await disp.js(_HOLD_FIRST, r"/api/v1/incidents/\d+$", "GET")
        await disp.run(lambda: disp.driver.find_element("css selector", "#in-type")
                       .send_keys("VEHFIRE"))
        await disp.type_into("#in-location", INTERSECTION)
        await disp.type_into("#in-narrative", "late answer check")
        await disp.keys("#in-narrative", "\ue009\ue007")   # Ctrl+Enter: create, recommend
        await disp.wait_for("return document.querySelector('#picks tbody tr')",
                            what="recommendation")
        assert await disp.js("return window.__held") == "holding"  # the first detail waits
        unit = await disp.js("return document.querySelector('#picks tbody tr').dataset.unit")
        await disp.wait_for(
            "return document.activeElement && document.activeElement.id === 'dispatch-picks'",
            what="the dispatch button has the focus")
        await disp.keys("#dispatch-picks", "\ue007")   # Enter: dispatch
        await disp.wait_for("return document.querySelector('#detail').textContent"
                            ".includes(arguments[0])", f"{unit} dispatched",
                            what="the detail after the dispatch")
        await disp.js("window.__release()")
        await disp.wait_for("return window.__held === 'handled'", what="the late answer handled")
        detail = await disp.js("return document.querySelector('#detail').textContent")
        assert f"{unit} dispatched" in detail and "· pending" not in detail, detail
        await disp.screenshot("detail-after-late-answer")


async def test_the_recommendation_shown_is_the_newest_asked_for(sf_api: Api, sffd_stations) -> None:
    """A recommendation asked for one call and answered after the one asked for the next must
    not replace it: the panel (and its focused dispatch button) stays the newest call's (it
    did not: Enter would then have dispatched the older call's picks)."""
    running = sf_api.running
    await _seed(sf_api, sffd_stations)
    disp_api = await sf_api.as_("dispatcher")
    first = await create_incident(disp_api, 37.78402, -122.408104, "VEHFIRE")
    second = await create_incident(disp_api, 37.7793, -122.4193, "VEHFIRE")
    user, pw = await make_user(running.pool, "dispatcher")
    with browsers("dispatcher-rec-race") as (disp,):
        await disp.login(running.base_url, "dispatch", user, pw)
        await disp.js(_HOLD_FIRST, r"/api/v1/incidents/\d+/recommendation$", "POST")
        await disp.keys("body", "\ue032")   # F2: the command line
        await disp.keys("#cmd", f"R {first['id']}\ue007")
        await disp.wait_for("return window.__held === 'holding'", what="the first call's answer held")
        # (the first command is still running, so its line is still in the box)
        await disp.type_into("#cmd", f"R {second['id']}\ue007")
        await disp.wait_for("return document.querySelector('#recommendation h3')"
                            " && document.querySelector('#recommendation h3').textContent"
                            ".includes(arguments[0])", second["number"],
                            what="the second call's recommendation")
        await disp.js("window.__release()")
        await disp.wait_for("return window.__held === 'handled'", what="the late answer handled")
        shown = await disp.js("return document.querySelector('#recommendation h3').textContent")
        assert second["number"] in shown and first["number"] not in shown, shown
        await disp.screenshot("recommendation-after-late-answer")


async def test_a_board_too_far_behind_resyncs_to_what_the_server_holds(
        database_url: str, tmp_path) -> None:
    """Past the replay limit the server sends resync_required and a fresh snapshot: the board
    shows `resyncing`, then exactly the server's units (a unit taken off the roster during the
    cut disappears, the other shows its newest status)."""
    from tests.dispatch_fixtures import make_settings
    from tests.support import running_app

    async with running_app(make_settings(database_url, tmp_path, ws_replay_max_events=2)) as running:
        api = Api(running)
        sup = await api.as_("supervisor")
        for unit_id in ("E01", "E02"):
            await create_unit(sup, unit_id)
        board_user, board_pw = await make_user(running.pool, "dispatcher")
        link = CuttableLink(int(running.base_url.rsplit(":", 1)[1]))
        await link.start()
        try:
            with browsers("board-resync") as (board,):
                await board.login(f"http://127.0.0.1:{link.port}", "board", board_user, board_pw)
                await board.wait_for("return document.querySelectorAll('#units tbody tr').length === 2",
                                     what="two units")
                link.cut()
                await board.wait_for(
                    "return document.querySelector('#conn').dataset.state !== 'live'",
                    what="board notices the cut")
                for status in ("out_of_service", "available_in_quarters", "available_on_radio"):
                    r = await sup.post(f"{API}/units/E01/status", json={"status": status})
                    assert r.status_code == 200, r.text
                assert (await sup.delete(f"{API}/units/E02")).status_code == 200
                link.restore()
                await board.wait_for(
                    "return document.querySelector('#conn').dataset.state === 'live' && "
                    "document.querySelectorAll('#units tbody tr').length === 1",
                    timeout_s=15, what="board resynced")
                assert await board.js(
                    "return document.querySelector(\"#units tr[data-unit='E01']\").dataset.status"
                ) == "available_on_radio"
                states = (await board.js(
                    "return document.querySelector('#conn').dataset.history")).split()
                assert "resyncing" in states[states.index("offline"):]
                # The state came from the fresh snapshot, not from a replay of the 4 events.
                shown = await board.js("return [...document.querySelectorAll('#events li')]"
                                       ".map(li => Number(li.dataset.eventId))")
                last4 = [r["id"] for r in await running.pool.fetch(
                    "SELECT id FROM event_log ORDER BY id DESC LIMIT 4")]
                assert not set(shown) & set(last4)
        finally:
            await link.close()
            await api.close()


async def test_intake_suggests_offers_candidates_and_closes_with_a_managed_code(
        sf_api: Api, sffd_stations) -> None:
    """Suggestions as one types come from /geocode/suggest; an address the geocoder is not sure
    of (a typo) is refused with candidates, shown for the dispatcher to choose from the
    keyboard; the choice creates the incident at the matched address, whose precision is shown
    beside it; closing offers the managed disposition codes; a map click and a unit's AVL
    position are described in words (reverse geocoding) where they are shown."""
    running = sf_api.running
    await _seed(sf_api, sffd_stations)
    user, pw = await make_user(running.pool, "dispatcher")
    with browsers("dispatcher") as (disp,):
        await disp.login(running.base_url, "dispatch", user, pw)
        await disp.type_into("#in-location", "MARKET ST & 5")
        await disp.wait_for(
            "return [...document.querySelectorAll('#in-suggest option')]"
            ".some(o => o.value === 'Market St & 5th St')", what="the corner suggested")

        await disp.run(lambda: disp.driver.find_element("css selector", "#in-location").clear())
        await disp.run(lambda: disp.driver.find_element("css selector", "#in-type")
                       .send_keys("VEHFIRE"))
        await disp.type_into("#in-location", "1200 MARKT ST")
        await disp.keys("#in-location", "\ue009\ue007")   # Ctrl+Enter
        await disp.wait_for("return document.querySelector('#candidates button')",
                            what="the candidates of an uncertain address")
        offered = await disp.js("return [...document.querySelectorAll('#candidates button')]"
                                ".map(b => b.textContent)")
        assert offered and offered[0].startswith("1200 Market St"), offered
        assert await running.pool.fetchval("SELECT count(*) FROM incidents") == 0
        await _accessible(disp, "dispatch-candidates")
        await disp.wait_for("return document.activeElement && "
                            "document.activeElement.closest('#candidates')",
                            what="the first candidate has the focus")
        await disp.run(lambda: disp.driver.switch_to.active_element.send_keys("\ue007"))  # Enter
        await disp.wait_for("return document.querySelector('#picks tbody tr')",
                            what="the incident created and recommended")
        await disp.wait_for("return document.querySelector('#detail').textContent"
                            ".includes('(street)')", what="the precision beside the location")
        row = await running.pool.fetchrow("SELECT location_source, location_text FROM incidents")
        assert row["location_source"] == "address"
        assert row["location_text"].upper().startswith("1200 MARKET ST"), row["location_text"]
        # Closing offers the managed disposition codes only (GET /analytics/dispositions).
        codes = await disp.js("return [...document.querySelectorAll('#close-disposition option')]"
                              ".map(o => o.value)")
        assert "REPORT" in codes and "NO_MERIT" in codes and "DONE" not in codes, codes
        await disp.run(lambda: disp.driver.find_element("css selector", "#close-disposition")
                       .send_keys("NO_MERIT"))
        await disp.run(lambda: disp.driver.find_element("css selector", "#close-incident").click())
        await disp.wait_for("return document.querySelector('#detail').hidden",
                            what="the incident closed")
        assert await running.pool.fetchval(
            "SELECT disposition FROM incidents") == "NO_MERIT"

        # A map click is described in words (reverse geocoding) under the location field:
        # a real mouse click at the pixel of a point near Market St.
        sup = await sf_api.as_("supervisor")
        x, y, w, h = await disp.js(
            "const m = S.maps['map-dispatch'].map; const p = m.latLngToContainerPoint("
            "L.latLng(37.78370, -122.40890)); const r = m.getContainer().getBoundingClientRect();"
            "return [p.x, p.y, r.width, r.height];")

        def click_map() -> None:
            from selenium.webdriver.common.action_chains import ActionChains

            box = disp.driver.find_element("css selector", "#map-dispatch")
            ActionChains(disp.driver).move_to_element_with_offset(
                box, int(x - w / 2), int(y - h / 2)).click().perform()

        await disp.run(click_map)
        await disp.wait_for("return document.querySelector('#in-location-hint').textContent"
                            ".includes(' (between ')", what="the clicked point in words")
        clicked = await disp.js("return document.querySelector('#in-location').value")
        lat, lon = (float(v) for v in clicked.split(","))
        assert abs(lat - 37.7837) < 0.03 and abs(lon + 122.4089) < 0.03, clicked
        said = (await sup.get(f"{API}/geocode/reverse", params={"lat": lat, "lon": lon})).json()
        hint = await disp.js("return document.querySelector('#in-location-hint').textContent")
        assert hint == said["description"], (hint, said)

        # The board describes where a unit is when its row is opened (Enter), from its newest
        # stored AVL fix (GET /units/{id}/position).
        fix = {"lat": 37.78370, "lon": -122.40890, "fix_time": datetime.now(UTC).isoformat()}
        e01 = await sf_api.as_("field_unit", unit_id="E01")
        r = await e01.post(f"{API}/units/E01/positions", json={"fixes": [fix]})
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        for _ in range(100):   # the breadcrumb writer stores it within a flush interval
            if (await sup.get(f"{API}/units/E01/position")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        await disp.run(lambda: disp.driver.execute_script("location.hash = '#board'"))
        await disp.wait_for("return document.querySelector(\"#units tr[data-unit='E01']\")",
                            what="E01 on the board")
        await disp.keys("#units tr[data-unit='E01']", "\ue007")   # Enter
        await disp.wait_for("return document.querySelector('#unit-where').textContent"
                            ".startsWith('E01: Market St (between')", what="E01's position in words")
        await _accessible(disp, "board-unit-where")


async def test_runners_up_routes_server_overrides_and_device_sign_in(sf_api: Api, sffd_stations) -> None:
    """The recommendation's runners-up are shown and one is sent instead of the pick (with the
    override reason); the incident detail and the MDT draw the unit's road route; a supervisor
    who opens the console afterwards reads the override and its reason from the server; the
    MDT signs in with its device token."""
    running = sf_api.running
    pool = running.pool
    await _seed(sf_api, sffd_stations)
    disp_user, disp_pw = await make_user(pool, "dispatcher")
    sup_user, sup_pw = await make_user(pool, "supervisor")
    with browsers("dispatcher", "supervisor", "mdt") as (disp, sup, mdt):
        await disp.login(running.base_url, "dispatch", disp_user, disp_pw)
        await disp.run(lambda: disp.driver.find_element("css selector", "#in-type").send_keys("VEHFIRE"))
        await disp.type_into("#in-location", INTERSECTION)
        await disp.keys("#in-location", "\ue009\ue007")   # Ctrl+Enter
        await disp.wait_for("return document.querySelectorAll('#runners-up tbody tr').length === 2",
                            what="two runners-up (three engines, one slot)")
        pick = await disp.js("return document.querySelector('#picks tbody tr').dataset.unit")
        runners = await disp.js(
            "return [...document.querySelectorAll('#runners-up tbody tr')].map(r => "
            "[r.dataset.unit, r.children[2].textContent, r.children[3].textContent,"
            " r.children[5].textContent])")
        assert {r[0] for r in runners} | {pick} == {"E01", "E08", "E36"}
        secs = [int(e.split(":")[0]) * 60 + int(e.split(":")[1]) for _, e, _, _ in runners]
        assert secs == sorted(secs) and all(d.endswith("km") for _, _, d, _ in runners)
        assert runners[0][3].startswith("runner-up 1: next nearest available engine by road ETA")
        await _accessible(disp, "dispatch-runners-up")

        # --- a runner-up is chosen instead of the pick; the reason is demanded and sent -----
        runner = runners[0][0]
        await disp.click(f"#runners-up button[data-unit='{runner}']")
        assert await disp.js("return document.querySelector('#other-units').value") == runner
        assert await disp.js("return document.activeElement.id") == "override-reason"
        await disp.type_into("#override-reason", "first-due engine is refuelling")
        await disp.click("#dispatch-other")
        inc = await pool.fetchrow("SELECT id, number FROM incidents")
        await disp.wait_for(
            "const li = document.querySelector(`#detail-routes li[data-unit='${arguments[0]}']`);"
            "return li && Number(li.dataset.points) > 2", runner, timeout_s=15,
            what="the runner-up's road route in the incident detail")
        assert await pool.fetchval("SELECT status FROM units WHERE id = $1", runner) == "dispatched"
        assert await disp.js("return S.maps['map-dispatch'].routes.getLayers().length") == 1
        route_text = await disp.js(
            "return document.querySelector(`#detail-routes li[data-unit='${arguments[0]}']`).textContent",
            runner)
        assert route_text.startswith(f"{runner}: ") and "by road" in route_text and "km" in route_text
        await _accessible(disp, "dispatch-detail-route")

        # --- the supervisor opens the console afterwards: the override comes from the server --
        rec_id = await pool.fetchval(
            "SELECT id FROM recommendations WHERE incident_id = $1 AND outcome = 'overridden'", inc["id"])
        await sup.login(running.base_url, "supervisor", sup_user, sup_pw)
        item = "document.querySelector(`#sv-overrides li[data-recommendation='${arguments[0]}']`)"
        await sup.wait_for(f"return {item}", rec_id, what="the recorded override on the supervisor screen")
        text = await sup.js(f"return {item}.textContent", rec_id)
        assert text.startswith(f"{inc['number']}: recommended {pick}, sent {runner} — "
                               "first-due engine is refuelling")
        assert disp_user in text
        await _accessible(sup, "supervisor-overrides")

        # --- the MDT signs in with its device token and shows its route ---------------------
        mdt_user, _ = await make_user(pool, "field_unit", unit_id=runner)
        user_id = await pool.fetchval("SELECT id::text FROM users WHERE username = $1", mdt_user)
        admin = await sf_api.as_("supervisor")
        r = await admin.post(f"{API}/devices", json={"user_id": user_id, "label": "tablet 7"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        await mdt.get(f"{running.base_url}/#mdt")
        await mdt.wait_for("return !document.querySelector('#login').hidden", what="login form")
        await _accessible(mdt, "mdt-sign-in")
        await mdt.type_into("#device-token", "mdt_not-a-real-token")
        await mdt.click("#deviceform button")
        await mdt.wait_for("return document.querySelector('#flash').textContent"
                           ".includes('device token refused')",
                           what="a wrong device token is refused")
        assert await mdt.js("return document.querySelector('#login').hidden") is False
        await mdt.type_into("#device-token", token)
        await mdt.click("#deviceform button")
        await mdt.wait_for("return document.querySelector('#conn').dataset.state === 'live'",
                           timeout_s=20, what="MDT live with its device token")
        await mdt.wait_for("return Number(document.querySelector('#mdt-route').dataset.points) > 2",
                           timeout_s=15, what="the route on the MDT")
        assert (await mdt.js("return document.querySelector('#mdt-unit').textContent")) == runner
        assert await mdt.js("return document.querySelector('#flash').textContent") == "device signed in"
        # the map shows the whole route on a new assignment
        assert await mdt.js("const b = S.maps['map-mdt'].map.getBounds();"
                            "return S.routes['map-mdt'][0].points.every(p => b.contains(p))")
        assert (await mdt.js("return document.querySelector('#mdt-route').textContent")).startswith(
            f"Route {runner}: ")
        assert await mdt.js("return S.maps['map-mdt'].routes.getLayers().length") == 1
        await _accessible(mdt, "mdt-route")
        await mdt.click("#mdt-buttons button[data-status='on_scene']")
        await mdt.wait_for("return document.querySelector('#mdt-route').textContent === '' && "
                           "S.maps['map-mdt'].routes.getLayers().length === 0",
                           what="on scene: the route is gone")
        assert await pool.fetchval("SELECT status FROM units WHERE id = $1", runner) == "on_scene"
        used = await pool.fetchval("SELECT last_used_at FROM device_tokens WHERE user_id = $1::uuid", user_id)
        assert used is not None


async def test_supervisor_sees_coverage_what_if_and_its_refresh(sf_api: Api, sffd_stations) -> None:
    """The supervisor screen draws the coverage cells coloured by ETA band with the legend in
    words and the share covered per type, as the API computes it; the what-if for a selected
    roster unit, from the keyboard; and the picture follows a unit going out of service."""
    running = sf_api.running
    await _seed(sf_api, sffd_stations)
    sup_api = await sf_api.as_("supervisor")
    await create_unit(sup_api, "M03", "medic", station="3", discipline="ems")

    async def api_share(**params: str) -> tuple[float, str]:
        r = await sup_api.get(f"{API}/coverage", params=params)
        assert r.status_code == 200, r.text
        s = r.json()["summary"]
        return s["covered_share"], ",".join(s["units_counted"])

    sup_user, sup_pw = await make_user(running.pool, "supervisor")
    with browsers("supervisor") as (sup,):
        await sup.login(running.base_url, "supervisor", sup_user, sup_pw)
        await sup.wait_for("return document.querySelector('#sv-coverage').dataset.units === arguments[0]",
                           "E01,E08,E36,M03", timeout_s=20, what="coverage of any unit type")
        cells = await sup.wait_for(
            "const g = S.maps['map-supervisor'].coverage.getLayers()[0];"
            "return g && g.getLayers().length", what="coverage cells on the map")
        assert cells == len((await sup_api.get(f"{API}/coverage")).json()["features"]) > 500
        legend = await sup.js(
            "return [...document.querySelectorAll('#cov-legend li')].map(l => l.textContent)")
        assert len(legend) == 5 and legend[0].startswith("covered: within 240 s") and legend[4].startswith(
            "not covered: no available unit reaches it")
        types = await sup.js("return [...document.querySelectorAll('#cov-types tbody tr')].map(r => "
                             "[r.dataset.type, r.children[1].textContent, r.children[2].textContent])")
        assert types == [["engine", "3", "240 s"], ["medic", "1", "480 s"]]

        # Engines only, chosen with the keyboard; the screen shows what the API computes.
        await sup.keys("#cov-type", "engine")
        await sup.wait_for("return document.querySelector('#cov-summary').textContent.startsWith('engine:')",
                           what="the engine picture")
        engines, _ = await api_share(unit_type="engine")
        shown = float(await sup.js("return document.querySelector('#sv-coverage').dataset.coveredShare"))
        assert shown == engines
        assert (await sup.js("return document.querySelector('#cov-summary').textContent")).startswith(
            f"engine: {100 * engines:.1f} % of")

        # What if E08 were committed: select it in the roster, press the what-if button (Enter).
        await sup.keys("#sv-roster input[value='E08']", " ")
        await sup.keys("#cov-what-if-selected", "\ue007")
        await sup.wait_for("return document.querySelector('#sv-coverage').dataset.without === 'E08'",
                           what="the what-if without E08")
        without, units = await api_share(unit_type="engine", without="E08")
        assert units == "E01,E36" and without < engines
        lost = await sup.js("return document.querySelector(\"#cov-legend li[data-band='lost']\").textContent")
        assert lost.startswith("white outline: covered now, lost if E08 committed: ")
        assert int(lost.rsplit(": ", 1)[1].split()[0]) > 0
        shown = float(await sup.js("return document.querySelector('#sv-coverage').dataset.coveredShare"))
        assert shown == without
        await _accessible(sup, "supervisor-coverage-what-if")

        # Back to the live picture; E01 goes out of service elsewhere and the screen follows.
        await sup.type_into("#cov-without", "")
        await sup.keys("#cov-without", "\ue007")
        await sup.wait_for("return document.querySelector('#sv-coverage').dataset.units === 'E01,E08,E36'",
                           what="the live engine picture")
        r = await sup_api.post(f"{API}/units/E01/status", json={"status": "out_of_service"})
        assert r.status_code == 200, r.text
        await sup.wait_for("return document.querySelector('#sv-coverage').dataset.units === 'E08,E36'",
                           timeout_s=10, what="coverage refreshed by the unit's status event")
        after, _ = await api_share(unit_type="engine")
        shown = float(await sup.js("return document.querySelector('#sv-coverage').dataset.coveredShare"))
        assert shown == after < engines
        await _accessible(sup, "supervisor-coverage")
