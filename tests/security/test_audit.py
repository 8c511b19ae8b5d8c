"""The hash-chained audit trail: appends chain, tampering of each kind is detected and named,
pruning keeps the chain verifiable, the CLI verifies and exports."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from cad.security import audit
from cad.settings import REPO_ROOT
from cad.uow import RequestContext, audit_now, unit_of_work
from tests.support import RunningApp

CTX = RequestContext(actor="tester", request_id="r1", client_addr="10.0.0.7", source="console")


async def _seed(pool: asyncpg.Pool, n: int = 8) -> None:
    for i in range(n):
        await audit_now(pool, CTX, "thing.touch", target=f"thing:{i}",
                        details={"i": i, "x": 1.5, "note": "ünïcode \"q\" \n"})


async def seed_history(pool: asyncpg.Pool, n: int, *, days_ago: float) -> None:
    """``n`` entries as if appended ``days_ago`` days ago (chained to the head like any append),
    so that retention can be exercised on a real clock: written as the superuser, since
    the server's role appends only through audit_append, which stamps the time itself."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", audit.AUDIT_CHAIN_LOCK_KEY)
        head = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (head["seq"], head["hash"]) if head else (0, audit.GENESIS_HASH)
        for i in range(n):
            at = datetime.now(UTC) - timedelta(days=days_ago, seconds=n - i)
            h = audit.entry_hash(prev, at=at, actor="tester", action="thing.old", target=f"old:{i}",
                                 outcome="success", request_id=None, client_addr=None,
                                 details_text="{}")
            seq += 1
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action, target, outcome, details, seq, "
                "prev_hash, hash) VALUES ($1, 'tester', 'thing.old', $2, 'success', '{}', $3, "
                "$4, $5)", at, f"old:{i}", seq, prev, h)
            prev = h


async def _verify(pool: asyncpg.Pool) -> audit.VerifyResult:
    async with pool.acquire() as conn:
        return await audit.verify(conn)


