"""Every incident write can be retried with an Idempotency-Key: intake, narrative, link, merge
and close. The key is claimed in the change's own transaction, so a retry replays the stored
answer exactly once the change committed, and runs afresh if it did not; the same key with
another body is a 422 naming the header. Tested in-process and across a SIGKILL of a real
server in its own process."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.auth import make_user
from tests.dispatch_fixtures import Api
from tests.server_process import TEST_JWT_SECRET, ServerProcess

KEY = "Idempotency-Key"


def _intake(i: int | str, **extra: Any) -> dict[str, Any]:
    return {"agency": "SFFD", "incident_type": "MED",
            "location": {"lat": 37.70 + 0.001 * (zlib.crc32(str(i).encode()) % 50),
                         "lon": -122.45},
            "narrative": f"call {i}", **extra}


async def _counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {
        "incidents": await pool.fetchval("SELECT count(*) FROM incidents"),
        "narrative": await pool.fetchval("SELECT count(*) FROM incident_narrative"),
        "links": await pool.fetchval("SELECT count(*) FROM incident_links"),
        "events": await pool.fetchval("SELECT count(*) FROM event_log"),
    }


def _assert_refused_reuse(r: httpx.Response) -> None:
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [f"header.{KEY}"]


async def test_each_incident_write_replays_with_the_same_key(api: Api) -> None:
    disp = await api.as_("dispatcher")
    pool = api.running.pool

    async def twice(path: str, body: dict[str, Any], key: str, status: int) -> dict[str, Any]:
        first = await disp.post(path, json=body, headers={KEY: key})
        assert first.status_code == status, first.text
        before = await _counts(pool)
        again = await disp.post(path, json=body, headers={KEY: key})
        assert (again.status_code, again.json()) == (status, first.json())
        assert await _counts(pool) == before  # nothing written twice, no event emitted again
        _assert_refused_reuse(await disp.post(path, json=_other(body), headers={KEY: key}))
        return first.json()

    a = await twice("/api/v1/incidents", _intake("a"), "intake-a", 201)
    b = await twice("/api/v1/incidents", _intake("b"), "intake-b", 201)
    c = await twice("/api/v1/incidents", _intake("c"), "intake-c", 201)
    await twice(f"/api/v1/incidents/{a['id']}/narrative", {"text": "smoke seen"}, "n-1", 201)
    await twice(f"/api/v1/incidents/{a['id']}/link", {"other_id": b["id"], "kind": "related"},
                "l-1", 200)
    merged = await twice(f"/api/v1/incidents/{c['id']}/merge", {"into_id": a["id"]}, "m-1", 200)
    assert merged["id"] == a["id"]
    closed = await twice(f"/api/v1/incidents/{b['id']}/close", {"disposition": "REPORT"},
                         "c-1", 200)
    assert closed["status"] == "closed"
    # Without a key, a repeated close is what it always was: a conflict.
    assert (await disp.post(f"/api/v1/incidents/{b['id']}/close",
                            json={"disposition": "REPORT"})).status_code == 409
    # A key belongs to its caller: another dispatcher's same key is another request.
    other = await api.as_("dispatcher", fresh=True)
    r = await other.post("/api/v1/incidents", json=_intake("a"), headers={KEY: "intake-a"})
    assert r.status_code == 201 and r.json()["id"] != a["id"]
    # A malformed key is a 422 naming the header, before anything runs.
    before = await _counts(pool)
    r = await disp.post("/api/v1/incidents", json=_intake("z"), headers={KEY: "x" * 201})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == f"header.{KEY}"
    assert await _counts(pool) == before


def _other(body: dict[str, Any]) -> dict[str, Any]:
    """The same request with one field changed."""
    if "narrative" in body:
        return {**body, "narrative": body["narrative"] + " (changed)"}
    if "text" in body:
        return {"text": body["text"] + " (changed)"}
    if "kind" in body:
        return {**body, "kind": "duplicate" if body["kind"] == "related" else "related"}
    if "disposition" in body:
        return {"disposition": "NO_MERIT"}
    return {"into_id": body["into_id"] + 1000}


async def test_a_refused_request_leaves_its_key_free(api: Api) -> None:
    """Nothing is stored for a request that failed: its key runs the (corrected) retry."""
    disp = await api.as_("dispatcher")
    a = (await disp.post("/api/v1/incidents", json=_intake("a"))).json()
    r = await disp.post(f"/api/v1/incidents/{a['id'] + 99}/narrative", json={"text": "x"},
                        headers={KEY: "k"})
    assert r.status_code == 404
    r = await disp.post(f"/api/v1/incidents/{a['id']}/close", json={"disposition": "REPORT"},
                        headers={KEY: "k"})
    assert r.status_code == 200, r.text
    r = await disp.post("/api/v1/incidents", json=_intake("b", received_at="0001-01-01T00:00:00Z"),
                        headers={KEY: "k2"})
    assert r.status_code == 422
    r = await disp.post("/api/v1/incidents", json=_intake("b"), headers={KEY: "k2"})
    assert r.status_code == 201, r.text


# --- across a SIGKILL ------------------------------------------------------------------------

@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(database_url, tmp_path, extra_env={
        "CAD_TIMER_SWEEP_INTERVAL_S": "0", "CAD_RETENTION_SWEEP_INTERVAL_S": "0"})
    try:
        yield s
    finally:
        s.stop()


async def _dispatcher_headers(pool: asyncpg.Pool) -> dict[str, str]:
    """A dispatcher with a live session and an access token signed with the server's key."""
    from cad.security.tokens import issue_access_token, new_refresh_token, token_hash

    username, _ = await make_user(pool, "dispatcher", agency="SFFD")
    user_id = await pool.fetchval("SELECT id::text FROM users WHERE username = $1", username)
    session_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_seen_at, expires_at) "
        "VALUES ($1::uuid, $2::uuid, $3, $4::timestamptz, $4, $4 + interval '12 hours')",
        session_id, user_id, token_hash(new_refresh_token(session_id)), now)
    token = issue_access_token(TEST_JWT_SECRET, user_id=user_id, session_id=session_id,
                               role="dispatcher", now=now, ttl_s=3600)
    return {"Authorization": f"Bearer {token}"}


