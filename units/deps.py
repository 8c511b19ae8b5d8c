"""What the units package needs from the running app, provided by ``cad.wiring``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.plausible import Plausibility
from units.locator import UnitLocator


@dataclass(frozen=True)
class UnitsDeps:
    pool: asyncpg.Pool
    locator: UnitLocator   # this worker's routing index of units, re-placed after each change
    plausible: Plausibility  # the time window and service area every input must fit


units_deps: Callable[[HTTPConnection], Awaitable[UnitsDeps]] = wired("units")
UnitsDep = Annotated[UnitsDeps, Depends(units_deps)]
