"""Helpers for the gateway tests: real tokens (cad.security tables), real websocket clients,
events written through the unit of work, servers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import websockets

from cad.settings import REPO_ROOT
from cad.uow import RequestContext, unit_of_work

TEST_JWT_SECRET = "ws-gateway-tests-" + "s" * 32  # subprocess servers sign with this


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

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``uvicorn cad.app:create_app --factory`` in its own process, configured by CAD_* env."""

    def __init__(self, database_url: str, data_dir: Path, *, workers: int = 1,
                 redis_url: str | None = None, port: int | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.workers = workers
        self.data_dir = data_dir
        self.env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_DATA_DIR": str(data_dir),
                    "CAD_JWT_SECRET": TEST_JWT_SECRET, "CAD_LOG_FORMAT": "json",
                    "CAD_LOG_LEVEL": "warning", "CAD_DB_POOL_MIN": "1", "CAD_DB_POOL_MAX": "8",
                    "PYTHONPATH": str(REPO_ROOT), **(extra_env or {})}
        if redis_url:
            self.env["CAD_REDIS_URL"] = redis_url
        else:
            self.env.pop("CAD_REDIS_URL", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-m", "uvicorn", "cad.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
               "--ws-per-message-deflate", "false", "--no-access-log", "--log-level", "warning"]
        logf = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process ends
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=logf, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                r = httpx.get(self.base_url + "/readyz", timeout=1.0)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (with several workers, the workers die with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def ids_in_order_without_duplicates(ids: Iterable[int]) -> bool:
    seen = list(ids)
    return seen == sorted(set(seen))
