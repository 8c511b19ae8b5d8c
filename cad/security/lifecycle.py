"""Wiring into the app: ``install`` from create_app (no I/O), ``start``/``stop`` from the
lifespan (key file, hasher, admin bootstrap, audit retention and witness tasks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

import asyncpg
import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cad.deps import provide
from cad.security import audit, witness
from cad.security.api import router
from cad.security.middleware import SecurityMiddleware, iter_routes
from cad.security.policy import Policy, Rule
from cad.security.ratelimit import SharedBuckets
from cad.security.runtime import SecurityRuntime
from cad.security.service import bootstrap_admin
from cad.security.state import SecurityDeps, SecurityState, security_deps
from cad.settings import Settings

log = structlog.get_logger("cad.security")


def install(app: FastAPI, settings: Settings, *,
            policy_overrides: Mapping[tuple[str, str], Rule] | None = None) -> SecurityState:
    state = SecurityState(policy=Policy(overrides=policy_overrides))
    app.include_router(router)
    app.add_middleware(SecurityMiddleware, routes_of=app, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"], max_age=600)
    return state


def check_routes(state: SecurityState, app: FastAPI) -> None:
    """Log every route the policy has no rule for (refused with 403 at request time; logged
    loudly so that it is noticed at deploy). Called by the app factory once every router is
    included: FastAPI builds each route's context lazily, and walking them all costs 100+ ms
    of CPU. Done during the lifespan it stalled the event loop by 110-130 ms, even from a
    worker thread (a watchdog's stack dumps showed the walk, benchmarks/coldstart_bench.py
    the stall); here the loop runs nothing yet."""
    missing = state.policy.unruled(iter_routes(app))
    if missing:
        log.error("routes_without_policy_rule", routes=[f"{m} {p}" for m, p in missing])


async def start(state: SecurityState, *, app: FastAPI, pool: asyncpg.Pool,
                settings: Settings) -> None:
    # Key file I/O and one argon2 hash (~0.4 CPU s): off the event loop.
    rt = await asyncio.to_thread(SecurityRuntime.build, settings)
    if settings.redis_url:
        ident = await pool.fetchrow(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster, "
            "current_database() AS db")
        rt.shared_buckets = SharedBuckets.connect(
            settings.redis_url, f"cad:rl:{ident['cluster']}:{ident['db']}")
    state.runtime, state.pool = rt, pool
    provide(app, security_deps, SecurityDeps(runtime=rt, pool=pool, settings=settings))
    if settings.bootstrap_admin_username and settings.bootstrap_admin_password:
        await bootstrap_admin(rt=rt, pool=pool, username=settings.bootstrap_admin_username,
                              password=settings.bootstrap_admin_password.get_secret_value())
    if settings.audit_prune_interval_s > 0:
        state.tasks.append(asyncio.create_task(_prune_loop(pool, settings), name="audit-prune"))
    if settings.audit_witness_interval_s > 0:
        state.tasks.append(asyncio.create_task(
            witness.run(pool, witness.configured_path(settings),
                        settings.audit_witness_interval_s), name="audit-witness"))


async def stop(state: SecurityState) -> None:
    for task in state.tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    state.tasks.clear()
    rt = state.runtime
    if rt is not None and rt.shared_buckets is not None:
        with contextlib.suppress(Exception):
            await rt.shared_buckets.close()


async def _prune_loop(pool: asyncpg.Pool, settings: Settings) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                deleted = await audit.prune(conn, retention_days=settings.audit_retention_days)
            if deleted:
                log.info("audit_pruned", deleted=deleted)
        except asyncio.CancelledError:
            raise
        except audit.RetentionRefused as exc:
            # CAD_AUDIT_RETENTION_DAYS is below the database's floor (audit_policy).
            log.error("audit_prune_refused", error=str(exc))
        except Exception:
            log.exception("audit_prune_failed")
        await asyncio.sleep(settings.audit_prune_interval_s)
