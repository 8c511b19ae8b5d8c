"""One tailer per worker: the only reader of new events.

It listens on ``cad_events`` through the worker's :class:`~ws_gateway.listen.PgListener` (a
NOTIFY is sent at every commit that appended events) and reads ``id > cursor`` in id order.
Ids are commit-ordered (migrations/0001), so this read never skips an event that commits
later. Wake-ups from the hub and a periodic poll are a safety net for a lost NOTIFY or a
dropped LISTEN connection; every wake-up is only a hint, the read is what counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from ws_gateway.events import EVENT_COLUMNS, Event, event_from_row
from ws_gateway.listen import PgListener

log = structlog.get_logger("ws_gateway.tailer")

READ_PAGE = 2_000
LISTEN_CHANNEL = "cad_events"

Sink = Callable[[list[Event]], None]


class EventTailer:
    def __init__(self, pool: asyncpg.Pool, listener: PgListener, sink: Sink, *,
                 poll_interval_s: float = 1.0) -> None:
        self.pool = pool
        self.sink = sink
        self.poll_interval_s = poll_interval_s
        self.cursor = 0
        self._wake = asyncio.Event()
        # After every (re)connect: read anything committed while nobody listened.
        listener.listen(LISTEN_CHANNEL, self.wake, on_listening=self._wake.set)
        self._task: asyncio.Task[None] | None = None
        self.reads = 0

    async def start(self) -> None:
        """Start from the newest committed event (clients sync from snapshots or replay)."""
        self.cursor = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
        self._task = asyncio.create_task(self._run(), name="event-tailer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def catch_up(self) -> None:
        """Read and dispatch everything committed so far (used after a reconnect)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
            try:
                await self._read_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database away: retry on the next wake/poll
                log.warning("event_tail_read_failed", error=type(exc).__name__, cursor=self.cursor)

    async def _read_all(self) -> None:
        while True:
            rows = await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM event_log WHERE id > $1 ORDER BY id LIMIT {READ_PAGE}",
                self.cursor,
            )
            self.reads += 1
            if not rows:
                return
            events = [event_from_row(r) for r in rows]
            self.cursor = events[-1].id
            self.sink(events)
            if len(rows) < READ_PAGE:
                return
