"""PATCH of a unit or an incident with an explicit null for a field that cannot be null is a
422 naming the field, never a database error (409 naming a constraint) or a 500."""

from __future__ import annotations

from tests.dispatch_fixtures import Api, create_incident, create_unit


async def test_unit_patch_nulls_are_422_naming_the_field(api: Api) -> None:
    sup = await api.as_("supervisor")
    unit = await create_unit(sup, "E01")
    for name in ("agency", "discipline", "unit_type", "capabilities", "staffing", "version"):
        r = await sup.patch("/api/v1/units/E01", json={name: None})
        assert r.status_code == 422, (name, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [f"body.{name}"], r.text
    r = await sup.patch("/api/v1/units/E01", json={"home_station": None})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == unit["version"] + 1


async def test_incident_patch_nulls_are_422_naming_the_field(api: Api) -> None:
    disp = await api.as_("dispatcher")
    inc = await create_incident(disp, 37.77, -122.42)
    for name in ("incident_type", "priority", "location", "version"):
        r = await disp.patch(f"/api/v1/incidents/{inc['id']}", json={name: None})
        assert r.status_code == 422, (name, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [f"body.{name}"], r.text
    got = (await disp.get(f"/api/v1/incidents/{inc['id']}")).json()
    assert got["version"] == inc["version"]
