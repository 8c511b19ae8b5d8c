"""Call intake, personal data, narrative, duplicates, zones and response plans."""

from __future__ import annotations

import datetime as dt
import re

from tests.dispatch_fixtures import Api, create_incident, create_unit


async def test_intake_numbers_and_caller_kept_apart(api: Api) -> None:
    disp = await api.as_("dispatcher")
    received = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=40)).isoformat()
    answered = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=35)).isoformat()
    a = await create_incident(disp, 37.77, -122.42, itype="MED", received_at=received,
                              answered_at=answered,
                              caller={"name": "Pat Doe", "callback_number": "+1 415 555 0100"},
                              narrative="Elderly male, difficulty breathing")
    b = await create_incident(disp, 37.70, -122.50, itype="BURG")
    year = dt.datetime.now(dt.UTC).year
    assert re.fullmatch(rf"SFFD-{year}-\d{{6}}", a["number"])
    assert int(b["number"][-6:]) == int(a["number"][-6:]) + 1
    assert a["priority"] == 2 and b["priority"] == 3  # defaults from the type table
    assert a["received_at"].startswith(received[:19])
    # The caller's name and number, as given (a bare "555" can be in a timestamp's microseconds).
    assert "Pat Doe" not in str(a) and "555 0100" not in str(a)
    full = (await disp.get(f"/api/v1/incidents/{a['id']}")).json()
    assert "Pat Doe" not in str(full) and "555 0100" not in str(full)
    assert full["narrative"][0]["text"] == "Elderly male, difficulty breathing"
    caller = await disp.get(f"/api/v1/incidents/{a['id']}/caller")
    assert caller.json()["callers"][0]["callback_number"] == "+1 415 555 0100"
    audit = await api.running.pool.fetchrow(
        "SELECT actor, action, target, outcome FROM audit_log WHERE action = 'incident.caller.read'")
    assert audit["target"] == f"incident:{a['id']}" and audit["outcome"] == "success"
    analyst = await api.as_("analyst")
    assert (await analyst.get(f"/api/v1/incidents/{a['id']}/caller")).status_code == 403


