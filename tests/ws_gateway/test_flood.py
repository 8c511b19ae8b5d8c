"""No starving: a flooding terminal is thinned (stored breadcrumbs bounded by the per-unit
rate) and closed (4429 / HTTP 429) past its message budget, and never costs another unit a
fix. Against a real server with real websocket and HTTP clients."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from cad.settings import Settings
from tests.auth import board_token, device_token
from tests.support import running_app
from tests.ws_gateway.helpers import StreamClient, app_secret, fix
from ws_gateway.flood import BreadcrumbThinner, MessageBudget

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _row(unit_id: str, t: datetime) -> tuple[Any, ...]:
    return (unit_id, t, t, 37.7, -122.4, None, None, None)


def _offer(thinner: BreadcrumbThinner, unit_id: str, t: datetime) -> bool:
    return thinner.offer(_row(unit_id, t), t) is not None


# --- the thinner and the budget on their own -------------------------------------------------

def test_thinner_keeps_one_fix_per_period_of_a_flooding_unit_and_every_fix_of_a_normal_one() -> None:
    thinner = BreadcrumbThinner(per_unit_per_s=1.0)
    kept_flood = sum(_offer(thinner, "F", T0 + timedelta(milliseconds=i)) for i in range(10_000))
    # 1 Hz with fix times jittered by up to +-0.4 s around the second: every one is kept
    jitter = [0.0, 0.4, -0.4, 0.3, -0.2, 0.4, -0.4, 0.0, 0.1, -0.3]
    kept_normal = sum(_offer(thinner, "N", T0 + timedelta(seconds=i + j))
                      for i, j in enumerate(jitter))
    assert kept_normal == 10
    assert kept_flood == 11  # 10 s of fix time at 1,000 fixes/s: one a second + the tolerance
    assert thinner.held == 1 and thinner.coalesced == 10_000 - 11 - 1


def test_thinner_holds_the_newest_fix_and_stores_it_when_its_slot_comes() -> None:
    thinner = BreadcrumbThinner(per_unit_per_s=1.0)
    assert _offer(thinner, "E1", T0)
    assert _offer(thinner, "E1", T0 + timedelta(milliseconds=100))  # the tolerance: two at once
    for ms in (200, 300, 400):  # held; each replaces the one before
        assert not _offer(thinner, "E1", T0 + timedelta(milliseconds=ms))
    assert thinner.release_due(T0.timestamp() + 1.9) == []  # its slot has not come
    released = thinner.release_due(T0.timestamp() + 2.0)
    assert [r[1] for r in released] == [T0 + timedelta(milliseconds=400)]
    assert thinner.coalesced == 2 and thinner.held == 0
    # the release took the slot: the next fix within it is held again
    assert not _offer(thinner, "E1", T0 + timedelta(milliseconds=1_500))


def test_thinner_keeps_a_replayed_backlog_at_the_rate() -> None:
    thinner = BreadcrumbThinner(per_unit_per_s=1.0)
    kept = [t for t in (T0 + timedelta(milliseconds=250 * i) for i in range(400))
            if _offer(thinner, "E1", t)]
    assert len(kept) == 101  # 100 s of backlog at 4 Hz: one a second + the tolerance
    # never more than two within a second
    assert all((c - a) >= timedelta(seconds=1) for a, c in zip(kept, kept[2:], strict=False))


def test_budget_refuses_what_it_does_not_have_and_takes_nothing_then() -> None:
    budget = MessageBudget(rate_per_s=1e-6, burst=10)
    assert budget.spend(4) and budget.spend(6)
    assert not budget.spend(1)
    assert budget.retry_after_s(1) > 1000
    assert not budget.spend(20)  # more than the burst never fits
    fast = MessageBudget(rate_per_s=1000.0, burst=10)
    assert fast.spend(10)
    fast.drain(penalty_s=60.0)  # closed for flooding: owes a minute of its rate
    assert not fast.has(1) and fast.tokens <= -59_000


# --- a real server --------------------------------------------------------------------------

def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": database_url, "data_dir": tmp_path, "log_format": "json",
        "db_pool_min": 1, "db_pool_max": 10, "avl_flush_interval_ms": 50,
        "avl_max_positions_per_unit_per_s": 1000.0, "avl_store_max_per_unit_per_s": 1.0}
    return Settings(**(base | overrides))


async def _stored(pool: Any, unit_id: str) -> list[datetime]:
    rows = await pool.fetch("SELECT fix_time FROM unit_positions WHERE unit_id = $1 "
                            "ORDER BY fix_time", unit_id)
    return [r["fix_time"] for r in rows]


async def _send_normal(mdt: StreamClient, t0: datetime, n: int) -> list[dict[str, Any]]:
    """``n`` fixes 2 s apart (in the past), one message each, each answered (ref)."""
    sent = []
    for i in range(n):
        f = {"lat": 37.7 + i / 1000, "lon": -122.4, "fix_time": (t0 + timedelta(seconds=2 * i)).isoformat()}
        await mdt.send({"type": "position", **f, "ref": f"n{i}"})
        sent.append(f)
    await mdt.wait_for(lambda c: any(m.get("ref") == f"n{n - 1}" for m in c.messages))
    results = [m for m in mdt.messages if str(m.get("ref", "")).startswith("n")]
    assert [r["accepted"] for r in results] == [1] * n, results
    return sent


def _delivered(board: StreamClient, unit_id: str) -> int:
    """Fixes of the unit the board got or was told were coalesced (sent - this = lost)."""
    return sum(1 + p["coalesced"] for p in board.positions if p["unit_id"] == unit_id)


async def test_a_flooding_terminal_is_thinned_and_the_normal_unit_loses_nothing(
        database_url: str, tmp_path: Path) -> None:
    # A budget too big to close the flooder: this test is about what gets stored.
    settings = _settings(database_url, tmp_path, ws_message_rate_per_s=1e6,
                         ws_message_burst=10_000_000, avl_fix_rate_per_s=1e6,
                         avl_fix_burst=10_000_000)
    async with running_app(settings) as live:
        pool = live.pool
        board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
        normal = StreamClient(live.ws_url + "/ws/unit/N1", await device_token(pool, "N1"))
        flooder = StreamClient(live.ws_url + "/ws/unit/F1", await device_token(pool, "F1"))
        for c in (board, normal, flooder):
            await c.connect()

        flood_times: list[datetime] = []

        async def flood() -> None:
            # as fast as the socket takes them, fix time = now (strictly increasing)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                batch = []
                for _ in range(50):
                    t = datetime.now(UTC)
                    if flood_times and t <= flood_times[-1]:
                        t = flood_times[-1] + timedelta(microseconds=1)
                    flood_times.append(t)
                    batch.append({"lat": 37.8, "lon": -122.3, "fix_time": t.isoformat()})
                for f in batch:
                    await flooder.send({"type": "position", **f})

        flooding = asyncio.create_task(flood())
        t0 = datetime.now(UTC) - timedelta(seconds=60)
        sent = await _send_normal(normal, t0, 10)
        await flooding
        await flooder.send({"type": "ping"})
        await flooder.wait_for(lambda c: any(m.get("type") == "pong" for m in c.messages), 30)
        assert flooder.close_code is None  # this budget was not overdrawn

        # the normal unit: every fix stored and every fix delivered (or counted as coalesced)
        await live.gateway.avl.writer.flush()
        assert await _stored(pool, "N1") == [datetime.fromisoformat(f["fix_time"]) for f in sent]
        await board.wait_for(lambda c: _delivered(c, "N1") == 10 and any(
            p["unit_id"] == "N1" and p["lat"] == sent[-1]["lat"] for p in c.positions))
        # the flooder: at most one row per second since its first fix (+ the tolerance's one)
        stored = await _stored(pool, "F1")
        elapsed_s = (datetime.now(UTC) - flood_times[0]).total_seconds()
        assert len(flood_times) > 20 * (elapsed_s + 2), "the flood was not a flood"
        assert 1 <= len(stored) <= elapsed_s + 2, (len(stored), elapsed_s)
        # ... and its newest fix is stored once its slot comes (the last position is kept)
        deadline = time.monotonic() + 10
        while (await _stored(pool, "F1"))[-1] != flood_times[-1]:
            assert time.monotonic() < deadline, "the flooder's newest fix was never stored"
            await live.gateway.avl.writer.flush()
            await asyncio.sleep(0.05)
        stats = live.gateway.stats()["positions"]
        assert stats["breadcrumbs_dropped"] == 0
        # every fix of the flooder is accounted for: stored, or coalesced on purpose
        assert stats["breadcrumbs_coalesced"] == len(flood_times) - len(await _stored(pool, "F1"))
        for c in (board, normal, flooder):
            await c.close()


async def test_a_flooding_socket_is_closed_with_4429_and_the_others_keep_going(
        database_url: str, tmp_path: Path) -> None:
    settings = _settings(database_url, tmp_path, ws_message_rate_per_s=20.0, ws_message_burst=200,
                         avl_fix_rate_per_s=20.0, avl_fix_burst=200)
    async with running_app(settings) as live:
        pool = live.pool
        board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
        normal = StreamClient(live.ws_url + "/ws/unit/N2", await device_token(pool, "N2"))
        flooder = StreamClient(live.ws_url + "/ws/unit/F2", await device_token(pool, "F2"))
        for c in (board, normal, flooder):
            await c.connect()
        sent_by_flooder = 0
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(100_000):
                await flooder.send({"type": "position", **fix(37.8, -122.3)})
                sent_by_flooder += 1
                if sent_by_flooder % 100 == 0:
                    await asyncio.sleep(0)  # let the reader see the close frame
        assert await flooder.wait_closed() == 4429
        assert flooder.close_reason == "rate_limited"
        assert sent_by_flooder > 200

        t0 = datetime.now(UTC) - timedelta(seconds=60)
        sent = await _send_normal(normal, t0, 10)
        await live.gateway.avl.writer.flush()
        assert await _stored(pool, "N2") == [datetime.fromisoformat(f["fix_time"]) for f in sent]
        await board.wait_for(lambda c: _delivered(c, "N2") == 10)
        assert normal.close_code is None and board.close_code is None
        assert live.gateway.stats()["closed_rate_limited"] == 1

        # a batch costs one per fix: 250 fixes in one message overdraw a 200 fix budget
        batcher = StreamClient(live.ws_url + "/ws/unit/F3", await device_token(pool, "F3"))
        await batcher.connect()
        await batcher.send({"type": "positions", "fixes": [fix(age_s=300 - i) for i in range(250)]})
        assert await batcher.wait_closed() == 4429
        assert await _stored(pool, "F3") == []
        # the budget is the unit's, and a flooder owes a penalty: its reconnect is refused at
        # the handshake with 429 + Retry-After
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(live.ws_url + "/ws/unit/F3", additional_headers={
                "Authorization": f"Bearer {await device_token(pool, 'F3')}"})
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 1
        for c in (board, normal):
            await c.close()


async def test_http_positions_are_thinned_and_refused_with_429_past_the_budget(
        database_url: str, tmp_path: Path) -> None:
    settings = _settings(database_url, tmp_path, avl_fix_rate_per_s=5.0, avl_fix_burst=1_100,
                         ws_message_rate_per_s=20.0, ws_message_burst=60)
    async with running_app(settings) as live:
        pool = live.pool
        flood_token = await device_token(pool, "HF1")
        normal_token = await device_token(pool, "HN1")
        now = datetime.now(UTC)
        # 1,000 fixes 0.1 s apart over the last 100 s: accepted, stored at 1 per second
        flood = [{"lat": 37.7, "lon": -122.4,
                  "fix_time": (now - timedelta(seconds=100) + timedelta(milliseconds=100 * i)).isoformat()}
                 for i in range(1_000)]
        normal: list[dict[str, Any]] = [{"lat": 37.6, "lon": -122.3,
                   "fix_time": (now - timedelta(seconds=50 - 2 * i)).isoformat()} for i in range(10)]
        async with httpx.AsyncClient(base_url=live.base_url) as http:
            first = await http.post("/api/v1/units/HF1/positions", json={"fixes": flood},
                                    headers={"Authorization": f"Bearer {flood_token}"})
            assert first.status_code == 200, first.text
            assert first.json() == {"accepted": 1_000, "problems": []}
            second = await http.post("/api/v1/units/HF1/positions", json={"fixes": flood[-200:]},
                                     headers={"Authorization": f"Bearer {flood_token}"})
            assert second.status_code == 429, second.text
            assert second.headers["content-type"].startswith("application/problem+json")
            assert int(second.headers["Retry-After"]) >= 1
            assert second.json()["retry_after_s"] > 0
            ok = await http.post("/api/v1/units/HN1/positions", json={"fixes": normal},
                                 headers={"Authorization": f"Bearer {normal_token}"})
            assert ok.status_code == 200 and ok.json()["accepted"] == 10
            # requests count too: one-fix posts in a loop hit the message budget (burst 60)
            many_token = await device_token(pool, "HM1")
            statuses = []
            for i in range(300):
                r = await http.post("/api/v1/units/HM1/positions", json={"fixes": [fix(age_s=200 - i / 2)]},
                                    headers={"Authorization": f"Bearer {many_token}"})
                statuses.append(r.status_code)
                if r.status_code == 429:
                    break
            assert statuses[-1] == 429 and len(statuses) > 60, statuses
            assert set(statuses[:-1]) == {200}
        await live.gateway.avl.writer.flush()
        stored = await _stored(pool, "HF1")
        # one a second over 100 s, + the tolerance's one, + the newest (held) once its slot came
        assert 101 <= len(stored) <= 102, len(stored)
        assert await _stored(pool, "HN1") == [datetime.fromisoformat(f["fix_time"]) for f in normal]
