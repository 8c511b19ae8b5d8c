"""Fast tier: incident actions called directly, each test rolled back (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cad.errors import Conflict, Invalid
from incidents import service
from incidents.schemas import CloseIn, IncidentCreate, LinkIn, MergeIn, NarrativeIn
from tests.fast_tier import CONSOLE, SFFD, deps


def _intake(lat: float = 37.7793, lon: float = -122.4193, **kw: Any) -> IncidentCreate:
    return IncidentCreate.model_validate(
        {"agency": "SFFD", "incident_type": "MED", "location": {"lat": lat, "lon": lon}, **kw})


async def test_intake_numbers_flags_duplicates_and_keeps_the_caller_apart(tx_pool: Any,
                                                                           tmp_path: Path) -> None:
    _, incidents, _ = deps(tx_pool, tmp_path)
    _, first = await service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, body=_intake(
        caller={"name": "Pat Doe", "callback_number": "415-555-0100"}, narrative="fell down"))
    assert first["number"].startswith("SFFD-") and first["number"].endswith("-000001")
    assert first["status"] == "pending" and first["priority"] == 2  # MED's default
    assert first["possible_duplicates"] == [] and "caller" not in first
    _, second = await service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, body=_intake(
        lat=37.7794))
    assert [d["incident_id"] for d in second["possible_duplicates"]] == [first["id"]]
    detail = await service.get_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=first["id"])
    assert [n["text"] for n in detail["narrative"]] == ["fell down"]
    caller = await service.get_caller(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=first["id"])
    assert caller["callers"][0]["name"] == "Pat Doe"
    read = await tx_pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'incident.caller.read'")
    assert read == 1


async def test_unknown_type_is_refused_naming_the_field(tx_pool: Any, tmp_path: Path) -> None:
    _, incidents, _ = deps(tx_pool, tmp_path)
    with pytest.raises(Invalid) as bad:
        await service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD,
                                      body=_intake(incident_type="NOSUCH"))
    assert bad.value.extra["errors"][0]["field"] == "body.incident_type"
    assert await tx_pool.fetchval("SELECT count(*) FROM incidents") == 0


async def test_merge_moves_callers_and_narrative_and_closes(tx_pool: Any, tmp_path: Path) -> None:
    _, incidents, _ = deps(tx_pool, tmp_path)
    _, a = await service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, body=_intake(
        caller={"name": "First Caller"}))
    _, b = await service.create_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, body=_intake(lon=-122.4194))
    await service.add_narrative(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=a["id"],
                                body=NarrativeIn(text="second call, same patient"))
    with pytest.raises(Invalid):
        await service.merge_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=a["id"],
                                     body=MergeIn(into_id=a["id"]))
    _, into = await service.merge_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=a["id"],
                                        body=MergeIn(into_id=b["id"]))
    assert into["id"] == b["id"] and into["status"] == "pending"
    merged = await service.get_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=a["id"])
    assert merged["status"] == "closed" and merged["disposition"] == "MERGED"
    assert merged["merged_into"] == b["id"]
    assert merged["links"] == [{"incident_id": b["id"], "kind": "duplicate"}]
    b_detail = await service.get_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=b["id"])
    assert any("same patient" in n["text"] for n in b_detail["narrative"])
    callers = await service.get_caller(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=b["id"])
    assert [c["name"] for c in callers["callers"]] == ["First Caller"]
    with pytest.raises(Conflict):
        await service.close_incident(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=a["id"],
                                     body=CloseIn(disposition="REPORT"))
    with pytest.raises(Invalid):
        await service.link_incidents(deps=incidents, ctx=CONSOLE, scope=SFFD, incident_id=b["id"],
                                     body=LinkIn(other_id=b["id"]))
