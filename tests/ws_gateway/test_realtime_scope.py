"""The MDT stream and position writes (websocket and HTTP) go through the agency scope HTTP
uses, and AVL fixes outside the service area are refused like incidents, units and stations:
HTTP 422 naming the field, websocket an error frame naming the field (the socket stays open).
Nothing of a refused message is taken."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from cad.settings import Settings
from tests.auth import board_token, device_token
from tests.support import RunningApp, running_app
from tests.ws_gateway.helpers import StreamClient, app_secret, fix

# The bay area, for every agency: (37.77, -122.42) inside, New York outside.
SERVICE_AREA = orjson.dumps({"type": "Polygon", "coordinates": [[
    [-123.5, 36.5], [-121.5, 36.5], [-121.5, 38.5], [-123.5, 38.5], [-123.5, 36.5]]]}).decode()
INSIDE = (37.77, -122.42)
OUTSIDE = (40.71, -74.0)


@pytest.fixture
async def live(database_url: str, tmp_path: Path):
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        db_pool_min=1, db_pool_max=10, avl_flush_interval_ms=50,
                        service_area=SERVICE_AREA)
    async with running_app(settings) as running:
        yield running


async def _refused_with(url: str, token: str) -> int:
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    close = ws.protocol.close_rcvd
    assert close is not None
    return close.code


async def _stored(pool: Any, unit_id: str) -> int:
    return await pool.fetchval("SELECT count(*) FROM unit_positions WHERE unit_id = $1", unit_id)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_another_agencys_or_an_unknown_unit_is_not_found_on_the_mdt_stream_and_positions(
        live: RunningApp) -> None:
    pool = live.pool
    # a field unit of agency A bound to a unit that now belongs to agency B
    moved = await device_token(pool, "X1", agency="A")
    await pool.execute("UPDATE units SET agency = 'B' WHERE id = 'X1'")
    # a field unit bound to a unit that does not exist
    ghost = await device_token(pool, "X2", agency="A")
    await pool.execute("DELETE FROM units WHERE id = 'X2'")
    assert await _refused_with(live.ws_url + "/ws/unit/X1", moved) == 4404
    assert await _refused_with(live.ws_url + "/ws/unit/X2", ghost) == 4404
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        for unit_id, token in (("X1", moved), ("X2", ghost)):
            r = await http.post(f"/api/v1/units/{unit_id}/positions",
                                json={"fixes": [fix(*INSIDE, age_s=1)]}, headers=_auth(token))
            assert r.status_code == 404, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
    assert await _stored(pool, "X1") == 0 and await _stored(pool, "X2") == 0


async def test_a_field_unit_follows_and_moves_only_its_own_unit(live: RunningApp) -> None:
    pool = live.pool
    own = await device_token(pool, "Y1", agency="A")
    await device_token(pool, "Y2", agency="A")
    assert await _refused_with(live.ws_url + "/ws/unit/Y2", own) == 4403
    dispatcher = await board_token(pool, app_secret(live), role="dispatcher", agency="A")
    assert await _refused_with(live.ws_url + "/ws/unit/Y1", dispatcher) == 4403
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        r = await http.post("/api/v1/units/Y2/positions", json={"fixes": [fix(*INSIDE)]},
                            headers=_auth(own))
        assert r.status_code == 403
        r = await http.post("/api/v1/units/Y1/positions", json={"fixes": [fix(*INSIDE)]},
                            headers=_auth(dispatcher))
        assert r.status_code == 403
        r = await http.post("/api/v1/units/Y1/positions", json={"fixes": [fix(*INSIDE)]},
                            headers=_auth(own))
        assert r.status_code == 200 and r.json()["accepted"] == 1
    assert await _stored(pool, "Y2") == 0


async def test_a_fix_outside_the_service_area_is_an_error_frame_and_the_socket_stays_open(
        live: RunningApp) -> None:
    pool = live.pool
    mdt = StreamClient(live.ws_url + "/ws/unit/Z1", await device_token(pool, "Z1"))
    await mdt.connect()
    await mdt.send({"type": "position", **fix(*OUTSIDE, age_s=3), "ref": "far"})
    await mdt.wait_for(lambda c: any(m.get("ref") == "far" for m in c.messages))
    err = next(m for m in mdt.messages if m.get("ref") == "far")
    assert (err["type"], err["reason"], err["field"]) == ("error", "outside_service_area", "lat")
    assert "outside the service area" in err["detail"]
    # a batch with one fix outside: refused whole, naming that fix
    good = fix(*INSIDE, age_s=2)
    await mdt.send({"type": "positions", "fixes": [good, fix(*OUTSIDE, age_s=1)], "ref": "batch"})
    await mdt.wait_for(lambda c: any(m.get("ref") == "batch" for m in c.messages))
    err = next(m for m in mdt.messages if m.get("ref") == "batch")
    assert (err["reason"], err["field"]) == ("outside_service_area", "fixes.1.lat")
    # still open, and nothing of the refused messages was taken: the good fix is still new
    await mdt.send({"type": "position", **good, "ref": "ok"})
    await mdt.wait_for(lambda c: any(m.get("ref") == "ok" for m in c.messages))
    ok = next(m for m in mdt.messages if m.get("ref") == "ok")
    assert (ok["type"], ok["accepted"], ok["problems"]) == ("position_result", 1, [])
    assert mdt.close_code is None
    await live.gateway.avl.writer.flush()
    assert await pool.fetchval("SELECT array_agg(lat) FROM unit_positions WHERE unit_id = 'Z1'") \
        == [INSIDE[0]]
    assert live.gateway.stats()["positions"]["rejected"]["outside_service_area"] == 2
    await mdt.close()


async def test_a_fix_outside_the_service_area_is_422_over_http_naming_the_field(
        live: RunningApp) -> None:
    pool = live.pool
    token = await device_token(pool, "Z2")
    now = datetime.now(UTC)
    fixes = [{"lat": INSIDE[0], "lon": INSIDE[1], "fix_time": (now - timedelta(seconds=9 - i)).isoformat()}
             for i in range(3)]
    fixes[2] = {**fixes[2], "lat": OUTSIDE[0], "lon": OUTSIDE[1]}
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        r = await http.post("/api/v1/units/Z2/positions", json={"fixes": fixes},
                            headers=_auth(token))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["body.fixes.2.lat", "body.fixes.2.lon"]
        r = await http.post("/api/v1/units/Z2/positions", json={"fixes": fixes[:2]},
                            headers=_auth(token))
        assert r.status_code == 200 and r.json() == {"accepted": 2, "problems": []}
    await live.gateway.avl.writer.flush()
    assert await _stored(pool, "Z2") == 2
