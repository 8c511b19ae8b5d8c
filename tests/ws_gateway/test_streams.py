"""Board and MDT streams against the running app: snapshot + cursor, live events, resume
without gaps or duplicates, resync, filtering, heartbeats, slow consumers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
import websockets

from cad.settings import Settings
from tests.auth import board_token, device_token
from tests.support import RunningApp, running_app
from tests.ws_gateway.helpers import StreamClient, app_secret, emit, expected_ids


@pytest.fixture
def ws_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                    db_pool_min=1, db_pool_max=10, ws_heartbeat_interval_s=0.3,
                    ws_token_recheck_interval_s=0.3)


@pytest.fixture
async def live(ws_settings: Settings):
    async with running_app(ws_settings) as running:
        yield running


async def prune_events_through(running: RunningApp, last_id: int) -> None:
    """Delete the log's prefix up to ``last_id`` as the database owner would (the server's
    role may not delete events at all: 0019_event_log_owner_prune.sql). The bound is the one
    event_log_prune sets; the test sets it itself to prune events younger than the policy's
    minimum retention."""
    conn = await asyncpg.connect(running.settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('cad.event_prune_through', $1, true)",
                               str(last_id))
            await conn.execute("DELETE FROM event_log WHERE id <= $1", last_id)
    finally:
        await conn.close()


def _pool(running: RunningApp) -> asyncpg.Pool:
    return running.pool


async def test_board_gets_snapshot_cursor_then_live_events_in_order(live: RunningApp) -> None:
    pool = _pool(live)
    before = await emit(pool, "incident.created", ("incident", 1))
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    first = await board.connect()
    assert first["type"] == "snapshot"
    assert first["last_event_id"] == before
    assert set(first["snapshot"]) >= {"incidents", "units"}
    ids = [await emit(pool, "incident.updated", ("incident", 1), data={"n": i}) for i in range(20)]
    await board.wait_for(lambda c: len(c.events) >= 20)
    assert board.event_ids() == ids
    assert board.events[0]["type"] == "incident.updated" and board.events[0]["data"] == {"n": 0}
    await board.close()


async def test_board_sees_only_its_agency(live: RunningApp) -> None:
    pool = _pool(live)
    board_a = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    board_b = StreamClient(live.ws_url + "/ws/board",
                           await board_token(pool, app_secret(live), agency="B"))
    await board_a.connect()
    await board_b.connect()
    for i in range(6):
        await emit(pool, "incident.created", ("incident", i), agency="A" if i % 2 else "B")
    await emit(pool, "system.notice_posted", ("system", "x"), agency=None)  # everyone
    await board_a.wait_for(lambda c: len(c.events) >= 4)
    await board_b.wait_for(lambda c: len(c.events) >= 4)
    assert board_a.event_ids() == await expected_ids(pool, agency="A")
    assert board_b.event_ids() == await expected_ids(pool, agency="B")
    assert {e["agency"] for e in board_a.events} == {"A", None}
    await board_a.close()
    await board_b.close()


async def test_mdt_stream_shows_its_unit_and_incidents_naming_it(live: RunningApp) -> None:
    pool = _pool(live)
    mdt = StreamClient(live.ws_url + "/ws/unit/E1", await device_token(pool, "E1"))
    first = await mdt.connect()
    assert first["type"] == "snapshot"
    assert first["snapshot"]["unit"]["id"] == "E1"
    await emit(pool, "unit.status_changed", ("unit", "E2"), data={"status": "en_route"})
    mine = [
        await emit(pool, "unit.status_changed", ("unit", "E1"), data={"status": "en_route"}),
        await emit(pool, "incident.units_dispatched", ("incident", 7), data={"unit_ids": ["E1", "E3"]}),
    ]
    await emit(pool, "incident.units_dispatched", ("incident", 8), data={"unit_ids": ["E3"]})
    last = await emit(pool, "message.sent", ("incident", 7), data={"unit_ids": ["E1"], "text": "hi"})
    await mdt.wait_for(lambda c: len(c.events) >= 3)
    assert mdt.event_ids() == [*mine, last]
    assert mdt.event_ids() == await expected_ids(pool, unit_id="E1")
    await mdt.close()


async def test_mdt_of_another_unit_or_wrong_role_is_refused(live: RunningApp) -> None:
    pool = _pool(live)
    for url, token, code in [
        ("/ws/unit/E9", await device_token(pool, "E1"), 4403),
        ("/ws/board", await device_token(pool, "E2"), 4403),
        ("/ws/board", "not-a-token", 4401),
        ("/ws/board", await board_token(pool, app_secret(live), role="analyst"), 4403),
        ("/ws/board?last_event_id=abc", await board_token(pool, app_secret(live)), 4400),
    ]:
        ws = await websockets.connect(live.ws_url + url,
                                      additional_headers={"Authorization": f"Bearer {token}"})
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        close = ws.protocol.close_rcvd
        assert close is not None and close.code == code, (url, close)


async def test_reconnect_replays_exactly_what_was_missed(live: RunningApp) -> None:
    pool = _pool(live)
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    await board.connect()
    for i in range(5):
        await emit(pool, "incident.updated", ("incident", 1), data={"n": i})
    await board.wait_for(lambda c: len(c.events) >= 5)
    await board.close()
    missed = [await emit(pool, "incident.updated", ("incident", 1), data={"n": i})
              for i in range(5, 40)]
    await emit(pool, "incident.updated", ("incident", 1), agency="B")  # not for this board
    first = await board.connect()  # with last_event_id
    assert first["type"] == "resume"
    more = [await emit(pool, "incident.updated", ("incident", 1), data={"n": i})
            for i in range(40, 45)]
    await board.wait_for(lambda c: len(c.events) >= 45)
    assert board.event_ids()[5:] == missed + more
    assert board.event_ids() == await expected_ids(pool, agency="A")
    assert any(m.get("type") == "resume" for m in board.messages)
    await board.close()


async def test_resume_while_events_keep_committing_has_no_gap_or_duplicate(live: RunningApp) -> None:
    """Reconnects land in the middle of a stream of concurrent writers: the replay/live
    hand-over must neither skip nor repeat."""
    pool = _pool(live)
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    await board.connect()
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            await emit(pool, "incident.updated", ("incident", w), data={"n": n})
            n += 1

    writers = [asyncio.create_task(writer(w)) for w in range(4)]
    try:
        for _ in range(6):
            await asyncio.sleep(0.05)  # let some events through live, then drop the link
            await board.close()
            await asyncio.sleep(0.05)  # miss some
            await board.connect()
    finally:
        stop.set()
        await asyncio.gather(*writers)
    expected = await expected_ids(pool, agency="A")
    await board.wait_for(lambda c: len(c.events) >= len(expected), timeout=20)
    assert board.event_ids() == expected
    await board.close()


async def test_resync_when_older_than_retention(live: RunningApp) -> None:
    pool = _pool(live)
    for i in range(3):
        await emit(pool, "incident.updated", ("incident", 1), data={"n": i})
    await prune_events_through(live, await pool.fetchval("SELECT max(id) - 1 FROM event_log"))
    head = await pool.fetchval("SELECT max(id) FROM event_log")
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    board.last_event_id = 0  # from before the pruned events
    first = await board.connect()
    assert first["type"] == "resync_required"
    assert first["reason"] == "older_than_retention"
    await board.wait_for(lambda c: any(m["type"] == "snapshot" for m in c.messages))
    assert board.last_event_id == head
    # a cursor from the future (database restored from backup) also means resync
    board2 = StreamClient(live.ws_url + "/ws/board", board.token)
    board2.last_event_id = head + 1000
    assert (await board2.connect())["reason"] == "unknown_event_id"
    await board.close()
    await board2.close()


async def test_heartbeats_carry_the_cursor(live: RunningApp) -> None:
    pool = _pool(live)
    other = await emit(pool, "incident.updated", ("incident", 1), agency="B")
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    await board.connect()
    latest = await emit(pool, "incident.updated", ("incident", 1), agency="B")
    await board.wait_for(lambda c: sum(m["type"] == "heartbeat" for m in c.messages) >= 2)
    assert latest > other
    # nothing for agency A, yet the cursor moved past B's event: a resume skips it for free
    await board.wait_for(lambda c: c.last_event_id == latest)
    assert board.events == []
    await board.close()


async def test_slow_consumer_is_closed_and_others_keep_up(database_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        db_pool_min=1, db_pool_max=10, ws_client_queue_max=4,
                        ws_batch_interval_ms=10)
    async with running_app(settings) as running:
        pool = _pool(running)
        token = await board_token(pool, app_secret(running))
        # A client that never reads: its TCP window fills, then its queue, then it is closed.
        stuck = await websockets.connect(running.ws_url + "/ws/board", max_queue=1,
                                         additional_headers={"Authorization": f"Bearer {token}"},
                                         compression=None)
        stuck.transport.pause_reading()
        good = StreamClient(running.ws_url + "/ws/board", token)
        await good.connect()
        big = "x" * 20_000
        ids = []
        gateway = running.gateway
        for i in range(400):
            ids.append(await emit(pool, "incident.updated", ("incident", 1), data={"pad": big}))
            if gateway.registry.slow_closed:
                break
        assert gateway.registry.slow_closed == 1
        await good.wait_for(lambda c: len(c.events) >= len(ids), timeout=20)
        assert good.event_ids() == ids
        stuck.transport.resume_reading()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(stuck.recv(), 10)
        assert stuck.protocol.close_rcvd is not None and stuck.protocol.close_rcvd.code == 4408
        await good.close()


async def test_resync_when_every_event_was_pruned(live: RunningApp) -> None:
    pool = _pool(live)
    last = 0
    for i in range(3):
        last = await emit(pool, "incident.updated", ("incident", 1), data={"n": i})
    await prune_events_through(live, last)
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    board.last_event_id = last - 1  # missed the last one, which is gone
    first = await board.connect()
    assert (first["type"], first["reason"]) == ("resync_required", "older_than_retention")
    board2 = StreamClient(live.ws_url + "/ws/board", board.token)
    board2.last_event_id = last  # up to date: nothing missed, nothing to replay
    assert (await board2.connect())["type"] == "resume"
    await board.close()
    await board2.close()
