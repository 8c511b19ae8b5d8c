"""Helpers for the gateway tests: real tokens (cad.security tables), real websocket clients,
events written through the unit of work, servers in subprocesses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import websockets

from cad.uow import RequestContext, unit_of_work
from tests.server_process import TEST_JWT_SECRET, ServerProcess, free_port  # noqa: F401 - re-exported


def app_secret(running: Any) -> str:
    return running.security.secret


async def emit(pool: asyncpg.Pool, type_: str, aggregate: tuple[str, Any], *,
               agency: str | None = "A", data: dict[str, Any] | None = None) -> int:
    """One committed state change = one event (the way the domain actions write them)."""
    async with unit_of_work(pool, RequestContext(actor="tests", agency=agency)) as uow:
        uow.emit(type_, aggregate=aggregate, data=data or {}, agency=agency)
    return uow.event_ids[0]


@dataclass
class StreamClient:
    """A websocket client that keeps what a real board/MDT keeps: the events in order, its
    resume cursor, every position and every control message."""

    url: str
    token: str
    ws: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_event_id: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    server_ids: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, *, resume: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Open, read the first message (snapshot / resume / resync_required), start reading."""
        url = self.url
        if resume and self.last_event_id is not None:
            url += ("&" if "?" in url else "?") + f"last_event_id={self.last_event_id}"
        self.close_code = None
        self.ws = await websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None, open_timeout=timeout, max_size=2**24)
        first = orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self._handle(first)
        self._reader = asyncio.create_task(self._read())
        return first

    def _handle(self, msg: dict[str, Any]) -> None:
        t = msg.get("type")
        if t == "batch":
            for ev in msg["events"]:
                self.events.append(ev)
            self.positions.extend(msg["positions"])
            self._advance(msg["last_event_id"])
        elif t == "snapshot":
            self.messages.append(msg)
            self.server_ids.append(msg["server_id"])
            self.last_event_id = msg["last_event_id"]
        elif t == "resume":
            self.messages.append(msg)
            self.server_ids.append(msg["server_id"])
        elif t == "heartbeat":
            self._advance(msg["last_event_id"])
            self.messages.append(msg)
        else:
            self.messages.append(msg)
        self._changed.set()

    def _advance(self, last_event_id: int) -> None:
        if self.last_event_id is None or last_event_id > self.last_event_id:
            self.last_event_id = last_event_id

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._handle(orjson.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            if rcvd is not None:
                self.close_code, self.close_reason = rcvd.code, rcvd.reason
            else:
                self.close_code = 1006
            self._changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; "
                                   f"events={len(self.events)} close={self.close_code} "
                                   f"last={self.messages[-3:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def wait_closed(self, timeout: float = 10.0) -> int:
        await self.wait_for(lambda c: c.close_code is not None, timeout)
        assert self.close_code is not None
        return self.close_code

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(msg, default=str).decode())

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)

    def event_ids(self) -> list[int]:
        return [e["id"] for e in self.events]


async def expected_ids(pool: asyncpg.Pool, *, agency: str | None = None,
                       unit_id: str | None = None, after: int = 0) -> list[int]:
    """What the event log says a board (agency) or an MDT (unit_id) must have received."""
    rows = await pool.fetch("SELECT id, agency, aggregate_type, aggregate_id, data FROM event_log "
                            "WHERE id > $1 ORDER BY id", after)
    out = []
    for r in rows:
        data = r["data"] if isinstance(r["data"], dict) else orjson.loads(r["data"])
        if unit_id is not None:
            if (r["aggregate_type"] == "unit" and r["aggregate_id"] == unit_id) or \
                    unit_id in [str(u) for u in data.get("unit_ids", [])]:
                out.append(r["id"])
        elif agency is None or r["agency"] is None or r["agency"] == agency:
            out.append(r["id"])
    return out


def fix(lat: float = 37.77, lon: float = -122.42, *, age_s: float = 0.0, **extra: Any
        ) -> dict[str, Any]:
    t = datetime.now(UTC) - timedelta(seconds=age_s)
    return {"lat": lat, "lon": lon, "fix_time": t.isoformat(), **extra}


# --- servers in subprocesses (multi-worker, SIGKILL) -------------------------------------------

def ids_in_order_without_duplicates(ids: Iterable[int]) -> bool:
    seen = list(ids)
    return seen == sorted(set(seen))
