"""An audit trail the server cannot erase (migrations/0007_db_roles.sql).

Every tamper runs twice on the same seeded chain: once as the server's own database role
(cad_app), which the database must refuse, and once as a superuser (who bypasses triggers
with session_replication_role), which ``verify`` must name. ``NEEDS_WITNESS`` says which
tampers only a chain head witnessed outside the database exposes: a superuser can leave a
shorter or recomputed chain that is valid by itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from cad import db
from cad.security import audit, witness
from cad.settings import Settings
from cad.uow import RequestContext, audit_now
from tests.security.test_audit import CTX, _seed, seed_history
from tests.support import running_app

Tamper = Callable[[asyncpg.Connection], Awaitable[None]]


def app_role_url(database_url: str) -> str:
    """The URL the server's pool uses for this database (cad.db.server_url)."""
    return db.server_url(database_url, use_app_role=True,
                         app_password=os.environ.get("CAD_DB_APP_PASSWORD") or None)


@pytest.fixture
async def app_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(app_role_url(database_url), min_size=1, max_size=2)
    try:
        yield p
    finally:
        await p.close()


async def _hash(conn: asyncpg.Connection, seq: int) -> str:
    h: str = await conn.fetchval("SELECT hash FROM audit_log WHERE seq = $1", seq)
    return h


# --- the tampers, each on a chain of 8 entries -------------------------------------------------

