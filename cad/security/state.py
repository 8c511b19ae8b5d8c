"""What the security middleware, endpoints and token checks hold for one app: the access
policy (from create_app) and, once the app has started, the runtime (keys, hasher, limiters)
and the pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.security.policy import Policy
from cad.security.runtime import SecurityRuntime
from cad.settings import Settings


@dataclass
class SecurityState:
    policy: Policy
    runtime: SecurityRuntime | None = None   # set by lifecycle.start
    pool: asyncpg.Pool | None = None         # set by lifecycle.start
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass(frozen=True)
class SecurityDeps:
    """What the security endpoints need, provided by the wiring once the app has started."""

    runtime: SecurityRuntime
    pool: asyncpg.Pool
    settings: Settings


security_deps: Callable[[HTTPConnection], Awaitable[SecurityDeps]] = wired("security")
SecurityDep = Annotated[SecurityDeps, Depends(security_deps)]