async def _tamper(pool: asyncpg.Pool, *sql: str) -> None:
    """What an attacker with database superuser rights can do: bypass the triggers."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for statement in sql:
            await conn.execute(statement)


async def test_entries_are_chained_and_verify(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    rows = await pool.fetch("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq")
    assert [r["seq"] for r in rows] == list(range(1, 9))
    assert rows[0]["prev_hash"] == audit.GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
    result = await _verify(pool)
    assert result.ok, result.problems
    assert (result.entries, result.first_seq, result.last_seq) == (8, 1, 8)
    assert result.head_hash == rows[-1]["hash"]


async def test_python_and_sql_hashes_agree_on_awkward_values(pool: asyncpg.Pool) -> None:
    awkward = RequestContext(actor="o'brien ☃", request_id=None, client_addr=None)
    await audit_now(pool, awkward, "a.b", target=None,
                    details={"z": [1, 2.25, None, True], "a": {"nested": "\t\u0001"},
                             "big": 2**53, "neg": -0.0, "e": 1e-7})
    assert (await _verify(pool)).ok


async def test_concurrent_appends_keep_one_gap_free_chain(pool: asyncpg.Pool) -> None:
    async def writer(w: int) -> None:
        for n in range(15):
            try:
                async with unit_of_work(pool, CTX) as uow:
                    uow.audit("stress.write", target=f"w{w}:{n}")
                    uow.audit("stress.second", target=f"w{w}:{n}")
                    if n % 5 == 4:
                        raise RuntimeError("roll back")  # leaves a 'failure' record instead
            except RuntimeError:
                pass

    await asyncio.gather(*(writer(w) for w in range(8)))
    seqs = [r["seq"] for r in await pool.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == 8 * 15 * 2
    assert (await _verify(pool)).ok


async def test_audit_log_refuses_update_and_delete(pool: asyncpg.Pool) -> None:
    await _seed(pool, 2)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_log WHERE seq = 1")
    with pytest.raises(asyncpg.NotNullViolationError):
        # Any writer but audit_append() lacks the chain fields.
        await pool.execute("INSERT INTO audit_log (actor, action, outcome) VALUES ('x', 'y', 'success')")


async def test_edited_entry_is_named(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, "UPDATE audit_log SET outcome = 'failure' WHERE seq = 4")
    result = await _verify(pool)
    assert [(p.kind, p.seq) for p in result.problems] == [("edited", 4)]


async def test_edited_details_are_detected(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, """UPDATE audit_log SET details = details || '{"i": 99}' WHERE seq = 6""")
    assert [(p.kind, p.seq) for p in (await _verify(pool)).problems] == [("edited", 6)]


async def test_deleted_entry_is_named(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, "DELETE FROM audit_log WHERE seq = 3")
    problems = (await _verify(pool)).problems
    assert [(p.kind, p.seq) for p in problems] == [("deleted", 4)]
    assert "seq 3" in problems[0].detail


async def test_deleted_and_renumbered_is_still_detected(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, "DELETE FROM audit_log WHERE seq = 3",
                  "UPDATE audit_log SET seq = -seq WHERE seq > 3",
                  "UPDATE audit_log SET seq = -seq - 1 WHERE seq < 0")
    problems = (await _verify(pool)).problems
    assert [(p.kind, p.seq) for p in problems] == [("deleted", 3)]


async def test_inserted_entry_is_named(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    # A forged entry with a correct hash, linked to entry 4, slipped in as seq 5.
    prev = await pool.fetchval("SELECT hash FROM audit_log WHERE seq = 4")
    at = datetime.now(UTC)
    forged = audit.entry_hash(prev, at=at, actor="tester", action="thing.touch", target="x",
                              outcome="success", request_id=None, client_addr=None,
                              details_text="{}")
    await _tamper(pool,
                  "UPDATE audit_log SET seq = -seq WHERE seq >= 5",
                  "UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "INSERT INTO audit_log (at, actor, action, target, outcome, details, seq, "
            "prev_hash, hash) VALUES ($1, 'tester', 'thing.touch', 'x', 'success', '{}', 5, "
            "$2, $3)", at, prev, forged)
    problems = (await _verify(pool)).problems
    assert [(p.kind, p.seq) for p in problems] == [("inserted", 5)]


async def test_duplicate_position_is_an_insertion(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, "DROP INDEX audit_log_seq_idx",
                  "INSERT INTO audit_log (actor, action, outcome, seq, prev_hash, hash) "
                  "VALUES ('evil', 'x.y', 'success', 5, 'a', 'b')")
    problems = (await _verify(pool)).problems
    assert [(p.kind, p.seq) for p in problems] == [("inserted", 5)]


async def test_reordered_entries_are_named(pool: asyncpg.Pool) -> None:
    await _seed(pool)
    await _tamper(pool, "UPDATE audit_log SET seq = -1 WHERE seq = 5",
                  "UPDATE audit_log SET seq = 5 WHERE seq = 6",
                  "UPDATE audit_log SET seq = 6 WHERE seq = -1")
    problems = (await _verify(pool)).problems
    assert [(p.kind, p.seq) for p in problems] == [("reordered", 5)]


async def test_pruning_keeps_the_chain_verifiable(pool: asyncpg.Pool) -> None:
    await seed_history(pool, 6, days_ago=400)
    await _seed(pool, 2)
    async with pool.acquire() as conn:
        assert await audit.prune(conn, retention_days=500) == 0  # nothing old enough
        deleted = await audit.prune(conn, retention_days=365)
    assert deleted == 6
    # What remains: the recent entries and the prune's own record, anchored at the last
    # pruned entry and pointing at that record.
    rows = await pool.fetch("SELECT seq, action FROM audit_log ORDER BY seq")
    assert [(r["seq"], r["action"]) for r in rows] == [(7, "thing.touch"), (8, "thing.touch"),
                                                       (9, "audit.prune")]
    anchor = await pool.fetchrow("SELECT seq, pruned, entry_seq FROM audit_chain_anchor")
    assert (anchor["seq"], anchor["pruned"], anchor["entry_seq"]) == (6, 6, 9)
    await _seed(pool, 3)
    result = await _verify(pool)
    assert result.ok, result.problems
    assert (result.anchor_seq, result.first_seq, result.last_seq) == (6, 7, 12)
    # Pruning does not open a door: deleting without it is still refused.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await pool.execute("DELETE FROM audit_chain_anchor")


async def test_export_writes_json_lines(pool: asyncpg.Pool) -> None:
    import io

    await _seed(pool, 3)
    buf = io.StringIO()
    async with pool.acquire() as conn:
        assert await audit.export(conn, buf, after_seq=1) == 2
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [e["seq"] for e in lines] == [2, 3]
    assert {"actor", "action", "target", "at", "client_addr", "outcome", "hash", "prev_hash"} <= set(lines[0])
    assert lines[0]["client_addr"] == "10.0.0.7" and lines[0]["details"]["i"] == 1


def _cad(args: list[str], database_url: str, tmp_path, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_DATA_DIR": str(tmp_path),
           "CAD_LOG_FORMAT": "json"}
    env.pop(("CAD_NEW_USER_PASSWORD"), None)
    return subprocess.run([sys.executable, "-m", "cad", *args], input=stdin, text=True,
                          capture_output=True, env=env, cwd=REPO_ROOT, timeout=120,
                          check=False)


async def test_cli_users_create_audit_verify_and_export(database_url: str, pool: asyncpg.Pool,
                                                        tmp_path) -> None:
    loop = asyncio.get_running_loop()

    def run(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return _cad(args, database_url, tmp_path, stdin)

    created = await loop.run_in_executor(None, run, ["users", "create", "chief", "--role", "admin",
                                                     "--password-stdin"], "a-long-admin-passphrase\n")
    assert created.returncode == 0, created.stderr
    assert "created admin chief" in created.stdout
    short = await loop.run_in_executor(None, run, ["users", "create", "x1", "--role", "admin",
                                                   "--password-stdin"], "short\n")
    assert short.returncode == 1 and "at least" in short.stderr
    nopass = await loop.run_in_executor(None, run, ["users", "create", "x2", "--role", "admin"], "")
    assert nopass.returncode != 0
    unitless = await loop.run_in_executor(None, run, ["users", "create", "m1", "--role",
                                                      "field_unit", "--password-stdin"],
                                          "a-long-unit-passphrase\n")
    assert unitless.returncode == 1 and "unit_id" in unitless.stderr
    assert await pool.fetchval("SELECT count(*) FROM users") == 1

    ok = await loop.run_in_executor(None, run, ["audit", "verify"])
    assert ok.returncode == 0 and "audit chain OK" in ok.stdout, ok.stdout + ok.stderr
    exported = await loop.run_in_executor(None, run, ["audit", "export"])
    assert exported.returncode == 0
    entries = [json.loads(line) for line in exported.stdout.splitlines()]
    assert entries[0]["action"] == "user.create" and entries[0]["actor"].startswith("cli:")

    await _tamper(pool, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 1")
    broken = await loop.run_in_executor(None, run, ["audit", "verify"])
    assert broken.returncode == 1
    assert "edited" in broken.stdout and "seq 1" in broken.stdout


async def test_audit_query_endpoint_is_itself_audited(app: RunningApp, auth_headers) -> None:
    sup = await auth_headers("supervisor")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.get("/api/v1/audit", params={"action": "audit", "limit": 10}, headers=sup)
        assert r.status_code == 200, r.text
        entries = r.json()["entries"]
        assert [e["action"] for e in entries] == ["audit.query"]
        assert entries[0]["details"]["action"] == "audit"
        bad = await c.get("/api/v1/audit", params={"limit": 0, "since": "yesterday"}, headers=sup)
        assert bad.status_code == 422
        admin = await auth_headers("admin")
        v = await c.get("/api/v1/audit/verify", headers=admin)
        assert v.status_code == 200 and v.json()["ok"] is True
