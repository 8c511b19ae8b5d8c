"""Training mode: `cad simulate --training` replays history into a training agency
(CAD_TRAINING_AGENCIES). A trainee's board receives the replayed calls; a real agency's
dispatcher and a supervisor acting for every agency receive nothing of them. Training data are
marked (`training: true` in views, events and audit records) and kept out of lists, reports,
the annual report, public feeds and alerts unless a training agency is named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from cad.settings import REPO_ROOT
from incidents.analytics import annual, calibrate, simulate
from incidents.analytics.mapping import load_mapping
from tests.auth import Api, make_user, session_headers
from tests.incidents.analytics.conftest import TRAINING
from tests.incidents.public.conftest import intake, public_outputs, publish, start_public_app
from tests.support import Apps, RunningApp, require_shared
from tests.ws_gateway.helpers import StreamClient

WINDOW = "calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz"
STATIONS = "calls/sffd_fire_stations.csv"
REPLAYED = 8
INFO = {"en": {"headline": "Exercise", "description": "An exercise.", "instruction": "None."},
        "es": {"headline": "Ejercicio", "description": "Un ejercicio.", "instruction": "Nada."}}


async def _board(app: RunningApp, **user: Any) -> StreamClient:
    username, _ = await make_user(app.pool, **user)
    token = (await session_headers(app, username))["Authorization"].removeprefix("Bearer ")
    board = StreamClient(app.ws_url + "/ws/board", token)
    first = await board.connect()
    assert first["type"] == "snapshot"
    board.first = first  # type: ignore[attr-defined]  # the snapshot, for the assertions
    return board


def _created(board: StreamClient) -> list[dict[str, Any]]:
    return [e for e in board.events if e["type"] == "incident.created"]


def _simulate(app: RunningApp, user: str, password: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CAD_SIM_USERNAME": user,
           "CAD_SIM_PASSWORD": password, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cad", "simulate", str(require_shared(WINDOW)), "--url",
         app.base_url, "--speedup", "0", *args],
        check=False, env=env, capture_output=True, text=True, timeout=300)


async def test_trainee_board_receives_the_replay_and_real_boards_nothing(
        training_app: RunningApp) -> None:
    app, pool = training_app, training_app.pool
    admin, admin_pw = await make_user(pool, "admin")
    path = require_shared(WINDOW)
    mapping = load_mapping("sffd")
    api = Api(app)
    boards: list[StreamClient] = []
    try:
        admin_client = await api.as_("admin")
        # The real agency's roster, as it is before any training.
        await simulate.setup_roster(
            admin_client, agency="SFFD", stations=calibrate.read_stations(require_shared(STATIONS)),
            units=simulate.roster_from_calls(path, mapping),
            medics=simulate.medics_from_calls(path, mapping))
        real_units = await pool.fetchval("SELECT count(*) FROM units WHERE agency = 'SFFD'")
        assert real_units > 50

        trainee = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
        dispatcher = await _board(app, role="dispatcher", agency="SFFD")
        everyone = await _board(app, role="supervisor", agency="SFFD",
                                agencies=["SFFD", "SFPD", TRAINING])
        boards += [trainee, dispatcher, everyone]

        # Into a real agency only when forced: refused before anything is written.
        refused = await asyncio.to_thread(_simulate, app, admin, admin_pw, "--limit", "2")
        assert refused.returncode == 2 and "refusing to replay into the real agency SFFD" in (
            refused.stderr + refused.stdout)
        assert await pool.fetchval("SELECT count(*) FROM incidents") == 0
        wrong = await asyncio.to_thread(_simulate, app, admin, admin_pw, "--training",
                                        "--agency", "SFPD", "--limit", "2")
        assert wrong.returncode == 2 and "not a training agency" in wrong.stderr + wrong.stdout

        # The replay: the roster copied into the training agency, then the calls.
        done = await asyncio.to_thread(_simulate, app, admin, admin_pw, "--training",
                                       "--limit", str(REPLAYED))
        assert done.returncode == 0, done.stderr
        assert f"{real_units} units copied from SFFD" in done.stdout
        summary = json.loads(done.stdout[done.stdout.index("{"):done.stdout.rindex("}") + 1])
        assert summary["calls"] == REPLAYED and summary["dispatched"] == REPLAYED
        assert summary["errors"] == 0

        copies = await pool.fetch("SELECT id, agency, home_station, training FROM units "
                                  "WHERE agency = $1", TRAINING)
        assert len(copies) == real_units
        assert all(r["id"].startswith("TR-") and r["training"] for r in copies)
        assert all(r["home_station"].startswith("TR-S") for r in copies)
        assert await pool.fetchval("SELECT bool_and(NOT training) FROM units WHERE agency = 'SFFD'")
        rows = await pool.fetch("SELECT id, agency, training FROM incidents ORDER BY id")
        assert len(rows) == REPLAYED and all(r["agency"] == TRAINING and r["training"] for r in rows)
        assigned = await pool.fetch("SELECT DISTINCT unit_id FROM incident_units")
        assert assigned and all(r["unit_id"].startswith("TR-") for r in assigned)

        # A real call after the run: once a real board has it, it has had every earlier event
        # it was going to get (events arrive in commit order).
        r = await admin_client.post("/api/v1/incidents", json={
            "agency": "SFFD", "incident_type": "OTHER",
            "location": {"lat": 37.7837, "lon": -122.4075}})
        assert r.status_code == 201, r.text
        real = r.json()
        assert real["training"] is False

        await trainee.wait_for(lambda c: len(_created(c)) >= REPLAYED, timeout=30)
        for board in (dispatcher, everyone):
            await board.wait_for(lambda c: any(e["data"]["incident"]["id"] == real["id"]
                                               for e in _created(c)), timeout=30)

        # The trainee saw the replayed calls arrive, every one marked, and nothing real.
        created = _created(trainee)
        assert sorted(e["data"]["incident"]["id"] for e in created) == [r["id"] for r in rows]
        assert all(e["training"] is True and e["agency"] == TRAINING for e in trainee.events)
        assert all(e["data"]["incident"]["training"] is True for e in created)
        dispatched = [e for e in trainee.events if e["type"] == "incident.units_dispatched"]
        assert len(dispatched) == REPLAYED
        assert all(u["training"] is True for e in dispatched for u in e["data"]["units_after"])

        # The real boards: nothing of the run, in the snapshot or the stream.
        for board in (dispatcher, everyone):
            assert board.events, "the real board received the real call"
            assert not [e for e in board.events if e["training"] or e["agency"] == TRAINING]
            units = board.first["snapshot"]["units"]  # type: ignore[attr-defined]
            assert units and not [u for u in units.values() if u["training"]]
            assert [e["data"]["incident"]["id"] for e in _created(board)] == [real["id"]]

        # A fresh snapshot of each, after the run: still nothing of it.
        for user in ({"role": "dispatcher", "agency": "SFFD"},
                     {"role": "supervisor", "agency": "SFFD", "agencies": ["SFFD", TRAINING]}):
            late = await _board(app, **user)
            snap = late.first["snapshot"]  # type: ignore[attr-defined]
            assert list(snap["incidents"]) == [str(real["id"])]
            assert not [u for u in snap["units"].values() if u["agency"] == TRAINING]
            await late.close()
        late = await _board(app, role="dispatcher", agencies=[TRAINING], agency=TRAINING)
        snap = late.first["snapshot"]  # type: ignore[attr-defined]
        await late.close()
        assert len(snap["units"]) == real_units
        assert all(u["training"] and u["id"].startswith("TR-") for u in snap["units"].values())

        # Audit records of the training actions are marked; the real call's are not.
        marks = await pool.fetch(
            "SELECT action, details->>'training' AS training FROM audit_log "
            "WHERE action IN ('incident.create', 'incident.dispatch') ORDER BY seq")
        creates = [m for m in marks if m["action"] == "incident.create"]
        assert [m["training"] for m in creates] == ["true"] * REPLAYED + [None]
    finally:
        for b in boards:
            await b.close()
        await api.close()


@pytest.fixture
async def public_training_app(apps: Apps) -> RunningApp:
    return await start_public_app(apps, training_agencies=[TRAINING])


async def test_training_is_kept_out_of_lists_reports_public_feeds_and_alerts(
        public_training_app: RunningApp) -> None:
    app, pool = public_training_app, public_training_app.pool
    api = Api(app)
    try:
        admin = await api.as_("admin")
        trainee = await api.as_("supervisor", agency=TRAINING, agencies=[TRAINING])
        both = await api.as_("supervisor", agency="SFFD", agencies=["SFFD", TRAINING])
        real = await intake(admin, incident_type="ROBBERY")
        exercise = await intake(trainee, incident_type="ROBBERY", agency=TRAINING)
        assert real["training"] is False and exercise["training"] is True
        for agency in ("SFFD", TRAINING):   # someone enables the type for both agencies
            r = await publish(admin, "ROBBERY", agency=agency)
            assert r.status_code == 200, r.text

        # Public: the real incident on every feed; the training one on none, not even by number.
        day = datetime.now(UTC).date().isoformat()
        shown = await public_outputs(app.base_url, agency="SFFD", number=real["number"], day=day)
        assert real["number"] in shown["incidents.csv"].text
        assert shown["requests/{number}"].status_code == 200
        hidden = await public_outputs(app.base_url, agency=TRAINING, number=exercise["number"],
                                      day=day)
        assert hidden["incidents.geojson"].json()["features"] == []
        assert exercise["number"] not in hidden["incidents.csv"].text
        assert exercise["number"] not in hidden["incidents.atom"].text
        assert hidden["requests/{number}"].status_code == 404
        assert hidden["requests?date={day}"].json() == []

        # Lists of users who act for all agencies, or for a real one too: no training row
        # unless the training agency is named.
        for client in (admin, both):
            r = await client.get("/api/v1/incidents", params={"open_only": "false"})
            assert [i["id"] for i in r.json()] == [real["id"]]
            r = await client.get("/api/v1/incidents",
                                 params={"open_only": "false", "agency": TRAINING})
            assert [(i["id"], i["training"]) for i in r.json()] == [(exercise["id"], True)]
        r = await admin.get(f"/api/v1/incidents/{exercise['id']}")
        assert r.status_code == 200 and r.json()["training"] is True   # by id: explicit
        r = await trainee.get("/api/v1/incidents", params={"open_only": "false"})
        assert [i["id"] for i in r.json()] == [exercise["id"]]

        # Stations likewise: the exercise's copy of a station is on no real map.
        for sid, agency in (("ST-REAL-1", "SFFD"), ("ST-DRILL-1", TRAINING)):
            r = await admin.put(f"/api/v1/stations/{sid}", json={
                "id": sid, "agency": agency, "name": sid, "lat": 37.77, "lon": -122.42})
            assert r.status_code == 200, r.text
        for client in (admin, both):
            ids = [st["id"] for st in (await client.get("/api/v1/stations")).json()]
            assert "ST-REAL-1" in ids and "ST-DRILL-1" not in ids
            r = await client.get("/api/v1/stations", params={"agency": TRAINING})
            assert [st["id"] for st in r.json()] == ["ST-DRILL-1"]
        ids = [st["id"] for st in (await trainee.get("/api/v1/stations")).json()]
        assert ids == ["ST-DRILL-1"]

        # Analytics: reports, search and export leave training out unless named.
        params: dict[str, Any] = {"metric": "call_processing", "group_by": "agency"}
        r = await admin.get("/api/v1/analytics/report", params=params)
        assert r.status_code == 200, r.text
        assert [(row["group"]["agency"], row["incidents"]) for row in r.json()["rows"]] == [("SFFD", 1)]
        r = await admin.get("/api/v1/analytics/report", params={**params, "agency": TRAINING})
        assert [(row["group"]["agency"], row["incidents"]) for row in r.json()["rows"]] == [(TRAINING, 1)]
        r = await both.get("/api/v1/analytics/report.csv", params=params)
        assert TRAINING not in r.text and "SFFD" in r.text
        r = await trainee.get("/api/v1/analytics/report", params=params)
        assert [row["group"]["agency"] for row in r.json()["rows"]] == [TRAINING]
        r = await admin.get("/api/v1/analytics/incidents")
        assert [i["incident_id"] for i in r.json()["items"]] == [real["id"]]
        r = await admin.get("/api/v1/analytics/incidents", params={"agency": TRAINING})
        assert [i["incident_id"] for i in r.json()["items"]] == [exercise["id"]]
        r = await admin.get("/api/v1/analytics/incidents.csv")
        assert real["number"] in r.text and exercise["number"] not in r.text
        r = await admin.get("/api/v1/analytics/hexbins")
        assert sum(f["properties"]["incidents"] for f in r.json()["features"]) == 1

        # The annual report over all agencies: the real incident only.
        year = datetime.now(UTC).year
        whole = await annual.gather(pool=pool, year=year, agency=None, timezone="UTC",
                                    training=[TRAINING])
        assert whole.totals["rows"][0]["incidents"] == 1
        assert sum(n for _, n in whole.by_month) == 1
        named = await annual.gather(pool=pool, year=year, agency=TRAINING, timezone="UTC",
                                    training=[TRAINING])
        assert named.totals["rows"][0]["incidents"] == 1

        # Community alerts: a training incident is never an alert's subject.
        r = await trainee.post("/api/v1/alerts", json={
            "incident_id": exercise["id"], "event": "Exercise", "area": {"radius_m": 200},
            "info": INFO})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["incident_id"]

        # Audit: the trainee's actions are marked, the admin's on real data are not.
        rows = await pool.fetch(
            "SELECT actor, details->>'training' AS training FROM audit_log "
            "WHERE action = 'incident.create' ORDER BY seq")
        assert [r["training"] for r in rows] == [None, "true"]
        refused = await pool.fetchval(
            "SELECT details->>'training' FROM audit_log WHERE action = 'alert.draft'")
        assert refused == "true"
    finally:
        await api.close()


async def test_me_names_the_trainee_and_the_training_agencies(training_app: RunningApp) -> None:
    api = Api(training_app)
    try:
        for kw, trainee in (({"agency": TRAINING, "agencies": [TRAINING]}, True),
                            ({"agency": "SFFD", "agencies": ["SFFD", TRAINING]}, False),
                            ({"agency": "SFFD"}, False)):
            client = await api.as_("dispatcher", **kw)
            me = (await client.get("/api/v1/auth/me")).json()
            assert me["training"] is trainee and me["training_agencies"] == [TRAINING]
        admin = await api.as_("admin")
        me = (await admin.get("/api/v1/auth/me")).json()
        assert me["training"] is False

        # What the simulator makes of it (the command's choice of agency).
        target = simulate.training_target
        assert await target(admin, agency=None, default="SFFD", training=True,
                            force=False) == (TRAINING, True)
        assert await target(admin, agency=TRAINING, default="SFFD", training=False,
                            force=False) == (TRAINING, True)
        assert await target(admin, agency=None, default="SFFD", training=False,
                            force=True) == ("SFFD", False)
        with pytest.raises(simulate.TargetRefused, match="refusing"):
            await target(admin, agency=None, default="SFFD", training=False, force=False)
        with pytest.raises(simulate.TargetRefused, match="not a training agency"):
            await target(admin, agency="SFFD", default="SFFD", training=True, force=True)
    finally:
        await api.close()


def test_scope_hides_training_agencies_except_from_trainees() -> None:
    from cad.security.scope import scope_for

    def scope(role: str, agencies: list[str]) -> Any:
        return scope_for(role=role, agencies=agencies, unit_id=None, assignment_window_s=0,
                         caller_data_for_units=False, mutual_aid_roles=["dispatcher", "admin"],
                         mutual_aid={TRAINING: ["SFFD", "SFPD-TRAINING"], "SFFD": [TRAINING, "DCFD"]},
                         training=[TRAINING, "SFPD-TRAINING"])

    trainee = scope("dispatcher", [TRAINING])
    assert trainee.hidden == frozenset() and trainee.shown(TRAINING) and not trainee.shown("SFFD")
    for s in (scope("admin", []), scope("dispatcher", ["SFFD", TRAINING]), scope("dispatcher", ["SFFD"])):
        assert s.hidden == {TRAINING, "SFPD-TRAINING"} and not s.shown(TRAINING)
        assert s.hidden_for([TRAINING]) == ["SFPD-TRAINING"]
    # Mutual aid never crosses the training line.
    admin = scope("admin", [])
    assert admin.unit_agencies_for(TRAINING) == {TRAINING, "SFPD-TRAINING"}
    assert admin.unit_agencies_for("SFFD") == {"SFFD", "DCFD"}
