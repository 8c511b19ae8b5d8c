"""The one module that wires the app: settings, pool, routing, unit locator, street index,
hub and gateway, sweepers. It builds one typed ``Runtime`` per worker in the app lifespan and
hands each package exactly what it declared it needs (``cad.deps.provide``); no package
imports this module, and nothing else reads app state.

Start order: pool -> routing graph and street index -> unit locator (filled from the
database) -> sweepers -> security -> gateway (its tailer re-reads every unit once its cursor
is set). Stop order is the reverse."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg
import structlog
from fastapi import FastAPI

from cad import retention
from cad.deps import provide
from cad.health import HealthDeps, health_deps
from cad.plausible import Plausibility, ServiceArea
from cad.security.state import SecurityState
from cad.settings import Settings
from incidents.deps import IncidentsDeps, incidents_deps
from incidents.dispatch import timers
from incidents.dispatch.deps import DispatchDeps, dispatch_deps
from incidents.geocode import StreetIndex
from routing.service import RoutingService
from units.deps import UnitsDeps, units_deps
from units.locator import UnitLocator

log = structlog.get_logger("cad.wiring")


@dataclass
class Runtime:
    """Everything one worker holds while it serves."""

    settings: Settings
    pool: asyncpg.Pool
    database_url: str
    routing: RoutingService | None
    geocoder: StreetIndex | None
    locator: UnitLocator
    plausible: Plausibility   # time window and service area (AVL fixes need them too)
    units: UnitsDeps
    incidents: IncidentsDeps
    dispatch: DispatchDeps
    security: SecurityState
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def load_routing(settings: Settings) -> RoutingService | None:
    if settings.graph_path is None:
        return None
    return RoutingService.from_file(settings.graph_path, snap_limit_m=settings.snap_limit_m)


def plausibility(settings: Settings, routing: RoutingService | None) -> Plausibility:
    """The time window and the service area: the configured polygons, else the road graph's
    bounds plus the margin, else null island only (cad.plausible)."""
    if settings.service_area:
        area = ServiceArea.from_geojson(settings.service_area)
    elif routing is not None:
        area = ServiceArea.from_points(routing.graph.node_lat, routing.graph.node_lon,
                                       margin_m=settings.service_area_margin_m,
                                       source=f"road graph {settings.graph_path}")
    else:
        area = ServiceArea()
    log.info("service_area", source=area.source, bounds=area.bounds)
    return Plausibility(earliest=settings.time_earliest,
                        max_future_s=settings.time_max_future_s, area=area)


async def start_domain(app: FastAPI, settings: Settings, pool: asyncpg.Pool,
                       database_url: str, security: SecurityState) -> Runtime:
    """Routing, locator, street index and sweepers; the packages' dependencies provided."""
    routing = None
    if settings.graph_path is not None:
        routing = await asyncio.to_thread(load_routing, settings)
        log.info("road_graph_loaded", path=str(settings.graph_path))
    geocoder = StreetIndex.from_graph(routing.graph) if routing is not None else None
    plausible = plausibility(settings, routing)
    locator = UnitLocator(routing, pool=pool, stale_after_s=settings.unit_position_stale_s)
    async with pool.acquire() as conn:
        await locator.refresh(conn)
    rt = Runtime(
        settings=settings, pool=pool, database_url=database_url, routing=routing,
        geocoder=geocoder, locator=locator, plausible=plausible,
        units=UnitsDeps(pool=pool, locator=locator, plausible=plausible),
        incidents=IncidentsDeps(pool=pool, settings=settings, geocoder=geocoder,
                                plausible=plausible),
        dispatch=DispatchDeps(pool=pool, settings=settings, routing=routing, locator=locator,
                              plausible=plausible),
        security=security,
    )
    provide(app, health_deps, HealthDeps(pool=pool, migrations_dir=settings.migrations_dir))
    provide(app, units_deps, rt.units)
    provide(app, incidents_deps, rt.incidents)
    provide(app, dispatch_deps, rt.dispatch)
    if settings.timer_sweep_interval_s > 0:
        rt.tasks.append(asyncio.create_task(
            timers.run_sweeper(deps=rt.dispatch, stop=rt.stop), name="timer-sweeper"))
    if settings.retention_sweep_interval_s > 0:
        rt.tasks.append(asyncio.create_task(
            retention.run_sweeper(pool, settings, rt.stop), name="retention-sweeper"))
    return rt


async def stop_domain(rt: Runtime) -> None:
    rt.stop.set()
    await rt.locator.close()
    for task in rt.tasks:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
