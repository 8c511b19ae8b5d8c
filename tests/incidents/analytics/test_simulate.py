"""`cad simulate`: historical calls replayed through the public API of a running server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from cad.settings import REPO_ROOT
from incidents.analytics import calibrate, simulate
from incidents.analytics.mapping import MappingError, load_mapping, parse_mapping
from tests.auth import make_user
from tests.support import RunningApp, require_shared

WINDOW = "calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz"
STATIONS = "calls/sffd_fire_stations.csv"


async def test_replay_creates_recommends_dispatches_and_clears(plain_app: RunningApp) -> None:
    mapping = load_mapping("sffd")
    path = require_shared(WINDOW)
    calls = simulate.load_calls(path, mapping, limit=40)
    assert [c.received_at for c in calls] == sorted(c.received_at for c in calls)
    user, password = await make_user(plain_app.pool, "supervisor")
    async with httpx.AsyncClient(base_url=plain_app.base_url, timeout=30) as client:
        r = await client.post("/api/v1/auth/login", json={"username": user, "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        made = await simulate.setup_roster(
            client, agency="SFFD", stations=calibrate.read_stations(require_shared(STATIONS)),
            units=simulate.roster_from_calls(path, mapping),
            medics=simulate.medics_from_calls(path, mapping))
        assert made > 50
        report = await simulate.replay(client, calls, agency="SFFD", speedup=0)
    assert report.errors == []
    assert report.calls == 40 and report.dispatched + report.not_dispatched == 40
    assert report.dispatched == 40          # 40 calls over ~1.5 h: an engine is always free
    summary = report.summary()
    assert summary["recommended_eta"]["n"] == 40 and summary["recommended_eta"]["median_s"] > 0
    assert summary["historical_first_travel"]["n"] == len(
        [c for c in calls if c.travel_s is not None])
    assert summary["simulated_s"] > 3600 and summary["achieved_speedup"] > 1
    pool = plain_app.pool
    assert await pool.fetchval("SELECT count(*) FROM incidents") == 40
    # Each call was created with the incident type its call type maps to (sffd.toml).
    created = {r["text"].removeprefix("replay of call "): r["incident_type"] for r in
               await pool.fetch("SELECT n.text, i.incident_type FROM incidents i JOIN "
                                "incident_narrative n ON n.incident_id = i.id "
                                "WHERE n.text LIKE 'replay of call %'")}
    assert created == {c.number: c.incident_type for c in calls}
    assert {c.incident_type for c in calls} >= {"MED", "ALARM"}
    assert all(c.incident_type == mapping.incident_type(c.call_type) for c in calls)
    # Medical calls got the Medical plan's ALS ambulance.
    med = await pool.fetch("SELECT u.unit_type FROM incident_units iu JOIN incidents i ON "
                           "i.id = iu.incident_id JOIN units u ON u.id = iu.unit_id "
                           "WHERE i.incident_type = 'MED'")
    assert med and {r["unit_type"] for r in med} == {"medic_als"}
    # Every unit went en route and on scene, then back in quarters.
    rows = await pool.fetch("SELECT en_route_at, on_scene_at, cleared_at FROM incident_units")
    assert rows and all(r["en_route_at"] and r["on_scene_at"] and r["cleared_at"] for r in rows)
    assert await pool.fetchval("SELECT count(*) FROM units WHERE status <> "
                               "'available_in_quarters'") == 0

    # The command: the same, printed as JSON.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CAD_SIM_USERNAME": user,
           "CAD_SIM_PASSWORD": password, "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "simulate", str(path), "--url",
                         plain_app.base_url, "--speedup", "0", "--limit", "5", "--force"],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert printed["calls"] == 5 and printed["dispatched"] == 5 and printed["errors"] == 0


def test_call_types_map_to_incident_types() -> None:
    mapping = load_mapping("sffd")
    assert mapping.incident_type("Medical Incident") == "MED"
    assert mapping.incident_type("Structure Fire") == "STRUCT"
    assert mapping.incident_type("Something new") == mapping.default_incident_type == "OTHER"
    assert mapping.incident_type(None) == "OTHER"
    with pytest.raises(MappingError, match="incident_types"):
        parse_mapping({**_raw_sffd(), "incident_types": {"Medical Incident": 3}})
    custom = parse_mapping({**_raw_sffd(), "incident_types": {"Medical Incident": "CARDIAC"}})
    assert custom.incident_type("Medical Incident") == "CARDIAC"


def _raw_sffd() -> dict[str, Any]:
    import tomllib
    from importlib import resources
    text = (resources.files("incidents.analytics") / "mappings" / "sffd.toml").read_text()
    return tomllib.loads(text)
