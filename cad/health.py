"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from cad.db import MigrationError, pending_migrations
from cad.deps import wired
from cad.errors import problem

router = APIRouter(tags=["health"])

READY_CHECK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class HealthDeps:
    pool: asyncpg.Pool
    migrations_dir: Path | None   # None: the migrations shipped in the package
    # what this worker serves with (road graph, ETA method, address points), from the wiring
    details: Callable[[], dict[str, Any]] | None = None


health_deps: Callable[[HTTPConnection], Awaitable[HealthDeps]] = wired("health")


class Alive(BaseModel):
    status: Literal["ok"]


class ReadyDetails(BaseModel):
    road_graph: str | None = Field(description="The loaded graph file; null: none.")
    eta_method: Literal["road_network", "straight_line_estimate"]
    address_points: int = Field(description="Address points in this worker's geocoder.")
    places: int
    warnings: list[str] = Field(description="What degrades answers, e.g. no road graph.")


class Ready(BaseModel):
    status: Literal["ready"]
    details: ReadyDetails | None = None


class NotReady(BaseModel):
    """RFC 9457 problem details, ``reason`` names what is missing."""

    type: str
    title: str
    status: int
    detail: str
    reason: Literal["database", "migrations"]
    pending: list[str] | None = None


@router.get("/healthz", summary="Process is alive", response_model=Alive)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database reachable and migrations current",
            response_model=Ready,
            responses={503: {"model": NotReady, "content": {"application/problem+json": {}},
                             "description": "Not ready; the body says why"}})
async def readyz(deps: Annotated[HealthDeps, Depends(health_deps)]) -> JSONResponse:
    pool = deps.pool
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                pending = await pending_migrations(conn, deps.migrations_dir)
    except MigrationError as exc:
        return problem(503, "Not ready", str(exc), reason="migrations")
    except TimeoutError:
        return problem(503, "Not ready", "the database did not answer in time", reason="database")
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        return problem(503, "Not ready", f"the database is unreachable: {type(exc).__name__}",
                       reason="database")
    if pending:
        return problem(503, "Not ready", f"migrations pending: {', '.join(pending)}",
                       reason="migrations", pending=pending)
    body: dict[str, Any] = {"status": "ready"}
    if deps.details is not None:
        body["details"] = deps.details()
    return JSONResponse(body)
