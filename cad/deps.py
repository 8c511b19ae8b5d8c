"""Shared FastAPI dependency aliases, and how a package asks the wiring for what it needs.

A domain package declares what its HTTP handlers need as a typed dependency that only the
app's wiring can satisfy (``wired``); ``cad.wiring`` provides the value when the app starts
(``provide``), so no handler reads untyped app state and no package imports the wiring.

All async: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
request that showed up in the dispatch benchmark's profile."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Header

from cad import idempotency

T = TypeVar("T")


class NotWired(RuntimeError):
    """A handler ran before the wiring provided what it needs (a start-up bug)."""


def wired(name: str) -> Callable[[], Awaitable[T]]:
    """A dependency that answers only once the wiring has provided it."""

    async def dependency() -> T:
        raise NotWired(f"{name} is provided by cad.wiring when the app starts")

    dependency.__name__ = f"wired_{name}"
    dependency.__qualname__ = dependency.__name__
    return dependency


def provide(app: FastAPI, dependency: Callable[[], Awaitable[T]], value: T) -> None:
    """Make ``dependency`` (made by ``wired``) answer ``value`` in every request of ``app``."""

    async def provided() -> T:
        return value

    app.dependency_overrides[dependency] = provided


async def _idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", description=(
        "Retry-safe writes: the same key replays the first answer."))] = None,
) -> str | None:
    return idempotency.validate_key(key)


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]
