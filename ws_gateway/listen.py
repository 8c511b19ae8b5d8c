"""One PostgreSQL LISTEN connection per worker, kept alive: the event tailer (``cad_events``)
and the token re-checks (``cad_security``) both subscribe here.

A NOTIFY is only ever a hint: whoever listens must also read (or re-check) on its own
schedule, because notifications sent while the connection was down are lost. After every
(re)connect the ``on_listening`` callbacks run so that listeners can catch up on what they
may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog

from cad import db

log = structlog.get_logger("ws_gateway.listen")

NotifyHandler = Callable[[str], None]  # the payload; runs on the event loop, must not block

# asyncpg notices a dead socket only when it is used: probe it this often.
PROBE_INTERVAL_S = 5.0
RECONNECT_BACKOFF_MIN_S = 0.1
RECONNECT_BACKOFF_MAX_S = 2.0


class PgListener:
    """LISTEN on the channels registered with :meth:`listen` over one connection, reconnect
    with back-off when it drops.

    ``database_url`` set: a dedicated connection (a LISTEN on a pooled one would hold a pool
    slot for ever); unset: one pool connection (tests, poolers)."""

    def __init__(self, pool: asyncpg.Pool, database_url: str | None, *,
                 probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self.pool = pool
        self.database_url = database_url
        self.probe_interval_s = probe_interval_s
        self._handlers: dict[str, list[NotifyHandler]] = {}
        self._on_listening: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        self.connects = 0
        self.backend_pid: int | None = None  # of the current LISTEN connection

    def listen(self, channel: str, handler: NotifyHandler, *,
               on_listening: Callable[[], None] | None = None) -> None:
        """Before :meth:`start`. ``on_listening`` runs after each (re)connect."""
        if self._task is not None:
            raise RuntimeError("register channels before start()")
        self._handlers.setdefault(channel, []).append(handler)
        if on_listening is not None:
            self._on_listening.append(on_listening)

    async def start(self, *, wait_s: float = 5.0) -> None:
        """Start listening; wait up to ``wait_s`` for the first connection (a database that
        is away does not stop the worker: the loop keeps trying)."""
        self._task = asyncio.create_task(self._run(), name="pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), wait_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: object) -> None:
        for handler in self._handlers.get(channel, ()):
            try:
                handler(str(payload))
            except Exception:  # one broken listener must not starve the others
                log.exception("pg_notify_handler_failed", channel=channel)

    async def _run(self) -> None:
        backoff = RECONNECT_BACKOFF_MIN_S
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await (db.connect(self.database_url) if self.database_url
                              else self.pool.acquire())
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._handlers:
                    await conn.add_listener(channel, self._dispatch)
                self.connects += 1
                self.backend_pid = conn.get_server_pid()
                self.listening.set()
                backoff = RECONNECT_BACKOFF_MIN_S
                for callback in self._on_listening:
                    callback()  # catch up on whatever was sent while nobody listened
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.probe_interval_s)
                    if not lost.is_set():
                        await conn.execute("SELECT 1")
                log.warning("pg_listen_connection_lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect below; listeners also poll
                log.warning("pg_listen_failed", error=type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        if self.database_url:
                            await conn.close()
                        else:
                            await self.pool.release(conn)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX_S)
