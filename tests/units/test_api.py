"""The roster and unit statuses through the HTTP API."""

from __future__ import annotations

import asyncio
import json

import asyncpg

from tests.dispatch_fixtures import Api, create_incident, create_unit
from units.status import TRANSITIONS, UnitStatus


async def test_roster_crud_and_conflicts(api: Api) -> None:
    sup = await api.as_("supervisor")
    unit = await create_unit(sup, "E01", "engine", status="off_duty", capabilities=["hazmat"])
    assert unit["status"] == "off_duty" and unit["apco_code"] == "OFD"
    dup = await sup.post("/api/v1/units", json={"id": "E01", "agency": "SFFD", "discipline": "fire",
                                                  "unit_type": "engine"})
    assert dup.status_code == 409
    r = await sup.patch("/api/v1/units/E01", json={"staffing": 4, "version": unit["version"]})
    assert r.status_code == 200 and r.json()["staffing"] == 4
    stale = await sup.patch("/api/v1/units/E01", json={"staffing": 3, "version": unit["version"]})
    assert stale.status_code == 409 and stale.json()["current"]["staffing"] == 4
    bad_station = await sup.patch("/api/v1/units/E01", json={"home_station": "nowhere"})
    assert bad_station.status_code == 422
    assert bad_station.json()["errors"][0]["field"] == "body.home_station"
    gone = await sup.delete("/api/v1/units/E01")
    assert gone.status_code == 200 and gone.json()["active"] is False
    listed = (await sup.get("/api/v1/units")).json()
    assert [u["id"] for u in listed] == []
    assert [u["id"] for u in (await sup.get("/api/v1/units?include_inactive=true")).json()] == ["E01"]


async def test_csv_import_is_all_or_nothing(api: Api) -> None:
    sup = await api.as_("supervisor")
    good = ("id,agency,discipline,unit_type,capabilities,home_station,staffing\n"
            "E02,SFFD,fire,engine,hazmat;rescue,,4\nM85,SFFD,ems,medic_als,,,2\n")
    r = await sup.post("/api/v1/units/import", content=good, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 2, "updated": 0}
    again = await sup.post("/api/v1/units/import", content=good, headers={"content-type": "text/csv"})
    assert again.json() == {"created": 0, "updated": 2}
    bad = good + "X9,SFFD,navy,boat,,,1\n"
    r = await sup.post("/api/v1/units/import", content=bad.replace("E02", "E03"),
                       headers={"content-type": "text/csv"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.line[4]"
    units = {u["id"]: u for u in (await sup.get("/api/v1/units")).json()}
    assert set(units) == {"E02", "M85"}  # nothing of the bad file landed
    assert units["E02"]["capabilities"] == ["hazmat", "rescue"]


async def test_malformed_csv_is_a_422_naming_the_line_and_crlf_files_import(api: Api) -> None:
    sup = await api.as_("supervisor")
    csv_h = {"content-type": "text/csv"}
    header = "id,agency,discipline,unit_type,capabilities,home_station,staffing"
    # a spreadsheet export: CRLF line ends, a quoted field spanning two lines
    crlf = f'{header}\r\nE07,SFFD,fire,engine,"hazmat;\r\nrescue",,4\r\nM07,SFFD,ems,medic_als,,,2\r\n'
    r = await sup.post("/api/v1/units/import", content=crlf, headers=csv_h)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 2, "updated": 0}
    bad_m = f"{header}\nM08,SFFD,ems,medic_als,,,2\nE08,SFFD,fi\x00re,engine,,,4\n"
    r = await sup.post("/api/v1/units/import", content=bad_m, headers=csv_h)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "body.line[3]"
    # a bare carriage return inside an unquoted field (found by schemathesis: it was a 500)
    r = await sup.post("/api/v1/stations/import?agency=SFFD",
                       content="station,lat,lon\n1,37.7\r\r,-122.4\n", headers=csv_h)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"].startswith("body.line[")
    assert (await sup.get("/api/v1/stations")).json() == []
    assert {u["id"] for u in (await sup.get("/api/v1/units")).json()} == {"E07", "M07"}


async def test_transition_table_is_enforced_with_allowed_next(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "E05", status="off_duty")
    disp = await api.as_("dispatcher")
    r = await disp.post("/api/v1/units/E05/status", json={"status": "on_scene"})
    assert r.status_code == 409
    body = r.json()
    assert body["allowed_next"] == sorted(s.value for s in TRANSITIONS[UnitStatus.OFF_DUTY])
    assert "off_duty" in body["detail"] and "on_scene" in body["detail"]
    r = await disp.post("/api/v1/units/E05/status", json={"status": "available_on_radio"})
    assert r.status_code == 200 and r.json()["unit"]["status"] == "available_on_radio"
    r = await disp.post("/api/v1/units/E05/status", json={"status": "dispatched"})
    assert r.status_code == 409 and "dispatch" in r.json()["detail"]
    r = await disp.post("/api/v1/units/E05/status", json={"status": "flying"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.status"


async def test_every_status_change_is_logged_with_who_and_where(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "M10", "medic_als", discipline="ems", status="off_duty")
    mdt = await api.as_("field_unit", unit_id="M10")
    r = await mdt.post("/api/v1/units/M10/status",
                       json={"status": "available_on_radio", "reported_at": "2026-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    other = await mdt.post("/api/v1/units/E99/status", json={"status": "available_on_radio"})
    assert other.status_code == 403
    hist = (await sup.get("/api/v1/units/M10/status-history")).json()
    assert [(h["from_status"], h["to_status"], h["source"]) for h in hist] == [
        ("off_duty", "available_on_radio", "mdt"), (None, "off_duty", "console")]
    assert hist[0]["reported_at"].startswith("2026-01-01T00:00:00")
    assert hist[0]["at"] >= hist[1]["at"]
    pool = api.running.pool
    try:
        await pool.execute("UPDATE unit_status_log SET to_status = 'off_duty'")
        raise AssertionError("the status log must be append-only")
    except asyncpg.InsufficientPrivilegeError:
        pass


async def test_idempotent_status_retries(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "E07", status="off_duty")
    mdt = await api.as_("field_unit", unit_id="E07")
    key = {"Idempotency-Key": "mdt-e07-0001"}
    body = {"status": "available_on_radio"}
    answers = await asyncio.gather(*[mdt.post("/api/v1/units/E07/status", json=body, headers=key)
                                     for _ in range(5)])
    assert {a.status_code for a in answers} == {200}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    hist = (await sup.get("/api/v1/units/E07/status-history")).json()
    assert [h["to_status"] for h in hist] == ["available_on_radio", "off_duty"]
    events = await api.running.pool.fetchval(
        "SELECT count(*) FROM event_log WHERE type = 'unit.status_changed' AND aggregate_id = 'E07'")
    assert events == 1
    reused = await mdt.post("/api/v1/units/E07/status", json={"status": "out_of_service"}, headers=key)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "header.Idempotency-Key"


async def test_status_change_guarded_by_incident(api: Api) -> None:
    sup = await api.as_("supervisor")
    await create_unit(sup, "E08")
    disp = await api.as_("dispatcher")
    inc = await create_incident(disp, 37.77, -122.42)
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch", json={"unit_ids": ["E08"]})
    assert r.status_code == 200, r.text
    late = await disp.post("/api/v1/units/E08/status", json={"status": "en_route",
                                                             "incident_id": inc["id"] + 1000})
    assert late.status_code == 409
    ok = await disp.post("/api/v1/units/E08/status", json={"status": "en_route", "incident_id": inc["id"]})
    assert ok.status_code == 200 and ok.json()["incident_status"] == "en_route"
