"""Shared FastAPI dependency aliases for the domain routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from cad import idempotency
from cad.services import Services


def _services(request: Request) -> Services:
    return request.app.state.services


def _idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", description=(
        "Retry-safe writes: the same key replays the first answer."))] = None,
) -> str | None:
    return idempotency.validate_key(key)


ServicesDep = Annotated[Services, Depends(_services)]
IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]
