"""The event log's promises: commit-ordered ids, nothing rolled back, nothing skipped,
row + event + audit committed together."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import pytest

from cad.errors import Conflict
from cad.uow import RequestContext, audit_now, unit_of_work

CTX = RequestContext(actor="tester", request_id="req-1", client_addr="127.0.0.1", source="console")

WRITERS = 16
TX_PER_WRITER = 40
ROLLBACK_EVERY = 5  # every 5th transaction of each writer rolls back


async def _tail(pool: asyncpg.Pool, stop: asyncio.Event, seen: list[int]) -> None:
    """A reader that polls ``id > cursor`` the way a websocket gateway would."""
    cursor = 0
    async with pool.acquire() as conn:
        while True:
            finished = stop.is_set()
            rows = await conn.fetch("SELECT id FROM event_log WHERE id > $1 ORDER BY id", cursor)
            for r in rows:
                seen.append(r["id"])
                cursor = r["id"]
            if finished and not rows:
                return
            await asyncio.sleep(0)


async def test_tailing_reader_sees_every_committed_event_once_in_order(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE stress_rows (id serial PRIMARY KEY, writer int, n int)")
    committed: list[int] = []
    rolled_back: list[int] = []
    stop = asyncio.Event()
    seen: list[int] = []
    rng = random.Random(7)

    async def raw_writer(w: int) -> None:
        # Draws its event id, then dawdles before committing: without commit-order ids a
        # reader would pass over this id while a later one is already visible.
        async with pool.acquire() as conn:
            for n in range(TX_PER_WRITER):
                tx = conn.transaction()
                await tx.start()
                await conn.execute("INSERT INTO stress_rows (writer, n) VALUES ($1, $2)", w, n)
                eid = await conn.fetchval(
                    "INSERT INTO event_log (type, aggregate_type, aggregate_id, data) "
                    "VALUES ('stress.written', 'stress', $1, $2) RETURNING id", f"{w}:{n}", {"n": n})
                await asyncio.sleep(rng.random() * 0.002)
                if n % ROLLBACK_EVERY == ROLLBACK_EVERY - 1:
                    await tx.rollback()
                    rolled_back.append(eid)
                else:
                    await tx.commit()
                    committed.append(eid)

    async def uow_writer(w: int) -> None:
        for n in range(TX_PER_WRITER):
            try:
                async with unit_of_work(pool, CTX) as uow:
                    await uow.conn.execute("INSERT INTO stress_rows (writer, n) VALUES ($1, $2)", w, n)
                    uow.emit("stress.written", aggregate=("stress", f"{w}:{n}"), data={"n": n})
                    uow.emit("stress.noted", aggregate=("stress", f"{w}:{n}"))
                    if n % ROLLBACK_EVERY == ROLLBACK_EVERY - 1:
                        raise Conflict("rolled back on purpose")
            except Conflict:
                continue
            committed.extend(uow.event_ids)

    reader = asyncio.create_task(_tail(pool, stop, seen))
    writers = [raw_writer(w) if w % 2 else uow_writer(w) for w in range(WRITERS)]
    await asyncio.gather(*writers)
    stop.set()
    await reader

    assert len(seen) == len(set(seen)), "an event was delivered twice"
    assert seen == sorted(seen), "events were delivered out of order"
    assert set(seen) == set(committed), (
        f"missed {sorted(set(committed) - set(seen))[:10]}, "
        f"extra {sorted(set(seen) - set(committed))[:10]}")
    assert not set(seen) & set(rolled_back)
    expected_rows = WRITERS * TX_PER_WRITER * (ROLLBACK_EVERY - 1) // ROLLBACK_EVERY
    assert await pool.fetchval("SELECT count(*) FROM stress_rows") == expected_rows
    # uow writers emit two events per committed transaction, raw writers one.
    assert len(committed) == expected_rows // 2 * 2 + expected_rows // 2


async def test_row_event_and_audit_commit_together(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE things (id int PRIMARY KEY, name text)")
    async with unit_of_work(pool, CTX) as uow:
        await uow.conn.execute("INSERT INTO things VALUES (1, 'a')")
        uow.emit("thing.created", aggregate=("thing", 1), data={"name": "a"}, agency="SFFD")
        uow.audit("thing.create", target="thing:1")
    assert len(uow.event_ids) == 1
    ev = await pool.fetchrow("SELECT * FROM event_log WHERE id = $1", uow.event_ids[0])
    assert ev["type"] == "thing.created"
    assert ev["aggregate_id"] == "1"
    assert ev["data"] == {"name": "a"}
    assert ev["agency"] == "SFFD"
    assert ev["actor"] == "tester" and ev["request_id"] == "req-1"
    audit = await pool.fetchrow("SELECT * FROM audit_log")
    assert (audit["actor"], audit["action"], audit["target"], audit["outcome"]) == (
        "tester", "thing.create", "thing:1", "success")
    assert audit["client_addr"] == "127.0.0.1" and audit["request_id"] == "req-1"


async def test_failed_action_leaves_no_row_no_event_and_a_failure_audit(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE things (id int PRIMARY KEY, name text)")
    ran_after_commit = []

    async def hook() -> None:
        ran_after_commit.append(True)

    with pytest.raises(Conflict):
        async with unit_of_work(pool, CTX) as uow:
            uow.audit("thing.create", target="thing:2")
            uow.after_commit(hook)
            await uow.conn.execute("INSERT INTO things VALUES (2, 'b')")
            uow.emit("thing.created", aggregate=("thing", 2))
            raise Conflict("thing 2 is taken")
    assert await pool.fetchval("SELECT count(*) FROM things") == 0
    assert await pool.fetchval("SELECT count(*) FROM event_log") == 0
    audit = await pool.fetchrow("SELECT outcome, details FROM audit_log")
    assert audit["outcome"] == "failure"
    assert audit["details"]["reason"] == "thing 2 is taken"
    assert ran_after_commit == []


async def test_after_commit_hooks_run_after_commit(pool: asyncpg.Pool) -> None:
    visible_from_hook: list[int] = []

    async def hook() -> None:
        # A fresh connection sees the event: the hook runs only once it is committed.
        visible_from_hook.append(await pool.fetchval("SELECT count(*) FROM event_log"))

    async with unit_of_work(pool, CTX) as uow:
        uow.emit("thing.created", aggregate=("thing", 3))
        uow.after_commit(hook)
    assert visible_from_hook == [1]


async def test_logs_are_append_only(pool: asyncpg.Pool) -> None:
    async with unit_of_work(pool, CTX) as uow:
        uow.emit("thing.created", aggregate=("thing", 1))
        uow.audit("thing.create", target="thing:1")
    for sql in ("UPDATE event_log SET type = 'thing.deleted'", "DELETE FROM event_log",
                "TRUNCATE event_log", "UPDATE audit_log SET actor = 'someone else'",
                "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute(sql)
    assert await pool.fetchval("SELECT count(*) FROM event_log") == 1
    assert await pool.fetchval("SELECT actor FROM audit_log") == "tester"


async def test_event_types_must_be_dotted_past_tense_names(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with unit_of_work(pool, CTX) as uow:
            uow.emit("NotAnEventName", aggregate=("thing", 1))
    assert await pool.fetchval("SELECT count(*) FROM event_log") == 0


async def test_standalone_audit_record(pool: asyncpg.Pool) -> None:
    await audit_now(pool, CTX, "caller.read", target="incident:9", details={"fields": ["phone"]})
    row = await pool.fetchrow("SELECT action, target, details FROM audit_log")
    assert dict(row) == {"action": "caller.read", "target": "incident:9",
                         "details": {"fields": ["phone"]}}


async def test_a_deadlock_victim_is_run_again_and_the_last_failure_propagates() -> None:
    from cad.uow import TRANSIENT_ATTEMPTS, retry_transient

    calls: list[int] = []

    @retry_transient
    async def action(*, fail_times: int) -> str:
        calls.append(1)
        if len(calls) <= fail_times:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await action(fail_times=TRANSIENT_ATTEMPTS - 1) == "done"
    assert len(calls) == TRANSIENT_ATTEMPTS
    calls.clear()
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await action(fail_times=TRANSIENT_ATTEMPTS)
    assert len(calls) == TRANSIENT_ATTEMPTS
