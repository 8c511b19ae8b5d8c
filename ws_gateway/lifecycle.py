"""Start/stop of the gateway in the app lifespan (``cad.app`` calls these)."""

from __future__ import annotations

import contextlib

import asyncpg

from cad.settings import Settings
from ws_gateway.gateway import Gateway
from ws_gateway.gcstats import tune_gc
from ws_gateway.ports import GatewayPorts


async def start(settings: Settings, pool: asyncpg.Pool, ports: GatewayPorts, *,
                database_url: str | None) -> Gateway:
    """After the pool is open: one tailer, hub, AVL ingest and tick per worker."""
    gateway = Gateway(settings, pool, ports, database_url=database_url)
    await gateway.start()
    tune_gc()
    return gateway


async def stop(gateway: Gateway | None) -> None:
    """Before the pool closes: clients get 1001 and reconnect elsewhere with last_event_id;
    buffered breadcrumbs are flushed."""
    if gateway is not None:
        with contextlib.suppress(Exception):
            await gateway.close()


async def wake_tailers(gateway: Gateway | None) -> None:
    """Make every worker's tailer read the event log now (through the hub).

    Not needed with a direct PostgreSQL connection: the commit's NOTIFY wakes them. Behind a
    pooler that cannot LISTEN (PgBouncer in transaction mode) call this from
    ``uow.after_commit``; otherwise tailers fall back to their poll interval."""
    if gateway is not None:
        await gateway.wake_tailers()