async def edit(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE audit_log SET outcome = 'failure' WHERE seq = 4")


async def delete(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM audit_log WHERE seq = 3")


async def reorder(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE audit_log SET seq = -1 WHERE seq = 5")
    await conn.execute("UPDATE audit_log SET seq = 5 WHERE seq = 6")
    await conn.execute("UPDATE audit_log SET seq = 6 WHERE seq = -1")


async def insert(conn: asyncpg.Connection) -> None:
    """A forged entry with a correct hash, linked to entry 4, slipped in as seq 5."""
    prev = await _hash(conn, 4)
    at = datetime.now(UTC)
    forged = audit.entry_hash(prev, at=at, actor="tester", action="thing.touch", target="x",
                              outcome="success", request_id=None, client_addr=None,
                              details_text="{}")
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, target, outcome, details, seq, prev_hash, "
        "hash) VALUES ($1, 'tester', 'thing.touch', 'x', 'success', '{}', -1, $2, $3)",
        at, prev, forged)
    await conn.execute("UPDATE audit_log SET seq = -seq WHERE seq >= 5")
    await conn.execute("UPDATE audit_log SET seq = -seq + 1 WHERE seq < -1")
    await conn.execute("UPDATE audit_log SET seq = 5 WHERE seq = -1")


async def tail_delete(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM audit_log WHERE seq >= 7")


async def truncate(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE audit_log")


async def prefix_delete_forged_anchor(conn: asyncpg.Connection) -> None:
    h4 = await _hash(conn, 4)
    await conn.execute("DELETE FROM audit_log WHERE seq <= 4")
    await conn.execute("INSERT INTO audit_chain_anchor (seq, hash, pruned, cutoff) "
                       "VALUES (4, $1, 4, clock_timestamp() - interval '400 days')", h4)


async def full_erase_with_anchor(conn: asyncpg.Connection) -> None:
    """The reported defect, step by step: an anchor at the head, the retention switch the
    old trigger honoured, then everything deleted."""
    h8 = await _hash(conn, 8)
    await conn.execute("INSERT INTO audit_chain_anchor (seq, hash, pruned, cutoff, entry_seq) "
                       "VALUES (8, $1, 8, clock_timestamp() - interval '400 days', 9)", h8)
    await conn.execute("SET LOCAL cad.audit_retention = 'on'")
    await conn.execute("DELETE FROM audit_log")


async def rewrite_recomputed(conn: asyncpg.Connection) -> None:
    """Entries 5..8 replaced by others that the database's own append function hashes."""
    await conn.execute("DELETE FROM audit_log WHERE seq >= 5")
    forger = RequestContext(actor="someone-else", request_id=None, client_addr=None)
    for i in range(4):
        await audit_now(conn, forger, "thing.touch", target=f"forged:{i}")


# name -> (tamper, what verify names without a witness, what it names with the head witnessed)
TAMPERS: dict[str, tuple[Tamper, list[tuple[str, int]], list[tuple[str, int]]]] = {
    "edit": (edit, [("edited", 4)], [("edited", 4)]),
    "delete": (delete, [("deleted", 4)], [("deleted", 4)]),
    "reorder": (reorder, [("reordered", 5)], [("reordered", 5)]),
    # The witnessed head's position now holds another entry's hash.
    "insert": (insert, [("inserted", 5)], [("inserted", 5), ("rewritten", 8)]),
    "tail_delete": (tail_delete, [], [("truncated", 8)]),
    "truncate": (truncate, [], [("truncated", 8)]),
    "prefix_delete_forged_anchor": (prefix_delete_forged_anchor, [("anchor", 4)], [("anchor", 4)]),
    "full_erase_with_anchor": (full_erase_with_anchor, [("anchor", 8)], [("anchor", 8)]),
    "rewrite_recomputed": (rewrite_recomputed, [], [("rewritten", 8)]),
}
NEEDS_WITNESS = {name for name, (_, alone, _) in TAMPERS.items() if not alone}


def test_which_tampers_need_the_witness() -> None:
    assert NEEDS_WITNESS == {"tail_delete", "truncate", "rewrite_recomputed"}


async def _verify(pool: asyncpg.Pool, ws: list[witness.Witness]) -> audit.VerifyResult:
    async with pool.acquire() as conn:
        return await audit.verify(conn, ws)


@pytest.mark.parametrize("name", list(TAMPERS))
async def test_tamper_is_refused_to_the_server_role_and_named_when_done_as_superuser(
        name: str, pool: asyncpg.Pool, app_pool: asyncpg.Pool, tmp_path: Path) -> None:
    tamper, alone, witnessed = TAMPERS[name]
    await _seed(pool, 8)
    path = tmp_path / "witness.jsonl"
    head = await witness.witness_once(pool, path, None)
    assert head is not None and head.seq == 8
    before = await pool.fetch("SELECT * FROM audit_log ORDER BY seq")

    # As the server's role: the database refuses, and nothing changed.
    assert await app_pool.fetchval("SELECT current_user") == "cad_app"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with app_pool.acquire() as conn, conn.transaction():
            await tamper(conn)
    assert await pool.fetch("SELECT * FROM audit_log ORDER BY seq") == before
    assert await pool.fetchval("SELECT count(*) FROM audit_chain_anchor") == 0
    assert (await _verify(pool, witness.read(path))).ok

    # As a superuser, triggers bypassed: verify names it (with the witness where it must).
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await tamper(conn)
    without = await _verify(pool, [])
    assert [(p.kind, p.seq) for p in without.problems] == alone, without.problems
    with_witness = await _verify(pool, witness.read(path))
    assert [(p.kind, p.seq) for p in with_witness.problems] == witnessed, with_witness.problems


async def test_server_role_cannot_reach_around_the_privileges(pool: asyncpg.Pool,
                                                             app_pool: asyncpg.Pool) -> None:
    await _seed(pool, 3)
    refused = [
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_log_immutable ON audit_log",
        "SET session_replication_role = replica",
        ("CREATE OR REPLACE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql "
         "AS $$ BEGIN RETURN OLD; END $$"),
        "UPDATE audit_chain_anchor SET seq = 0",
        "UPDATE audit_policy SET retention_days = 1",
        ("INSERT INTO audit_log (actor, action, outcome, seq, prev_hash, hash) "
         "VALUES ('x', 'y', 'success', 4, 'a', 'b')"),
        "CREATE TABLE t (x int)",
        "SELECT cad_secure_schema()",
        "RESET ROLE; DELETE FROM audit_log",
        "SET ROLE cad_owner",
        "SET ROLE postgres",
    ]
    for sql in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with app_pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL cad.audit_prune_through = '100'")
                await conn.execute(sql)
    owner = await pool.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'")
    assert owner == "cad_owner"
    assert not await app_pool.fetchval(
        "SELECT rolsuper OR pg_has_role('cad_app', 'cad_owner', 'MEMBER') FROM pg_roles "
        "WHERE rolname = current_user")
    # What it may do: append through the one function, and read.
    await audit_now(app_pool, CTX, "thing.touch", target="allowed")
    assert await app_pool.fetchval("SELECT max(seq) FROM audit_log") == 4
    assert (await _verify(app_pool, [])).ok


async def test_prune_refuses_a_cutoff_younger_than_the_retention(
        pool: asyncpg.Pool, app_pool: asyncpg.Pool) -> None:
    await seed_history(pool, 4, days_ago=400)
    await _seed(pool, 2)
    async with app_pool.acquire() as conn:
        with pytest.raises(audit.RetentionRefused, match="365 days"):
            await audit.prune(conn, retention_days=30)
        with pytest.raises(asyncpg.InvalidParameterValueError):
            await conn.fetchval("SELECT audit_prune(clock_timestamp())")
        assert await pool.fetchval("SELECT count(*) FROM audit_log") == 6
        assert await audit.prune(conn, retention_days=365) == 4
    entry = await pool.fetchrow("SELECT seq, actor, details FROM audit_log WHERE action = 'audit.prune'")
    assert (entry["seq"], entry["actor"]) == (7, "retention")
    assert (entry["details"]["through_seq"], entry["details"]["deleted"],
            entry["details"]["retention_days"]) == (4, 4, 365)
    assert (await _verify(pool, [])).ok
    # Verified against a longer retention than the prune used: named.
    async with pool.acquire() as conn:
        longer = await audit.verify(conn, retention_days=500)
    assert [(p.kind, p.seq) for p in longer.problems] == [("retention", 4)]


async def test_a_prune_after_the_owner_lowered_the_floor_is_named(pool: asyncpg.Pool) -> None:
    """A superuser lowers the floor to a day and prunes last week's entries: the chain and its
    anchor are consistent, but the prune's own entry shows a cutoff younger than the
    retention the operator configured."""
    await seed_history(pool, 3, days_ago=7)
    await _seed(pool, 1)
    await pool.execute("UPDATE audit_policy SET retention_days = 1")
    async with pool.acquire() as conn:
        assert await audit.prune(conn, retention_days=1) == 3
        result = await audit.verify(conn, retention_days=365)
    assert [(p.kind, p.seq) for p in result.problems] == [("retention", 3)]


async def test_a_witness_after_the_cutoff_shows_younger_entries_were_pruned(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    """Entries restamped as old (hashes recomputed) and then pruned by the genuine function:
    the chain, the anchor and the prune's entry agree, but a witness recorded ten days ago
    saw the chain end at seq 2, so entries 3 and 4 were written after the cutoff."""
    await seed_history(pool, 4, days_ago=400)
    path = tmp_path / "witness.jsonl"
    witness.append(path, witness.Witness(2, await pool.fetchval(
        "SELECT hash FROM audit_log WHERE seq = 2"),
        (datetime.now(UTC) - timedelta(days=10)).isoformat()))
    async with pool.acquire() as conn:
        assert await audit.prune(conn, retention_days=365) == 4
    assert (await _verify(pool, [])).ok
    result = await _verify(pool, witness.read(path))
    assert [(p.kind, p.seq) for p in result.problems] == [("retention", 4)]


async def test_later_prunes_keep_earlier_anchors_valid(pool: asyncpg.Pool,
                                                       app_pool: asyncpg.Pool) -> None:
    await seed_history(pool, 2, days_ago=500)
    async with app_pool.acquire() as conn:
        assert await audit.prune(conn, retention_days=365) == 2  # its entry is seq 3
    await seed_history(pool, 2, days_ago=450)
    async with app_pool.acquire() as conn:
        # A prefix through seq 5: the first prune's own entry (seq 3) goes with it.
        assert await audit.prune(conn, retention_days=365) == 3
    rows = await pool.fetch("SELECT seq, entry_seq FROM audit_chain_anchor ORDER BY seq")
    assert [(r["seq"], r["entry_seq"]) for r in rows] == [(2, 3), (5, 6)]
    result = await _verify(pool, [])
    assert result.ok, result.problems
    assert (result.anchor_seq, result.first_seq, result.last_seq) == (5, 6, 6)


async def test_cli_retention_floor_is_the_owners_and_prune_below_it_is_refused(
        database_url: str, pool: asyncpg.Pool, tmp_path: Path) -> None:
    import asyncio

    from tests.security.test_audit import _cad

    loop = asyncio.get_running_loop()

    def run(args: list[str], url: str = database_url) -> tuple[int, str]:
        done = _cad(args, url, tmp_path)
        return done.returncode, " ".join((done.stdout + done.stderr).split())

    assert await loop.run_in_executor(None, run, ["audit", "retention"]) == (
        0, "audit retention floor: 365 days")
    code, text = await loop.run_in_executor(None, run, ["audit", "retention", "--days", "400"])
    assert (code, text) == (0, "audit retention floor: 400 days")
    code, text = await loop.run_in_executor(
        None, run, ["audit", "retention", "--days", "1"], app_role_url(database_url))
    assert code == 1 and "owner" in text, text
    assert await pool.fetchval("SELECT retention_days FROM audit_policy") == 400
    code, text = await loop.run_in_executor(None, run, ["audit", "prune", "--days", "365"])
    assert code == 1 and "refused" in text and "400 days" in text, text
    change = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'audit.retention'")
    assert change["details"] == {"retention_days": 400} and change["actor"].startswith("cli:")


async def test_the_running_server_connects_as_the_role_that_owns_nothing(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    async with running_app(settings) as running:
        assert await running.pool.fetchval("SELECT current_user") == "cad_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await running.pool.execute("DELETE FROM audit_log")
    assert "database_role_can_erase_audit" not in capsys.readouterr().err
    # Opted out: the pool is the URL's superuser, and the log says what that allows.
    async with running_app(settings.model_copy(update={"db_use_app_role": False})) as running:
        assert await running.pool.fetchval("SELECT current_user") != "cad_app"
    warned = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if "database_role_can_erase_audit" in line]
    assert len(warned) == 1 and warned[0]["superuser"] is True


async def test_upgrading_hands_existing_objects_to_the_owner(empty_database_url: str,
                                                            tmp_path: Path) -> None:
    """A database the old server used (migrated to 0006, a number sequence the server made
    itself, a pruned chain) keeps working after 0007 with the server as cad_app."""
    import shutil

    from cad.settings import REPO_ROOT

    before = tmp_path / "migrations"
    before.mkdir()
    for f in sorted((REPO_ROOT / "migrations").glob("000[1-6]_*.sql")):
        shutil.copy(f, before / f.name)
    conn = await db.connect(empty_database_url)
    try:
        assert len(await db.migrate(conn, before)) == 6
        await conn.execute('CREATE SEQUENCE "incident_no_sffd_2025"')
        later = sorted(f.name for f in (REPO_ROOT / "migrations").glob("*.sql")
                       if f.name >= "0007")
        assert await db.migrate(conn) == later and later[0] == "0007_db_roles.sql"
        owners = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'v')")
        assert [r["owner"] for r in owners] == ["cad_owner"]
    finally:
        await conn.close()
    app = await db.connect(app_role_url(empty_database_url))
    try:
        assert await app.fetchval("SELECT nextval('incident_no_sffd_2025')") == 1
        await app.execute("SELECT cad_create_sequence('incident_no_sffd_2026')")
        assert await app.fetchval("SELECT nextval('incident_no_sffd_2026')") == 1
        assert await db.migrate(app) == []  # nothing pending: the server's role may check
    finally:
        await app.close()
