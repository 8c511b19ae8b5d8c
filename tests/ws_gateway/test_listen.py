"""The worker's one LISTEN connection (ws_gateway.listen.PgListener), shared by the event
tailer and the token re-checks: every channel's NOTIFYs arrive over it, and when PostgreSQL
drops the connection it reconnects, re-listens and tells its listeners to catch up."""

from __future__ import annotations

import asyncio

import asyncpg

from ws_gateway.listen import PgListener


async def test_one_connection_serves_every_channel_and_survives_being_killed(
        pool: asyncpg.Pool, database_url: str) -> None:
    listener = PgListener(pool, database_url, probe_interval_s=0.2)
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    caught_up: asyncio.Queue[str] = asyncio.Queue()
    listener.listen("cad_events", lambda p: got.put_nowait(("cad_events", p)),
                    on_listening=lambda: caught_up.put_nowait("events"))
    listener.listen("cad_security", lambda p: got.put_nowait(("cad_security", p)))
    await listener.start()
    try:
        assert listener.listening.is_set()
        assert await asyncio.wait_for(caught_up.get(), 5) == "events"
        backends = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid = $1", listener.backend_pid)
        assert backends == 1

        async def notify_and_receive() -> set[tuple[str, str]]:
            await pool.execute("SELECT pg_notify('cad_events', 'e'), "
                               "pg_notify('cad_security', '{\"kind\":\"user\",\"id\":\"x\"}')")
            return {await asyncio.wait_for(got.get(), 5) for _ in range(2)}

        expected = {("cad_events", "e"), ("cad_security", '{"kind":"user","id":"x"}')}
        assert await notify_and_receive() == expected

        killed = listener.backend_pid
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", killed)
        # After the reconnect the catch-up callback runs again, on a new backend.
        assert await asyncio.wait_for(caught_up.get(), 10) == "events"
        assert listener.connects == 2 and listener.backend_pid != killed
        assert await notify_and_receive() == expected
    finally:
        await listener.close()
    assert not listener.listening.is_set()
