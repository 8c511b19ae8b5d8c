"""The application factory. Nothing here runs at import: settings, pool and embedded
PostgreSQL are created in the lifespan of the app that ``create_app`` returns."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping

import structlog
from fastapi import APIRouter, FastAPI

from cad import db
from cad.embedded_pg import EmbeddedPostgres, mask_url
from cad.errors import install_error_handlers
from cad.health import router as health_router
from cad.logging import configure_logging
from cad.middleware import RequestContextMiddleware
from cad.security import lifecycle as security
from cad.security.policy import Rule
from cad.settings import Settings
from cad.warmup import start_loop_lag_monitor, warm_routing_kernels
from incidents import lifecycle as dispatch_services
from incidents.api import router as incidents_router
from units.api import router as units_router
from ws_gateway import lifecycle as realtime
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

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything else, so the server listens only when no request can compile a
        # kernel: the routing kernels, compiled or loaded off the event loop (cad/warmup.py).
        start_loop_lag_monitor(settings)
        await warm_routing_kernels(settings)
        embedded: EmbeddedPostgres | None = None
        url = settings.database_url
        if url is None:
            # Reached when the app is served by a bare ASGI server; `cad serve` starts the
            # cluster itself (before any worker) and passes CAD_DATABASE_URL down.
            embedded = EmbeddedPostgres(settings.data_dir / "postgres")
            url = embedded.start()
        app.state.pool = None
        try:
            if settings.migrate_on_start:
                conn = await db.connect(url)
                try:
                    await db.migrate(conn, settings.migrations_dir)
                finally:
                    await conn.close()
            app.state.pool = await db.create_pool(
                url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                command_timeout=settings.db_command_timeout_s,
            )
            await dispatch_services.start(app)
            await security.start(app)
            await realtime.start(app, url)
            log.info("app_started", database=mask_url(url))
            yield
        finally:
            await realtime.stop(app)
            await security.stop(app)
            await dispatch_services.stop(app)
            if app.state.pool is not None:
                with contextlib.suppress(Exception):
                    await app.state.pool.close()
            if embedded is not None:
                embedded.stop()

    app = FastAPI(
        title="CAD backend",
        version="0.1.0",
        summary="Computer-aided dispatch for police, fire and EMS.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = None
    install_error_handlers(app)
    # Before RequestContextMiddleware, so that one is outermost (request id, body limit).
    security.install(app, settings, policy_overrides=policy_overrides)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    app.include_router(health_router)
    app.include_router(units_router)
    app.include_router(incidents_router)
    app.include_router(realtime_router)
    for router in extra_routers:
        app.include_router(router)
    return app
