"""What the dispatch workflows need from the running app, provided by ``cad.wiring``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.plausible import Plausibility
from cad.settings import Settings
from incidents.dispatch.coverage import CoverageCache
from incidents.geocoding.index import GeocoderRef
from routing.service import RoutingService
from units.locator import UnitLocator


@dataclass(frozen=True)
class DispatchDeps:
    pool: asyncpg.Pool
    settings: Settings
    routing: RoutingService | None   # None without a road graph: straight-line estimates
    locator: UnitLocator             # this worker's routing index of units
    plausible: Plausibility          # the time window and service area every input must fit
    geocoder: GeocoderRef | None = None   # describes where each picked unit is
    # Timer rows the sweep could not evaluate, already logged (each is logged once).
    unevaluable_timers: set[str] = field(default_factory=set)
    # This worker's coverage grids and per-unit ETAs (incidents/dispatch/coverage.py).
    coverage: CoverageCache = field(default_factory=CoverageCache)


dispatch_deps: Callable[[HTTPConnection], Awaitable[DispatchDeps]] = wired("dispatch")
DispatchDep = Annotated[DispatchDeps, Depends(dispatch_deps)]
