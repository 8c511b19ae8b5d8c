"""Bringing a connecting client up to date: a snapshot with the event id it corresponds to,
or, when it comes back with ``last_event_id``, exactly the events it missed (or a
``resync_required`` and a snapshot when that is not possible).

Snapshot and event-log position are read in one REPEATABLE READ read-only transaction. The
client is registered before this runs, so live events arriving meanwhile are buffered in
``client.pending`` and de-duplicated by id when it goes live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from cad.settings import Settings
from ws_gateway import frames
from ws_gateway.clients import CLOSE_UNKNOWN_UNIT, Client, ClientRegistry
from ws_gateway.events import EVENT_COLUMNS, event_from_row

REPLAY_PAGE = 1_000

_ISSUED_SQL = """
SELECT coalesce(last_value, 0)
FROM pg_sequences WHERE schemaname = current_schema()
  AND sequencename = split_part(pg_get_serial_sequence('event_log', 'id'), '.', 2)
"""

# Reads the client's snapshot in the caller's transaction; None: the unit does not exist.
SnapshotFn = Callable[[asyncpg.Connection], Awaitable[dict[str, Any] | None]]


class Resumer:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, registry: ClientRegistry, *,
                 server_id: str) -> None:
        self.pool = pool
        self.settings = settings
        self.registry = registry
        self.server_id = server_id

    async def sync(self, client: Client, last_event_id: int | None,
                   snapshot: SnapshotFn) -> bool:
        """Send the client its snapshot or replay, directly on the socket (before its sender
        task starts). False when the client was closed instead."""
        s = self.settings
        ws = client.ws
        if last_event_id is not None:
            async with self.pool.acquire() as conn, \
                    conn.transaction(isolation="repeatable_read", readonly=True):
                lo, hi = await conn.fetchrow(
                    "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM event_log")
                # the highest id ever drawn, even when retention pruned every row
                issued = await conn.fetchval(_ISSUED_SQL)
                first = await conn.fetchrow(
                    "SELECT id, occurred_at FROM event_log WHERE id > $1 ORDER BY id LIMIT 1",
                    last_event_id)
                behind = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT 1 FROM event_log WHERE id > $1 LIMIT $2) t",
                    last_event_id, s.ws_replay_max_events + 1)
            reason: frames.ResyncReason | None = None
            if last_event_id > max(hi, issued or 0):
                reason = "unknown_event_id"  # e.g. the database was restored from a backup
            elif (lo and last_event_id < lo - 1) or (not lo and last_event_id < (issued or 0)):
                reason = "older_than_retention"  # what it missed may have been pruned
            elif first is not None and (datetime.now(UTC) - first["occurred_at"]
                                        ).total_seconds() > s.ws_resume_window_s:
                reason = "older_than_retention"
            elif behind > s.ws_replay_max_events:
                reason = "too_far_behind"
            if reason is None:
                await ws.send_text(frames.resume(
                    from_event_id=last_event_id, last_event_id=hi, server_id=self.server_id,
                    heartbeat_interval_s=s.ws_heartbeat_interval_s))
                await self._replay(client, last_event_id, hi)
                client.last_event_id = hi
                return True
            await ws.send_text(frames.resync_required(
                reason=reason, from_event_id=last_event_id, oldest_event_id=lo,
                last_event_id=hi))
        async with self.pool.acquire() as conn, \
                conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
            snap = await snapshot(conn)
        if snap is None:
            self.registry.close(client, CLOSE_UNKNOWN_UNIT, "unknown_unit")
            return False
        await ws.send_text(frames.snapshot(
            last_event_id=head, server_id=self.server_id,
            heartbeat_interval_s=s.ws_heartbeat_interval_s, snapshot=snap))
        client.last_event_id = head
        return True

    async def _replay(self, client: Client, after: int, upto: int) -> None:
        cursor = after
        f = client.filter
        while cursor < upto:
            rows = await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM event_log WHERE id > $1 AND id <= $2 "
                f"ORDER BY id LIMIT {REPLAY_PAGE}", cursor, upto)
            if not rows:
                break
            events = [event_from_row(r) for r in rows]
            cursor = events[-1].id
            mine = [e for e in events if f.events(e)]
            if mine:
                await client.ws.send_text(frames.batch(mine, [], cursor, replay=True))
