"""Coverage over HTTP on the San Francisco graph: values against the routing core's plain
Dijkstra (no contraction hierarchy), the what-if, agency scope and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.dispatch.schemas import CoverageOut
from routing.graph import RoadGraph
from routing.service import RoutingService
from tests.dispatch_fixtures import Api, create_incident, create_unit, stations_csv

# A first-due area around SFFD stations 8 and 4 (SoMa / Mission Bay).
SOMA = [[-122.415, 37.770], [-122.385, 37.770], [-122.385, 37.788], [-122.415, 37.788],
        [-122.415, 37.770]]
STATIONS = {"8": (37.777169, -122.39669), "1": (37.779416, -122.404193),
            "34": (37.779458, -122.502822)}
OTHER_STATION = ("OAK4", 37.772762, -122.389246)   # another agency's station inside SOMA


async def _setup(api: Api) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """SFFD: engines E07 (station 8, inside the zone) and E34 (far west), medic M89 (station
    1); agency OAK: engine X04 inside the zone. Returns (SFFD supervisor, admin)."""
    admin = await api.as_("admin")
    rows = [{"station": k, "address": f"station {k}", "lat": la, "lon": lo}
            for k, (la, lo) in STATIONS.items()]
    r = await admin.post("/api/v1/stations/import?agency=SFFD", content=stations_csv(rows),
                         headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    sid, la, lo = OTHER_STATION
    r = await admin.post("/api/v1/stations/import?agency=OAK", content=stations_csv(
        [{"station": sid, "address": "x", "lat": la, "lon": lo}]), headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    await create_unit(admin, "E07", "engine", station="8")
    await create_unit(admin, "E34", "engine", station="34")
    await create_unit(admin, "M89", "medic", station="1", discipline="ems")
    await create_unit(admin, "X04", "engine", station=sid, agency="OAK")
    r = await admin.post("/api/v1/zones/import", json={"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SOMA]},
         "properties": {"id": "SFFD-SOMA", "name": "SoMa", "kind": "first_due", "agency": "SFFD"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SOMA]},
         "properties": {"id": "OAK-X", "name": "Other", "kind": "first_due", "agency": "OAK"}}]})
    assert r.status_code == 200, r.text
    return await api.as_("supervisor"), admin


async def _coverage(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/v1/coverage", params=params)
    assert r.status_code == 200, r.text
    CoverageOut.model_validate(r.json())   # the documented shape (the API writes it directly)
    return r.json()


def _fields(problem: dict[str, Any]) -> set[str]:
    """The fields a problem+json answer names (``field`` or its ``errors``)."""
    named = [problem.get("field"), *(e.get("field") for e in problem.get("errors", []))]
    return {str(f) for f in named if f is not None}


def _cells(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f["properties"] for f in body["features"]}


async def test_coverage_values_match_plain_dijkstra_and_the_what_if(sf_api: Api,
                                                                    sf_graph_path: Path) -> None:
    sup, _admin = await _setup(sf_api)
    # Calls weigh the cells: two beside station 8, one at the zone's western edge.
    disp = await sf_api.as_("dispatcher")
    for la, lo in ((37.7765, -122.3955), (37.7765, -122.3955), (37.7720, -122.4130)):
        await create_incident(disp, la, lo)
    body = await _coverage(sup, unit_type="engine", resolution=9)
    s = body["summary"]
    assert s["agencies"] == ["SFFD"] and s["area_source"] == "zones"
    assert s["threshold_s"] == 240.0 and s["units_counted"] == ["E07", "E34"]
    assert s["cells"] > 20 and len(body["features"]) == s["cells"]
    cells = _cells(body)
    assert {p["unit_id"] for p in cells.values()} <= {"E07", "E34"}
    assert all(p["zones"] == ["SFFD-SOMA"] for p in cells.values())

    # Independent: the routing core without its hierarchy (plain Dijkstra per query), the same
    # units at their stations, from each cell's centre.
    import h3

    plain = RoutingService(RoadGraph.load(sf_graph_path).with_hierarchy(None),
                           build_hierarchy_if_missing=False)
    for uid, st in (("E07", "8"), ("E34", "34")):
        plain.upsert_unit(uid, lat=STATIONS[st][0], lon=STATIONS[st][1], unit_type="engine")
    checked = 0
    for cell_id in sorted(cells)[:: max(1, len(cells) // 8)]:
        la, lo = h3.cell_to_latlng(cell_id)
        best = plain.nearest_units(lat=la, lon=lo, k=1, unit_types=["engine"]).units[0]
        p = cells[cell_id]
        assert p["unit_id"] == best.unit_id
        assert p["eta_s"] == pytest.approx(best.eta_s, abs=0.15)
        assert p["covered"] == (best.eta_s <= 240.0)
        checked += 1
    assert checked >= 8
    covered = [c for c, p in cells.items() if p["covered"]]
    assert s["cells_covered"] == len(covered)
    near = h3.latlng_to_cell(37.7765, -122.3955, 9)
    assert cells[near]["weight"] == 2.0 and cells[near]["covered"] is True
    assert s["demand"] == 3.0 and s["calls_outside_cells"] == 0
    weight_covered = sum(cells[c]["weight"] for c in covered)
    assert s["demand_covered_share"] == pytest.approx(weight_covered / 3.0, abs=1e-4)
    assert s["zones"][0]["demand"] == 3.0

    # Depth: covered by the second nearest engine (default threshold 480 s).
    depth = _cells(await _coverage(sup, unit_type="engine", resolution=9, nth=2))
    for cell_id in sorted(cells)[:: max(1, len(cells) // 4)]:
        la, lo = h3.cell_to_latlng(cell_id)
        second = plain.nearest_units(lat=la, lon=lo, k=2, unit_types=["engine"]).units[1]
        assert depth[cell_id]["unit_id"] == second.unit_id
        assert depth[cell_id]["eta_s"] == pytest.approx(second.eta_s, abs=0.15)
        assert depth[cell_id]["covered"] == (second.eta_s <= 480.0)
    assert s["covered_share"] == pytest.approx(len(covered) / len(cells), abs=1e-4)
    # The far-west engine covers nothing here: every covered cell is E07's alone.
    assert covered and all(cells[c]["unit_id"] == "E07" for c in covered)
    bands = {b["band"]: b for b in s["bands"]}
    for p in cells.values():
        b = bands[p["band"]]
        assert b["covered"] == p["covered"]
        assert b["min_eta_s"] <= p["eta_s"] and (b["max_eta_s"] is None or p["eta_s"] <= b["max_eta_s"])

    # What if E07 were committed: its cells lose coverage, E34 is now the nearest.
    what_if = await _coverage(sup, unit_type="engine", resolution=9, without="E07")
    after = _cells(what_if)
    assert what_if["summary"]["without"] == ["E07"] and what_if["summary"]["units_counted"] == ["E34"]
    for c in covered:
        assert after[c]["covered"] is False and after[c]["unit_id"] == "E34"
        assert after[c]["eta_s"] > cells[c]["eta_s"]
    assert what_if["summary"]["cells_covered"] == 0
    assert what_if["summary"]["what_if"] == {
        "covered_share_now": s["covered_share"], "cells_losing_coverage": len(covered),
        "demand_losing_coverage": weight_covered}
    assert sorted(c for c, p in after.items() if p["lost_coverage"]) == sorted(covered)
    assert s["what_if"] is None and not any(p["lost_coverage"] for p in cells.values())
    engine = next(t for t in what_if["summary"]["by_type"] if t["unit_type"] == "engine")
    assert engine["units_available"] == 1 and engine["cells_covered"] == 0
    medic = next(t for t in what_if["summary"]["by_type"] if t["unit_type"] == "medic")
    assert medic["threshold_s"] == 480.0 and medic["units_available"] == 1 and medic["cells_covered"] > 0

    # E07 really committed (out of service): the same picture, with no routing recomputed.
    stats = sf_api.running.runtime.dispatch.coverage.stats
    computed = stats["unit_columns_computed"]
    r = await sup.post("/api/v1/units/E07/status", json={"status": "out_of_service"})
    assert r.status_code == 200, r.text
    committed = await _coverage(sup, unit_type="engine", resolution=9)
    assert _cells(committed) == {c: {**p, "lost_coverage": False} for c, p in after.items()}
    assert stats["unit_columns_computed"] == computed


async def test_coverage_is_agency_scoped(sf_api: Api) -> None:
    sup, admin = await _setup(sf_api)
    mine = await _coverage(sup, unit_type="engine")
    assert "X04" not in mine["summary"]["units_counted"]
    assert all(p["unit_id"] != "X04" for p in _cells(mine).values())
    assert [z["zone_id"] for z in mine["summary"]["zones"]] == ["SFFD-SOMA"]
    # The other agency's unit is indexed and would count for someone acting for OAK.
    everyone = await _coverage(admin, unit_type="engine")
    assert "X04" in everyone["summary"]["units_counted"]
    assert any(p["unit_id"] == "X04" for p in _cells(everyone).values())
    # Naming it reads exactly as naming no unit at all.
    theirs = await sup.get("/api/v1/coverage", params={"without": "X04"})
    nobody = await sup.get("/api/v1/coverage", params={"without": "NOPE1"})
    assert theirs.status_code == nobody.status_code == 422
    assert _fields(theirs.json()) == {"without"}
    assert theirs.json()["detail"].replace("X04", "?") == nobody.json()["detail"].replace("NOPE1", "?")
    r = await sup.get("/api/v1/coverage", params={"agency": "OAK"})
    assert r.status_code == 403 and "agency" in _fields(r.json())


BAD = [({"threshold_s": "-1"}, "threshold_s"), ({"threshold_s": "abc"}, "threshold_s"),
       ({"nth": "0"}, "nth"), ({"resolution": "11"}, "resolution"),
       ({"unit_type": "Engine!"}, "unit_type"), ({"unit_type": "ladder"}, "unit_type"),
       ({"without": "E07,b@d"}, "without"), ({"agency": "sffd"}, "agency")]


async def test_bad_coverage_input_is_4xx_naming_the_field(sf_api: Api) -> None:
    sup, _ = await _setup(sf_api)
    for params, field in BAD:
        r = await sup.get("/api/v1/coverage", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(field in f for f in _fields(r.json())), (params, r.json())


async def test_coverage_roles_and_no_graph(api: Api) -> None:
    r = await (await api.as_("analyst")).get("/api/v1/coverage")
    assert r.status_code == 403
    async with httpx.AsyncClient(base_url=api.running.base_url) as anon:
        assert (await anon.get("/api/v1/coverage")).status_code == 401
    r = await (await api.as_("dispatcher")).get("/api/v1/coverage")
    assert r.status_code == 409 and "road graph" in r.json()["detail"]
