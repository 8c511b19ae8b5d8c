"""Agency and assignment scope over HTTP (cad/security/scope.py, docs/security.md): another
agency's resources are not found, resources are created only for one's agencies, mutual aid
only where configured, and a field unit sees its own assignments only.

``test_no_endpoint_reaches_another_agencys_resources`` is generated from the OpenAPI document
(beside the role matrix in test_policy_matrix.py); the others are the defects of the issue
that introduced scoping, one each."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cad.security.policy import PUBLIC, SELF_AUTHENTICATED
from incidents.public.challenge import solve
from tests.auth import Api, make_user, session_headers
from tests.dispatch_fixtures import make_settings
from tests.support import RunningApp, running_app

API = "/api/v1"
PASSWORD = "correct horse battery staple"
ROLES_SCOPED = ("dispatcher", "supervisor", "field_unit", "analyst")  # admins are global
# Required query parameters, valid, so that the scope is what answers.
REQUIRED_QUERY = {f"{API}/units/{{unit_id}}/route-to": "?lat=37.77&lon=-122.42"}
# Path parameters naming resources every agency shares (documented in docs/security.md):
# response plans, incident types, the geocoder's places; chart is a kind of chart, not a
# resource.
# identifier: published community alerts, public by design (drafts answer 404 to everyone).
SHARED = {"plan_id", "code", "place_id", "chart", "identifier"}


@dataclass
class World:
    """SFFD and SFPD data made by a (global) admin."""

    admin: httpx.AsyncClient
    sffd_incident: int
    sffd_other_incident: int
    sfpd_incident: int
    sffd_field_user: str   # bound to E07
    sffd_device: str       # its device token's id


async def _world(app: RunningApp, api: Api) -> World:
    admin = await api.as_("admin")
    for sid, agency, lat in (("S07", "SFFD", 37.76), ("P03", "SFPD", 37.77)):
        r = await admin.put(f"{API}/stations/{sid}", json={
            "id": sid, "agency": agency, "name": f"Station {sid}", "lat": lat, "lon": -122.42})
        assert r.status_code == 200, r.text
    for uid, agency, station in (("E07", "SFFD", "S07"), ("E08", "SFFD", "S07"),
                                 ("P01", "SFPD", "P03"), ("P02", "SFPD", "P03")):
        r = await admin.post(f"{API}/units", json={
            "id": uid, "agency": agency, "discipline": "fire" if agency == "SFFD" else "police",
            "unit_type": "engine", "home_station": station, "status": "available_in_quarters"})
        assert r.status_code == 201, r.text
    made: list[int] = []
    for agency in ("SFFD", "SFFD", "SFPD"):
        r = await admin.post(f"{API}/incidents", json={
            "agency": agency, "incident_type": "MED", "priority": 2,
            "location": {"lat": 37.7749 + 0.01 * len(made), "lon": -122.4194},
            "caller": {"name": "Jane Caller", "callback_number": "415-555-0100"},
            "narrative": "caller DOB 1970-01-01"})
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    r = await admin.post(f"{API}/users", json={"username": "e07-mdt", "password": PASSWORD,
                                               "role": "field_unit", "unit_id": "E07"})
    assert r.status_code == 201, r.text
    assert r.json()["agencies"] == ["SFFD"]  # a field unit without an agency takes its unit's
    user_id = r.json()["id"]
    r = await admin.post(f"{API}/devices", json={"user_id": user_id, "label": "MDT E07"})
    assert r.status_code == 201, r.text
    return World(admin, made[0], made[1], made[2], user_id, r.json()["id"])


async def _sfpd(api: Api) -> dict[str, httpx.AsyncClient]:
    out = {}
    for role in ROLES_SCOPED:
        out[role] = await api.as_(role, agency="SFPD",
                                  **({"unit_id": "P01"} if role == "field_unit" else {}))
    return out


async def _sffd_state(app: RunningApp, w: World) -> dict[str, Any]:
    pool = app.pool
    return {
        "incidents": [dict(r) for r in await pool.fetch(
            "SELECT id, status, priority, version FROM incidents WHERE agency = 'SFFD' "
            "ORDER BY id")],
        "narrative": await pool.fetchval("SELECT count(*) FROM incident_narrative"),
        "units": [dict(r) for r in await pool.fetch(
            "SELECT id, status, staffing, active, version, last_checkin_at FROM units "
            "WHERE agency = 'SFFD' ORDER BY id")],
        "stations": [dict(r) for r in await pool.fetch("SELECT * FROM stations ORDER BY id")],
        "user": dict(await pool.fetchrow(
            "SELECT disabled, display_name, unit_id FROM users WHERE id = $1::uuid",
            w.sffd_field_user)),
        "device": await pool.fetchval("SELECT revoked_at FROM device_tokens WHERE id = $1::uuid",
                                      w.sffd_device),
        "recommendations": await pool.fetchval("SELECT count(*) FROM recommendations"),
        "positions": await pool.fetchval("SELECT count(*) FROM unit_positions"),
        "alerts": [dict(r) for r in await pool.fetch(
            "SELECT id, state, approved_by FROM alerts ORDER BY id")],
        "subscriptions": [dict(r) for r in await pool.fetch(
            "SELECT id, active FROM alert_subscriptions ORDER BY id")],
        "feedback": [dict(r) for r in await pool.fetch(
            "SELECT id, status, version, assigned_to FROM feedback ORDER BY id")],
        "feedback_notes": await pool.fetchval("SELECT count(*) FROM feedback_notes"),
        "reports": [dict(r) for r in await pool.fetch(
            "SELECT id, status, staff_note FROM public_reports ORDER BY id")],
    }


def _body(method: str, template: str, w: World) -> Any:
    """A request body that would succeed on one's own resource, so that a refusal is the
    scope's and not the validator's."""
    bodies: dict[tuple[str, str], Any] = {
        ("PATCH", f"{API}/incidents/{{incident_id}}"): {"priority": 1},
        ("POST", f"{API}/incidents/{{incident_id}}/narrative"): {"text": "scope probe"},
        ("POST", f"{API}/incidents/{{incident_id}}/dispatch"): {"unit_ids": ["P02"]},
        ("POST", f"{API}/incidents/{{incident_id}}/close"): {"disposition": "REPORT"},
        ("POST", f"{API}/incidents/{{incident_id}}/link"): {"other_id": w.sfpd_incident,
                                                            "kind": "related"},
        ("POST", f"{API}/incidents/{{incident_id}}/merge"): {"into_id": w.sfpd_incident},
        ("PATCH", f"{API}/units/{{unit_id}}"): {"staffing": 2},
        ("POST", f"{API}/units/{{unit_id}}/status"): {"status": "out_of_service"},
        ("POST", f"{API}/units/{{unit_id}}/checkin"): {},
        ("POST", f"{API}/units/{{unit_id}}/positions"): {"fixes": [
            {"lat": 37.76, "lon": -122.42, "fix_time": "2026-01-01T00:00:00Z"}]},
        ("PUT", f"{API}/stations/{{station_id}}"): {"id": "S07", "agency": "SFPD",
                                                    "name": "Taken over", "lat": 37.76,
                                                    "lon": -122.42},
        ("PATCH", f"{API}/users/{{user_id}}"): {"display_name": "renamed"},
        ("POST", f"{API}/feedback/{{feedback_id}}/assign"): {"assignee": "anyone-at-all"},
        ("POST", f"{API}/feedback/{{feedback_id}}/status"): {"status": "closed",
                                                           "outcome": "withdrawn"},
        ("POST", f"{API}/feedback/{{feedback_id}}/notes"): {"text": "scope probe"},
        ("POST", f"{API}/reports/{{report_id}}/accept"): {"kind": "record",
                                                          "staff_note": "scope probe"},
        ("POST", f"{API}/reports/{{report_id}}/decline"): {"public_reason": "scope probe"},
    }
    bodiless = {("POST", f"{API}/incidents/{{incident_id}}/recommendation"),
                ("POST", f"{API}/alerts/{{alert_id}}/approve")}
    if (method in ("POST", "PUT", "PATCH") and (method, template) not in bodies
            and (method, template) not in bodiless):
        raise AssertionError(f"add a body for {method} {template} to _body()")
    return bodies.get((method, template))


async def _sffd_feedback(app: RunningApp) -> int:
    """A complaint sent to SFFD through the public endpoint (with its challenge)."""
    async with httpx.AsyncClient(base_url=app.base_url) as anon:
        ch = (await anon.get("/public/SFFD/feedback/challenge")).json()
        r = await anon.post("/public/SFFD/feedback", json={
            "category": "complaint", "description": "scope probe",
            "name": "Scope Probe", "proof": {
                "challenge": ch["challenge"],
                "solution": solve(ch["challenge"], ch["difficulty_bits"])}})
    assert r.status_code == 201, r.text
    return int(await app.pool.fetchval("SELECT id FROM feedback WHERE reference = $1",
                                       r.json()["reference"]))


async def test_no_endpoint_reaches_another_agencys_resources(plain_app: RunningApp,
                                                             api: Api) -> None:
    """Every endpoint of the OpenAPI document that takes a resource id, called by every
    scoped role of SFPD on SFFD's resources: never a 2xx, never a 5xx, 404 wherever the role
    may call the endpoint at all, and SFFD's data unchanged."""
    w = await _world(plain_app, api)
    callers = await _sfpd(api)
    r = await w.admin.post(f"{API}/alerts", json={
        "incident_id": w.sffd_incident, "event": "scope probe", "area": {"radius_m": 200},
        "info": {lang: {"headline": "h", "description": "d"} for lang in ("en", "es")}})
    assert r.status_code == 201, r.text
    alert_id = r.json()["id"]
    r = await w.admin.post(f"{API}/alert-subscriptions", json={
        "agency": "SFFD", "channel": "log", "target": "scope probe"})
    assert r.status_code == 201, r.text
    # an online report filed with SFFD (written here as filing would: the public path's
    # challenge is not what this test is about)
    report_id = await plain_app.pool.fetchval(
        "INSERT INTO public_reports (tracking, agency, report_type, description, via,"
        " contact_name) VALUES ('R-SC0P-E000-0001', 'SFFD', 'theft', 'scope probe', 'pow',"
        " 'Jane Reporter') RETURNING id")
    ids = {"incident_id": str(w.sffd_incident), "unit_id": "E07", "station_id": "S07",
           "user_id": w.sffd_field_user, "device_id": w.sffd_device,
           "alert_id": str(alert_id), "subscription_id": str(r.json()["id"]),
           "report_id": str(report_id), "feedback_id": str(await _sffd_feedback(plain_app))}
    # Refused for what the caller is rather than for what it reached: a field unit acting on
    # a unit other than its own (403, it knows its own unit), a station id that is taken.
    expected_other = {("field_unit", f"{API}/units/{{unit_id}}/status"): 403,
                      ("field_unit", f"{API}/units/{{unit_id}}/checkin"): 403,
                      ("field_unit", f"{API}/units/{{unit_id}}/positions"): 403,
                      ("field_unit", f"{API}/units/{{unit_id}}/route-to"): 403,
                      ("*", f"{API}/stations/{{station_id}}"): 409}
    policy = plain_app.runtime.security.policy
    before = await _sffd_state(plain_app, w)
    spec = plain_app.app.openapi()
    failures: list[str] = []
    called = 0
    for template, item in spec["paths"].items():
        params = re.findall(r"{(\w+)}", template)
        if not params or set(params) & SHARED:
            continue
        if all(policy.rule_for(m.upper(), template) is PUBLIC for m in item
               if m.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE")):
            # Public by design (the published face of an agency): what may reach them is the
            # publication gate's job, tested per endpoint in tests/incidents/public/.
            continue
        unknown = set(params) - set(ids)
        assert not unknown, f"{template}: give the test an SFFD resource for {unknown}"
        path = template
        for p in params:
            path = path.replace("{" + p + "}", ids[p])
        path += REQUIRED_QUERY.get(template, "")
        for method in item:
            method = method.upper()
            if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            body = _body(method, template, w)
            rule = policy.rule_for(method, template)
            assert rule is not None and rule is not PUBLIC and rule is not SELF_AUTHENTICATED
            for role, client in callers.items():
                r = await client.request(method, path, json=body)
                called += 1
                where = f"{method} {template} as SFPD {role}: {r.status_code} {r.text[:160]}"
                if r.status_code < 300 or r.status_code >= 500:
                    failures.append(where)
                elif role in rule:  # type: ignore[operator]  # a role set, checked above
                    want = expected_other.get((role, template),
                                              expected_other.get(("*", template), 404))
                    if r.status_code != want:
                        failures.append(f"expected {want}: {where}")
    assert called > 60
    assert not failures, "\n".join(failures)
    assert await _sffd_state(plain_app, w) == before


async def test_sfpd_dispatcher_cannot_read_sffd_caller_data(plain_app: RunningApp,
                                                            api: Api) -> None:
    w = await _world(plain_app, api)
    sfpd = await api.as_("dispatcher", agency="SFPD")
    r = await sfpd.get(f"{API}/incidents/{w.sffd_incident}/caller")
    assert r.status_code == 404 and "Jane" not in r.text
    r = await sfpd.get(f"{API}/incidents/{w.sffd_incident}")
    assert r.status_code == 404 and "DOB" not in r.text
    listed = await sfpd.get(f"{API}/incidents", params={"open_only": "false"})
    assert [i["id"] for i in listed.json()] == [w.sfpd_incident]
    assert (await sfpd.get(f"{API}/incidents", params={"agency": "SFFD"})).json() == []
    # The attempt is in the audit trail, as a failure.
    row = await plain_app.pool.fetchrow(
        "SELECT outcome, details FROM audit_log WHERE action = 'incident.caller.read' "
        "AND target = $1", f"incident:{w.sffd_incident}")
    assert row["outcome"] == "failure"
    own = await sfpd.get(f"{API}/incidents/{w.sfpd_incident}/caller")
    assert own.status_code == 200 and own.json()["callers"][0]["name"] == "Jane Caller"


async def test_sfpd_dispatcher_cannot_create_sffd_incident(plain_app: RunningApp,
                                                           api: Api) -> None:
    sfpd = await api.as_("dispatcher", agency="SFPD")
    for agency in ("SFFD", "DCFD"):
        r = await sfpd.post(f"{API}/incidents", json={
            "agency": agency, "incident_type": "MED", "location": {"lat": 37.77, "lon": -122.42}})
        assert r.status_code == 403, r.text
    assert await plain_app.pool.fetchval("SELECT count(*) FROM incidents") == 0
    # Nothing was made for the refused agency: not even its number sequence.
    assert not await plain_app.pool.fetchval(
        "SELECT count(*) FROM pg_class WHERE relkind = 'S' AND relname LIKE 'incident_no_dcfd_%'")
    r = await sfpd.post(f"{API}/incidents", json={
        "agency": "SFPD", "incident_type": "MED", "location": {"lat": 37.77, "lon": -122.42}})
    assert r.status_code == 201, r.text


async def test_sfpd_dispatcher_cannot_dispatch_or_move_sffd_units(plain_app: RunningApp,
                                                                  api: Api) -> None:
    w = await _world(plain_app, api)
    sfpd = await api.as_("dispatcher", agency="SFPD")
    r = await sfpd.post(f"{API}/incidents/{w.sfpd_incident}/dispatch", json={"unit_ids": ["E07"]})
    assert r.status_code == 422 and "unknown unit" in r.text  # as if E07 did not exist
    r = await sfpd.post(f"{API}/units/E07/status", json={"status": "out_of_service"})
    assert r.status_code == 404, r.text
    assert (await sfpd.get(f"{API}/units/E07")).status_code == 404
    assert (await sfpd.get(f"{API}/units/E07/status-history")).status_code == 404
    assert [u["id"] for u in (await sfpd.get(f"{API}/units")).json()] == ["P01", "P02"]
    assert [s["id"] for s in (await sfpd.get(f"{API}/stations")).json()] == ["P03"]
    assert await plain_app.pool.fetchval("SELECT status FROM units WHERE id = 'E07'") == \
        "available_in_quarters"
    ok = await sfpd.post(f"{API}/incidents/{w.sfpd_incident}/dispatch", json={"unit_ids": ["P01"]})
    assert ok.status_code == 200 and ok.json()["mutual_aid"] == []


async def test_sfpd_dispatcher_cannot_reprioritise_or_close_sffd_incidents(
        plain_app: RunningApp, api: Api) -> None:
    w = await _world(plain_app, api)
    sfpd = await api.as_("dispatcher", agency="SFPD")
    assert (await sfpd.patch(f"{API}/incidents/{w.sffd_incident}",
                             json={"priority": 1})).status_code == 404
    assert (await sfpd.post(f"{API}/incidents/{w.sffd_incident}/close",
                            json={"disposition": "REPORT"})).status_code == 404
    assert (await sfpd.post(f"{API}/incidents/{w.sfpd_incident}/merge",
                            json={"into_id": w.sffd_incident})).status_code == 404
    assert (await sfpd.post(f"{API}/incidents/{w.sffd_incident}/recommendation")).status_code == 404
    row = await plain_app.pool.fetchrow("SELECT priority, status FROM incidents WHERE id = $1",
                                        w.sffd_incident)
    assert (row["priority"], row["status"]) == (2, "pending")


async def test_board_and_timers_show_only_the_callers_agencies(plain_app: RunningApp,
                                                                api: Api) -> None:
    w = await _world(plain_app, api)
    sfpd = await api.as_("dispatcher", agency="SFPD")
    board = (await sfpd.get(f"{API}/board")).json()
    assert set(board["incidents"]) == {str(w.sfpd_incident)}
    assert set(board["units"]) == {"P01", "P02"}
    # Asking for another agency narrows to nothing; it never widens.
    widened = (await sfpd.get(f"{API}/board", params={"agency": ["SFFD", "SFPD"]})).json()
    assert set(widened["incidents"]) == {str(w.sfpd_incident)}
    both = await api.as_("supervisor", agencies=["SFFD", "SFPD"])
    assert len((await both.get(f"{API}/board")).json()["incidents"]) == 3
    assert len((await w.admin.get(f"{API}/board")).json()["units"]) == 4
    # A user with no agency acts for none (fail closed); only admins are global.
    nowhere = await api.as_("supervisor", agencies=[])
    assert (await nowhere.get(f"{API}/board")).json()["incidents"] == {}
    assert (await nowhere.get(f"{API}/incidents")).json() == []
    timers = (await sfpd.get(f"{API}/timers")).json()
    assert all(t["agency"] == "SFPD" for t in timers["pending_incidents"] + timers["units"])


async def test_sffd_supervisor_cannot_issue_devices_or_edit_units_of_sfpd(
        plain_app: RunningApp, api: Api) -> None:
    w = await _world(plain_app, api)
    r = await w.admin.post(f"{API}/users", json={"username": "p01-mdt", "password": PASSWORD,
                                                 "role": "field_unit", "unit_id": "P01"})
    assert r.status_code == 201 and r.json()["agencies"] == ["SFPD"]
    sfpd_user = r.json()["id"]
    sfpd_device = (await w.admin.post(f"{API}/devices", json={"user_id": sfpd_user,
                                                              "label": "MDT P01"})).json()["id"]
    sffd = await api.as_("supervisor", agency="SFFD")
    r = await sffd.post(f"{API}/devices", json={"user_id": sfpd_user, "label": "stolen"})
    assert r.status_code == 404, r.text
    assert (await sffd.delete(f"{API}/devices/{sfpd_device}")).status_code == 404
    listed = (await sffd.get(f"{API}/devices")).json()
    assert [d["id"] for d in listed] == [w.sffd_device]
    assert (await sffd.patch(f"{API}/units/P01", json={"staffing": 1})).status_code == 404
    assert (await sffd.delete(f"{API}/units/P01")).status_code == 404
    r = await sffd.post(f"{API}/units", json={"id": "P09", "agency": "SFPD", "discipline": "police",
                                              "unit_type": "engine"})
    assert r.status_code == 403
    r = await sffd.post(f"{API}/units/import", content="id,agency,discipline,unit_type\n"
                        "P01,SFFD,fire,engine\n", headers={"content-type": "text/csv"})
    assert r.status_code == 409, r.text  # may not take over SFPD's P01 by importing it
    r = await sffd.put(f"{API}/stations/P03", json={"id": "P03", "agency": "SFFD", "name": "x",
                                                    "lat": 37.7, "lon": -122.4})
    assert r.status_code == 409
    row = await plain_app.pool.fetchrow(
        "SELECT agency, staffing, active FROM units WHERE id = 'P01'")
    assert (row["agency"], row["active"]) == ("SFPD", True)
    assert await plain_app.pool.fetchval(
        "SELECT count(*) FROM device_tokens WHERE user_id = $1::uuid AND revoked_at IS NULL",
        sfpd_user) == 1
    issued = await sffd.post(f"{API}/devices", json={"user_id": w.sffd_field_user, "label": "2"})
    assert issued.status_code == 201, issued.text


async def test_audit_queries_return_only_the_callers_agency(plain_app: RunningApp,
                                                            api: Api) -> None:
    await _world(plain_app, api)
    sffd_user = await api.auth.user("dispatcher", agency="SFFD")
    sfpd_user = await api.auth.user("dispatcher", agency="SFPD")
    for u in (sffd_user, sfpd_user):
        async with httpx.AsyncClient(base_url=plain_app.base_url, headers=u.headers) as c:
            assert (await c.get(f"{API}/incidents/1/caller")).status_code in (200, 404)
    sup = await api.as_("supervisor", agency="SFFD")
    r = await sup.get(f"{API}/audit", params={"action": "incident.caller.read"})
    actors = {e["actor"] for e in r.json()["entries"]}
    assert actors == {sffd_user.username}
    everything = await _admin_actors(api)
    assert sfpd_user.username in everything


async def _admin_actors(api: Api) -> set[str]:
    admin = await api.as_("admin")
    r = await admin.get(f"{API}/audit", params={"action": "incident.caller.read"})
    return {e["actor"] for e in r.json()["entries"]}


@pytest.fixture
async def aid_app(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = make_settings(database_url, tmp_path, mutual_aid={"SFFD": ["SFPD"]},
                             mutual_aid_roles=["supervisor", "admin"])
    async with running_app(settings) as running:
        yield running


async def test_mutual_aid_only_where_configured_flagged_and_audited(aid_app: RunningApp) -> None:
    api = Api(aid_app)
    try:
        w = await _world(aid_app, api)
        dispatcher = await api.as_("dispatcher", agency="SFFD")
        r = await dispatcher.post(f"{API}/incidents/{w.sffd_incident}/dispatch",
                                  json={"unit_ids": ["P01"]})
        assert r.status_code == 422, r.text  # dispatchers are not among CAD_MUTUAL_AID_ROLES
        # SFPD has no mutual aid from SFFD configured: not even an admin sends E07 there.
        r = await w.admin.post(f"{API}/incidents/{w.sfpd_incident}/dispatch",
                               json={"unit_ids": ["E07"]})
        assert r.status_code == 422, r.text
        sup = await api.as_("supervisor", agency="SFFD")
        r = await sup.post(f"{API}/incidents/{w.sffd_incident}/dispatch",
                           json={"unit_ids": ["E07", "P01"]})
        assert r.status_code == 200, r.text
        assert r.json()["mutual_aid"] == ["P01"]
        rows = await aid_app.pool.fetch(
            "SELECT unit_id, mutual_aid FROM incident_units WHERE incident_id = $1 ORDER BY 1",
            w.sffd_incident)
        assert [(x["unit_id"], x["mutual_aid"]) for x in rows] == [("E07", False), ("P01", True)]
        event = await aid_app.pool.fetchval(
            "SELECT data->'mutual_aid' FROM event_log WHERE type = 'incident.units_dispatched'")
        assert event == ["P01"]
        audit = await aid_app.pool.fetchval(
            "SELECT details->'mutual_aid' FROM audit_log WHERE action = 'incident.dispatch' "
            "AND outcome = 'success'")
        assert audit == {"P01": "SFPD"}
        # The SFFD console works the unit it brought in; the SFPD unit's MDT and SFPD still see it.
        r = await sup.post(f"{API}/units/P01/status", json={"status": "en_route"})
        assert r.status_code == 200, r.text
        sfpd = await api.as_("dispatcher", agency="SFPD")
        assert (await sfpd.get(f"{API}/units/P01")).json()["status"] == "en_route"
        mdt = await api.as_("field_unit", unit_id="P01", agency="SFPD")
        got = await mdt.get(f"{API}/incidents/{w.sffd_incident}")
        assert got.status_code == 200 and got.json()["agency"] == "SFFD"
    finally:
        await api.close()


async def test_field_unit_sees_and_writes_only_its_assignments(plain_app: RunningApp,
                                                               api: Api) -> None:
    w = await _world(plain_app, api)
    headers = await session_headers(plain_app, "e07-mdt")
    async with httpx.AsyncClient(base_url=plain_app.base_url, headers=headers) as mdt:
        assert (await mdt.get(f"{API}/incidents")).json() == []
        assert (await mdt.get(f"{API}/incidents/{w.sffd_incident}")).status_code == 404
        r = await mdt.post(f"{API}/incidents/{w.sffd_incident}/narrative", json={"text": "x"})
        assert r.status_code == 404
        r = await w.admin.post(f"{API}/incidents/{w.sffd_incident}/dispatch",
                               json={"unit_ids": ["E07"]})
        assert r.status_code == 200, r.text
        listed = (await mdt.get(f"{API}/incidents")).json()
        assert [i["id"] for i in listed] == [w.sffd_incident]
        detail = (await mdt.get(f"{API}/incidents/{w.sffd_incident}")).json()
        assert detail["units"][0]["unit_id"] == "E07" and detail["narrative"]
        assert detail["callers"] is None and "Jane" not in str(detail)
        assert (await mdt.get(f"{API}/incidents/{w.sffd_other_incident}")).status_code == 404
        assert (await mdt.post(f"{API}/incidents/{w.sffd_incident}/narrative",
                               json={"text": "on scene, gate code 1234"})).status_code == 201
        assert (await mdt.post(f"{API}/incidents/{w.sffd_other_incident}/narrative",
                               json={"text": "x"})).status_code == 404
        assert (await mdt.post(f"{API}/units/E08/status",
                               json={"status": "out_of_service"})).status_code == 403
        r = await mdt.post(f"{API}/units/E07/status", json={"status": "available_on_radio"})
        assert r.status_code == 200, r.text
        # Cleared, it still reads the incident within the window (12 h by default).
        assert (await mdt.get(f"{API}/incidents/{w.sffd_incident}")).status_code == 200


@pytest.fixture
async def mdt_app(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = make_settings(database_url, tmp_path, field_unit_assignment_window_s=0,
                             field_unit_caller_data=True)
    async with running_app(settings) as running:
        yield running


async def test_field_unit_window_and_caller_data_settings(mdt_app: RunningApp) -> None:
    api = Api(mdt_app)
    try:
        w = await _world(mdt_app, api)
        headers = await session_headers(mdt_app, "e07-mdt")
        async with httpx.AsyncClient(base_url=mdt_app.base_url, headers=headers) as mdt:
            await w.admin.post(f"{API}/incidents/{w.sffd_incident}/dispatch",
                               json={"unit_ids": ["E07"]})
            detail = (await mdt.get(f"{API}/incidents/{w.sffd_incident}")).json()
            assert detail["callers"][0]["name"] == "Jane Caller"  # granted by the setting
            assert await mdt_app.pool.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'incident.caller.read' "
                "AND actor = 'e07-mdt'") == 1
            await mdt.post(f"{API}/units/E07/status", json={"status": "available_on_radio"})
            # Window 0: once cleared, the incident is no longer the unit's.
            assert (await mdt.get(f"{API}/incidents/{w.sffd_incident}")).status_code == 404
    finally:
        await api.close()


async def test_field_unit_users_bind_only_to_existing_units_of_their_agency(
        plain_app: RunningApp, api: Api) -> None:
    w = await _world(plain_app, api)
    bad: list[dict[str, Any]] = [{"unit_id": "NOPE"}, {"unit_id": "P01", "agency": "SFFD"},
                                 {"unit_id": "E07", "agencies": ["SFPD"]}]
    for body in bad:
        r = await w.admin.post(f"{API}/users", json={
            "username": f"u-{str(body['unit_id']).lower()}", "password": PASSWORD,
            "role": "field_unit", **body})
        assert r.status_code == 422 and "unit" in r.text, (body, r.text)
    r = await w.admin.patch(f"{API}/users/{w.sffd_field_user}", json={"unit_id": "P01"})
    assert r.status_code == 422, r.text
    r = await w.admin.patch(f"{API}/users/{w.sffd_field_user}", json={"unit_id": "E08"})
    assert r.status_code == 200 and r.json()["unit_id"] == "E08"
    # A user bound (outside the API) to a unit that does not exist gets no device token.
    name, _ = await make_user(plain_app.pool, "field_unit", unit_id="GHOST", agency="SFFD")
    uid = await plain_app.pool.fetchval("SELECT id::text FROM users WHERE username = $1", name)
    r = await w.admin.post(f"{API}/devices", json={"user_id": uid, "label": "ghost"})
    assert r.status_code == 422, r.text


async def test_recommendation_never_offers_another_agencys_units(plain_app: RunningApp,
                                                                 api: Api) -> None:
    """SFPD's medic stands nearer to the SFFD incident than SFFD's own: without mutual aid
    it is neither picked nor named in a shortfall."""
    w = await _world(plain_app, api)
    for uid, agency, station in (("M07", "SFFD", "S07"), ("MP1", "SFPD", "P03")):
        r = await w.admin.post(f"{API}/units", json={
            "id": uid, "agency": agency, "discipline": "ems", "unit_type": "medic_als",
            "home_station": station, "status": "available_in_quarters"})
        assert r.status_code == 201, r.text
    sffd = await api.as_("dispatcher", agency="SFFD")
    rec = (await sffd.post(f"{API}/incidents/{w.sffd_incident}/recommendation")).json()
    assert [p["unit_id"] for p in rec["picks"]] == ["M07"], rec["shortfalls"]
    await w.admin.post(f"{API}/units/M07/status", json={"status": "out_of_service"})
    rec = (await sffd.post(f"{API}/incidents/{w.sffd_incident}/recommendation")).json()
    assert rec["picks"] == [] and "MP1" not in str(rec["shortfalls"])
    assert "M07" in str(rec["shortfalls"])
    sfpd = await api.as_("dispatcher", agency="SFPD")
    rec = (await sfpd.post(f"{API}/incidents/{w.sfpd_incident}/recommendation")).json()
    assert [p["unit_id"] for p in rec["picks"]] == ["MP1"]


def _zone(zid: str, agency: str) -> dict[str, Any]:
    ring = [[-122.43, 37.76], [-122.41, 37.76], [-122.41, 37.78], [-122.43, 37.78],
            [-122.43, 37.76]]
    return {"type": "Feature", "properties": {"id": zid, "agency": agency, "kind": "beat"},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _zones(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


async def test_zones_are_per_agency(plain_app: RunningApp, api: Api) -> None:
    admin = await api.as_("admin")
    r = await admin.post(f"{API}/zones/import",
                         json=_zones(_zone("F1", "SFFD"), _zone("P1", "SFPD")))
    assert r.status_code == 200, r.text
    sfpd = await api.as_("supervisor", agency="SFPD")
    assert [z["id"] for z in (await sfpd.get(f"{API}/zones")).json()] == ["P1"]
    hits = (await sfpd.get(f"{API}/zones/lookup", params={"lat": 37.77, "lon": -122.42})).json()
    assert [z["id"] for z in hits] == ["P1"]
    r = await sfpd.post(f"{API}/zones/import", json=_zones(_zone("F2", "SFFD")))
    assert r.status_code == 403
    r = await sfpd.post(f"{API}/zones/import", json=_zones(_zone("F1", "SFPD")))
    assert r.status_code == 422  # SFFD's zone id is taken: not overwritten
    # Replacing its beats removes SFPD's own beats only.
    r = await sfpd.post(f"{API}/zones/import",
                        json={**_zones(_zone("P2", "SFPD")), "replace_kind": "beat"})
    assert r.status_code == 200 and r.json()["removed"] == ["P1"], r.text
    assert [z["id"] for z in (await admin.get(f"{API}/zones")).json()] == ["F1", "P2"]


def test_scope_of_each_role() -> None:
    """The one derivation: admins global, others their named agencies (none = nothing),
    field units their assignments, mutual aid only for the configured roles."""
    from cad.security import Principal, scope_of
    from cad.settings import Settings

    settings = Settings(mutual_aid={"SFFD": ["DCFD"], "SFPD": ["SFSO"]},
                        mutual_aid_roles=["supervisor"], field_unit_assignment_window_s=60)

    def principal(role: str, *agencies: str, unit: str | None = None) -> Principal:
        return Principal(user_id="u", username="u", role=role, unit_id=unit,
                         agency=agencies[0] if agencies else None, session_id=None,
                         agencies=agencies)

    admin = scope_of(principal("admin", "SFFD"), settings)
    assert admin.agencies is None and admin.covers("ANY") and admin.agency_list is None
    assert admin.incident_filter() == (None, None, 0.0)
    nobody = scope_of(principal("supervisor"), settings)
    assert nobody.agency_list == [] and not nobody.covers("SFFD")
    sup = scope_of(principal("supervisor", "SFFD", "SFPD"), settings)
    assert sup.unit_agencies_for("SFFD") == {"SFFD", "DCFD"}
    assert sup.narrowed(["SFPD", "SFSO"]) == ["SFPD"] and sup.narrowed(None) == ["SFFD", "SFPD"]
    disp = scope_of(principal("dispatcher", "SFFD"), settings)
    assert disp.unit_agencies_for("SFFD") == {"SFFD"}  # not a mutual-aid role here
    mdt = scope_of(principal("field_unit", "SFFD", unit="E07"), settings)
    assert mdt.incident_filter() == (None, "E07", 60.0) and not mdt.caller_data
    assert mdt.agency_list == ["SFFD"]
