"""What the gateway needs from the rest of the application, as typed callables.

The gateway knows no domain package: ``cad.app`` (the one module that imports everything)
builds a :class:`GatewayPorts` from the domain functions and hands it to
:class:`ws_gateway.gateway.Gateway`. Tests may hand in their own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from cad.security.principal import Principal


class BoardSnapshot(Protocol):
    """Open incidents and active units of ``agencies`` (None: every agency) but those of the
    ``hidden`` (training) agencies, shaped as
    ``schemas.realtime.BoardSnapshot``. Called inside the REPEATABLE READ transaction that
    also reads the event-log position the snapshot corresponds to."""

    async def __call__(self, conn: asyncpg.Connection, *, agencies: list[str] | None,
                       hidden: frozenset[str] = frozenset()) -> dict[str, Any]: ...


class UnitSnapshot(Protocol):
    """What an MDT shows (``schemas.realtime.UnitSnapshot``); None for an unknown unit
    (the socket is closed with 4404). Same transaction rule as :class:`BoardSnapshot`."""

    async def __call__(self, conn: asyncpg.Connection,
                       unit_id: str) -> dict[str, Any] | None: ...


class ResolvePrincipal(Protocol):
    """The principal of an access or MDT device token; None when it is invalid, expired,
    revoked or idle. ``touch`` counts the call as user activity (connect and renewal do;
    periodic re-checks do not, so an unattended board still times out)."""

    async def __call__(self, token: str, *, touch: bool) -> Principal | None: ...


class StoreLastFixes(Protocol):
    """Store each unit's newest fix of a flushed batch (unit_id, lat, lon, fix_time; one per
    unit) on the unit's row, inside the breadcrumb writer's transaction. An older fix never
    replaces a newer one."""

    async def __call__(self, conn: asyncpg.Connection,
                       fixes: Sequence[tuple[str, float, float, datetime]]) -> None: ...


class UnitAgency(Protocol):
    """The agency of a unit; None for an unknown unit."""

    async def __call__(self, conn: asyncpg.Connection, unit_id: str) -> str | None: ...


# Why (lat, lon) is not a plausible place for a unit of this agency (outside its service area);
# None when it is. Called for every well-formed fix before anything of its message is taken.
PlaceRefusal = Callable[[str | None, float, float], str | None]

# An accepted AVL fix (this worker's, or another worker's through the hub):
# (unit_id, lat, lon, fix_time). Runs on the event loop for every fix: must be quick.
ApplyPosition = Callable[[str, float, float, datetime], None]

# Units changed, possibly through another worker (named by committed events; None: any unit
# may have changed, e.g. a station moved, the worker started, or the hub reconnected after
# an outage). Runs on the event loop once per batch of events: schedule work, do not block.
UnitsChanged = Callable[[Collection[str] | None], None]

# A training agency's exercise was deleted (a ``training.reset`` event, cad.training): these
# units' positions this worker holds in memory (newer than the database's, which the reset
# cleared) are forgotten. Their re-read follows through ``units_changed``. On the event loop.
UnitsReset = Callable[[Collection[str]], None]


# A point in words for the board ("935 FOLSOM ST (between 5TH ST and 6TH ST)"): the domain's
# reverse geocoder, in memory. Runs on the event loop, once per request of
# GET /api/v1/units/{unit_id}/position (about 0.05 ms on San Francisco; p99 0.5 ms).
DescribePlace = Callable[[float, float], str]


def _coordinates(lat: float, lon: float) -> str:
    return f"{lat:.5f}, {lon:.5f}"


def _ignore_position(unit_id: str, lat: float, lon: float, fix_time: datetime) -> None:
    return None


def _ignore_units(unit_ids: Collection[str] | None) -> None:
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayPorts:
    board_snapshot: BoardSnapshot
    unit_snapshot: UnitSnapshot
    resolve_principal: ResolvePrincipal
    store_last_fixes: StoreLastFixes
    unit_agency: UnitAgency
    place_refusal: PlaceRefusal
    apply_position: ApplyPosition = _ignore_position
    units_changed: UnitsChanged = _ignore_units
    units_reset: UnitsReset = _ignore_units
    describe_place: DescribePlace = _coordinates
