"""Wiring into the app: ``install`` from create_app (no I/O), ``start``/``stop`` from the
lifespan (key file, hasher, admin bootstrap, audit retention and witness tasks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cad.security import audit, witness
from cad.security.api import router
from cad.security.middleware import SecurityMiddleware, iter_routes
from cad.security.policy import Policy, Rule
from cad.security.ratelimit import SharedBuckets
from cad.security.runtime import SecurityRuntime
from cad.security.service import bootstrap_admin
from cad.settings import Settings

log = structlog.get_logger("cad.security")


def install(app: FastAPI, settings: Settings, *,
            policy_overrides: Mapping[tuple[str, str], Rule] | None = None) -> None:
    policy = Policy(overrides=policy_overrides)
    app.state.policy = policy
    app.state.security = None
    app.include_router(router)
    app.add_middleware(SecurityMiddleware, fastapi_app=app, policy=policy)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"], max_age=600)


async def start(app: FastAPI) -> None:
    settings: Settings = app.state.settings
    rt = SecurityRuntime.build(settings)
    if settings.redis_url:
        ident = await app.state.pool.fetchrow(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster, "
            "current_database() AS db")
        rt.shared_buckets = SharedBuckets.connect(
            settings.redis_url, f"cad:rl:{ident['cluster']}:{ident['db']}")
    app.state.security = rt
    missing = app.state.policy.unruled(iter_routes(app))
    if missing:
        # Refused with 403 at request time; logged loudly so that it is noticed at deploy.
        log.error("routes_without_policy_rule", routes=[f"{m} {p}" for m, p in missing])
    if settings.bootstrap_admin_username and settings.bootstrap_admin_password:
        await bootstrap_admin(rt, app.state.pool, username=settings.bootstrap_admin_username,
                              password=settings.bootstrap_admin_password.get_secret_value())
    app.state.security_tasks = []
    if settings.audit_prune_interval_s > 0:
        app.state.security_tasks.append(asyncio.create_task(_prune_loop(app, settings)))
    if settings.audit_witness_interval_s > 0:
        app.state.security_tasks.append(asyncio.create_task(
            witness.run(app.state.pool, witness.configured_path(settings),
                        settings.audit_witness_interval_s), name="audit-witness"))


async def stop(app: FastAPI) -> None:
    for task in getattr(app.state, "security_tasks", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    rt = getattr(app.state, "security", None)
    if rt is not None and rt.shared_buckets is not None:
        with contextlib.suppress(Exception):
            await rt.shared_buckets.close()


async def _prune_loop(app: FastAPI, settings: Settings) -> None:
    while True:
        try:
            pool: Any = app.state.pool
            async with pool.acquire() as conn:
                deleted = await audit.prune(conn, retention_days=settings.audit_retention_days)
            if deleted:
                log.info("audit_pruned", deleted=deleted)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("audit_prune_failed")
        await asyncio.sleep(settings.audit_prune_interval_s)
