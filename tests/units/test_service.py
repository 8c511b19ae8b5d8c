"""Fast tier: unit actions called directly, each test rolled back (tests/conftest.py tx_pool)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cad.errors import Conflict, Invalid, NotFound
from tests.fast_tier import CONSOLE, SFFD, deps
from units import service
from units.schemas import StationIn, UnitCreate, UnitPatch


async def test_create_unit_writes_row_status_log_event_and_audit(tx_pool: Any,
                                                                   tmp_path: Path) -> None:
    units, _, _ = deps(tx_pool, tmp_path)
    await service.upsert_station(deps=units, ctx=CONSOLE, scope=SFFD, station=StationIn(
        id="S1", agency="SFFD", name="Station 1", lat=37.78, lon=-122.40))
    view = await service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=UnitCreate(
        id="E01", agency="SFFD", discipline="fire", unit_type="engine", home_station="S1",
        status="available_in_quarters"))
    assert view["status"] == "available_in_quarters" and view["apco_code"] == "AIQ"
    conn = tx_pool.conn
    log = await conn.fetch("SELECT from_status, to_status, source FROM unit_status_log "
                           "WHERE unit_id = 'E01'")
    assert [tuple(r) for r in log] == [(None, "available_in_quarters", "console")]
    events = await conn.fetch("SELECT type FROM event_log WHERE aggregate_id = 'E01'")
    assert [r["type"] for r in events] == ["unit.created"]
    audits = await conn.fetch("SELECT action, outcome FROM audit_log WHERE target = 'unit:E01'")
    assert [tuple(r) for r in audits] == [("unit.create", "success")]


async def test_duplicate_unit_and_unknown_station_are_refused(tx_pool: Any, tmp_path: Path) -> None:
    units, _, _ = deps(tx_pool, tmp_path)
    body = UnitCreate(id="M01", agency="SFFD", discipline="ems", unit_type="medic_als")
    await service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=body)
    with pytest.raises(Conflict):
        await service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=body)
    with pytest.raises(Invalid) as bad:
        await service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=UnitCreate(
            id="M02", agency="SFFD", discipline="ems", unit_type="medic_als", home_station="NOPE"))
    assert bad.value.extra["errors"][0]["field"] == "body.home_station"
    with pytest.raises(NotFound):
        await service.get_unit(deps=units, scope=SFFD, unit_id="M02")


async def test_update_checks_the_version(tx_pool: Any, tmp_path: Path) -> None:
    units, _, _ = deps(tx_pool, tmp_path)
    made = await service.create_unit(deps=units, ctx=CONSOLE, scope=SFFD, body=UnitCreate(
        id="T01", agency="SFFD", discipline="fire", unit_type="truck"))
    changed = await service.update_unit(deps=units, ctx=CONSOLE, scope=SFFD, unit_id="T01",
                                        body=UnitPatch(staffing=4, version=made["version"]))
    assert changed["staffing"] == 4 and changed["version"] == made["version"] + 1
    with pytest.raises(Conflict):
        await service.update_unit(deps=units, ctx=CONSOLE, scope=SFFD, unit_id="T01",
                                  body=UnitPatch(staffing=5, version=made["version"]))
    with pytest.raises(Invalid):
        await service.update_unit(deps=units, ctx=CONSOLE, scope=SFFD, unit_id="T01", body=UnitPatch())


async def test_csv_import_is_all_or_nothing(tx_pool: Any, tmp_path: Path) -> None:
    units, _, _ = deps(tx_pool, tmp_path)
    csv_text = ("id,agency,discipline,unit_type,capabilities,home_station,staffing\n"
                "E10,SFFD,fire,engine,als;hazmat,,4\n"
                "E11,SFFD,firefighters,engine,,,4\n")
    with pytest.raises(Invalid) as bad:
        await service.import_units_csv(deps=units, ctx=CONSOLE, scope=SFFD, text=csv_text)
    assert bad.value.extra["errors"][0]["field"] == "body.line[3]"
    assert await service.list_units(deps=units, scope=SFFD, agency="SFFD", status=None,
                                    include_inactive=True) == []
    ok = csv_text.replace("firefighters", "fire")
    assert await service.import_units_csv(deps=units, ctx=CONSOLE, scope=SFFD, text=ok) == {
        "created": 2, "updated": 0}
    e10 = await service.get_unit(deps=units, scope=SFFD, unit_id="E10")
    assert e10["capabilities"] == ["als", "hazmat"]