async def test_intake_rejects_bad_input_naming_the_field(api: Api) -> None:
    disp = await api.as_("dispatcher")
    cases = [
        ({"agency": "SFFD", "incident_type": "NOPE", "location": {"lat": 1, "lon": 1}}, "body.incident_type"),
        ({"agency": "SFFD", "incident_type": "MED", "location": {"lat": 91, "lon": 1}}, "body.location.lat"),
        ({"agency": "SFFD", "incident_type": "MED", "location": {"lat": 1}}, "body.location"),
        ({"agency": "SFFD", "incident_type": "MED", "location": {"address": "1 MARKET ST"}},
         "body.location.address"),
        ({"agency": "SFFD", "incident_type": "MED", "location": {"lat": 1, "lon": 1},
          "received_at": "2030-01-01T00:00:00Z"}, "body.received_at"),
        ({"agency": "SFFD", "incident_type": "MED", "location": {"lat": 1, "lon": 1},
          "caller": {"callback_number": "call me maybe"}}, "body.caller.callback_number"),
    ]
    for body, field in cases:
        r = await disp.post("/api/v1/incidents", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
    assert await api.running.pool.fetchval("SELECT count(*) FROM incidents") == 0


async def test_duplicates_are_flagged_linked_and_merged(api: Api) -> None:
    disp = await api.as_("dispatcher")
    first = await create_incident(disp, 37.7800, -122.4200, itype="STRUCT",
                                  caller={"name": "First caller"})
    near = await create_incident(disp, 37.7805, -122.4201, itype="OUTSIDE",
                                 caller={"name": "Second caller"}, narrative="smoke from roof")
    other_kind = await create_incident(disp, 37.7801, -122.4200, itype="BURG")
    far = await create_incident(disp, 37.7900, -122.4200, itype="STRUCT")
    assert [d["incident_id"] for d in near["possible_duplicates"]] == [first["id"]]
    assert near["possible_duplicates"][0]["distance_m"] < 100
    assert near["duplicate_candidates"] == [first["id"]]
    assert other_kind["possible_duplicates"] == [] and far["possible_duplicates"] == []
    r = await disp.post(f"/api/v1/incidents/{near['id']}/link", json={"other_id": first["id"]})
    assert r.status_code == 200
    assert (await disp.get(f"/api/v1/incidents/{first['id']}")).json()["links"] == [
        {"incident_id": near["id"], "kind": "duplicate"}]
    r = await disp.post(f"/api/v1/incidents/{near['id']}/merge", json={"into_id": first["id"]})
    assert r.status_code == 200, r.text
    merged = (await disp.get(f"/api/v1/incidents/{near['id']}")).json()
    assert merged["status"] == "closed" and merged["merged_into"] == first["id"]
    target = (await disp.get(f"/api/v1/incidents/{first['id']}")).json()
    assert any("smoke from roof" in n["text"] for n in target["narrative"])
    callers = (await disp.get(f"/api/v1/incidents/{first['id']}/caller")).json()["callers"]
    assert sorted(c["name"] for c in callers) == ["First caller", "Second caller"]
    self_merge = await disp.post(f"/api/v1/incidents/{first['id']}/merge", json={"into_id": first["id"]})
    assert self_merge.status_code == 422


async def test_narrative_is_append_only_and_ordered(api: Api) -> None:
    disp = await api.as_("dispatcher")
    inc = await create_incident(disp, 37.77, -122.42)
    for text in ("one", "two", "three"):
        r = await disp.post(f"/api/v1/incidents/{inc['id']}/narrative", json={"text": text})
        assert r.status_code == 201
    full = (await disp.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert [n["text"] for n in full["narrative"]] == ["one", "two", "three"]
    assert full["version"] == inc["version"] + 3


def _square(zid: str, lat0: float, lon0: float, size: float, kind: str = "first_due",
            station: str | None = None) -> dict:
    ring = [[lon0, lat0], [lon0 + size, lat0], [lon0 + size, lat0 + size], [lon0, lat0 + size],
            [lon0, lat0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"id": zid, "name": zid, "kind": kind, "agency": "SFFD",
                           "first_due_station": station}}


async def test_zones_decide_the_response_plan(api: Api) -> None:
    sup = await api.as_("supervisor")
    fc = {"type": "FeatureCollection", "features": [
        _square("FD-A", 37.70, -122.50, 0.05), _square("FD-B", 37.75, -122.50, 0.05),
        _square("BEAT-1", 37.70, -122.50, 0.10, kind="beat")]}
    r = await sup.post("/api/v1/zones/import", json=fc)
    assert r.status_code == 200 and r.json()["imported"] == 3
    hits = (await sup.get("/api/v1/zones/lookup", params={"lat": 37.72, "lon": -122.48})).json()
    assert [h["id"] for h in hits] == ["FD-A", "BEAT-1"]
    bad = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "Point", "coordinates": [0, 0]}, "properties": {"id": "X", "agency": "SFFD"}}]}
    r = await sup.post("/api/v1/zones/import", json=bad)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.features[0].geometry"
    r = await sup.post("/api/v1/response-plans", json={
        "name": "Zone B vehicle fire", "incident_type": "VEHFIRE", "zone_id": "FD-B",
        "slots": [{"unit_type": "engine", "count": 2}]})
    assert r.status_code == 201, r.text
    r = await sup.put("/api/v1/stations/S1", json={"id": "S1", "agency": "SFFD", "name": "One",
                                                   "lat": 37.76, "lon": -122.47})
    assert r.status_code == 200, r.text
    await create_unit(sup, "E01", station="S1")
    await create_unit(sup, "E02")  # no station, no fix: no known position
    disp = await api.as_("dispatcher")
    in_a = await create_incident(disp, 37.72, -122.48, itype="VEHFIRE")
    in_b = await create_incident(disp, 37.77, -122.48, itype="VEHFIRE")
    assert in_a["zone_id"] == "FD-A" and in_b["zone_id"] == "FD-B"
    rec_a = (await disp.post(f"/api/v1/incidents/{in_a['id']}/recommendation")).json()
    rec_b = (await disp.post(f"/api/v1/incidents/{in_b['id']}/recommendation")).json()
    assert rec_a["plan"]["name"] == "Vehicle fire" and len(rec_a["plan"]["slots"]) == 1
    assert rec_b["plan"]["name"] == "Zone B vehicle fire" and rec_b["plan"]["slots"] == ["engine", "engine"]
    assert rec_b["eta_method"] == "straight_line_estimate"
    assert [p["unit_id"] for p in rec_b["picks"]] == ["E01"]
    assert rec_b["shortfalls"][0]["filled"] == 1 and rec_b["shortfalls"][0]["needed"] == 2
    assert "E02 available but has no known position" in rec_b["shortfalls"][0]["reason"]
