"""Start/stop of the gateway in the app lifespan (cad.app calls these two functions)."""

from __future__ import annotations

import contextlib

import structlog
from fastapi import FastAPI

from ws_gateway.gateway import Gateway

log = structlog.get_logger("ws_gateway")


async def start(app: FastAPI, database_url: str | None) -> None:
    """After the pool is open: one tailer, hub, AVL ingest and tick per worker."""
    gateway = Gateway(app.state, app.state.settings, app.state.pool, database_url=database_url)
    await gateway.start()
    app.state.gateway = gateway


async def stop(app: FastAPI) -> None:
    """Before the pool closes: clients get 1001 and reconnect elsewhere with last_event_id;
    buffered breadcrumbs are flushed."""
    gateway = getattr(app.state, "gateway", None)
    app.state.gateway = None
    if gateway is not None:
        with contextlib.suppress(Exception):
            await gateway.close()
