"""Shared FastAPI dependency aliases, and how a package asks the wiring for what it needs.

A domain package declares what its HTTP handlers need as a typed dependency that only the
app's wiring can satisfy (``wired``); ``cad.wiring`` provides the value when the app starts
(``provide``), so no handler reads untyped app state and no package imports the wiring.

All async: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
request that showed up in the dispatch benchmark's profile."""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, FastAPI, Header
from starlette.requests import HTTPConnection

from cad import idempotency

T = TypeVar("T")


class NotWired(RuntimeError):
    """A handler ran before the wiring provided what it needs (a start-up bug)."""


# What the wiring provided, per app (tests run several apps in one process). Not FastAPI's
# dependency_overrides: with overrides FastAPI re-inspects the override's signature on every
# request (measured: a third of the dispatch benchmark's server CPU).
_provided: weakref.WeakKeyDictionary[Any, dict[object, object]] = weakref.WeakKeyDictionary()


def wired(name: str) -> Callable[[HTTPConnection], Awaitable[T]]:
    """A dependency that answers only once the wiring has provided it."""

    async def dependency(conn: HTTPConnection) -> T:
        try:
            return cast(T, _provided[conn.app][dependency])
        except KeyError:
            raise NotWired(f"{name} is provided by cad.wiring when the app starts") from None

    dependency.__name__ = f"wired_{name}"
    dependency.__qualname__ = dependency.__name__
    return dependency


def provide(app: FastAPI, dependency: Callable[[HTTPConnection], Awaitable[T]], value: T) -> None:
    """Make ``dependency`` (made by ``wired``) answer ``value`` in every request of ``app``."""
    _provided.setdefault(app, {})[dependency] = value


async def _idempotency_key(
    key: Annotated[str | None, Header(alias="Idempotency-Key", description=(
        "Retry-safe writes: the same key replays the first answer."))] = None,
) -> str | None:
    return idempotency.validate_key(key)


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]
