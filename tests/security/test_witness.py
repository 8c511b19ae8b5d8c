"""Chain heads witnessed outside the database (cad.security.witness): deleting the newest
audit entries, or rewriting the tail with recomputed hashes, leaves a valid shorter chain that
only a witness exposes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from cad.security import audit, witness
from cad.uow import RequestContext, audit_now
from tests.security.test_audit import _cad, _seed, _tamper, seed_history
from tests.support import RunningApp


async def _verify(pool: asyncpg.Pool, ws: list[witness.Witness]) -> audit.VerifyResult:
    async with pool.acquire() as conn:
        return await audit.verify(conn, ws)


async def test_head_is_witnessed_only_when_it_moves(pool: asyncpg.Pool, tmp_path) -> None:
    path = tmp_path / "w" / "witness.jsonl"
    assert await witness.witness_once(pool, path, None) is None  # empty chain: nothing
    assert not path.exists()
    await _seed(pool, 3)
    first = await witness.witness_once(pool, path, None)
    assert first is not None and first.seq == 3
    assert await witness.witness_once(pool, path, first) == first  # unchanged: no new line
    await _seed(pool, 2)
    second = await witness.witness_once(pool, path, first)
    assert second is not None and second.seq == 5
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [3, 5]
    assert lines[1]["hash"] == await pool.fetchval("SELECT hash FROM audit_log WHERE seq = 5")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with path.open("a") as fh:
        fh.write('{"seq": 9, "ha')  # a torn last line (crash mid-write) is skipped
    assert [(w.seq, w.hash) for w in witness.read(path)] == [(3, lines[0]["hash"]), (5, lines[1]["hash"])]
    assert (await _verify(pool, witness.read(path))).ok


async def test_deleting_the_newest_entries_is_caught_by_a_witness(pool: asyncpg.Pool, tmp_path) -> None:
    path = tmp_path / "witness.jsonl"
    await _seed(pool, 8)
    await witness.witness_once(pool, path, None)
    await _tamper(pool, "DELETE FROM audit_log WHERE seq >= 7")
    alone = await _verify(pool, [])
    assert alone.ok and alone.last_seq == 6  # the chain by itself cannot tell
    result = await _verify(pool, witness.read(path))
    assert [(p.kind, p.seq) for p in result.problems] == [("truncated", 8)]
    assert "chain now ends at seq 6" in result.problems[0].detail
    assert (result.witnesses_checked, result.witnessed_through) == (1, 8)


async def test_rewriting_the_tail_with_recomputed_hashes_is_caught(pool: asyncpg.Pool, tmp_path) -> None:
    path = tmp_path / "witness.jsonl"
    await _seed(pool, 4)
    await witness.witness_once(pool, path, None)  # witnessed at seq 4
    await _seed(pool, 4)
    w8 = await witness.witness_once(pool, path, None)
    assert w8 is not None and w8.seq == 8
    # Delete 5..8 and write other entries in their place: the database's own append function
    # hashes them, so the chain is valid from end to end.
    await _tamper(pool, "DELETE FROM audit_log WHERE seq >= 5")
    forger = RequestContext(actor="someone-else", request_id=None, client_addr=None)
    for i in range(4):
        await audit_now(pool, forger, "thing.touch", target=f"forged:{i}")
    assert (await _verify(pool, [])).ok
    result = await _verify(pool, witness.read(path))
    assert [(p.kind, p.seq) for p in result.problems] == [("rewritten", 8)]


async def test_pruned_positions_are_not_false_alarms(pool: asyncpg.Pool, tmp_path) -> None:
    path = tmp_path / "witness.jsonl"
    await seed_history(pool, 3, days_ago=400)
    # Witnessed then (a witness line written at the time the entries were appended).
    witness.append(path, witness.Witness(3, await pool.fetchval(
        "SELECT hash FROM audit_log WHERE seq = 3"),
        (datetime.now(UTC) - timedelta(days=399)).isoformat()))
    async with pool.acquire() as conn:
        assert await audit.prune(conn, retention_days=365) == 3
    await _seed(pool, 1)
    await witness.witness_once(pool, path, None)
    result = await _verify(pool, witness.read(path))
    assert result.ok, result.problems
    assert (result.anchor_seq, result.witnesses_checked, result.witnessed_through) == (3, 2, 5)


async def test_server_witnesses_and_verify_endpoint_and_cli_use_it(
        app: RunningApp, auth_headers, database_url: str, pool: asyncpg.Pool, tmp_path) -> None:
    tasks = {t.get_name() for t in app.runtime.security.tasks}
    assert "audit-witness" in tasks
    # ``pool`` is the superuser's, on the app's database: the tamper needs it (app.pool, the
    # server's role, is refused: tests/security/test_audit_roles.py).
    path = witness.configured_path(app.settings)
    admin = await auth_headers("admin")
    await _seed(pool, 4)
    head = await witness.witness_once(pool, path, None)
    assert head is not None
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        v = (await c.get("/api/v1/audit/verify", headers=admin)).json()
        assert v["ok"] is True and v["witnessed_through"] == head.seq
        await _tamper(pool, f"DELETE FROM audit_log WHERE seq > {head.seq - 2}")
        v = (await c.get("/api/v1/audit/verify", headers=admin)).json()
    assert v["ok"] is False
    assert [p["kind"] for p in v["problems"]] == ["truncated"]
    loop = asyncio.get_running_loop()
    env_dir = app.settings.data_dir  # the CLI reads the same witness file by default
    cli = await loop.run_in_executor(None, _cad, ["audit", "verify"], database_url, env_dir)
    assert cli.returncode == 1 and "truncated" in cli.stdout, cli.stdout + cli.stderr
    other = tmp_path / "siem-heads.jsonl"
    other.write_text("")
    cli = await loop.run_in_executor(None, _cad, ["audit", "verify", "--witness", str(other)],
                                     database_url, env_dir)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "0 witnessed heads match" in " ".join(cli.stdout.split())
