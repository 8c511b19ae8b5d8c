"""Two workers behind one load balancer, one database, Redis between them: a recommendation
made by one worker knows what was changed through the other (units made available, units
created, AVL fixes ingested there). Each worker's routing index is a cache; without the event
log and the hub feeding it, worker B would never propose a unit made available through A."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tests.auth import AuthHeaders
from tests.dispatch_fixtures import create_incident, create_unit, make_settings
from tests.support import RunningApp, running_app

DOWNTOWN = (37.7837, -122.4075)  # Market St near 5th St
# Two SFFD stations (../shared/data/calls/sffd_fire_stations.csv): near and far from DOWNTOWN.
NEAR = {"station": "1", "address": "935 Folsom", "lat": 37.779416, "lon": -122.404193}
FAR = {"station": "34", "address": "499 41st Ave", "lat": 37.779458, "lon": -122.502822}


async def _until(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Await a condition another task brings about (a worker consuming the event log or the
    hub); fails with ``what`` on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def _caught_up(worker: RunningApp) -> None:
    """``worker`` has read the event log up to now (its locator re-reads are awaited by the
    recommendation itself)."""
    newest = await worker.pool.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
    await _until(lambda: worker.gateway.tailer.cursor >= newest,
                 f"worker has read event {newest}")


def _first_engine(rec: dict[str, Any]) -> dict[str, Any]:
    engines = [p for p in rec["picks"] if p["slot_type"] == "engine"]
    assert engines, f"no engine picked: {rec['shortfalls']}"
    return engines[0]


async def test_a_recommendation_on_one_worker_sees_changes_made_through_the_other(
        database_url: str, tmp_path: Path, sf_graph_path: Path, redis_url: str) -> None:
    channels = f"cad-test-{uuid.uuid4().hex[:8]}"  # this test's two workers, no other test's

    def worker(n: int):
        d = tmp_path / f"w{n}"
        d.mkdir()
        return running_app(make_settings(database_url, d, graph_path=sf_graph_path,
                                         redis_url=redis_url, jwt_secret=SecretStr("k" * 40),
                                         hub_channel_prefix=channels))

    async with worker(1) as a, worker(2) as b:
        auth = AuthHeaders(a)  # sessions live in the shared database: valid on both workers
        sup, disp = await auth("supervisor"), await auth("dispatcher")
        mdt = await auth("field_unit", unit_id="E34", agency="SFFD")
        async with httpx.AsyncClient(base_url=a.base_url, headers=sup) as via_a, \
                httpx.AsyncClient(base_url=b.base_url, headers=disp) as via_b:
            lines = ["station,name,address,lat,lon"] + [
                f"{s['station']},Station {s['station']},\"{s['address']}\",{s['lat']},{s['lon']}"
                for s in (NEAR, FAR)]
            r = await via_a.post("/api/v1/stations/import?agency=SFFD", content="\n".join(lines),
                                 headers={"content-type": "text/csv"})
            assert r.status_code == 200, r.text
            # Units created through A, after B started.
            await create_unit(via_a, "E01", station="1")
            await create_unit(via_a, "E34", station="34")
            await _caught_up(b)
            inc = await create_incident(via_b, *DOWNTOWN, itype="VEHFIRE")
            rec = (await via_b.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
            assert _first_engine(rec)["unit_id"] == "E01", rec

            # E01 out of service through A: B proposes the far engine.
            r = await via_a.post("/api/v1/units/E01/status", json={"status": "out_of_service"})
            assert r.status_code == 200, r.text
            await _caught_up(b)
            rec = (await via_b.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
            assert _first_engine(rec)["unit_id"] == "E34", rec

            # Back in service through A: B proposes it again (the database re-check alone
            # could never add it back; B's index has to hear of it).
            r = await via_a.post("/api/v1/units/E01/status", json={"status": "available_in_quarters"})
            assert r.status_code == 200, r.text
            await _caught_up(b)
            rec = (await via_b.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
            assert _first_engine(rec)["unit_id"] == "E01", rec

            # E34's MDT reports a fix next to the incident to worker A: B ranks it first, by
            # its AVL position.
            fix = {"lat": 37.7839, "lon": -122.4072, "fix_time": datetime.now(UTC).isoformat()}
            r = await via_a.post("/api/v1/units/E34/positions", json={"fixes": [fix]},
                                 headers=mdt)
            assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
            b_locator = b.runtime.locator
            await _until(lambda: getattr(b_locator.indexed.get("E34"), "source", None) == "avl",
                         "worker B's index holds E34's fix ingested by worker A")
            rec = (await via_b.post(f"/api/v1/incidents/{inc['id']}/recommendation")).json()
            first = _first_engine(rec)
            assert first["unit_id"] == "E34" and first["position_source"] == "avl", rec
