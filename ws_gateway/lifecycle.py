"""Start/stop of the gateway in the app lifespan (cad.app calls these two functions)."""

from __future__ import annotations

import contextlib
import gc
import time

import structlog
from fastapi import FastAPI

from ws_gateway.gateway import Gateway

log = structlog.get_logger("ws_gateway")

# Cyclic GC with the default gen-0 threshold (700) took 29 % of a worker's CPU holding 2,200
# sockets (py-spy --native, benchmarks/realtime_bench.py, 2,000 units @ 1 Hz, 200 boards):
# every tick allocates frames and lists and each collection walks the asyncio/uvloop objects
# of every connection. Collect 70x less often; objects from start-up are frozen out of it.
GC_GEN0_THRESHOLD = 50_000

# Collections per generation: count, total and longest pause (reported by the stats endpoint).
gc_pauses: dict[int, dict[str, float]] = {g: {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
                                          for g in range(3)}
gc_recent: list[tuple[float, int, float]] = []  # (wall time, generation, ms), the last 20
_gc_started = 0.0


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    ms = (time.perf_counter() - _gc_started) * 1000
    rec = gc_pauses[info["generation"]]
    rec["count"] += 1
    rec["total_ms"] += ms
    rec["max_ms"] = max(rec["max_ms"], ms)
    gc_recent.append((time.time(), info["generation"], round(ms, 2)))
    del gc_recent[:-20]


async def start(app: FastAPI, database_url: str | None) -> None:
    """After the pool is open: one tailer, hub, AVL ingest and tick per worker."""
    gateway = Gateway(app.state, app.state.settings, app.state.pool, database_url=database_url)
    await gateway.start()
    app.state.gateway = gateway
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gc.get_threshold()[0]), gen1, gen2)
    if _gc_callback not in gc.callbacks:
        gc.callbacks.append(_gc_callback)


async def stop(app: FastAPI) -> None:
    """Before the pool closes: clients get 1001 and reconnect elsewhere with last_event_id;
    buffered breadcrumbs are flushed."""
    gateway = getattr(app.state, "gateway", None)
    app.state.gateway = None
    if gateway is not None:
        with contextlib.suppress(Exception):
            await gateway.close()


async def wake_tailers(app_state: object) -> None:
    """Make every worker's tailer read the event log now (through the hub).

    Not needed with a direct PostgreSQL connection: the commit's NOTIFY wakes them. Behind a
    pooler that cannot LISTEN (PgBouncer in transaction mode) call this from
    ``uow.after_commit``; otherwise tailers fall back to their poll interval."""
    from ws_gateway.gateway import WAKE_CHANNEL

    gateway = getattr(app_state, "gateway", None)
    if gateway is not None:
        await gateway.hub.publish(WAKE_CHANNEL, b"")
