"""Resetting a training agency (`cad training reset`, POST /api/v1/training/reset): the
exercise of the training agency goes -- incidents and everything hanging off them, the units'
status log, breadcrumbs and positions, its training events, public reports and feedback --
in one transaction, while every row of a real agency stays (counted before and after), the
audit trail keeps everything and records the reset, connected trainee boards are told, and
each worker forgets the positions it held of the reset units. Anything that is not a training
agency is refused with nothing deleted; only an admin may reset."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cad.settings import REPO_ROOT
from tests.auth import Api, device_token, make_user, session_headers
from tests.dispatch_fixtures import DOWNTOWN, create_unit, sf_graph_path  # noqa: F401 - fixture
from tests.incidents.analytics.conftest import TRAINING
from tests.support import Apps, RunningApp
from tests.ws_gateway.helpers import StreamClient, fix

REAL = "SFFD"
RESET = "/api/v1/training/reset"

# Per table: rows belonging to agency $1 (directly, or through its incidents or units).
COUNTS = {
    "incidents": "SELECT count(*) FROM incidents WHERE agency = $1",
    "incident_callers": "SELECT count(*) FROM incident_callers c JOIN incidents i "
                        "ON i.id = c.incident_id WHERE i.agency = $1",
    "incident_narrative": "SELECT count(*) FROM incident_narrative n JOIN incidents i "
                          "ON i.id = n.incident_id WHERE i.agency = $1",
    "incident_links": "SELECT count(*) FROM incident_links l JOIN incidents i "
                      "ON i.id = l.incident_id WHERE i.agency = $1",
    "incident_units": "SELECT count(*) FROM incident_units x JOIN incidents i "
                      "ON i.id = x.incident_id WHERE i.agency = $1",
    "recommendations": "SELECT count(*) FROM recommendations r JOIN incidents i "
                       "ON i.id = r.incident_id WHERE i.agency = $1",
    "alerts": "SELECT count(*) FROM alerts WHERE agency = $1",
    "alert_deliveries": "SELECT count(*) FROM alert_deliveries d JOIN alerts a "
                        "ON a.id = d.alert_id WHERE a.agency = $1",
    "alert_subscriptions": "SELECT count(*) FROM alert_subscriptions WHERE agency = $1",
    "public_reports": "SELECT count(*) FROM public_reports WHERE agency = $1",
    "feedback": "SELECT count(*) FROM feedback WHERE agency = $1",
    "feedback_notes": "SELECT count(*) FROM feedback_notes n JOIN feedback f "
                      "ON f.id = n.feedback_id WHERE f.agency = $1",
    "timer_alerts": "SELECT count(*) FROM timer_alerts t WHERE t.subject IN ("
                    "SELECT id::text FROM incidents WHERE agency = $1 "
                    "UNION ALL SELECT id FROM units WHERE agency = $1)",
    "units": "SELECT count(*) FROM units WHERE agency = $1",
    "stations": "SELECT count(*) FROM stations WHERE agency = $1",
    "unit_status_log": "SELECT count(*) FROM unit_status_log l JOIN units u "
                       "ON u.id = l.unit_id WHERE u.agency = $1",
    "unit_positions": "SELECT count(*) FROM unit_positions p JOIN units u "
                      "ON u.id = p.unit_id WHERE u.agency = $1",
    "units_with_a_position": "SELECT count(*) FROM units WHERE agency = $1 "
                             "AND last_fix_at IS NOT NULL",
    "events": "SELECT count(*) FROM event_log WHERE agency = $1",
    "users": "SELECT count(*) FROM users WHERE $1 = ANY (agencies)",
}
# What an exercise holds besides its roster: all of it goes.
EXERCISE = ("incidents", "incident_callers", "incident_narrative", "incident_links",
            "incident_units", "recommendations", "alerts", "alert_deliveries", "public_reports",
            "feedback", "feedback_notes", "timer_alerts", "unit_positions",
            "units_with_a_position")


async def counts(pool: asyncpg.Pool, agency: str) -> dict[str, int]:
    return {name: await pool.fetchval(sql, agency) for name, sql in COUNTS.items()}


@pytest.fixture
async def app(apps: Apps, sf_graph_path: Path) -> RunningApp:  # noqa: F811 - the fixture
    # A road graph, so each worker holds a routing index of unit positions to keep current.
    return await apps.start(graph_path=sf_graph_path, training_agencies=[TRAINING])


async def exercise(admin: httpx.AsyncClient, pool: asyncpg.Pool, app: RunningApp, agency: str,
                   prefix: str) -> dict[str, Any]:
    """An agency's roster and a worked exercise on it: three incidents (callers, narrative, a
    link, a merge, a recommendation, a dispatch, a status change), an AVL track, a community alert with
    a delivery, a public report, feedback with a note, a timer alert."""
    station = f"{prefix}S1"
    r = await admin.put(f"/api/v1/stations/{station}", json={
        "id": station, "agency": agency, "name": "Station 1", "lat": 37.7793, "lon": -122.4193})
    assert r.status_code in (200, 201), r.text
    engine, medic = f"{prefix}E1", f"{prefix}M1"
    await create_unit(admin, engine, "engine", station=station, agency=agency)
    await create_unit(admin, medic, "medic_als", station=station, agency=agency,
                      discipline="ems")
    incidents = []
    for n in range(2):
        r = await admin.post("/api/v1/incidents", json={
            "agency": agency, "incident_type": "MED",
            "location": {"lat": DOWNTOWN[0] + n / 1000, "lon": DOWNTOWN[1]},
            "caller": {"name": f"Caller {n}", "callback_number": "415-555-0100"},
            "narrative": "Fell down the stairs."})
        assert r.status_code == 201, r.text
        incidents.append(r.json()["id"])
    first, second = incidents
    r = await admin.post(f"/api/v1/incidents/{first}/link",
                         json={"other_id": second, "kind": "related"})
    assert r.status_code in (200, 201), r.text
    # A duplicate call merged into the first (incidents refer to incidents).
    r = await admin.post("/api/v1/incidents", json={
        "agency": agency, "incident_type": "MED",
        "location": {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]}})
    assert r.status_code == 201, r.text
    duplicate = r.json()["id"]
    r = await admin.post(f"/api/v1/incidents/{duplicate}/merge", json={"into_id": first})
    assert r.status_code == 200, r.text
    assert await pool.fetchval("SELECT merged_into FROM incidents WHERE id = $1", duplicate) == first
    incidents.append(duplicate)
    r = await admin.post(f"/api/v1/incidents/{first}/recommendation")
    assert r.status_code in (200, 201), r.text
    r = await admin.post(f"/api/v1/incidents/{first}/dispatch",
                         json={"unit_ids": [engine], "override_reason": "closest engine"})
    assert r.status_code in (200, 201), r.text
    r = await admin.post(f"/api/v1/units/{engine}/status", json={"status": "en_route"})
    assert r.status_code == 200, r.text

    # The medic's MDT reports where it is: a breadcrumb, the unit's last fix, and the
    # position this worker holds in memory for routing.
    token = await device_token(pool, medic, agency=agency)
    r = await admin.post(f"/api/v1/units/{medic}/positions",
                         json={"fixes": [fix(37.7750, -122.4183)]},
                         headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    await app.gateway.avl.writer.flush()

    alert = await pool.fetchval(
        "INSERT INTO alerts (identifier, agency, incident_id, msg_type, event, category, urgency, "
        "severity, certainty, area_desc, polygons, infos, drafted_by) VALUES ($1, $2, $3, "
        "'Alert', 'Exercise', 'Fire', 'Immediate', 'Severe', 'Observed', 'Downtown', '[]', "
        "'[]', 'tests') RETURNING id", f"{prefix}-alert-1", agency, first)
    subscription = await pool.fetchval(
        "INSERT INTO alert_subscriptions (agency, channel, target, created_by) "
        "VALUES ($1, 'log', 'tests', 'tests') RETURNING id", agency)
    await pool.execute("INSERT INTO alert_deliveries (alert_id, subscription_id) VALUES ($1, $2)",
                       alert, subscription)
    await pool.execute(
        "INSERT INTO public_reports (tracking, agency, report_type, description, via) "
        "VALUES ($1, $2, 'graffiti', 'Paint on a wall.', 'form')",
        f"R-{'A' if prefix == 'TR-' else 'B'}000-0000-0000", agency)
    feedback = await pool.fetchval(
        "INSERT INTO feedback (reference, agency, category, description, language, "
        "acknowledge_due_at, resolve_due_at) VALUES ($1, $2, 'compliment', 'Thank you.', 'en', "
        "now() + interval '2 days', now() + interval '20 days') RETURNING id",
        f"{prefix}FB-1", agency)
    await pool.execute("INSERT INTO feedback_notes (feedback_id, author, text) "
                       "VALUES ($1, 'tests', 'Passed on.')", feedback)
    await pool.execute("INSERT INTO timer_alerts (kind, subject, since, threshold_s) "
                       "VALUES ('pending_overdue', $1, now(), 60)", str(second))
    return {"station": station, "engine": engine, "medic": medic, "incidents": incidents}


async def _board(app: RunningApp, **user: Any) -> StreamClient:
    username, _ = await make_user(app.pool, **user)
    token = (await session_headers(app, username))["Authorization"].removeprefix("Bearer ")
    board = StreamClient(app.ws_url + "/ws/board", token)
    assert (await board.connect())["type"] == "snapshot"
    return board


async def test_a_reset_deletes_the_exercise_and_leaves_the_real_agency_untouched(
        app: RunningApp) -> None:
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    admin_name = api.auth.users[-1].username
    trained = await exercise(admin, pool, app, TRAINING, "TR-")
    await exercise(admin, pool, app, REAL, "RE-")
    trainee = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
    real_board = await _board(app, role="dispatcher", agency=REAL)
    try:
        before, real_before = await counts(pool, TRAINING), await counts(pool, REAL)
        # Every kind of row is there to be deleted (else the test proves nothing).
        assert all(before[t] > 0 for t in EXERCISE), before
        assert {t: real_before[t] for t in EXERCISE} == {t: before[t] for t in EXERCISE}
        locator = app.runtime.locator
        assert trained["medic"] in locator.fixes
        audit_before = await pool.fetchval("SELECT count(*) FROM audit_log")
        training_events = await pool.fetchval(
            "SELECT count(*) FROM event_log WHERE agency = $1 AND training", TRAINING)
        assert training_events == before["events"] > 0

        r = await admin.post(RESET, json={"agency": TRAINING})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["agency"] == TRAINING and body["roster"] == "kept"
        got = body["counts"]
        for table in ("incidents", "incident_callers", "incident_narrative", "incident_links",
                      "incident_units", "recommendations", "alerts", "alert_deliveries",
                      "public_reports", "feedback", "feedback_notes", "timer_alerts",
                      "unit_status_log", "unit_positions"):
            assert got[table] == before[table], (table, got, before)
        assert got["events"] == training_events and got["units_reset"] == 2
        assert got["number_sequences_restarted"] == 1
        assert sorted(body["incident_ids"]) == sorted(trained["incidents"])
        assert body["unit_ids"] == sorted([trained["engine"], trained["medic"]])

        after = await counts(pool, TRAINING)
        assert {t: after[t] for t in EXERCISE} == dict.fromkeys(EXERCISE, 0)
        # The roster stays, back in quarters; the status log holds the reset's one change.
        assert (after["units"], after["stations"], after["alert_subscriptions"],
                after["users"]) == (before["units"], before["stations"],
                                    before["alert_subscriptions"], before["users"])
        units = await pool.fetch("SELECT id, status, current_incident, last_lat, last_fix_at, "
                                 "last_checkin_at FROM units WHERE agency = $1 ORDER BY id",
                                 TRAINING)
        assert [tuple(u) for u in units] == [
            (trained["engine"], "available_in_quarters", None, None, None, None),
            (trained["medic"], "available_in_quarters", None, None, None, None)]
        log = await pool.fetch("SELECT unit_id, from_status, to_status, actor, source "
                               "FROM unit_status_log l JOIN units u ON u.id = l.unit_id "
                               "WHERE u.agency = $1", TRAINING)
        assert [tuple(x) for x in log] == [(trained["engine"], "en_route",
                                            "available_in_quarters", admin_name, "system")]
        # The agency's event log holds the reset, nothing of the exercise.
        events = await pool.fetch("SELECT id, type, training FROM event_log WHERE agency = $1",
                                  TRAINING)
        assert [(e["id"], e["type"], e["training"]) for e in events] == [
            (body["event_id"], "training.reset", True)]

        # Nothing of the real agency changed.
        assert await counts(pool, REAL) == real_before

        # The audit trail lost nothing and holds the reset: who, which agency, the counts.
        assert await pool.fetchval("SELECT count(*) FROM audit_log") > audit_before
        record = await pool.fetchrow(
            "SELECT actor, target, outcome, details FROM audit_log WHERE action = 'training.reset'")
        assert (record["actor"], record["target"], record["outcome"]) == (
            admin_name, f"agency:{TRAINING}", "success")
        assert record["details"]["counts"] == got and record["details"]["roster"] == "kept"
        assert record["details"]["training"] is True
        verify = await admin.get("/api/v1/audit/verify")
        assert verify.status_code == 200 and verify.json()["ok"] is True, verify.text

        # A connected trainee board is told (and drops what the event names); a real board
        # hears nothing of it.
        await trainee.wait_for(lambda c: any(e["type"] == "training.reset" for e in c.events))
        told = next(e for e in trainee.events if e["type"] == "training.reset")
        assert told["id"] == body["event_id"] and told["training"] is True
        assert told["data"] == {"agency": TRAINING, "roster": "kept", "unit_ids": body["unit_ids"],
                                "incident_ids": body["incident_ids"], "counts": got}
        # The real board is live past the reset once it has the next real event.
        r = await admin.post("/api/v1/incidents", json={
            "agency": REAL, "incident_type": "OTHER",
            "location": {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]}})
        assert r.status_code == 201
        await real_board.wait_for(lambda c: any(e["type"] == "incident.created" for e in c.events))
        assert not [e for e in real_board.events if e["agency"] == TRAINING or e["training"]]

        # This worker forgot the medic's fix (the event reached it: the board got it) and
        # places the unit at its station again.
        assert trained["medic"] not in locator.fixes
        await locator.settle(5.0)
        assert locator.indexed[trained["medic"]].source == "station"

        # A fresh board of the trainee: an empty exercise, the roster in quarters.
        fresh = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
        await fresh.close()

        # The next exercise numbers its incidents from 1 again.
        r = await admin.post("/api/v1/incidents", json={
            "agency": TRAINING, "incident_type": "MED",
            "location": {"lat": DOWNTOWN[0], "lon": DOWNTOWN[1]}})
        assert r.status_code == 201, r.text
        assert r.json()["number"] == f"{TRAINING}-{datetime.now(UTC).year}-000001"
    finally:
        await trainee.close()
        await real_board.close()
        await api.close()


async def test_a_real_or_unknown_agency_is_refused_and_nothing_deleted(app: RunningApp) -> None:
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    await exercise(admin, pool, app, TRAINING, "TR-")
    await exercise(admin, pool, app, REAL, "RE-")
    try:
        before = {a: await counts(pool, a) for a in (TRAINING, REAL)}
        for agency, detail in ((REAL, f"{REAL} is not a training agency"),
                               ("NOPE", "no agency NOPE")):
            r = await admin.post(RESET, json={"agency": agency})
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["errors"][0]["field"] == "body.agency"
            assert detail in problem["detail"], problem
            assert f"CAD_TRAINING_AGENCIES: {TRAINING}" in problem["detail"]
        r = await admin.post(RESET, json={"agency": TRAINING, "roster": "everything"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.roster"
        assert {a: await counts(pool, a) for a in (TRAINING, REAL)} == before
        # The refusals are in the audit trail.
        refused = await pool.fetch("SELECT target, outcome FROM audit_log "
                                   "WHERE action = 'training.reset' ORDER BY seq")
        assert [tuple(x) for x in refused] == [(f"agency:{REAL}", "failure"),
                                               ("agency:NOPE", "failure")]

        # The database refuses too, whoever asks: the function for a real agency, the
        # append-only guards for a real agency's rows even with the reset switch set by hand,
        # and the server's role may not delete events at all.
        async with pool.acquire() as conn:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not a training agency"):
                await conn.fetchval("SELECT training_reset($1, false, 'tests')", REAL)
            for agency in (REAL, TRAINING):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    async with conn.transaction():
                        await conn.execute("SELECT set_config('cad.training_reset', $1, true)",
                                           agency)
                        await conn.execute("DELETE FROM unit_status_log WHERE unit_id = 'RE-E1'")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SELECT set_config('cad.training_reset', $1, true)",
                                       TRAINING)
                    await conn.execute("DELETE FROM event_log WHERE agency = $1", TRAINING)
        assert {a: await counts(pool, a) for a in (TRAINING, REAL)} == before
    finally:
        await api.close()


async def test_only_an_admin_resets(app: RunningApp) -> None:
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    await exercise(admin, pool, app, TRAINING, "TR-")
    for role in ("dispatcher", "supervisor"):   # the users first: they count as rows too
        await api.as_(role, agency=TRAINING, agencies=[TRAINING])
    try:
        before = await counts(pool, TRAINING)
        for role in ("dispatcher", "supervisor"):
            client = await api.as_(role, agency=TRAINING, agencies=[TRAINING])
            r = await client.post(RESET, json={"agency": TRAINING})
            assert r.status_code == 403, (role, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        async with httpx.AsyncClient(base_url=app.base_url) as anonymous:
            r = await anonymous.post(RESET, json={"agency": TRAINING})
            assert r.status_code == 401, r.text
        assert await counts(pool, TRAINING) == before
    finally:
        await api.close()


async def test_wiping_the_roster_deletes_the_training_units_and_stations(app: RunningApp) -> None:
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    await exercise(admin, pool, app, TRAINING, "TR-")
    await exercise(admin, pool, app, REAL, "RE-")
    trainee = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
    try:
        real_before = await counts(pool, REAL)
        users = await pool.fetchval("SELECT count(*) FROM users")
        r = await admin.post(RESET, json={"agency": TRAINING, "roster": "wipe"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["roster"] == "wiped"
        assert (body["counts"]["units_deleted"], body["counts"]["stations_deleted"]) == (2, 1)
        after = await counts(pool, TRAINING)
        assert {t: after[t] for t in (*EXERCISE, "units", "stations", "unit_status_log")} == \
            dict.fromkeys((*EXERCISE, "units", "stations", "unit_status_log"), 0)
        assert after["alert_subscriptions"] == 1   # set-up, not exercise
        assert await pool.fetchval("SELECT count(*) FROM users") == users
        assert await counts(pool, REAL) == real_before
        # The deleted units leave this worker's routing index once it has read the event
        # (the trainee's board got it from the same read).
        await trainee.wait_for(lambda c: any(e["type"] == "training.reset" for e in c.events))
        locator = app.runtime.locator
        await locator.settle(5.0)
        assert {"TR-E1", "TR-M1"}.isdisjoint(locator.indexed)
        assert {"RE-E1", "RE-M1"} <= set(locator.indexed)
    finally:
        await trainee.close()
        await api.close()


def _cli(app: RunningApp, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAD_DATABASE_URL": app.settings.database_url or "",
           "CAD_TRAINING_AGENCIES": TRAINING, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cad", "training", "reset", *args],
                          check=False, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


async def test_the_cli_resets_a_training_agency_and_refuses_any_other(app: RunningApp) -> None:
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    await exercise(admin, pool, app, TRAINING, "TR-")
    await exercise(admin, pool, app, REAL, "RE-")
    trainee = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
    try:
        before = {a: await counts(pool, a) for a in (TRAINING, REAL)}
        # Refused: a real agency, an unknown one, and no --yes without a terminal to ask on.
        for args, said in (((REAL, "--yes"), f"{REAL} is not a training agency"),
                           (("NOPE", "--yes"), "no agency NOPE"),
                           ((TRAINING,), "refusing to reset without --yes")):
            proc = await asyncio.to_thread(_cli, app, *args)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert said in proc.stderr, proc.stderr
        assert {a: await counts(pool, a) for a in (TRAINING, REAL)} == before
        assert "TR-M1" in app.runtime.locator.fixes

        proc = await asyncio.to_thread(_cli, app, TRAINING, "--yes")
        assert proc.returncode == 0, proc.stderr
        assert f"reset {TRAINING} (roster kept): " in proc.stdout
        assert f"incidents {before[TRAINING]['incidents']}" in proc.stdout, proc.stdout
        after = await counts(pool, TRAINING)
        assert {t: after[t] for t in EXERCISE} == dict.fromkeys(EXERCISE, 0)
        assert after["units"] == before[TRAINING]["units"]
        assert await counts(pool, REAL) == before[REAL]
        actor = await pool.fetchval("SELECT actor FROM audit_log WHERE action = 'training.reset' "
                                    "AND outcome = 'success'")
        assert actor.startswith("cli:training-reset:")
        # A running server hears of a reset made by another process: its trainee board is
        # told, and it forgot the medic's fix (the same read of the event log did both).
        await trainee.wait_for(lambda c: any(e["type"] == "training.reset" for e in c.events))
        assert "TR-M1" not in app.runtime.locator.fixes
        await app.runtime.locator.settle(5.0)
        assert app.runtime.locator.indexed["TR-M1"].source == "station"
    finally:
        await trainee.close()
        await api.close()


async def test_units_of_another_training_agency_on_its_incidents_are_released(
        apps: Apps) -> None:
    """Mutual aid between two training agencies: resetting one deletes its incident, and the
    other agency's unit that served it is free again (its change logged); nothing else of the
    other agency changes."""
    other = "SFPD-TRAINING"
    app = await apps.start(training_agencies=[TRAINING, other],
                           mutual_aid={TRAINING: [other]}, mutual_aid_roles=["admin"])
    pool, api = app.pool, Api(app)
    admin = await api.as_("admin")
    try:
        await exercise(admin, pool, app, TRAINING, "TR-")
        await exercise(admin, pool, app, other, "PD-")
        first = await pool.fetchval("SELECT min(id) FROM incidents WHERE agency = $1", TRAINING)
        r = await admin.post(f"/api/v1/incidents/{first}/dispatch",
                             json={"unit_ids": ["PD-M1"], "override_reason": "mutual aid"})
        assert r.status_code == 200, r.text
        assert await pool.fetchval("SELECT current_incident FROM units WHERE id = 'PD-M1'") == first
        before = await counts(pool, other)

        r = await admin.post(RESET, json={"agency": TRAINING})
        assert r.status_code == 200, r.text
        assert "PD-M1" in r.json()["unit_ids"]
        unit = await pool.fetchrow("SELECT status, current_incident, last_fix_at IS NOT NULL "
                                   "AS has_fix FROM units WHERE id = 'PD-M1'")
        assert tuple(unit) == ("available_on_radio", None, True)   # its own position stays
        last = await pool.fetchrow("SELECT from_status, to_status, source FROM unit_status_log "
                                   "WHERE unit_id = 'PD-M1' ORDER BY id DESC LIMIT 1")
        assert tuple(last) == ("dispatched", "available_on_radio", "system")
        after = await counts(pool, other)
        assert after == {**before, "unit_status_log": before["unit_status_log"] + 1}
    finally:
        await api.close()
