"""This worker's view of where units are, kept in step with the routing index.

A unit's position for routing is its last AVL fix while fresh, else its home station
(flagged). The routing index is a per-worker cache: PostgreSQL stays the truth, and every
recommendation re-checks availability in the database before it answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import asyncpg
import structlog

from units.status import AVAILABLE, UnitStatus

log = structlog.get_logger("units.locator")

UNITS_WITH_STATIONS = """
SELECT u.*, s.lat AS station_lat, s.lon AS station_lon
FROM units u LEFT JOIN stations s ON s.id = u.home_station
"""


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    source: str           # "avl" | "station" | "avl_stale"
    age_s: float | None   # age of the AVL fix, when there is one
    stale: bool


def unit_position(row: Mapping[str, Any], *, now: datetime, stale_after_s: float) -> Position | None:
    fix_at = row.get("last_fix_at")
    age = (now - fix_at).total_seconds() if fix_at is not None else None
    has_fix = fix_at is not None and row.get("last_lat") is not None
    if has_fix and age is not None and age <= stale_after_s:
        return Position(row["last_lat"], row["last_lon"], "avl", age, False)
    if row.get("station_lat") is not None:
        # No fix, or a stale one: the station is the best guess (in quarters it is exact).
        return Position(row["station_lat"], row["station_lon"], "station", age, has_fix)
    if has_fix:
        return Position(row["last_lat"], row["last_lon"], "avl_stale", age, True)
    return None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UnitLocator:
    def __init__(self, routing: Any | None, *, stale_after_s: float) -> None:
        self.routing = routing
        self.stale_after_s = stale_after_s
        self.indexed: dict[str, Position] = {}

    def apply(self, row: Mapping[str, Any], *, now: datetime | None = None) -> Position | None:
        """Place (or remove) one unit in the routing index from its joined row."""
        if self.routing is None:
            return None
        uid = row["id"]
        pos = unit_position(row, now=now or utcnow(), stale_after_s=self.stale_after_s)
        if pos is None or not row["active"]:
            if uid in self.indexed:
                self.routing.remove_unit(uid)
                del self.indexed[uid]
            return None
        if not (math.isfinite(pos.lat) and math.isfinite(pos.lon)):
            return None
        self.routing.upsert_unit(
            uid, lat=pos.lat, lon=pos.lon, available=UnitStatus(row["status"]) in AVAILABLE,
            unit_type=row["unit_type"], capabilities=list(row["capabilities"] or []))
        self.indexed[uid] = pos
        return pos

    async def refresh(self, conn: asyncpg.Connection, unit_ids: list[str] | None = None) -> None:
        if self.routing is None:
            return
        if unit_ids is None:
            rows = await conn.fetch(UNITS_WITH_STATIONS)
        else:
            rows = await conn.fetch(UNITS_WITH_STATIONS + " WHERE u.id = ANY($1)", unit_ids)
        now = utcnow()
        for r in rows:
            try:
                self.apply(r, now=now)
            except Exception:  # one bad position must not take the others out of the index
                log.exception("unit_index_update_failed", unit_id=r["id"])
