"""Routing core: road graph, contraction hierarchy, unit index and ETA queries.

Pure library: no HTTP, no database. The app holds one :class:`RoutingService` per
worker. See docs/routing.md.
"""

from routing.graph import Hierarchy, RoadGraph
from routing.service import (
    EtaTable,
    Location,
    NearestUnits,
    Placement,
    Route,
    RoutingError,
    RoutingService,
    UnitEta,
)

__all__ = [
    "EtaTable",
    "Hierarchy",
    "Location",
    "NearestUnits",
    "Placement",
    "RoadGraph",
    "Route",
    "RoutingError",
    "RoutingService",
    "UnitEta",
]
