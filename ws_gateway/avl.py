"""AVL ingest: validate a fix, move the unit in the routing index at once, coalesce it for
the boards, and store it as a breadcrumb (thinned to ``avl_store_max_per_unit_per_s`` per unit,
batched COPY, off the request path).

Positions are not events: they are ephemeral for the boards (through the hub) and kept in
``unit_positions`` for analysts. ``units.last_lat/last_lon/last_fix_at`` follow the newest
stored fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog

from cad.settings import Settings
from schemas.realtime import POSITION_FIELDS
from ws_gateway.flood import BreadcrumbThinner
from ws_gateway.ports import ApplyPosition, PlaceRefusal, StoreLastFixes

log = structlog.get_logger("ws_gateway.avl")

POSITIONS_CHANNEL = "positions"

# Why a fix was not taken. "ignored" reasons are normal (a resent or late fix); "rejected"
# reasons point at a broken device or clock.
REJECT_BAD_COORDINATES = "bad_coordinates"
REJECT_BAD_HEADING = "bad_heading"
REJECT_BAD_SPEED = "bad_speed"
REJECT_BAD_ACCURACY = "bad_accuracy"
REJECT_FUTURE = "timestamp_in_future"
REJECT_TOO_OLD = "timestamp_too_old"
REJECT_BAD_TIMESTAMP = "bad_timestamp"
REJECT_OUTSIDE_AREA = "outside_service_area"  # counted only: the whole message is refused
IGNORE_OUT_OF_ORDER = "out_of_order"
IGNORED_REASONS = frozenset({IGNORE_OUT_OF_ORDER})

# 300 m/s is faster than any ground or rotor unit we dispatch; anything above is a GPS glitch.
MAX_SPEED_MPS = 300.0


@dataclass(frozen=True, slots=True)
class Fix:
    unit_id: str
    lat: float
    lon: float
    fix_time: datetime
    heading_deg: float | None = None
    speed_mps: float | None = None
    accuracy_m: float | None = None


class FixRejected(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    @property
    def ignored(self) -> bool:
        return self.reason in IGNORED_REASONS


class OutsideServiceArea(ValueError):
    """A fix of a message lies outside the unit's agency's service area: the whole message is
    refused (nothing of it is taken), naming the fix by its ``index``."""

    def __init__(self, index: int, detail: str) -> None:
        super().__init__(detail)
        self.index = index
        self.detail = detail


def _num(value: Any, reason: str, name: str, *, optional: bool) -> float | None:
    if value is None:
        if optional:
            return None
        raise FixRejected(reason, f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FixRejected(reason, f"{name} must be a number")
    f = float(value)
    if not math.isfinite(f):
        raise FixRejected(reason, f"{name} must be finite")
    return f


def parse_fix_time(value: Any) -> datetime:
    """ISO 8601 with an offset, or epoch seconds/milliseconds."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            secs = float(value) / 1000.0 if value > 1e11 else float(value)
            return datetime.fromtimestamp(secs, UTC)
        if isinstance(value, str):
            dt = datetime.fromisoformat(value)
            if dt.tzinfo is None:
                raise FixRejected(REJECT_BAD_TIMESTAMP, "fix_time needs a UTC offset")
            return dt.astimezone(UTC)
    except FixRejected:
        raise
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    raise FixRejected(REJECT_BAD_TIMESTAMP, "fix_time must be ISO 8601 with offset or epoch seconds")


