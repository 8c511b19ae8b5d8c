"""What the reports package needs from the running app, provided by ``cad.wiring``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.settings import Settings
from incidents.deps import IncidentsDeps
from incidents.public.challenge import Challenger


@dataclass(frozen=True)
class ReportsDeps:
    pool: asyncpg.Pool
    settings: Settings
    challenger: Challenger
    incidents: IncidentsDeps   # intake of an accepted report, the geocoder, plausibility


reports_deps: Callable[[HTTPConnection], Awaitable[ReportsDeps]] = wired("reports")
ReportsDep = Annotated[ReportsDeps, Depends(reports_deps)]
