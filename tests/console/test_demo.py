"""`cad demo`: sample stations, units and users through the public API, and a simulated fleet
whose MDT sockets move units on the road graph."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import numpy as np
import websockets

from cad import demo
from routing.graph import RoadGraph
from tests.dispatch_fixtures import make_settings
from tests.support import require_shared


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_simulated_drive_stays_on_the_road_and_keeps_its_speed(sf_graph_path: Path) -> None:
    import random

    g = RoadGraph.load(sf_graph_path)
    drive = demo.Drive(g, random.Random(1), 37.7794, -122.4042)
    travelled = 0.0
    prev = drive.step(0.0)
    for _ in range(200):
        lat, lon = drive.step(1.0)
        a, b = int(g.edge_tail[drive.edge]), int(g.fwd_head[drive.edge])
        # On the current edge's segment: collinear with its end points, between them.
        pa = np.array([g.node_lat[a], g.node_lon[a]])
        pb = np.array([g.node_lat[b], g.node_lon[b]])
        p = np.array([lat, lon])
        cross = (pb - pa)[0] * (p - pa)[1] - (pb - pa)[1] * (p - pa)[0]
        assert abs(cross) < 1e-9
        assert np.dot(p - pa, pb - p) >= -1e-12
        travelled += float(np.hypot((lat - prev[0]) * 111_320,
                                    (lon - prev[1]) * 111_320 * np.cos(np.radians(lat))))
        prev = (lat, lon)
    # Straight-line steps never exceed the distance driven along the road.
    assert 0.5 * 200 * demo.FLEET_SPEED_MPS < travelled <= 200 * demo.FLEET_SPEED_MPS * 1.01


async def test_demo_loads_sample_data_and_the_fleet_moves(
        database_url: str, tmp_path: Path, sf_graph_path: Path) -> None:
    shared = require_shared(demo.STATIONS_SOURCE).parents[1]
    settings = make_settings(database_url, tmp_path, graph_path=sf_graph_path,
                             port=_free_port(), log_format="json")
    until = asyncio.Event()
    ready: asyncio.Future[demo.DemoInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(demo.run(settings, database_url=database_url, shared=shared,
                                        fleet=3, until=until, on_ready=ready.set_result))
    try:
        info = await asyncio.wait_for(asyncio.shield(ready), timeout=240)
        assert len(info.units) == 60 and info.fleet == ["E01", "E02", "E03"]
        async with httpx.AsyncClient(base_url=info.base_url) as c:
            r = await c.post("/api/v1/auth/login", json={
                "username": "demo-dispatcher", "password": info.passwords["dispatcher"]})
            assert r.status_code == 200, r.text
            headers = {"authorization": f"Bearer {r.json()['access_token']}"}
            board = (await c.get("/api/v1/board", headers=headers)).json()
            assert len(board["units"]) == 60
            assert {board["units"][u]["status"] for u in info.fleet} == {"available_on_radio"}
            # The fleet drives: a board socket sees every driving unit at 3 different places.
            ws_url = info.base_url.replace("http://", "ws://", 1)
            places: dict[str, set[tuple[float, float]]] = {u: set() for u in info.fleet}
            async with websockets.connect(
                    f"{ws_url}/ws/board?access_token={r.json()['access_token']}") as ws:
                async with asyncio.timeout(30):
                    while min(len(p) for p in places.values()) < 3:
                        frame = json.loads(await ws.recv())
                        for pos in frame.get("positions") or []:
                            if pos["unit_id"] in places:
                                places[pos["unit_id"]].add((pos["lat"], pos["lon"]))
            assert all(len(p) >= 3 for p in places.values())
    finally:
        until.set()
        await asyncio.wait_for(task, timeout=60)
