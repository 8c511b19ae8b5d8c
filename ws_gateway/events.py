"""Events as the gateway carries them: read once from the event log, serialised once,
filtered per subscriber by agency (boards) or by unit (MDTs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from schemas.events import ENVELOPE_FIELDS

# The event_log columns are the envelope's fields (schemas.events.EventEnvelope), in order.
EVENT_COLUMNS = ", ".join(ENVELOPE_FIELDS)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    agency: str | None
    aggregate_type: str
    aggregate_id: str
    unit_ids: frozenset[str]
    json: bytes
    training: bool = False  # the wire form (schemas.events.EventEnvelope), serialised once per worker


def event_from_row(row: asyncpg.Record) -> Event:
    data: Any = row["data"]
    if isinstance(data, str):  # a connection without the jsonb codec
        data = orjson.loads(data)
    raw_units = data.get("unit_ids") if isinstance(data, dict) else None
    unit_ids = frozenset(str(u) for u in raw_units) if isinstance(raw_units, list) else frozenset()
    body = {k: row[k] for k in ENVELOPE_FIELDS}
    body["data"] = data
    return Event(row["id"], row["agency"], row["aggregate_type"], row["aggregate_id"], unit_ids,
                 orjson.dumps(body), bool(row["training"]))


class TickView:
    """The events and positions of one tick, with indexes built on first use, so that a
    thousand MDT groups do not each scan everything (that was 25 % of server CPU)."""

    def __init__(self, events: list[Event], positions: list[tuple[str | None, bytes]]) -> None:
        self.events = events
        self.positions = positions
        self._by_unit: dict[str, list[Event]] | None = None
        self._pos_by_agency: dict[str | None, list[bytes]] | None = None

    def events_for_unit(self, unit_id: str) -> list[Event]:
        if self._by_unit is None:
            by_unit: dict[str, list[Event]] = {}
            for e in self.events:
                if e.aggregate_type == "unit":
                    by_unit.setdefault(e.aggregate_id, []).append(e)
                for u in e.unit_ids:
                    lst = by_unit.setdefault(u, [])
                    if not lst or lst[-1] is not e:
                        lst.append(e)
            self._by_unit = by_unit
        return self._by_unit.get(unit_id, [])

    def positions_for(self, agencies: frozenset[str] | None) -> list[bytes]:
        if agencies is None:
            return [j for _, j in self.positions]
        if self._pos_by_agency is None:
            grouped: dict[str | None, list[bytes]] = {}
            for agency, j in self.positions:
                grouped.setdefault(agency, []).append(j)
            self._pos_by_agency = grouped
        if len(agencies) == 1:
            return self._pos_by_agency.get(next(iter(agencies)), [])
        return [j for agency, j in self.positions if agency in agencies]


class EventFilter:
    """What one subscriber may see. ``key`` groups subscribers that see the same thing, so
    a frame is built once per group per tick."""

    key: tuple[Any, ...]
    wants_positions: bool = False

    def events(self, event: Event) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def positions(self, agency: str | None) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def select(self, view: TickView) -> tuple[list[Event], list[bytes]]:
        """This tick's events and positions for this filter (same as filtering one by one)."""
        return ([e for e in view.events if self.events(e)],
                [j for agency, j in view.positions if self.positions(agency)])


class BoardFilter(EventFilter):
    """Incidents and units of the given agencies (None: every agency) but the ``hidden``
    (training) ones and training events. Events without an agency are system-wide and go to
    every board."""

    def __init__(self, agencies: list[str] | None, *,
                 hidden: frozenset[str] = frozenset()) -> None:
        self.agencies = None if agencies is None else frozenset(agencies)
        self.hidden = frozenset(hidden)
        self.wants_positions = self.agencies is None or bool(self.agencies)
        self.key = ("board", None if agencies is None else tuple(sorted(self.agencies or ())),
                    tuple(sorted(self.hidden)))

    def events(self, event: Event) -> bool:
        if self.hidden and (event.training or event.agency in self.hidden):
            return False
        return self.agencies is None or event.agency is None or event.agency in self.agencies

    def positions(self, agency: str | None) -> bool:
        if agency in self.hidden:
            return False
        return self.agencies is None or agency in self.agencies

    def select(self, view: TickView) -> tuple[list[Event], list[bytes]]:
        evs = view.events
        if (self.agencies is not None or self.hidden) and evs:
            evs = [e for e in evs if self.events(e)]
        if not view.positions:
            return evs, []
        positions = view.positions_for(self.agencies)
        if self.hidden:
            positions = [j for agency, j in view.positions if self.positions(agency)]
        return evs, positions


class UnitFilter(EventFilter):
    """An MDT: events whose aggregate is its unit, or incident (and other) events whose
    ``data.unit_ids`` names it. No positions of other units."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.key = ("unit", unit_id)

    def events(self, event: Event) -> bool:
        return ((event.aggregate_type == "unit" and event.aggregate_id == self.unit_id)
                or self.unit_id in event.unit_ids)

    def positions(self, agency: str | None) -> bool:
        return False

    def select(self, view: TickView) -> tuple[list[Event], list[bytes]]:
        return (view.events_for_unit(self.unit_id) if view.events else []), []
