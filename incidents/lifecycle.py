"""Start-up and shut-down of the dispatch services of one worker: routing graph, unit
locator, street index, timer sweeper, retention sweeper."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from fastapi import FastAPI

from cad import retention
from cad.services import Services
from incidents.timers import run_sweeper
from units.locator import UnitLocator

log = structlog.get_logger("incidents.lifecycle")


def load_routing(settings):
    if settings.graph_path is None:
        return None
    from routing.service import RoutingService

    return RoutingService.from_file(settings.graph_path, snap_limit_m=settings.snap_limit_m)


async def start(app: FastAPI) -> None:
    settings = app.state.settings
    routing = getattr(app.state, "routing_override", None)
    if routing is None and settings.graph_path is not None:
        routing = await asyncio.to_thread(load_routing, settings)
        log.info("road_graph_loaded", path=str(settings.graph_path))
    geocoder = None
    if routing is not None:
        from incidents.geocode import StreetIndex

        geocoder = StreetIndex.from_graph(routing.graph)
    locator = UnitLocator(routing, stale_after_s=settings.unit_position_stale_s)
    locator.pool = app.state.pool
    services = Services(pool=app.state.pool, settings=settings, routing=routing, locator=locator,
                        geocoder=geocoder)
    app.state.services = services
    app.state.routing = routing
    async with app.state.pool.acquire() as conn:
        await locator.refresh(conn)
    app.state.dispatch_stop = asyncio.Event()
    app.state.dispatch_tasks = []
    if settings.timer_sweep_interval_s > 0:
        app.state.dispatch_tasks.append(
            asyncio.create_task(run_sweeper(services, app.state.dispatch_stop), name="timer-sweeper"))
    if settings.retention_sweep_interval_s > 0:
        app.state.dispatch_tasks.append(asyncio.create_task(
            retention.run_sweeper(app.state.pool, settings, app.state.dispatch_stop),
            name="retention-sweeper"))


async def stop(app: FastAPI) -> None:
    stop_event = getattr(app.state, "dispatch_stop", None)
    if stop_event is None:
        return
    stop_event.set()
    services = getattr(app.state, "services", None)
    if services is not None and services.locator is not None:
        await services.locator.close()
    for task in getattr(app.state, "dispatch_tasks", []):
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