def validate_fix(unit_id: str, raw: dict[str, Any], *, now: datetime, max_age_s: float,
                 max_future_s: float, max_accuracy_m: float) -> Fix:
    if not isinstance(raw, dict):
        raise FixRejected(REJECT_BAD_COORDINATES, "a fix is an object")
    lat = _num(raw.get("lat"), REJECT_BAD_COORDINATES, "lat", optional=False)
    lon = _num(raw.get("lon"), REJECT_BAD_COORDINATES, "lon", optional=False)
    assert lat is not None and lon is not None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise FixRejected(REJECT_BAD_COORDINATES, "lat must be within [-90, 90], lon within [-180, 180]")
    if lat == 0.0 and lon == 0.0:
        # "Null Island": what receivers without a fix report.
        raise FixRejected(REJECT_BAD_COORDINATES, "0,0 is a receiver without a fix")
    heading = _num(raw.get("heading_deg"), REJECT_BAD_HEADING, "heading_deg", optional=True)
    if heading is not None and not 0.0 <= heading <= 360.0:
        raise FixRejected(REJECT_BAD_HEADING, "heading_deg must be within [0, 360]")
    speed = _num(raw.get("speed_mps"), REJECT_BAD_SPEED, "speed_mps", optional=True)
    if speed is not None and not 0.0 <= speed <= MAX_SPEED_MPS:
        raise FixRejected(REJECT_BAD_SPEED, f"speed_mps must be within [0, {MAX_SPEED_MPS:g}]")
    acc = _num(raw.get("accuracy_m"), REJECT_BAD_ACCURACY, "accuracy_m", optional=True)
    if acc is not None and not 0.0 <= acc <= max_accuracy_m:
        raise FixRejected(REJECT_BAD_ACCURACY, f"accuracy_m must be within [0, {max_accuracy_m:g}]")
    if "fix_time" not in raw:
        raise FixRejected(REJECT_BAD_TIMESTAMP, "fix_time is required")
    fix_time = parse_fix_time(raw["fix_time"])
    skew = (fix_time - now).total_seconds()
    if skew > max_future_s:
        raise FixRejected(REJECT_FUTURE, f"fix_time is {skew:.1f} s in the future")
    if -skew > max_age_s:
        raise FixRejected(REJECT_TOO_OLD, f"fix_time is {-skew:.0f} s old (limit {max_age_s:g} s)")
    return Fix(unit_id, lat, lon, fix_time, heading, speed, acc)


def fix_wire(fix: Fix, agency: str | None, coalesced: int) -> dict[str, Any]:
    """A position as boards receive it (``schemas.realtime.Position``; not validated here:
    ``fix`` passed :func:`validate_fix`). ``coalesced``: fixes of this unit superseded on the
    ingesting worker since the previous one sent (dropped on purpose)."""
    return {
        "unit_id": fix.unit_id, "agency": agency, "lat": fix.lat, "lon": fix.lon,
        "heading_deg": fix.heading_deg, "speed_mps": fix.speed_mps,
        "accuracy_m": fix.accuracy_m, "fix_time": fix.fix_time, "coalesced": coalesced,
    }


_probe = fix_wire(Fix("u", 0.0, 0.0, datetime.now(UTC)), None, 0)
if tuple(_probe) != POSITION_FIELDS:
    raise RuntimeError("schemas.realtime.Position changed: update ws_gateway.avl.fix_wire")
del _probe


class Coalescer:
    """At most ``per_unit_per_s`` positions per unit reach the boards; a newer fix replaces a
    held one. Flushed by the broadcaster's tick, so holding adds no extra timer."""

    def __init__(self, per_unit_per_s: float) -> None:
        self.min_gap_s = 1.0 / per_unit_per_s
        self._held: dict[str, tuple[Fix, str | None, int]] = {}
        self._last_sent: dict[str, float] = {}
        self.coalesced = 0
        self.sent = 0

    def offer(self, fix: Fix, agency: str | None) -> None:
        prev = self._held.get(fix.unit_id)
        if prev is None:
            self._held[fix.unit_id] = (fix, agency, 0)
        else:
            self.coalesced += 1
            self._held[fix.unit_id] = (fix, agency, prev[2] + 1)

    def drop(self, unit_ids: Collection[str]) -> None:
        for unit_id in unit_ids:
            self._held.pop(unit_id, None)

    def take_due(self, now_mono: float) -> list[dict[str, Any]]:
        if not self._held:
            return []
        due: list[dict[str, Any]] = []
        keep: dict[str, tuple[Fix, str | None, int]] = {}
        last_sent = self._last_sent
        # A little slack so fixes sent at exactly the limit rate are not held a whole period
        # because of tick jitter.
        gap = self.min_gap_s * 0.9
        for unit_id, (fix, agency, n) in self._held.items():
            last = last_sent.get(unit_id)
            if last is None or now_mono - last >= gap:
                due.append(fix_wire(fix, agency, n))
                last_sent[unit_id] = now_mono
            else:
                keep[unit_id] = (fix, agency, n)
        self._held = keep
        self.sent += len(due)
        return due


_COPY_COLUMNS = ("unit_id", "fix_time", "received_at", "lat", "lon", "heading_deg",
                 "speed_mps", "accuracy_m")

