"""What the incidents package needs from the running app, provided by ``cad.wiring``."""

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
from incidents.geocoding.index import GeocoderRef


@dataclass(frozen=True)
class IncidentsDeps:
    pool: asyncpg.Pool
    settings: Settings
    geocoder: GeocoderRef           # address points, places and the road graph's streets
    plausible: Plausibility         # the time window and service area every input must fit
    # Incident-number sequences this worker knows exist (made on first use).
    known_sequences: set[str] = field(default_factory=set)


incidents_deps: Callable[[HTTPConnection], Awaitable[IncidentsDeps]] = wired("incidents")
IncidentsDep = Annotated[IncidentsDeps, Depends(incidents_deps)]
