"""Shared FastAPI dependency aliases for the domain routers.

All async: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
request that showed up in the dispatch benchmark's profile."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from cad import idempotency
from cad.services import Services


async def _services(request: Request) -> Services:
    return request.app.state.services


async def _idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", description=(
        "Retry-safe writes: the same key replays the first answer."))] = None,
) -> str | None:
    return idempotency.validate_key(key)


ServicesDep = Annotated[Services, Depends(_services)]
IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]