class BreadcrumbWriter:
    """Buffers accepted fixes and writes them with COPY every ``flush_interval_s``. The
    event loop only appends to a list; the write is an awaited COPY on a pool connection.
    Fixes pass the per-unit :class:`~ws_gateway.flood.BreadcrumbThinner` first, so no unit
    holds more than its rate's share of the buffer. While the database is unreachable the
    buffer keeps up to ``buffer_max`` fixes (oldest dropped first, counted)."""

    def __init__(self, pool: asyncpg.Pool, *, flush_interval_s: float, buffer_max: int,
                 store_last_fixes: StoreLastFixes, store_per_unit_per_s: float,
                 forget_after_s: float) -> None:
        self.pool = pool
        self.store_last_fixes = store_last_fixes
        self.thinner = BreadcrumbThinner(store_per_unit_per_s)
        self.forget_after_s = forget_after_s
        self.flush_interval_s = flush_interval_s
        self.buffer_max = buffer_max
        self._buf: list[tuple[Any, ...]] = []
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._flushing = asyncio.Lock()  # flush() returns only once earlier fixes are stored
        self.written = 0
        self.dropped = 0
        self.flushes = 0

    def add(self, fix: Fix, received_at: datetime) -> None:
        row = self.thinner.offer((fix.unit_id, fix.fix_time, received_at, fix.lat, fix.lon,
                                  fix.heading_deg, fix.speed_mps, fix.accuracy_m), fix.fix_time)
        if row is not None:
            self._append([row])

    def drop(self, unit_ids: Collection[str]) -> None:
        """Not store the fixes of these units waiting here (a training reset deleted their
        track: a fix taken before it must not bring the old position back). A batch already
        being written is not reached."""
        gone = set(unit_ids)
        self.thinner.drop(gone)
        self._buf = [row for row in self._buf if row[0] not in gone]

    def _release_held(self, *, everything: bool = False) -> None:
        now_s = time.time()
        self._append(self.thinner.release_due(math.inf if everything else now_s))
        self.thinner.forget_idle(now_s, older_than_s=self.forget_after_s)

    def _append(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        self._buf.extend(rows)
        if len(self._buf) > self.buffer_max:
            over = len(self._buf) - self.buffer_max
            del self._buf[:over]
            self.dropped += over

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="breadcrumb-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._release_held(everything=True)  # a unit's last position is stored at shutdown
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.flush_interval_s)
            self._kick.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept in the buffer, retried next period
                log.warning("breadcrumb_flush_failed", error=type(exc).__name__,
                            buffered=len(self._buf))

    def request_flush(self) -> None:
        self._kick.set()

    async def flush(self) -> int:
        """Store what is buffered, and the held fixes whose slot has come."""
        async with self._flushing:
            self._release_held()
            return await self._flush()

    async def _flush(self) -> int:
        if not self._buf:
            return 0
        batch, self._buf = self._buf, []
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("unit_positions", records=batch,
                                                 columns=_COPY_COLUMNS)
                newest: dict[str, tuple[Any, ...]] = {}
                for rec in batch:
                    cur = newest.get(rec[0])
                    if cur is None or rec[1] > cur[1]:
                        newest[rec[0]] = rec
                await self.store_last_fixes(
                    conn, [(r[0], r[3], r[4], r[1]) for r in newest.values()])
        except BaseException:
            self._buf[:0] = batch  # put back in front, order kept
            if len(self._buf) > self.buffer_max:
                over = len(self._buf) - self.buffer_max
                del self._buf[:over]
                self.dropped += over
            raise
        self.written += len(batch)
        self.flushes += 1
        return len(batch)


