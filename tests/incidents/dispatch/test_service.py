"""Fast tier: dispatch and unit progress called directly, each test rolled back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cad.errors import Conflict, Invalid
from incidents import service as incident_service
from incidents.dispatch import service
from incidents.dispatch.schemas import DispatchIn
from incidents.schemas import CloseIn, IncidentCreate
from tests.fast_tier import CONSOLE, SFFD, deps
from units import service as unit_service
from units.schemas import StatusChange, UnitCreate
from units.status import UnitStatus


async def _setup(tx_pool: Any, tmp_path: Path) -> tuple[Any, Any, int]:
    units, incidents, dispatch = deps(tx_pool, tmp_path)
    for uid in ("E01", "M01"):
        await unit_service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=UnitCreate(
            id=uid, agency="SFFD", discipline="fire", unit_type="engine" if uid[0] == "E"
            else "medic_als", status="available_in_quarters"))
    _, inc = await incident_service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, body=(
        IncidentCreate.model_validate({"agency": "SFFD", "incident_type": "MED",
                                       "location": {"lat": 37.78, "lon": -122.41}})))
    return incidents, dispatch, inc["id"]


async def test_an_incident_follows_its_units_to_cleared(tx_pool: Any, tmp_path: Path) -> None:
    incidents, dispatch, iid = await _setup(tx_pool, tmp_path)
    code, done = await service.dispatch_units(deps=dispatch, ctx=CONSOLE, scope=SFFD, incident_id=iid,
                                              body=DispatchIn(unit_ids=["M01", "E01"]))
    assert code == 200 and done["dispatched"] == ["E01", "M01"]
    assert done["incident"]["status"] == "dispatched"
    assert {u["id"]: u["status"] for u in done["units"]} == {"E01": "dispatched",
                                                             "M01": "dispatched"}

    async def report(unit: str, status: UnitStatus) -> dict[str, Any]:
        _, result = await service.change_unit_status(deps=dispatch, ctx=CONSOLE, scope=SFFD, unit_id=unit,
                                                     body=StatusChange(status=status))
        return result

    assert (await report("E01", UnitStatus.EN_ROUTE))["incident_status"] == "en_route"
    assert (await report("E01", UnitStatus.ON_SCENE))["incident_status"] == "on_scene"
    first = await report("E01", UnitStatus.AVAILABLE_ON_RADIO)
    assert first["incident_can_close"] is False and first["unit"]["incident_id"] is None
    with pytest.raises(Conflict):  # M01 is still on it
        await incident_service.close_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=iid,
                                              body=CloseIn(disposition="TRANSPORTED"))
    last = await report("M01", UnitStatus.AVAILABLE_ON_RADIO)
    assert last["incident_can_close"] is True and last["incident_status"] == "cleared"
    _, closed = await incident_service.close_incident(
        deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=iid,
        body=CloseIn(disposition="TRANSPORTED"))
    assert closed["status"] == "closed"
    assert [u["status"] for u in closed["units"]] == ["cleared", "cleared"]
    assert closed["first_en_route_at"] is not None and closed["first_on_scene_at"] is not None


async def test_only_available_known_units_are_dispatched(tx_pool: Any, tmp_path: Path) -> None:
    _, dispatch, iid = await _setup(tx_pool, tmp_path)
    with pytest.raises(Invalid):
        await service.dispatch_units(deps=dispatch, ctx=CONSOLE, scope=SFFD, incident_id=iid,
                                     body=DispatchIn(unit_ids=["E01", "NOPE"]))
    await service.dispatch_units(deps=dispatch, ctx=CONSOLE, scope=SFFD, incident_id=iid,
                                 body=DispatchIn(unit_ids=["E01"]))
    with pytest.raises(Conflict) as busy:
        await service.dispatch_units(deps=dispatch, ctx=CONSOLE, scope=SFFD, incident_id=iid,
                                     body=DispatchIn(unit_ids=["E01"]))
    assert busy.value.extra["unavailable"][0]["status"] == "dispatched"
    with pytest.raises(Conflict):  # dispatched only through dispatch
        await service.change_unit_status(deps=dispatch, ctx=CONSOLE, scope=SFFD, unit_id="M01",
                                         body=StatusChange(status=UnitStatus.DISPATCHED))
