"""AVL ingest: validation reasons, boards get coalesced positions, breadcrumbs in PostgreSQL,
last position on the unit, the track replay endpoint, token revocation on open sockets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cad.settings import Settings
from tests.auth import board_token, device_token
from tests.support import RunningApp, running_app
from tests.ws_gateway.helpers import StreamClient, app_secret, fix
from ws_gateway.avl import Coalescer, FixRejected, validate_fix


@pytest.fixture
async def live(database_url: str, tmp_path: Path):
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        db_pool_min=1, db_pool_max=10, avl_flush_interval_ms=50,
                        avl_max_positions_per_unit_per_s=2.0, ws_token_recheck_interval_s=0.3)
    async with running_app(settings) as running:
        yield running


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw, reason", [
    ({"lat": 91, "lon": 0, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lat": 10, "lon": -181, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lat": 0, "lon": 0, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lat": "10", "lon": 5, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lat": float("nan"), "lon": 5, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lon": 5, "fix_time": NOW.isoformat()}, "bad_coordinates"),
    ({"lat": 10, "lon": 5, "heading_deg": 400, "fix_time": NOW.isoformat()}, "bad_heading"),
    ({"lat": 10, "lon": 5, "speed_mps": -1, "fix_time": NOW.isoformat()}, "bad_speed"),
    ({"lat": 10, "lon": 5, "accuracy_m": -3, "fix_time": NOW.isoformat()}, "bad_accuracy"),
    ({"lat": 10, "lon": 5}, "bad_timestamp"),
    ({"lat": 10, "lon": 5, "fix_time": "yesterday"}, "bad_timestamp"),
    ({"lat": 10, "lon": 5, "fix_time": "2026-01-01T12:00:00"}, "bad_timestamp"),  # no offset
    ({"lat": 10, "lon": 5, "fix_time": (NOW + timedelta(seconds=60)).isoformat()},
     "timestamp_in_future"),
    ({"lat": 10, "lon": 5, "fix_time": (NOW - timedelta(hours=1)).isoformat()},
     "timestamp_too_old"),
])
def test_bad_fixes_are_rejected_with_a_reason(raw: dict, reason: str) -> None:
    with pytest.raises(FixRejected) as err:
        validate_fix("E1", raw, now=NOW, max_age_s=300, max_future_s=5, max_accuracy_m=5000)
    assert err.value.reason == reason


def test_good_fix_accepts_iso_and_epoch_times() -> None:
    a = validate_fix("E1", {"lat": 37.7, "lon": -122.4, "fix_time": "2026-01-01T11:59:59Z",
                            "heading_deg": 90, "speed_mps": 12.5, "accuracy_m": 4},
                     now=NOW, max_age_s=300, max_future_s=5, max_accuracy_m=5000)
    b = validate_fix("E1", {"lat": 37.7, "lon": -122.4, "fix_time": NOW.timestamp() * 1000},
                     now=NOW, max_age_s=300, max_future_s=5, max_accuracy_m=5000)
    assert a.fix_time == NOW - timedelta(seconds=1) and a.speed_mps == 12.5
    assert b.fix_time == NOW


def test_coalescer_sends_at_most_n_per_unit_per_second_and_counts_the_rest() -> None:
    c = Coalescer(per_unit_per_s=2.0)
    f = validate_fix("E1", {"lat": 1, "lon": 1, "fix_time": NOW.isoformat()}, now=NOW,
                     max_age_s=300, max_future_s=5, max_accuracy_m=5000)
    c.offer(f, "A")
    assert [p["coalesced"] for p in c.take_due(100.0)] == [0]
    for _ in range(5):  # five more within the same half second: one survives
        c.offer(f, "A")
    assert c.take_due(100.2) == []
    due = c.take_due(100.5)
    assert [p["coalesced"] for p in due] == [4]
    assert c.coalesced == 4 and c.sent == 2


async def test_mdt_positions_reach_the_board_and_are_stored(live: RunningApp) -> None:
    pool = live.pool
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    other_board = StreamClient(live.ws_url + "/ws/board",
                               await board_token(pool, app_secret(live), agency="B"))
    mdt = StreamClient(live.ws_url + "/ws/unit/E1", await device_token(pool, "E1"))
    await board.connect()
    await other_board.connect()
    await mdt.connect()
    await mdt.send({"type": "position", **fix(37.7, -122.4, age_s=2, heading_deg=90,
                                                 speed_mps=10, accuracy_m=5), "ref": "p1"})
    await mdt.wait_for(lambda c: any(m.get("ref") == "p1" for m in c.messages))
    result = next(m for m in mdt.messages if m.get("ref") == "p1")
    assert result["accepted"] == 1 and result["problems"] == []
    await board.wait_for(lambda c: len(c.positions) >= 1)
    p = board.positions[0]
    assert (p["unit_id"], p["lat"], p["lon"], p["heading_deg"]) == ("E1", 37.7, -122.4, 90)
    # breadcrumb and last position, written by the batch writer
    async def stored() -> int:
        return await pool.fetchval("SELECT count(*) FROM unit_positions WHERE unit_id = 'E1'")
    for _ in range(100):
        if await stored():
            break
        await asyncio.sleep(0.05)
    assert await stored() == 1
    row = await pool.fetchrow("SELECT last_lat, last_lon, last_fix_at FROM units WHERE id = 'E1'")
    assert (row["last_lat"], row["last_lon"]) == (37.7, -122.4)
    assert other_board.positions == []  # agency B does not see A's units
    for c in (board, other_board, mdt):
        await c.close()


async def test_rejected_and_out_of_order_fixes_are_reported(live: RunningApp) -> None:
    pool = live.pool
    mdt = StreamClient(live.ws_url + "/ws/unit/E1", await device_token(pool, "E1"))
    await mdt.connect()
    newer, older = fix(age_s=1), fix(age_s=5)
    await mdt.send({"type": "positions", "ref": 1,
                    "fixes": [newer, older, fix(95, 0), fix(age_s=-60), fix(age_s=3600), newer]})
    await mdt.wait_for(lambda c: any(m.get("ref") == 1 for m in c.messages))
    r = next(m for m in mdt.messages if m.get("ref") == 1)
    assert r["accepted"] == 1
    assert [(p["index"], p["reason"], p["status"]) for p in r["problems"]] == [
        (1, "out_of_order", "ignored"), (2, "bad_coordinates", "rejected"),
        (3, "timestamp_in_future", "rejected"), (4, "timestamp_too_old", "rejected"),
        (5, "out_of_order", "ignored")]
    await mdt.close()


async def test_http_batch_ingest_and_track_replay(live: RunningApp) -> None:
    pool = live.pool
    token = await device_token(pool, "M5", agency="A")
    t0 = datetime.now(UTC) - timedelta(seconds=100)
    fixes = [{"lat": 37.0 + i / 1000, "lon": -122.0, "fix_time": (t0 + timedelta(seconds=i)).isoformat(),
              "speed_mps": 5.0} for i in range(60)]
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        r = await http.post("/api/v1/units/M5/positions", json={"fixes": fixes},
                            headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 60, "problems": []}
        again = await http.post("/api/v1/units/M5/positions", json={"fixes": fixes[:2]},
                                headers={"Authorization": f"Bearer {token}"})
        assert [p["reason"] for p in again.json()["problems"]] == ["out_of_order"] * 2
        wrong_unit = await http.post("/api/v1/units/E1/positions", json={"fixes": fixes[:1]},
                                     headers={"Authorization": f"Bearer {token}"})
        assert wrong_unit.status_code == 403
        await live.gateway.avl.writer.flush()
        analyst = await board_token(pool, app_secret(live), role="analyst", agency="A")
        params = {"from": (t0 + timedelta(seconds=10)).isoformat(),
                  "to": (t0 + timedelta(seconds=19)).isoformat()}
        track = await http.get("/api/v1/units/M5/track", params=params,
                               headers={"Authorization": f"Bearer {analyst}"})
        assert track.status_code == 200, track.text
        body = track.json()
        assert [round(f["lat"], 3) for f in body["fixes"]] == [round(37.0 + i / 1000, 3)
                                                                for i in range(10, 20)]
        assert body["truncated"] is False
        dispatcher = await board_token(pool, app_secret(live), role="dispatcher")
        denied = await http.get("/api/v1/units/M5/track", params=params,
                                headers={"Authorization": f"Bearer {dispatcher}"})
        assert denied.status_code == 403
        other_agency = await board_token(pool, app_secret(live), role="supervisor", agency="B")
        hidden = await http.get("/api/v1/units/M5/track", params=params,
                                headers={"Authorization": f"Bearer {other_agency}"})
        assert hidden.status_code == 404


async def test_revoked_token_closes_the_socket(live: RunningApp) -> None:
    pool = live.pool
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    mdt = StreamClient(live.ws_url + "/ws/unit/E1", await device_token(pool, "E1"))
    keep = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    for c in (board, mdt, keep):
        await c.connect()
    await pool.execute("UPDATE sessions SET revoked_at = now() WHERE id = ("
                       "SELECT s.id FROM sessions s ORDER BY created_at LIMIT 1)")
    await pool.execute("UPDATE device_tokens SET revoked_at = now()")
    assert await board.wait_closed() == 4401
    assert await mdt.wait_closed() == 4401
    assert board.close_reason == "token_revoked"
    await asyncio.sleep(0.5)  # longer than a re-check period: the valid one stays open
    assert keep.close_code is None
    await keep.close()


async def test_expired_session_is_found_by_the_periodic_recheck(live: RunningApp) -> None:
    """Expiry sends no NOTIFY: the periodic re-check (0.3 s here) must catch it."""
    pool = live.pool
    board = StreamClient(live.ws_url + "/ws/board", await board_token(pool, app_secret(live)))
    await board.connect()
    await pool.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert await board.wait_closed() == 4401


async def test_token_renewal_on_an_open_socket(live: RunningApp) -> None:
    from cad.security.tokens import issue_access_token

    pool = live.pool
    token = await board_token(pool, app_secret(live))
    board = StreamClient(live.ws_url + "/ws/board", token)
    await board.connect()
    row = await pool.fetchrow("SELECT id::text AS sid, user_id::text AS uid FROM sessions")
    rt = live.security
    fresh = issue_access_token(rt.secret, user_id=row["uid"], session_id=row["sid"],
                               role="dispatcher", now=rt.clock(), ttl_s=600)
    await board.send({"type": "auth", "access_token": fresh})
    await board.wait_for(lambda c: any(m["type"] == "auth_ok" for m in c.messages))
    other = await board_token(pool, app_secret(live))  # another user's token: refused
    await board.send({"type": "auth", "access_token": other})
    assert await board.wait_closed() == 4401
    assert board.close_reason == "token_invalid"


async def test_stats_endpoint_and_browser_token_in_the_query(live: RunningApp) -> None:
    pool = live.pool
    token = await board_token(pool, app_secret(live))
    # browsers cannot set headers on the handshake: ?access_token=
    import orjson
    import websockets

    async with websockets.connect(f"{live.ws_url}/ws/board?access_token={token}") as ws:
        assert orjson.loads(await ws.recv())["type"] == "snapshot"
        supervisor = await board_token(pool, app_secret(live), role="supervisor")
        async with httpx.AsyncClient(base_url=live.base_url) as http:
            r = await http.get("/api/v1/realtime/stats",
                               headers={"Authorization": f"Bearer {supervisor}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["clients"]["board"] == 1 and body["hub"] == "MemoryHub"
            denied = await http.get("/api/v1/realtime/stats",
                                    headers={"Authorization": f"Bearer {token}"})
            assert denied.status_code == 403
