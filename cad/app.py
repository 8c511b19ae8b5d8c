"""The application factory. Nothing here runs at import: settings, pool and embedded
PostgreSQL are created in the lifespan of the app that ``create_app`` returns; what each
worker holds is built by ``cad.wiring``."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Iterable, Mapping

import structlog
from fastapi import APIRouter, FastAPI

from cad import db, wiring
from cad.console import api as console
from cad.embedded_pg import EmbeddedPostgres, mask_url
from cad.errors import install_error_handlers
from cad.health import router as health_router
from cad.logging import configure_logging
from cad.middleware import RequestContextMiddleware
from cad.security import lifecycle as security
from cad.security.policy import Rule
from cad.security.training_api import router as training_router
from cad.settings import Settings
from cad.warmup import prepare_routing, start_loop_lag_monitor, warm_routing_kernels
from cad.wiring import Runtime
from incidents.alerts.api import public_router as public_alerts_router
from incidents.alerts.api import router as alerts_router
from incidents.analytics.api import router as analytics_router
from incidents.api import router as incidents_router
from incidents.dispatch.api import router as dispatch_router
from incidents.feedback.api import router as feedback_router
from incidents.geocoding.api import router as geocoding_router
from incidents.public.api import router as public_router
from incidents.reports.api import router as reports_router
from units.api import router as units_router
from ws_gateway.api import router as realtime_router

log = structlog.get_logger("cad.app")

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *,
               extra_routers: Iterable[APIRouter] = (),
               policy_overrides: Mapping[tuple[str, str], Rule] | None = None) -> FastAPI:
    """``policy_overrides`` adds access rules (cad.security.policy) for routers that tests
    mount through ``extra_routers``."""
    settings = settings or Settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    prepare_routing(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything else, so the server listens only when no request can compile a
        # kernel: the routing kernels, compiled or loaded off the event loop (cad/warmup.py).
        start_loop_lag_monitor(settings)
        # No automatic cyclic GC while starting: building the indexes (kernels, geocoder,
        # street index) allocates enough to trigger full collections, each holding the GIL
        # over the whole start-up heap for 100+ ms, a stall of the event loop even when the
        # building runs in a thread. Start-up's objects are frozen out of the collector once
        # started (ws_gateway.gcstats.tune_gc), then it runs again.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            await warm_routing_kernels(settings)
        except BaseException:
            if gc_was_enabled:
                gc.enable()
            raise
        embedded: EmbeddedPostgres | None = None
        runtime: Runtime | None = None
        url = settings.database_url
        if url is None:
            # Reached when the app is served by a bare ASGI server; `cad serve` starts the
            # cluster itself (before any worker) and passes CAD_DATABASE_URL down.
            embedded = EmbeddedPostgres(settings.data_dir / "postgres")
            url = embedded.start()
        try:
            if settings.migrate_on_start:
                conn = await db.connect(settings.migration_database_url or url)
                try:
                    await db.migrate(conn, settings.migrations_dir)
                finally:
                    await conn.close()
            pool_url = db.server_url(url, use_app_role=settings.db_use_app_role,
                                     app_password=_app_password(settings, embedded))
            runtime = await wiring.start(app, settings, database_url=pool_url,
                                         security=security_state)
            app.state.runtime = runtime   # for tests and operators' tools (runtime_of)
            role = await db.role_report(runtime.pool)
            if role.get("superuser") or role.get("owns_audit_log"):
                log.warning("database_role_can_erase_audit", **role)
            log.info("app_started", database=mask_url(pool_url), role=role.get("role"))
            if gc_was_enabled:
                gc.enable()
            yield
        finally:
            if gc_was_enabled:
                gc.enable()  # also when starting failed
            if runtime is not None:
                await wiring.stop(runtime)
            if embedded is not None:
                embedded.stop()

    app = FastAPI(
        title="CAD backend",
        version="0.1.0",
        summary="Computer-aided dispatch for police, fire and EMS.",
        lifespan=lifespan,
        # Served by cad.console from the app's own files: /docs works with no internet.
        docs_url=None, redoc_url=None,
    )
    install_error_handlers(app)
    # Before RequestContextMiddleware, so that one is outermost (request id, body limit).
    security_state = security.install(app, settings, policy_overrides=policy_overrides)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    app.include_router(health_router)
    app.include_router(units_router)
    app.include_router(incidents_router)
    app.include_router(geocoding_router)
    app.include_router(dispatch_router)
    app.include_router(analytics_router)
    app.include_router(alerts_router)
    app.include_router(public_alerts_router)
    app.include_router(public_router)
    app.include_router(feedback_router)
    app.include_router(reports_router)
    app.include_router(realtime_router)
    app.include_router(training_router)
    console.install(app)
    for router in extra_routers:
        app.include_router(router)
    # Every route is in now: the policy check walks them (and FastAPI builds each route's
    # context on the way, 100+ ms of CPU) here, before the event loop runs anything.
    security.check_routes(security_state, app)
    return app


def _app_password(settings: Settings, embedded: EmbeddedPostgres | None) -> str | None:
    if settings.db_app_password is not None:
        return settings.db_app_password.get_secret_value()
    return embedded.app_password if embedded is not None else None


def runtime_of(app: FastAPI) -> Runtime:
    """The running app's runtime, for tests, benchmarks and operators' tools (the app's own
    code gets what it needs through its typed dependencies, never through app state)."""
    runtime: Runtime | None = getattr(app.state, "runtime", None)
    if runtime is None:
        raise RuntimeError("the app has not started")
    return runtime
