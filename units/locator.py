"""This worker's view of where units are, kept in step with the routing index.

A unit's position for routing is its newest AVL fix while fresh, else its home station
(flagged). Fixes reach this worker over AVL (``move``) before the breadcrumb writer stores
them, so the newest of the database's fix and this worker's own is used. The routing index
is a per-worker cache: PostgreSQL stays the truth for availability, and every
recommendation re-checks it before answering.

With several workers, changes made through another worker reach this one's index too: every
worker tails the event log, and events naming units (status changes, roster edits,
dispatches; station edits name all) re-read those units here (``schedule_refresh``); AVL
fixes ingested by another worker arrive through the hub's position batches (``move``).
Without that a unit made available through worker A would never be proposed by worker B:
the re-check only removes wrong candidates, it cannot add missing ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from cad.uow import UnitOfWork
from routing.service import RoutingService
from units import repository as repo
from units.status import AVAILABLE, UnitStatus

log = structlog.get_logger("units.locator")


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    source: str                # "avl" | "station" | "avl_stale"
    age_s: float | None        # age of the AVL fix, when there is one
    stale: bool
    fix_at: datetime | None = None


def unit_position(row: Mapping[str, Any], *, now: datetime, stale_after_s: float,
                  fix: tuple[float, float, datetime] | None = None) -> Position | None:
    """``fix``: a newer fix than the row's, known to this worker."""
    lat, lon, fix_at = row.get("last_lat"), row.get("last_lon"), row.get("last_fix_at")
    if fix is not None and (fix_at is None or fix[2] > fix_at):
        lat, lon, fix_at = fix
    age = (now - fix_at).total_seconds() if fix_at is not None else None
    has_fix = fix_at is not None and lat is not None and lon is not None
    if has_fix and age is not None and age <= stale_after_s:
        assert lat is not None and lon is not None  # has_fix
        return Position(lat, lon, "avl", age, False, fix_at)
    if row.get("station_lat") is not None:
        # No fix, or a stale one: the station is the best guess (in quarters it is exact).
        return Position(row["station_lat"], row["station_lon"], "station", age, has_fix, fix_at)
    if has_fix:
        assert lat is not None and lon is not None  # has_fix
        return Position(lat, lon, "avl_stale", age, True, fix_at)
    return None


def utcnow() -> datetime:
    return datetime.now(UTC)


class UnitLocator:
    def __init__(self, routing: RoutingService | None, *, pool: asyncpg.Pool,
                 stale_after_s: float) -> None:
        self.routing = routing
        self.pool = pool
        self.stale_after_s = stale_after_s
        self.indexed: dict[str, Position] = {}
        self.fixes: dict[str, tuple[float, float, datetime]] = {}
        self._dirty: set[str] = set()
        self._dirty_all = False
        self._refresher: asyncio.Task[None] | None = None

    def position(self, row: Mapping[str, Any], *, now: datetime | None = None) -> Position | None:
        return unit_position(row, now=now or utcnow(), stale_after_s=self.stale_after_s,
                             fix=self.fixes.get(row["id"]))

    def apply(self, row: Mapping[str, Any], *, now: datetime | None = None) -> Position | None:
        """Place (or remove) one unit in the routing index from its joined row."""
        if self.routing is None:
            return None
        uid = row["id"]
        pos = self.position(row, now=now)
        if pos is None or not row["active"] or not (math.isfinite(pos.lat) and math.isfinite(pos.lon)):
            if uid in self.indexed:
                self.routing.remove_unit(uid)
                del self.indexed[uid]
            return None
        self.routing.upsert_unit(
            uid, lat=pos.lat, lon=pos.lon, available=UnitStatus(row["status"]) in AVAILABLE,
            unit_type=row["unit_type"], capabilities=list(row["capabilities"] or []))
        self.indexed[uid] = pos
        return pos

    def move(self, unit_id: str, lat: float, lon: float, fix_at: datetime) -> None:
        """An AVL fix: the routing index moves at once (microseconds)."""
        known = self.fixes.get(unit_id)
        if known is not None and known[2] >= fix_at:
            return
        self.fixes[unit_id] = (lat, lon, fix_at)
        if self.routing is None:
            return
        if unit_id in self.indexed:
            self.routing.move_unit(unit_id, lat=lat, lon=lon)
            age = max(0.0, (utcnow() - fix_at).total_seconds())
            self.indexed[unit_id] = Position(lat, lon, "avl", age, False, fix_at)
        else:
            # Not indexed yet (no station, first fix): its type and status come from the row.
            self.schedule_refresh([unit_id])

    def forget(self, unit_ids: Iterable[str]) -> None:
        """A training reset cleared these units' positions in the database: drop the fixes
        this worker holds (they would be newer than the row's none and win), and re-read."""
        ids = list(unit_ids)
        for uid in ids:
            self.fixes.pop(uid, None)
        self.schedule_refresh(ids)

    def schedule_refresh(self, unit_ids: Iterable[str] | None) -> None:
        """These units (None: all) changed, possibly through another worker: re-read them
        from the database soon. Bursts coalesce into one query per round."""
        if self.routing is None:
            return
        if unit_ids is None:
            self._dirty_all = True
        else:
            self._dirty.update(unit_ids)
        if (self._dirty or self._dirty_all) and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_dirty(), name="unit-locator-refresh")

    def refresh_after_commit(self, uow: UnitOfWork, unit_ids: list[str]) -> None:
        """Once ``uow`` commits, re-place these units in this worker's index (before the
        answer goes out, so this worker's next recommendation sees the change)."""
        if self.routing is None:
            return

        async def refresh() -> None:
            async with self.pool.acquire() as conn:
                await self.refresh(conn, unit_ids)

        uow.after_commit(refresh)

    async def _refresh_dirty(self) -> None:
        backoff = 0.2
        while self._dirty or self._dirty_all:
            everything, ids = self._dirty_all, sorted(self._dirty)
            self._dirty_all, self._dirty = False, set()
            try:
                async with self.pool.acquire() as conn:
                    await self.refresh(conn, None if everything else ids)
                backoff = 0.2
            except Exception:  # the database is away: keep them dirty and try again
                log.warning("unit_locator_refresh_failed", units=len(ids), all=everything,
                            exc_info=True)
                self._dirty_all = self._dirty_all or everything
                self._dirty.update(ids)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def settle(self, timeout_s: float = 1.0) -> None:
        """Wait for scheduled re-reads to finish (a recommendation calls this first), at most
        ``timeout_s``: while the database is away the re-reads retry, and a recommendation
        must fail on its own query rather than hang here."""
        task = self._refresher
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout_s)

    async def close(self) -> None:
        task = self._refresher
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await task

    async def refresh(self, conn: asyncpg.Connection, unit_ids: list[str] | None = None) -> None:
        if self.routing is None:
            return
        rows = await repo.units_with_stations(conn, unit_ids)
        if unit_ids is None:
            # Units no longer in the table at all leave the index.
            gone = set(self.indexed) - {r["id"] for r in rows}
        else:
            gone = set(unit_ids) - {r["id"] for r in rows}
        for uid in gone & set(self.indexed):
            self.routing.remove_unit(uid)
            del self.indexed[uid]
        now = utcnow()
        for r in rows:
            try:
                self.apply(r, now=now)
            except Exception:  # one bad position must not take the others out of the index
                log.exception("unit_index_update_failed", unit_id=r["id"])
