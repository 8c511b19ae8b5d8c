"""What one worker holds for the domain services: built in the app lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from cad.settings import Settings


@dataclass
class Services:
    pool: asyncpg.Pool
    settings: Settings
    routing: Any | None = None      # routing.service.RoutingService when a graph is loaded
    locator: Any | None = None      # units.locator.UnitLocator
    geocoder: Any | None = None     # incidents.geocode.StreetIndex when the graph has names
    known_sequences: set[str] = field(default_factory=set)  # incident-number sequences made
