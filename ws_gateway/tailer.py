"""One tailer per worker: the only reader of new events.

It LISTENs on ``cad_events`` (a NOTIFY is sent at every commit that appended events) and
reads ``id > cursor`` in id order. Ids are commit-ordered (migrations/0001), so this read
never skips an event that commits later. Wake-ups from the hub and a periodic poll are a
safety net for a lost NOTIFY or a dropped LISTEN connection; every wake-up is only a hint,
the read is what counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from cad import db
from ws_gateway.events import EVENT_COLUMNS, Event, event_from_row

log = structlog.get_logger("ws_gateway.tailer")

READ_PAGE = 2_000
LISTEN_CHANNEL = "cad_events"

Sink = Callable[[list[Event]], None]


class EventTailer:
    def __init__(self, pool: asyncpg.Pool, database_url: str | None, sink: Sink, *,
                 poll_interval_s: float = 1.0) -> None:
        self.pool = pool
        self.database_url = database_url
        self.sink = sink
        self.poll_interval_s = poll_interval_s
        self.cursor = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self.reads = 0

    async def start(self) -> None:
        self.cursor = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
        self._listen_task = asyncio.create_task(self._listen_loop(), name="event-tailer-listen")
        self._task = asyncio.create_task(self._run(), name="event-tailer")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5.0)

    async def close(self) -> None:
        for task in (self._task, self._listen_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

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

    async def _listen_loop(self) -> None:
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await (db.connect(self.database_url) if self.database_url
                              else self.pool.acquire())
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(LISTEN_CHANNEL, self.wake)
                self._listening.set()
                backoff = 0.1
                self._wake.set()  # anything committed while we were not listening
                while not lost.is_set():
                    # asyncpg reports a dead socket only when it is used: probe now and then.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        await conn.execute("SELECT 1")
                log.warning("event_listen_connection_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect below
                log.warning("event_listen_failed", error=type(exc).__name__)
            finally:
                self._listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        if self.database_url:
                            await conn.close()
                        else:
                            await self.pool.release(conn)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
