"""Routing core: road graph, contraction hierarchy, unit index and ETA queries.

Pure library: no HTTP, no database. The app holds one :class:`RoutingService` per
worker. See docs/routing.md.
"""

from routing.errors import (
    GraphFileError,
    GraphFormatWarning,
    InvalidKError,
    InvalidLocationError,
    InvalidUnitTypesError,
    RoutingError,
    UnknownNodeError,
)
from routing.graph import Hierarchy, RoadGraph
from routing.service import (
    EtaTable,
    Location,
    NearestUnits,
    Placement,
    Route,
    RoutingService,
    UnitEta,
)

__all__ = [
    "EtaTable",
    "GraphFileError",
    "GraphFormatWarning",
    "Hierarchy",
    "InvalidKError",
    "InvalidLocationError",
    "InvalidUnitTypesError",
    "Location",
    "NearestUnits",
    "Placement",
    "RoadGraph",
    "Route",
    "RoutingError",
    "RoutingService",
    "UnitEta",
    "UnknownNodeError",
]