BURST = 24


async def test_retries_after_a_sigkill_replay_and_never_duplicate(
        server: ServerProcess, pool: asyncpg.Pool) -> None:
    headers = await _dispatcher_headers(pool)
    await asyncio.to_thread(server.start)
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        # Every kind of write, answered before the crash.
        done: list[tuple[str, dict[str, Any], str, httpx.Response]] = []

        async def write(path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
            r = await c.post(path, json=body, headers={KEY: key})
            assert r.status_code in (200, 201), r.text
            done.append((path, body, key, r))
            return r.json()

        a = await write("/api/v1/incidents", _intake("a"), "a")
        b = await write("/api/v1/incidents", _intake("b"), "b")
        m = await write("/api/v1/incidents", _intake("m"), "m")
        await write(f"/api/v1/incidents/{a['id']}/narrative", {"text": "second caller"}, "n")
        await write(f"/api/v1/incidents/{a['id']}/link", {"other_id": b["id"]}, "l")
        await write(f"/api/v1/incidents/{m['id']}/merge", {"into_id": a["id"]}, "mg")
        await write(f"/api/v1/incidents/{b['id']}/close", {"disposition": "REPORT"}, "c")

        # A burst of intakes, killed while under way: some answered, some committed with the
        # answer lost, some never committed.
        base = await pool.fetchval("SELECT count(*) FROM incidents")
        burst = [asyncio.create_task(c.post("/api/v1/incidents", json=_intake(f"burst-{i}"),
                                            headers={KEY: f"burst-{i}"})) for i in range(BURST)]
        while (await pool.fetchval("SELECT count(*) FROM incidents") < base + BURST // 4
               and not all(t.done() for t in burst)):
            await asyncio.sleep(0.002)  # polls the database for the commits, then kills
        server.kill()
        first: dict[int, httpx.Response | BaseException] = {}
        for i, t in enumerate(burst):
            try:
                first[i] = await t
            except httpx.HTTPError as exc:
                first[i] = exc
    committed_before = await pool.fetchval("SELECT count(*) FROM incidents") - base
    assert BURST // 4 <= committed_before <= BURST
    counts = await _counts(pool)

    await asyncio.to_thread(server.start)  # same port, same database
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        for path, body, key, original in done:
            again = await c.post(path, json=body, headers={KEY: key})
            assert (again.status_code, again.json()) == (original.status_code, original.json()), path
        assert await _counts(pool) == counts  # replays wrote nothing
        retried = await asyncio.gather(*[
            c.post("/api/v1/incidents", json=_intake(f"burst-{i}"), headers={KEY: f"burst-{i}"})
            for i in range(BURST)])
        for i, r in enumerate(retried):
            assert r.status_code == 201, r.text
            f = first[i]
            if isinstance(f, httpx.Response) and f.status_code == 201:
                assert r.json() == f.json()  # the answer the client already had
        # Exactly one incident per key, and it is the one every retry answered with.
        rows = await pool.fetch(
            "SELECT n.text, array_agg(n.incident_id) AS ids FROM incident_narrative n "
            "WHERE n.text LIKE 'call burst-%' GROUP BY n.text")
        by_call = {r["text"]: r["ids"] for r in rows}
        assert len(by_call) == BURST
        for i, r in enumerate(retried):
            assert by_call[f"call burst-{i}"] == [r.json()["id"]]
        assert await pool.fetchval("SELECT count(*) FROM incidents") == base + BURST
        _assert_refused_reuse(await c.post("/api/v1/incidents", json=_intake("other"),
                                           headers={KEY: "burst-0"}))
