"""Events as the gateway carries them: read once from the event log, serialised once,
filtered per subscriber by agency (boards) or by unit (MDTs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

EVENT_COLUMNS = "id, type, occurred_at, aggregate_type, aggregate_id, agency, actor, request_id, data"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    agency: str | None
    aggregate_type: str
    aggregate_id: str
    unit_ids: frozenset[str]
    json: bytes  # the wire form (schemas.events.EventEnvelope), serialised once


def event_from_row(row: asyncpg.Record) -> Event:
    data: Any = row["data"]
    if isinstance(data, str):  # a connection without the jsonb codec
        data = orjson.loads(data)
    raw_units = data.get("unit_ids") if isinstance(data, dict) else None
    unit_ids = frozenset(str(u) for u in raw_units) if isinstance(raw_units, list) else frozenset()
    body = {
        "id": row["id"],
        "type": row["type"],
        "occurred_at": row["occurred_at"],
        "aggregate_type": row["aggregate_type"],
        "aggregate_id": row["aggregate_id"],
        "agency": row["agency"],
        "actor": row["actor"],
        "request_id": row["request_id"],
        "data": data,
    }
    return Event(row["id"], row["agency"], row["aggregate_type"], row["aggregate_id"], unit_ids,
                 orjson.dumps(body))


class EventFilter:
    """What one subscriber may see. ``key`` groups subscribers that see the same thing, so
    a frame is built once per group per tick."""

    key: tuple[Any, ...]

    def events(self, event: Event) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def positions(self, agency: str | None) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


class BoardFilter(EventFilter):
    """Incidents and units of the given agencies (None: every agency). Events without an
    agency are system-wide and go to every board."""

    def __init__(self, agencies: list[str] | None) -> None:
        self.agencies = None if agencies is None else frozenset(agencies)
        self.key = ("board", None if agencies is None else tuple(sorted(self.agencies or ())))

    def events(self, event: Event) -> bool:
        return self.agencies is None or event.agency is None or event.agency in self.agencies

    def positions(self, agency: str | None) -> bool:
        return self.agencies is None or agency in self.agencies


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
