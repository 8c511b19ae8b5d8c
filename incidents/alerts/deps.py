"""What the alerts package needs from the running app, provided by ``cad.wiring``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.settings import Settings


@dataclass(frozen=True)
class AlertsDeps:
    pool: asyncpg.Pool
    settings: Settings
    # Set after a publication commits: the delivery worker looks at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


alerts_deps: Callable[[HTTPConnection], Awaitable[AlertsDeps]] = wired("alerts")
AlertsDep = Annotated[AlertsDeps, Depends(alerts_deps)]