class AvlIngest:
    """Per worker: last accepted fix time per unit (out-of-order detection), the coalescer,
    the breadcrumb writer, and ``apply_position`` (the app's routing index: each unit's
    newest accepted fix, at once)."""

    def __init__(self, pool: asyncpg.Pool, *, settings: Settings,
                 apply_position: ApplyPosition, store_last_fixes: StoreLastFixes,
                 place_refusal: PlaceRefusal) -> None:
        self.pool = pool
        self.settings = settings
        self.coalescer = Coalescer(settings.avl_max_positions_per_unit_per_s)
        self.writer = BreadcrumbWriter(
            pool, flush_interval_s=settings.avl_flush_interval_ms / 1000,
            buffer_max=settings.avl_buffer_max, store_last_fixes=store_last_fixes,
            store_per_unit_per_s=settings.avl_store_max_per_unit_per_s,
            forget_after_s=settings.avl_max_age_s + settings.avl_max_future_s)
        self.apply_to_routing = apply_position
        self.place_refusal = place_refusal
        self._last_fix: dict[str, datetime] = {}
        self._no_fix: set[str] = set()  # looked up: nothing stored yet
        self.accepted = 0
        self.rejected: dict[str, int] = {}

    async def start(self) -> None:
        await self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    async def prime(self, unit_id: str) -> None:
        """Look up the unit's last stored fix at MDT connect, not on its first fix (a slow
        lookup there held fixes back until two arrived in one tick). A reconnect refreshes
        it: the unit may have reported through another worker meanwhile."""
        self._last_fix.pop(unit_id, None)
        self._no_fix.discard(unit_id)
        await self._last_fix_time(unit_id)

    async def _last_fix_time(self, unit_id: str) -> datetime | None:
        if unit_id in self._last_fix:
            return self._last_fix[unit_id]
        if unit_id in self._no_fix:
            return None
        last = await self.pool.fetchval(
            "SELECT max(fix_time) FROM unit_positions WHERE unit_id = $1", unit_id)
        if unit_id not in self._last_fix:  # a fix may have been accepted while we waited
            if last is None:
                self._no_fix.add(unit_id)
            else:
                self._last_fix[unit_id] = last
        return self._last_fix.get(unit_id)

    async def ingest(self, unit_id: str, agency: str | None, raws: list[Any]
                     ) -> tuple[int, list[dict[str, Any]]]:
        """Accept what is valid, in order. Returns (accepted, [{index, reason, detail, status}]).
        ``agency``: the unit's. Raises :class:`OutsideServiceArea` before taking anything when
        a well-formed fix lies outside that agency's service area."""
        s = self.settings
        now = datetime.now(UTC)
        checked: list[Fix | FixRejected] = []
        for i, raw in enumerate(raws):
            try:
                fix = validate_fix(unit_id, raw, now=now, max_age_s=s.avl_max_age_s,
                                   max_future_s=s.avl_max_future_s,
                                   max_accuracy_m=s.avl_max_accuracy_m)
            except FixRejected as exc:
                checked.append(exc)
                continue
            refusal = self.place_refusal(agency, fix.lat, fix.lon)
            if refusal is not None:
                self.rejected[REJECT_OUTSIDE_AREA] = self.rejected.get(REJECT_OUTSIDE_AREA, 0) + 1
                raise OutsideServiceArea(i, refusal)
            checked.append(fix)
        problems: list[dict[str, Any]] = []
        last = await self._last_fix_time(unit_id)
        accepted = 0
        newest: Fix | None = None
        for i, item in enumerate(checked):
            if isinstance(item, Fix) and last is not None and item.fix_time <= last:
                item = FixRejected(IGNORE_OUT_OF_ORDER, "fix_time is not newer than the unit's last fix")
            if isinstance(item, FixRejected):
                self.rejected[item.reason] = self.rejected.get(item.reason, 0) + 1
                problems.append({"index": i, "reason": item.reason, "detail": item.detail,
                                 "status": "ignored" if item.ignored else "rejected"})
                continue
            fix = item
            last = fix.fix_time
            self.writer.add(fix, now)
            self.coalescer.offer(fix, agency)
            newest = fix
            accepted += 1
        if newest is not None:
            self._last_fix[unit_id] = newest.fix_time
            try:
                self.apply_to_routing(unit_id, newest.lat, newest.lon, newest.fix_time)
            except Exception:  # routing trouble must not lose the fix
                log.exception("apply_position_failed", unit_id=unit_id)
        self.accepted += accepted
        return accepted, problems

    def drop_units(self, unit_ids: Collection[str]) -> None:
        """A training reset: these units' pending fixes are neither stored nor sent to boards."""
        self.writer.drop(unit_ids)
        self.coalescer.drop(unit_ids)

    def take_due_positions(self) -> bytes | None:
        due = self.coalescer.take_due(time.monotonic())
        return orjson.dumps(due) if due else None
