"""Real servers in subprocesses: SIGKILL in the middle of a stream, two uvicorn workers
through Redis, and a Redis outage under two workers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from cad.settings import REPO_ROOT
from tests.auth import board_token, device_token
from tests.ws_gateway.helpers import TEST_JWT_SECRET, ServerProcess, StreamClient, emit, expected_ids, fix
from tests.ws_gateway.test_hub import private_redis  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


async def _reconnect(client: StreamClient, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await client.connect()
        except (TimeoutError, OSError, Exception) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not reconnect: {exc!r}") from exc
            await asyncio.sleep(0.1)


async def test_sigkill_mid_stream_then_reconnect_gives_exactly_the_committed_events(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    server = ServerProcess(database_url, tmp_path)
    server.start()
    writer = None
    clients: list[StreamClient] = []
    try:
        boards = [StreamClient(server.ws_url + "/ws/board",
                               await board_token(pool, TEST_JWT_SECRET)) for _ in range(3)]
        mdts = [StreamClient(server.ws_url + f"/ws/unit/{u}", await device_token(pool, u))
                for u in ("E1", "M3")]
        clients = boards + mdts
        for c in clients:
            await c.connect()
        writer = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
            [sys.executable, "-m", "tests.ws_gateway.writer_proc", database_url, "600", "0.004"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        # kill once the stream is well under way
        await boards[0].wait_for(lambda c: len(c.events) >= 150, timeout=30)
        server.kill()
        for c in clients:
            await c.wait_closed(timeout=10)
        received_before = [len(c.events) for c in clients]
        server.start()  # same port, same database
        firsts = [await _reconnect(c) for c in clients]
        assert {f["type"] for f in firsts} == {"resume"}
        out, _ = await asyncio.to_thread(writer.communicate, timeout=120)
        assert writer.returncode == 0, out
        committed = [int(x) for x in out.split()]
        assert len(committed) == 600
        want_board = await expected_ids(pool, agency="A")
        assert want_board == committed
        for c in boards:
            await c.wait_for(lambda cl: len(cl.events) >= len(want_board), timeout=30)
            assert c.event_ids() == want_board
        for c, unit in zip(mdts, ("E1", "M3"), strict=True):
            want = await expected_ids(pool, unit_id=unit)
            n_want = len(want)
            await c.wait_for(lambda cl, n=n_want: len(cl.events) >= n, timeout=30)
            assert c.event_ids() == want
        assert all(0 < n for n in received_before)
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        for c in clients:
            if c.ws is not None:
                await c.ws.close()
        server.stop()


async def test_sigkill_during_http_dispatches_and_status_changes(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """The same property driven through the dispatch API: the writer's requests
    are in flight when the server dies and are retried against the restarted server."""
    server = ServerProcess(database_url, tmp_path, extra_env={"CAD_TIMER_SWEEP_INTERVAL_S": "0"})
    server.start()
    writer = None
    clients: list[StreamClient] = []
    units = ["E1", "E2", "M3"]
    try:
        supervisor = await board_token(pool, TEST_JWT_SECRET, role="supervisor")
        async with httpx.AsyncClient(base_url=server.base_url,
                                     headers={"Authorization": f"Bearer {supervisor}"}) as http:
            for u in units:
                r = await http.post("/api/v1/units", json={
                    "id": u, "agency": "A", "discipline": "ems", "unit_type": "medic_als",
                    "status": "available_on_radio"})
                assert r.status_code == 201, r.text
        boards = [StreamClient(server.ws_url + "/ws/board",
                               await board_token(pool, TEST_JWT_SECRET)) for _ in range(2)]
        mdts = [StreamClient(server.ws_url + f"/ws/unit/{u}", await device_token(pool, u))
                for u in units[:2]]
        clients = boards + mdts
        starts = [(await c.connect())["last_event_id"] for c in clients]
        assert len(set(starts)) == 1  # the units' creation events are in every snapshot
        dispatcher = await board_token(pool, TEST_JWT_SECRET)
        writer = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited on
            [sys.executable, "-m", "tests.ws_gateway.http_writer_proc", server.base_url,
             dispatcher, "40", *units],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        await boards[0].wait_for(lambda c: len(c.events) >= 40, timeout=60)
        server.kill()
        for c in clients:
            await c.wait_closed(timeout=10)
        server.start()
        for c in clients:
            assert (await _reconnect(c))["type"] == "resume"
        out, _ = await asyncio.to_thread(writer.communicate, timeout=240)
        assert writer.returncode == 0, out
        want_board = await expected_ids(pool, agency="A", after=starts[0])
        assert len(want_board) >= 40 * 5
        for c in boards:
            await c.wait_for(lambda cl: len(cl.events) >= len(want_board), timeout=30)
            assert c.event_ids() == want_board
        for c, unit in zip(mdts, units, strict=False):
            want = await expected_ids(pool, unit_id=unit, after=starts[0])
            n_want = len(want)
            await c.wait_for(lambda cl, n=n_want: len(cl.events) >= n, timeout=30)
            assert c.event_ids() == want
            assert want, "the MDT stream saw none of its unit's events"
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        for c in clients:
            if c.ws is not None:
                await c.ws.close()
        server.stop()


async def _board_on_each_worker(server: ServerProcess, pool: asyncpg.Pool, per_worker: int
                                ) -> dict[str, list[StreamClient]]:
    """Connect boards until each of the two workers holds ``per_worker`` of them."""
    by_worker: dict[str, list[StreamClient]] = {}
    extra: list[StreamClient] = []
    for _ in range(80):
        c = StreamClient(server.ws_url + "/ws/board", await board_token(pool, TEST_JWT_SECRET))
        first = await c.connect()
        group = by_worker.setdefault(first["server_id"], [])
        if len(group) < per_worker:
            group.append(c)
        else:
            extra.append(c)
        if len(by_worker) == 2 and all(len(g) >= per_worker for g in by_worker.values()):
            break
    for c in extra:
        await c.close()
    assert len(by_worker) == 2, "the kernel gave every connection to one worker"
    return by_worker


async def _mdt_on_worker(server: ServerProcess, pool: asyncpg.Pool, unit: str, worker: str
                         ) -> StreamClient:
    token = await device_token(pool, unit)
    for _ in range(60):
        c = StreamClient(server.ws_url + f"/ws/unit/{unit}", token)
        first = await c.connect()
        if first["server_id"] == worker:
            return c
        await c.close()
    raise AssertionError(f"no MDT connection landed on worker {worker}")


async def test_two_workers_through_redis_deliver_everything_to_everyone(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path, redis_url: str) -> None:
    server = ServerProcess(database_url, tmp_path, workers=2, redis_url=redis_url, extra_env={
        "CAD_HUB_CHANNEL_PREFIX": f"cad-test-{uuid.uuid4().hex[:8]}",
        "CAD_AVL_MAX_POSITIONS_PER_UNIT_PER_S": "1000"})
    server.start()
    clients: list[StreamClient] = []
    try:
        by_worker = await _board_on_each_worker(server, pool, 3)
        boards = [c for g in by_worker.values() for c in g]
        workers = list(by_worker)
        mdts = [await _mdt_on_worker(server, pool, f"U{i}", workers[i % 2]) for i in range(4)]
        clients = boards + mdts
        ids = [await emit(pool, "incident.created", ("incident", i)) for i in range(30)]
        sent: dict[str, int] = {}
        for k in range(10):
            for m in mdts:
                unit = m.url.rsplit("/", 1)[1]
                await m.send({"type": "position", **fix(37.0 + k / 100, -122.0, age_s=20 - k)})
                sent[unit] = sent.get(unit, 0) + 1

        def complete(c: StreamClient) -> bool:  # delivered + coalesced == sent, per unit
            got: dict[str, int] = {}
            for p in c.positions:
                got[p["unit_id"]] = got.get(p["unit_id"], 0) + 1 + p["coalesced"]
            return got == sent and len(c.events) >= len(ids)

        for c in boards:
            await c.wait_for(complete, timeout=20)
            assert c.event_ids() == ids
            # every fix is either delivered or counted as coalesced (several fixes of one unit
            # within a tick leave only the newest), whichever worker ingested it
    finally:
        for c in clients:
            await c.close()
        server.stop()


async def test_redis_outage_keeps_local_positions_and_every_event(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path, private_redis) -> None:  # noqa: F811
    server = ServerProcess(database_url, tmp_path, workers=2, redis_url=private_redis.url,
                           extra_env={"CAD_AVL_MAX_POSITIONS_PER_UNIT_PER_S": "1000"})
    server.start()
    clients: list[StreamClient] = []
    try:
        by_worker = await _board_on_each_worker(server, pool, 2)
        w1, w2 = list(by_worker)
        mdt1 = await _mdt_on_worker(server, pool, "R1", w1)
        clients = [*by_worker[w1], *by_worker[w2], mdt1]

        private_redis.stop()
        await mdt1.send({"type": "position", **fix(37.5, -122.5, age_s=5), "ref": "down"})
        await mdt1.wait_for(lambda c: any(m.get("ref") == "down" for m in c.messages))
        during = [await emit(pool, "incident.created", ("incident", i)) for i in range(10)]
        for c in by_worker[w1]:  # same worker as the MDT: still gets it
            await c.wait_for(lambda cl: any(p["unit_id"] == "R1" for p in cl.positions))
        for c in clients[:-1]:  # events come from PostgreSQL, Redis or not
            await c.wait_for(lambda cl: len(cl.events) >= len(during))
            assert c.event_ids() == during

        private_redis.start()
        # after the hub reconnects, positions cross workers again
        deadline = time.monotonic() + 30
        k = 0
        while not all(any(p["lat"] == 38.0 for p in c.positions) for c in by_worker[w2]):
            assert time.monotonic() < deadline, "positions never crossed workers after Redis came back"
            k += 1
            await mdt1.send({"type": "position", **fix(38.0, -122.5, age_s=4 - k * 0.01)})
            await asyncio.sleep(0.2)
        after = [await emit(pool, "incident.created", ("incident", 100 + i)) for i in range(5)]
        for c in clients[:-1]:
            await c.wait_for(lambda cl: len(cl.events) >= len(during) + len(after))
            assert c.event_ids() == during + after
    finally:
        for c in clients:
            await c.close()
        server.stop()
