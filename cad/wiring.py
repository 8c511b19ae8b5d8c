"""The one module that wires the app: settings, pool, routing, unit locator, street index,
hub and gateway, sweepers. It builds one typed ``Runtime`` per worker in the app lifespan and
hands each package exactly what it declared it needs (``cad.deps.provide``; the gateway gets
typed ports); no package imports this module, and nothing else reads app state.

Start order (``start``): pool -> routing graph and street index -> unit locator (filled from
the database) -> sweepers -> security -> gateway (its tailer re-reads every unit once its
cursor is set). ``stop`` goes the other way."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI

from cad import db, retention, training
from cad.console.deps import ConsoleDeps, RenderBaseMap, console_deps
from cad.deps import provide
from cad.health import HealthDeps, health_deps
from cad.plausible import Plausibility, ServiceArea
from cad.security import lifecycle as security_lifecycle
from cad.security.principal import Principal
from cad.security.service import principal_from_token
from cad.security.state import SecurityState
from cad.settings import Settings
from incidents.alerts.deps import AlertsDeps, alerts_deps
from incidents.alerts.service import run_delivery_worker
from incidents.deps import IncidentsDeps, incidents_deps
from incidents.dispatch import timers
from incidents.dispatch.board import board_snapshot, unit_snapshot
from incidents.dispatch.deps import DispatchDeps, dispatch_deps
from incidents.feedback import repository as feedback_repo
from incidents.feedback.deps import FeedbackDeps, feedback_deps
from incidents.geocode import StreetIndex
from incidents.geocoding.index import GeocoderRef
from incidents.geocoding.service import describe, load_geocoder, run_refresher
from incidents.public.challenge import challenger_from_settings
from incidents.reports import repository as reports_repo
from incidents.reports.deps import ReportsDeps, reports_deps
from routing import basemap
from routing.service import RoutingService
from units import repository as unit_repo
from units.deps import UnitsDeps, units_deps
from units.locator import UnitLocator
from ws_gateway import lifecycle as realtime
from ws_gateway.api import gateway_dep
from ws_gateway.gateway import Gateway
from ws_gateway.ports import GatewayPorts

log = structlog.get_logger("cad.wiring")

# The tables holding the public's contact data, erased by the retention sweep (cad.retention)
# CAD_CONTACT_RETENTION_DAYS after the case's decision; names key the sweep's counts.
CONTACT_ERASERS = (
    retention.ContactEraser("public_reports", reports_repo.erase_expired_contacts),
    retention.ContactEraser("feedback", feedback_repo.erase_expired_contacts),
)


@dataclass
class Runtime:
    """Everything one worker holds while it serves."""

    settings: Settings
    pool: asyncpg.Pool
    database_url: str
    routing: RoutingService | None
    geocoder: GeocoderRef           # address points, places, the graph's street names
    locator: UnitLocator
    plausible: Plausibility   # time window and service area (AVL fixes need them too)
    units: UnitsDeps
    incidents: IncidentsDeps
    dispatch: DispatchDeps
    security: SecurityState
    gateway: Gateway | None = None   # set once started (the last part to start)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


NO_GRAPH_WARNING = ("no road graph (CAD_GRAPH_PATH is unset): every ETA is a straight-line "
                    "estimate, recommendations rank units by distance, and addresses geocode "
                    "from address points only (no corners); build one with `cad graph build`")


def serving_details(rt: Runtime) -> dict[str, Any]:
    """What this worker answers with, for /readyz: a degraded set-up is visible there."""
    warnings = [] if rt.routing is not None else [NO_GRAPH_WARNING]
    geocoder = rt.geocoder.current
    if geocoder.n_points == 0:
        warnings.append("no address points (`cad addresses import FILE`): street addresses "
                        "geocode at street or corner precision only")
    return {"road_graph": str(rt.settings.graph_path) if rt.routing is not None else None,
            "eta_method": "road_network" if rt.routing is not None else "straight_line_estimate",
            "address_points": geocoder.n_points, "places": geocoder.n_places,
            "warnings": warnings}


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


async def start(app: FastAPI, settings: Settings, *, database_url: str,
                security: SecurityState) -> Runtime:
    """Open the pool and start every part of one worker, in order; on a failure what was
    started is stopped again."""
    pool = await db.create_pool(
        database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
        command_timeout=settings.db_command_timeout_s)
    try:
        await training.sync(pool, settings.training_agencies)
        rt = await _start_domain(app, settings, pool, database_url, security)
    except BaseException:
        with contextlib.suppress(Exception):
            await pool.close()
        raise
    try:
        await security_lifecycle.start(security, app=app, pool=pool, settings=settings)
        rt.gateway = await realtime.start(settings, pool, gateway_ports(rt),
                                          database_url=database_url)
        provide(app, gateway_dep, rt.gateway)
    except BaseException:
        await stop(rt)
        raise
    return rt


def gateway_ports(rt: Runtime) -> GatewayPorts:
    """What the gateway needs from the domains, as typed callables."""

    async def resolve_principal(token: str, *, touch: bool) -> Principal | None:
        return await principal_from_token(rt.security, token, touch=touch)

    return GatewayPorts(
        board_snapshot=board_snapshot, unit_snapshot=unit_snapshot,
        resolve_principal=resolve_principal,
        store_last_fixes=unit_repo.store_last_fixes, unit_agency=unit_repo.unit_agency,
        place_refusal=lambda agency, lat, lon: rt.plausible.area.refusal(
            agency=agency, lat=lat, lon=lon),       # AVL fixes: the service area
        apply_position=rt.locator.move,              # each accepted AVL fix, at once
        units_changed=rt.locator.schedule_refresh,   # re-read into the routing index
        units_reset=rt.locator.forget,               # a training reset: drop held fixes
        describe_place=lambda lat, lon: describe(rt.geocoder.current.reverse(lat, lon)))


async def stop(rt: Runtime) -> None:
    """Gateway first (clients get 1001 and reconnect elsewhere; breadcrumbs are flushed),
    then security, sweepers and locator, then the pool."""
    gateway, rt.gateway = rt.gateway, None
    await realtime.stop(gateway)
    await security_lifecycle.stop(rt.security)
    rt.stop.set()
    await rt.locator.close()
    for task in rt.tasks:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
    with contextlib.suppress(Exception):
        await rt.pool.close()


def basemap_renderer(routing: RoutingService) -> RenderBaseMap:
    """The console's base map for a zoom: drawn off the event loop from the graph in use,
    once per zoom band and graph (a rebuilt graph swapped in draws afresh)."""
    cache: dict[tuple[int, int], bytes] = {}

    async def render(zoom: int) -> bytes:
        graph = routing.graph
        key = (id(graph), basemap.band_for(zoom).min_zoom)
        body = cache.get(key)
        if body is None:
            body = await asyncio.to_thread(
                lambda: orjson.dumps(basemap.basemap_geojson(graph, zoom=zoom)))
            if any(k[0] != key[0] for k in cache):
                cache.clear()
            cache[key] = body
        return body

    return render


async def _start_domain(app: FastAPI, settings: Settings, pool: asyncpg.Pool,
                        database_url: str, security: SecurityState) -> Runtime:
    """Routing, locator, street index and sweepers; the packages' dependencies provided."""
    routing = None
    if settings.graph_path is not None:
        routing = await asyncio.to_thread(load_routing, settings)
        log.info("road_graph_loaded", path=str(settings.graph_path))
    streets = (await asyncio.to_thread(StreetIndex.from_graph, routing.graph)
               if routing is not None else None)
    geocoder = await load_geocoder(
        pool=pool, graph=routing.graph if routing is not None else None, streets=streets)
    log.info("geocoder_loaded", address_points=geocoder.current.n_points,
             places=geocoder.current.n_places, street_names=streets is not None)
    if routing is None:
        log.warning("no_road_graph", message=NO_GRAPH_WARNING)
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
                              plausible=plausible, geocoder=geocoder),
        security=security,
    )
    provide(app, health_deps, HealthDeps(pool=pool, migrations_dir=settings.migrations_dir,
                                         details=lambda: serving_details(rt)))
    provide(app, units_deps, rt.units)
    provide(app, incidents_deps, rt.incidents)
    provide(app, dispatch_deps, rt.dispatch)
    provide(app, console_deps, ConsoleDeps(
        settings=settings, render_basemap=basemap_renderer(routing) if routing else None,
        bounds=basemap.bounds(routing.graph) if routing is not None else None))
    if settings.timer_sweep_interval_s > 0:
        rt.tasks.append(asyncio.create_task(
            timers.run_sweeper(deps=rt.dispatch, stop=rt.stop), name="timer-sweeper"))
    if settings.geocoder_refresh_s > 0:
        rt.tasks.append(asyncio.create_task(
            run_refresher(pool=pool, ref=geocoder, interval_s=settings.geocoder_refresh_s,
                          stop=rt.stop), name="geocoder-refresher"))
    challenger = challenger_from_settings(settings)   # public forms: reports, feedback
    provide(app, reports_deps, ReportsDeps(pool=pool, settings=settings,
                                           challenger=challenger, incidents=rt.incidents))
    alerts = AlertsDeps(pool=pool, settings=settings)
    provide(app, alerts_deps, alerts)
    if settings.alert_delivery_interval_s > 0:
        rt.tasks.append(asyncio.create_task(
            run_delivery_worker(deps=alerts, stop=rt.stop), name="alert-delivery"))
    provide(app, feedback_deps, FeedbackDeps(pool=pool, settings=settings,
                                             challenger=challenger))
    if settings.retention_sweep_interval_s > 0:
        rt.tasks.append(asyncio.create_task(
            retention.run_sweeper(pool, settings, rt.stop, erasers=CONTACT_ERASERS),
            name="retention-sweeper"))
    return rt
