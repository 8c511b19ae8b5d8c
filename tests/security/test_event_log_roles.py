"""The event log the server cannot erase (migrations/0019_event_log_owner_prune.sql): the
server's role (cad_app) appends and reads events but can neither change nor delete one, with
or without the pruning bound; the owner prunes only through event_log_prune, only a prefix,
and never younger than the policy's minimum retention; `cad db prune-events` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cad import db
from tests.security.test_audit_roles import app_role_url


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def _seed(conn: asyncpg.Connection) -> list[int]:
    """Five events 200 days old, then three from now: their ids in order."""
    old = datetime.now(UTC) - timedelta(days=200)
    ids = []
    for i in range(8):
        ids.append(await conn.fetchval(
            "INSERT INTO event_log (type, aggregate_type, aggregate_id, agency, actor, data, "
            "occurred_at) VALUES ('incident.updated', 'incident', '1', 'SFFD', 'test', $1, $2) "
            "RETURNING id", f'{{"n": {i}}}', old if i < 5 else datetime.now(UTC)))
    return ids


async def test_the_servers_role_can_append_but_never_change_or_delete(
        database_url: str, owner: asyncpg.Connection) -> None:
    ids = await _seed(owner)
    app = await db.connect(app_role_url(database_url))
    try:
        assert await app.fetchval("SELECT count(*) FROM event_log") == 8
        new_id = await app.fetchval(
            "INSERT INTO event_log (type, aggregate_type, aggregate_id, data) "
            "VALUES ('incident.updated', 'incident', '1', '{}') RETURNING id")
        assert new_id > ids[-1]
        for sql in ("DELETE FROM event_log WHERE id = $1",
                    "UPDATE event_log SET type = 'forged' WHERE id = $1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(sql, ids[0])
        # the bound event_log_prune sets does not open the door to the server's role
        async with app.transaction():
            await app.execute("SELECT set_config('cad.event_prune_through', $1, true)",
                              str(ids[-1]))
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("DELETE FROM event_log WHERE id = $1", ids[0])
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app.fetchval("SELECT event_log_prune(now() - interval '1 year')")
        # the old session switch is gone
        async with app.transaction():
            await app.execute("SET LOCAL cad.event_retention = 'on'")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("DELETE FROM event_log WHERE id = $1", ids[0])
    finally:
        await app.close()
    assert await owner.fetchval("SELECT count(*) FROM event_log") == 9


async def test_the_owner_prunes_a_prefix_only_through_the_function(
        owner: asyncpg.Connection) -> None:
    ids = await _seed(owner)
    # even the owner cannot delete a row directly (the trigger), nor prune recent events
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner.execute("DELETE FROM event_log WHERE id = $1", ids[0])
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="younger than the retention"):
        await owner.fetchval("SELECT event_log_prune(now() - interval '30 days')")
    assert await owner.fetchval("SELECT event_log_prune(now() - interval '100 days')") == 5
    assert await owner.fetch("SELECT id FROM event_log ORDER BY id") == [
        (i,) for i in ids[5:]]
    assert await owner.fetchval("SELECT event_log_prune(now() - interval '100 days')") == 0
    # the bound does not outlive the transaction that set it
    assert (await owner.fetchval("SELECT current_setting('cad.event_prune_through', true)")
            or "") == ""


def test_cad_db_prune_events_runs_as_the_owner(database_url: str) -> None:
    async def seed() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await _seed(conn)
        finally:
            await conn.close()

    import asyncio
    asyncio.run(seed())
    env = {**os.environ, "CAD_DATABASE_URL": database_url}
    env.pop("CAD_MIGRATION_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "cad", "db", "prune-events",
                           "--older-than-days", "120"], env=env, capture_output=True, check=False,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pruned 5 events" in done.stdout
    refused = subprocess.run([sys.executable, "-m", "cad", "db", "prune-events",
                              "--older-than-days", "7"], env=env, capture_output=True, check=False,
                             text=True, timeout=120)
    assert refused.returncode == 1
    assert "younger than the retention of 90 days" in " ".join(refused.stderr.split())
