"""The routing core's error types.

Every refusal of the routing library is a :class:`RoutingError` (a ``ValueError``, so
callers that only know "bad input" still catch it); the subclasses say which input was
wrong, so the app can map each to a clear answer instead of a bare ``KeyError``.
"""

from __future__ import annotations

from pathlib import Path


class RoutingError(ValueError):
    """Bad input to the routing library (unknown unit, no location, ...)."""


class UnknownNodeError(RoutingError):
    """An external node id (OSM, DIMACS) that is not in the graph."""

    def __init__(self, node_ids: list[int]):
        self.node_ids = node_ids
        super().__init__(f"node ids not in graph (outside the largest component?): {node_ids}")


class InvalidKError(RoutingError):
    """K (how many units to return) is not a positive integer."""


class InvalidUnitTypesError(RoutingError):
    """``unit_types`` is not a collection of known unit-type strings (e.g. a bare string)."""


class InvalidLocationError(RoutingError):
    """Coordinates that are not finite numbers within [-90, 90] x [-180, 180]."""


class GraphFileError(RoutingError):
    """A graph file that cannot be used: unreadable, inconsistent or corrupt. The message
    is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class GraphFormatWarning(UserWarning):
    """A graph file of an older format: loaded, but without the checksum over its arrays."""
