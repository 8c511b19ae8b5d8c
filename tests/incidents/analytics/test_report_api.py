"""The interval report over HTTP: live and imported data in one report, missing and
out-of-order timestamps counted, CSV and charts, roles and agency scope, bad input."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from incidents.analytics import service
from incidents.analytics.mapping import load_mapping
from tests.auth import Api
from tests.dispatch_fixtures import create_incident, create_unit
from tests.incidents.analytics.test_import_report import HEADER, _row
from tests.support import RunningApp


async def _import(app: RunningApp, tmp_path: Path, rows: list[str], agency: str = "SFFD") -> None:
    path = tmp_path / f"calls-{agency}.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    result = await service.import_calls(pool=app.pool, path=path, mapping=load_mapping("sffd"),
                                        agency=agency)
    assert result.bad == []


def _one(body: dict[str, Any], **group: Any) -> dict[str, Any]:
    rows = [r for r in body["rows"] if r["group"] == group]
    assert len(rows) == 1, body["rows"]
    return rows[0]


async def test_live_and_imported_in_one_report_with_exclusions_counted(
        plain_app: RunningApp, api: Api, tmp_path: Path) -> None:
    sup = await api.as_("supervisor")
    disp = await api.as_("dispatcher")
    await create_unit(sup, "E90")
    inc = await create_incident(disp, 37.76, -122.42, "MED")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/dispatch", json={"unit_ids": ["E90"]})
    assert r.status_code == 200, r.text
    for status in ("en_route", "on_scene"):
        r = await disp.post("/api/v1/units/E90/status", json={"status": status})
        assert r.status_code == 200, r.text
    live = await plain_app.pool.fetchrow(
        "SELECT extract(epoch FROM first_dispatched_at - received_at)::float8 AS cp,"
        " extract(epoch FROM first_on_scene_at - received_at)::float8 AS tr FROM incidents")
    await _import(plain_app, tmp_path, [
        _row("10", "E1"),                                            # cp 60, tr 360
        _row("10", "M1", dispatch="01/01/2017 10:02:00 AM", on_scene="01/01/2017 10:05:00 AM"),
        _row("11", "E2", dispatch="01/01/2017 09:59:00 AM"),         # dispatched before received
        _row("12", "E3", dispatch="", on_scene=""),                  # no dispatch, no arrival
    ])
    analyst = await api.as_("analyst")
    r = await analyst.get("/api/v1/analytics/report", params=[
        ("metric", "call_processing"), ("metric", "total_response"), ("metric", "travel"),
        ("group_by", "source")])
    assert r.status_code == 200, r.text
    body = r.json()
    imported = _one(body, source="imported")
    cp, tr = imported["metrics"]["call_processing"], imported["metrics"]["total_response"]
    assert imported["incidents"] == 3 and imported["unit_responses"] == 4
    assert (cp["n"], cp["missing"], cp["out_of_order"], cp["median_s"]) == (1, 1, 1, 60.0)
    # Call 10: the first on scene is M1 at 10:05 (dispatched second, arrived first): 300 s;
    # call 11 arrived at 10:06 (its dispatch time being out of order does not matter): 360 s.
    assert (tr["n"], tr["missing"], tr["median_s"], tr["within_share"]) == (2, 1, 330.0, 1.0)
    travel = imported["metrics"]["travel"]   # en route 10:01:30 on every row
    assert (travel["n"], travel["missing"]) == (3, 1)
    assert travel["median_s"] == 270.0
    live_row = _one(body, source="live")
    assert live_row["incidents"] == 1 and live_row["unit_responses"] == 1
    assert live_row["metrics"]["call_processing"]["median_s"] == pytest.approx(live["cp"])
    assert live_row["metrics"]["total_response"]["median_s"] == pytest.approx(live["tr"])

    # Per incident and per unit, for a live incident and an imported call.
    r = await analyst.get(f"/api/v1/analytics/incidents/{inc['id']}/intervals")
    assert r.status_code == 200, r.text
    one = r.json()
    recorded = await plain_app.pool.fetchrow(
        "SELECT extract(epoch FROM en_route_at - dispatched_at)::float8 AS turnout,"
        " extract(epoch FROM on_scene_at - en_route_at)::float8 AS travel FROM incident_units")
    assert one["source"] == "live" and one["intervals"]["call_processing"]["seconds"] == (
        pytest.approx(live["cp"]))
    [e90] = one["units"]
    assert e90["unit_id"] == "E90" and e90["first_arriving"] is True
    assert e90["intervals"]["turnout"]["seconds"] == pytest.approx(recorded["turnout"])
    assert e90["intervals"]["travel"]["seconds"] == pytest.approx(recorded["travel"])
    assert e90["intervals"]["committed"] == {"seconds": None, "excluded": "missing"}
    page = (await analyst.get("/api/v1/analytics/incidents", params={"source": "imported"})).json()
    ids = {i["number"]: i["incident_id"] for i in page["items"]}
    call10 = (await analyst.get(f"/api/v1/analytics/incidents/{ids['10']}/intervals")).json()
    assert call10["intervals"]["total_response"] == {"seconds": 300.0, "excluded": None}
    assert [(u["unit_id"], u["first_arriving"], u["intervals"]["travel"]["seconds"])
            for u in call10["units"]] == [("E1", False, 270.0), ("M1", True, 210.0)]
    call11 = (await analyst.get(f"/api/v1/analytics/incidents/{ids['11']}/intervals")).json()
    assert call11["intervals"]["call_processing"] == {"seconds": None, "excluded": "out_of_order"}
    assert (await analyst.get("/api/v1/analytics/incidents/999999/intervals")).status_code == 404

    r = await analyst.get("/api/v1/analytics/report.csv", params=[
        ("metric", "call_processing"), ("group_by", "source")])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [(t["source"], t["incidents"], t["call_processing__out_of_order"]) for t in table] == [
        ("imported", "3", "1"), ("live", "1", "0")]


async def test_percentiles_thresholds_and_time_dimensions(plain_app: RunningApp, api: Api,
                                                          tmp_path: Path) -> None:
    # Five calls 01:00..05:00 local (09:00..13:00 UTC), call processing 10, 20, 30, 40, 100 s.
    rows = [_row(str(20 + i), "E1", received=f"01/0{2 + i}/2017 0{i + 1}:00:00 AM",
                 dispatch=f"01/0{2 + i}/2017 0{i + 1}:00:{s:02d} AM" if s < 60
                 else f"01/0{2 + i}/2017 0{i + 1}:01:40 AM")
            for i, s in enumerate((10, 20, 30, 40, 100))]
    await _import(plain_app, tmp_path, rows)
    analyst = await api.as_("analyst")
    r = await analyst.get("/api/v1/analytics/report", params={
        "metric": "call_processing", "threshold": "call_processing:30"})
    stats = r.json()["rows"][0]["metrics"]["call_processing"]
    # Continuous percentiles: median 30; p90 at rank 0.9*4 = 3.6 -> 40 + 0.6*(100-40) = 76.
    assert (stats["median_s"], stats["p90_s"]) == (30.0, pytest.approx(76.0))
    assert (stats["threshold_s"], stats["within_share"]) == (30.0, 0.6)
    r = await analyst.get("/api/v1/analytics/report", params=[
        ("metric", "call_processing"), ("group_by", "day_of_week")])
    # 2017-01-02 was a Monday; the app's analytics time zone is UTC here.
    assert [row["group"]["day_of_week"] for row in r.json()["rows"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("chart", ["distribution", "p90_by_hour", "trend_by_week"])
async def test_charts_render_png_and_svg(plain_app: RunningApp, api: Api, tmp_path: Path,
                                         chart: str) -> None:
    await _import(plain_app, tmp_path, [_row("30", "E1"), _row("31", "E2",
                                                               on_scene="01/01/2017 10:20:00 AM")])
    analyst = await api.as_("analyst")
    png = await analyst.get(f"/api/v1/analytics/charts/{chart}", params={"metric": "total_response"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and len(png.content) > 2000
    svg = await analyst.get(f"/api/v1/analytics/charts/{chart}",
                            params={"metric": "total_response", "format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content and b"threshold 480 s" in svg.content
    again = await analyst.get(f"/api/v1/analytics/charts/{chart}",
                              params={"metric": "total_response", "format": "svg"})
    assert again.content == svg.content


async def test_roles_scope_and_bad_input(plain_app: RunningApp, api: Api, tmp_path: Path) -> None:
    await _import(plain_app, tmp_path, [_row("40", "E1")], agency="SFFD")
    await _import(plain_app, tmp_path, [_row("40", "E1"), _row("41", "E1")], agency="DCFD")
    params = {"metric": "call_processing", "group_by": "agency"}
    sffd = await api.as_("analyst")
    assert [row["group"]["agency"] for row in
            (await sffd.get("/api/v1/analytics/report", params=params)).json()["rows"]] == ["SFFD"]
    dcfd = await api.as_("supervisor", agency="DCFD")
    rows = (await dcfd.get("/api/v1/analytics/report", params=params)).json()["rows"]
    assert [(row["group"]["agency"], row["incidents"]) for row in rows] == [("DCFD", 2)]
    admin = await api.as_("admin")
    rows = (await admin.get("/api/v1/analytics/report", params=params)).json()["rows"]
    assert [row["group"]["agency"] for row in rows] == ["DCFD", "SFFD"]
    for role in ("dispatcher", "field_unit"):
        c = await api.as_(role)
        assert (await c.get("/api/v1/analytics/report", params=params)).status_code == 403
    for bad, field in (({"metric": "speed"}, "metric"),
                       ({"metric": "call_processing", "group_by": "colour"}, "group_by"),
                       ({"metric": "call_processing", "group_by": "unit_type"}, "group_by"),
                       ({"metric": "call_processing", "threshold": "call_processing:x"}, "threshold"),
                       ({"metric": "travel", "from": "2020-01-01T00:00:00"}, "from"),
                       ({"metric": "travel", "from": "2020-01-02T00:00:00Z",
                         "to": "2020-01-01T00:00:00Z"}, "to")):
        r = await sffd.get("/api/v1/analytics/report", params=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (bad, r.text)
    r = await sffd.get("/api/v1/analytics/dispositions")
    assert "NO_MERIT" in [d["code"] for d in r.json()]


async def test_incidents_close_with_a_code_of_the_managed_list(plain_app: RunningApp,
                                                               api: Api) -> None:
    disp = await api.as_("dispatcher")
    inc = await create_incident(disp, 37.76, -122.42, "MED")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "STRESS"})
    assert r.status_code == 422 and "body.disposition" in r.text, r.text
    assert await plain_app.pool.fetchval("SELECT status FROM incidents") == "pending"
    await plain_app.pool.execute("UPDATE disposition_codes SET active = false WHERE code = 'OTHER'")
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "OTHER"})
    assert r.status_code == 422
    r = await disp.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "NO_MERIT"})
    assert r.status_code == 200 and r.json()["disposition"] == "NO_MERIT"
    analyst = await api.as_("analyst")
    r = await analyst.get("/api/v1/analytics/incidents", params={"disposition": "NO_MERIT"})
    assert [i["incident_id"] for i in r.json()["items"]] == [inc["id"]]


async def test_turnout_threshold_is_per_discipline_unless_one_is_given(
        plain_app: RunningApp, api: Api, tmp_path: Path) -> None:
    # Turnout 70 s for both (dispatch 10:01:00 -> en route 10:01:30 is 30 s; dispatch 10:00:20).
    await _import(plain_app, tmp_path, [
        _row("50", "E5", dispatch="01/01/2017 10:00:20 AM"),
        _row("50", "M5", dispatch="01/01/2017 10:00:20 AM", unit_type="MEDIC")])
    analyst = await api.as_("analyst")
    r = await analyst.get("/api/v1/analytics/report", params=[
        ("metric", "turnout"), ("group_by", "unit_type")])
    rows = {row["group"]["unit_type"]: row["metrics"]["turnout"] for row in r.json()["rows"]}
    assert rows["ENGINE"]["median_s"] == rows["MEDIC"]["median_s"] == 70.0
    # NFPA 1710: 80 s for the engine (within), 60 s for the medic (not).
    assert (rows["ENGINE"]["within_share"], rows["MEDIC"]["within_share"]) == (1.0, 0.0)
    assert rows["MEDIC"]["threshold_s"] is None
    assert rows["MEDIC"]["threshold_by_discipline_s"] == {"ems": 60.0, "fire": 80.0, "police": 80.0}
    r = await analyst.get("/api/v1/analytics/report", params=[
        ("metric", "turnout"), ("group_by", "unit_type"), ("threshold", "turnout:75")])
    rows = {row["group"]["unit_type"]: row["metrics"]["turnout"] for row in r.json()["rows"]}
    assert (rows["ENGINE"]["within_share"], rows["MEDIC"]["within_share"]) == (1.0, 1.0)
    assert rows["MEDIC"]["threshold_s"] == 75.0 and rows["MEDIC"]["threshold_by_discipline_s"] is None
