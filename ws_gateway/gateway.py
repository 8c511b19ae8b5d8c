"""The per-worker gateway: clients, the tick that batches frames, the event tailer, the hub,
AVL ingest, token re-checks.

Data path of an event: commit -> NOTIFY cad_events -> tailer reads ``id > cursor`` ->
``_events`` -> next tick: one frame per filter group (agency set, unit), shared by every
client of the group -> each client's bounded queue -> its sender task -> socket.

Data path of a position: MDT -> validation -> routing index (at once) + breadcrumb buffer
(COPY every flush interval) + coalescer -> at the next tick one hub message with every due
position -> every worker's ``_positions`` -> the same tick's frames (own worker) or the next
tick (other workers through Redis).

A client whose queue is full is closed with 4408; it never slows the tick or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from cad.settings import Settings
from ws_gateway import auth
from ws_gateway.avl import POSITIONS_CHANNEL, AvlIngest, resolve_units_changed_hook
from ws_gateway.events import EVENT_COLUMNS, Event, EventFilter, TickView, event_from_row
from ws_gateway.hub import Hub, MemoryHub, create_hub
from ws_gateway.tailer import EventTailer

log = structlog.get_logger("ws_gateway")

WAKE_CHANNEL = "events"
# How long before a tick positions are published through a shared hub. Tuned against the
# Redis hop on loopback (~1 ms) plus scheduling jitter of a loaded 2-core machine.
PUBLISH_LEAD_S = 0.010
SECURITY_CHANNEL = "cad_security"
REPLAY_PAGE = 1_000

# Close codes (4000-4999 are for applications; the last three digits mirror HTTP).
CLOSE_BAD_REQUEST = 4400       # malformed query (last_event_id) or message
CLOSE_UNAUTHORIZED = 4401      # no/invalid token at connect, or revoked/expired later
CLOSE_FORBIDDEN = 4403         # role may not use this stream, or another unit's stream
CLOSE_UNKNOWN_UNIT = 4404      # /ws/unit/{unit_id} of a unit that does not exist
CLOSE_SLOW_CONSUMER = 4408     # the client did not keep up; reconnect with last_event_id
CLOSE_GOING_AWAY = 1001        # server shutting down; reconnect with last_event_id
CLOSE_INTERNAL = 1011

_ISSUED_SQL = """
SELECT coalesce(last_value, 0)
FROM pg_sequences WHERE schemaname = current_schema()
  AND sequencename = split_part(pg_get_serial_sequence('event_log', 'id'), '.', 2)
"""

SnapshotFn = Callable[[asyncpg.Connection], Awaitable[dict[str, Any] | None]]


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class ClientState:
    """Plain ints: compared for every client on every tick (Enum access costs ~8x more)."""

    SYNCING = 1
    LIVE = 2
    CLOSED = 3


class Client:
    def __init__(self, ws: WebSocket, *, kind: str, principal: Any, token: str,
                 filter: EventFilter, queue_max: int, sync_max: int) -> None:
        self.ws = ws
        self.kind = kind  # "board" | "unit"
        self.principal = principal
        self.token = token
        self.filter = filter
        self.state: int = ClientState.SYNCING
        self.pending: list[Event] = []
        self.sync_max = sync_max
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_max)
        self.last_event_id = 0
        self.last_enqueue = time.monotonic()
        self.sender: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.close_task: asyncio.Task[None] | None = None
        self.frames_sent = 0


class Gateway:
    def __init__(self, app_state: Any, settings: Settings, pool: asyncpg.Pool, *,
                 database_url: str | None = None, hub: Hub | None = None) -> None:
        self.app_state = app_state
        self.settings = settings
        self.pool = pool
        self.server_id = secrets.token_hex(4)
        self.hub = hub or create_hub(settings.redis_url, prefix=settings.hub_channel_prefix)
        self.tailer = EventTailer(pool, database_url, self._on_events,
                                  poll_interval_s=settings.ws_tailer_poll_interval_s)
        self.avl = AvlIngest(app_state, pool, settings=settings)
        self._units_changed = resolve_units_changed_hook(app_state)
        self.clients: set[Client] = set()
        # The subset that receives positions (boards): a tick with positions but no events
        # touches only these, not the thousands of MDT sockets.
        self._position_clients: set[Client] = set()
        self._last_hb_sweep = 0.0
        self._events: list[Event] = []
        self._position_batches: list[bytes] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._database_url = database_url
        self._recheck_now: set[tuple[str, str]] = set()
        self._recheck_wake = asyncio.Event()
        # Every event up to this id has been fanned out (into frames or sync buffers): the
        # only cursor safe to advertise to a client outside a tick.
        self.fanned_cursor = 0
        self.slow_closed = 0
        self.revoked_closed = 0
        self.ticks = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.hub.start()
        self.hub.subscribe(POSITIONS_CHANNEL, self._position_batches.append)
        self.hub.subscribe(WAKE_CHANNEL, self.tailer.wake)
        self.hub.on_reconnect(self.tailer.catch_up)
        self.hub.on_reconnect(self._reread_units)
        await self.tailer.start()
        # The routing index was filled before the tailer's starting cursor was read: a change
        # committed in between would be in neither. Re-read every unit once, now.
        self._units_changed(None)
        await self.avl.start()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="ws-tick"))
        self._tasks.append(asyncio.create_task(self._recheck_loop(), name="ws-token-recheck"))
        self._tasks.append(asyncio.create_task(self._security_listen(), name="ws-security"))
        log.info("gateway_started", server_id=self.server_id,
                 hub=type(self.hub).__name__, cursor=self.tailer.cursor)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for client in list(self.clients):
            self.close_client(client, CLOSE_GOING_AWAY, "server_shutdown")
        await self.tailer.close()
        await self.avl.close()
        await self.hub.close()

    # --- inputs ------------------------------------------------------------------------------

    def _on_events(self, events: list[Event]) -> None:
        self._events.extend(events)
        # Units these events name may have changed through another worker: this worker's
        # routing index re-reads them (one query per batch; a station change re-reads all).
        named: set[str] = set()
        everything = False
        for e in events:
            if e.aggregate_type == "station" or (e.aggregate_type == "unit" and e.aggregate_id == "*"):
                everything = True
                break
            if e.aggregate_type == "unit":
                named.add(e.aggregate_id)
            named.update(e.unit_ids)
        if everything or named:
            try:
                self._units_changed(None if everything else named)
            except Exception:  # the index catches up at the next change; fan-out goes on
                log.exception("units_changed_hook_failed")

    # --- the tick ----------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        """Ticks fall on wall-clock multiples of the interval, so every worker ticks at the
        same instants. With a shared hub, positions are published ``lead`` before the tick:
        they reach the other workers in time for the same tick instead of waiting a whole
        extra interval there (the Redis hop is ~1 ms on a LAN; clocks need NTP, else this
        degrades to the unaligned case)."""
        interval = self.settings.ws_batch_interval_ms / 1000.0
        lead = 0.0 if isinstance(self.hub, MemoryHub) else min(interval / 3, PUBLISH_LEAD_S)
        while True:
            now = time.time()
            tick_at = (now // interval + 1) * interval
            if tick_at - lead <= now:
                tick_at += interval
            try:
                await asyncio.sleep(tick_at - lead - time.time())
                due = self.avl.take_due_positions()
                if due is not None:
                    await self.hub.publish(POSITIONS_CHANNEL, due)
                if lead:
                    await asyncio.sleep(max(0.0, tick_at - time.time()))
                self._fanout()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tick_failed")

    async def _reread_units(self) -> None:
        """After a hub outage: fixes other workers published meanwhile are gone, but their
        AVL writers stored each unit's newest fix in the database; re-read every unit."""
        self._units_changed(None)

    def _apply_remote_fix(self, p: dict[str, Any]) -> None:
        try:
            fix_time = datetime.fromisoformat(p["fix_time"])
            self.avl.apply_to_routing(str(p["unit_id"]), float(p["lat"]), float(p["lon"]), fix_time)
        except Exception:  # noqa: BLE001 - a bad batch entry must not stop the fan-out
            log.debug("remote_fix_not_applied", unit_id=p.get("unit_id"))

    def _fanout(self) -> None:
        self.ticks += 1
        events, self._events = self._events, []
        batches, self._position_batches[:] = list(self._position_batches), []
        positions: list[tuple[str | None, bytes]] = []
        shared = not isinstance(self.hub, MemoryHub)
        for batch in batches:
            for p in orjson.loads(batch):
                positions.append((p.get("agency"), orjson.dumps(p)))
                if shared:  # possibly another worker's fix: this worker's index moves too
                    self._apply_remote_fix(p)
        now = time.monotonic()
        hb_interval = self.settings.ws_heartbeat_interval_s
        cursor = self.fanned_cursor = self.tailer.cursor
        if events or positions:
            self._fanout_frames(events, positions, cursor, now)
        # Heartbeats: one sweep a second is plenty for an interval of seconds.
        if now - self._last_hb_sweep >= min(1.0, hb_interval / 4):
            self._last_hb_sweep = now
            for client in list(self.clients):
                if client.state == ClientState.LIVE and now - client.last_enqueue >= hb_interval:
                    self._heartbeat(client, cursor, now)

    def _fanout_frames(self, events: list[Event], positions: list[tuple[str | None, bytes]],
                       cursor: int, now: float) -> None:
        view = TickView(events, positions)
        groups: dict[tuple[Any, ...], tuple[list[Event], list[bytes], str | None]] = {}
        for client in list(self.clients if events else self._position_clients):
            f = client.filter
            if client.state == ClientState.SYNCING:
                mine = f.select(view)[0]
                if mine:
                    client.pending.extend(mine)
                    if len(client.pending) > client.sync_max:
                        self.close_client(client, CLOSE_SLOW_CONSUMER, "too_far_behind_while_syncing")
                continue
            if client.state != ClientState.LIVE:
                continue
            group = groups.get(f.key)
            if group is None:
                sel, pos = f.select(view)
                group = (sel, pos, _batch_frame(sel, pos, cursor) if (sel or pos) else None)
                groups[f.key] = group
            sel, pos, frame = group
            if frame is None:
                continue
            if sel and sel[0].id <= client.last_event_id:
                # Already sent in this client's replay: drop those, keep the rest.
                mine = [e for e in sel if e.id > client.last_event_id]
                if not mine and not pos:
                    continue
                frame = _batch_frame(mine, pos, cursor)
            if sel:
                client.last_event_id = max(client.last_event_id, sel[-1].id)
            self._enqueue(client, frame, now)

    def _heartbeat(self, client: Client, cursor: int, now: float) -> None:
        self._enqueue(client, _dumps({
            "type": "heartbeat", "last_event_id": max(cursor, client.last_event_id),
            "server_time": _now_iso()}), now)

    def _enqueue(self, client: Client, frame: str, now: float | None = None) -> None:
        if client.state == ClientState.CLOSED:
            return
        try:
            client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.slow_closed += 1
            log.warning("ws_slow_consumer_closed", kind=client.kind,
                        user=getattr(client.principal, "username", None))
            self.close_client(client, CLOSE_SLOW_CONSUMER, "slow_consumer")
            return
        client.last_enqueue = now if now is not None else time.monotonic()

    def send(self, client: Client, message: dict[str, Any]) -> None:
        """Queue a message for one client (in order with its frames)."""
        self._enqueue(client, _dumps(message))

    # --- clients -----------------------------------------------------------------------------

    def close_client(self, client: Client, code: int, reason: str) -> None:
        if client.state == ClientState.CLOSED:
            return
        client.state = ClientState.CLOSED
        client.close_code, client.close_reason = code, reason
        self._unregister(client)
        if client.sender is not None:
            client.sender.cancel()
        client.close_task = asyncio.get_running_loop().create_task(
            _close_ws(client.ws, code, reason))

    def _register(self, client: Client) -> None:
        self.clients.add(client)
        if client.filter.wants_positions:
            self._position_clients.add(client)

    def _unregister(self, client: Client) -> None:
        self.clients.discard(client)
        self._position_clients.discard(client)

    async def _sender(self, client: Client) -> None:
        ws = client.ws
        try:
            while True:
                frame = await client.queue.get()
                await ws.send_text(frame)
                client.frames_sent += 1
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the socket is gone; the reader loop ends too
            if client.state != ClientState.CLOSED:
                client.state = ClientState.CLOSED
                self._unregister(client)

    async def serve(self, client: Client, *, last_event_id: int | None,
                    snapshot: SnapshotFn, on_message: Callable[[Client, dict[str, Any]],
                                                               Awaitable[None]] | None = None
                    ) -> None:
        """Sync the client (snapshot or replay), then stream live until it disconnects."""
        self._register(client)
        try:
            try:
                ok = await self._sync(client, last_event_id, snapshot)
            except WebSocketDisconnect:
                return
            except Exception:  # database trouble: tell the client to come back, keep serving others
                log.exception("ws_sync_failed", kind=client.kind)
                self.close_client(client, CLOSE_INTERNAL, "sync_failed")
                return
            if not ok or client.state == ClientState.CLOSED:
                return
            pending = [e for e in client.pending if e.id > client.last_event_id]
            client.pending = []
            client.state = ClientState.LIVE
            if pending:
                client.last_event_id = pending[-1].id
                self._enqueue(client, _batch_frame(pending, [], self.fanned_cursor))
            client.sender = asyncio.create_task(self._sender(client), name="ws-sender")
            await self._read_loop(client, on_message)
        finally:
            if client.state != ClientState.CLOSED:
                client.state = ClientState.CLOSED
                self._unregister(client)
                if client.sender is not None:
                    client.sender.cancel()
            if client.close_task is not None:
                # The endpoint must not return before its close frame is out, or the client
                # sees 1006 instead of the code that tells it what to do.
                with contextlib.suppress(BaseException):
                    await client.close_task

    async def _read_loop(self, client: Client, on_message: Callable[[Client, dict[str, Any]],
                                                                   Awaitable[None]] | None) -> None:
        ws = client.ws
        while client.state != ClientState.CLOSED:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            text = msg.get("text")
            if text is None and msg.get("bytes") is not None:
                text = msg["bytes"]
            try:
                data = orjson.loads(text) if text is not None else None
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                self.send(client, {"type": "error", "reason": "bad_message",
                                   "detail": "messages are JSON objects with a type"})
                continue
            mtype = data["type"]
            if mtype == "ping":
                self.send(client, {"type": "pong", "server_time": _now_iso(),
                                   "last_event_id": max(self.fanned_cursor, client.last_event_id)})
            elif mtype == "auth":
                await self._reauth(client, data.get("access_token"))
            elif on_message is not None:
                await on_message(client, data)
            else:
                self.send(client, {"type": "error", "reason": "unknown_message_type",
                                   "detail": f"unknown message type {mtype!r}"})

    async def _reauth(self, client: Client, token: Any) -> None:
        """A client renews its token on an open socket (access tokens are short-lived)."""
        p = await auth.principal_for(self.app_state, token if isinstance(token, str) else None,
                                     touch=True)
        if p is None or p.user_id != client.principal.user_id or p.role != client.principal.role:
            self.revoked_closed += 1
            self.close_client(client, CLOSE_UNAUTHORIZED, "token_invalid")
            return
        client.principal, client.token = p, token
        self.send(client, {"type": "auth_ok"})

    # --- snapshot / resume -------------------------------------------------------------------

    async def _sync(self, client: Client, last_event_id: int | None, snapshot: SnapshotFn) -> bool:
        s = self.settings
        ws = client.ws
        resync: dict[str, Any] | None = None
        if last_event_id is not None:
            async with self.pool.acquire() as conn, \
                    conn.transaction(isolation="repeatable_read", readonly=True):
                lo, hi = await conn.fetchrow(
                    "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM event_log")
                # the highest id ever drawn, even when retention pruned every row
                issued = await conn.fetchval(_ISSUED_SQL)
                first = await conn.fetchrow(
                    "SELECT id, occurred_at FROM event_log WHERE id > $1 ORDER BY id LIMIT 1",
                    last_event_id)
                behind = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT 1 FROM event_log WHERE id > $1 LIMIT $2) t",
                    last_event_id, s.ws_replay_max_events + 1)
            reason = None
            if last_event_id > max(hi, issued or 0):
                reason = "unknown_event_id"  # e.g. the database was restored from a backup
            elif (lo and last_event_id < lo - 1) or (not lo and last_event_id < (issued or 0)):
                reason = "older_than_retention"  # what it missed may have been pruned
            elif first is not None and (datetime.now(UTC) - first["occurred_at"]
                                        ).total_seconds() > s.ws_resume_window_s:
                reason = "older_than_retention"
            elif behind > s.ws_replay_max_events:
                reason = "too_far_behind"
            if reason is None:
                await ws.send_text(_dumps({"type": "resume", "from_event_id": last_event_id,
                                           "last_event_id": hi, "server_id": self.server_id,
                                           "heartbeat_interval_s": s.ws_heartbeat_interval_s}))
                await self._replay(client, last_event_id, hi)
                client.last_event_id = hi
                return True
            resync = {"type": "resync_required", "reason": reason,
                      "from_event_id": last_event_id, "oldest_event_id": lo, "last_event_id": hi}
            await ws.send_text(_dumps(resync))
        async with self.pool.acquire() as conn, \
                conn.transaction(isolation="repeatable_read", readonly=True):
            head = await conn.fetchval("SELECT coalesce(max(id), 0) FROM event_log")
            snap = await snapshot(conn)
        if snap is None:
            self.close_client(client, CLOSE_UNKNOWN_UNIT, "unknown_unit")
            return False
        await ws.send_text(_dumps({"type": "snapshot", "last_event_id": head,
                                   "server_id": self.server_id,
                                   "heartbeat_interval_s": s.ws_heartbeat_interval_s,
                                   "snapshot": snap}))
        client.last_event_id = head
        return True

    async def _replay(self, client: Client, after: int, upto: int) -> None:
        cursor = after
        f = client.filter
        while cursor < upto:
            rows = await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM event_log WHERE id > $1 AND id <= $2 "
                f"ORDER BY id LIMIT {REPLAY_PAGE}", cursor, upto)
            if not rows:
                break
            events = [event_from_row(r) for r in rows]
            cursor = events[-1].id
            mine = [e for e in events if f.events(e)]
            if mine:
                await client.ws.send_text(_batch_frame(mine, [], cursor, replay=True))

    # --- token re-checks ---------------------------------------------------------------------

    async def _recheck_loop(self) -> None:
        """Every client's token is re-checked once per interval, spread over the interval
        (a burst of thousands of lookups would delay ticks); revocation NOTIFYs re-check the
        clients concerned at once."""
        interval = self.settings.ws_token_recheck_interval_s
        pending: list[Client] = []
        per_slice = 1
        slice_s = min(1.0, interval)
        loop = asyncio.get_running_loop()
        next_slice = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck_wake.wait(),
                                       max(0.0, next_slice - loop.time()))
            if self._recheck_wake.is_set():
                targeted, self._recheck_now = self._recheck_now, set()
                self._recheck_wake.clear()
                everyone = ("all", "*") in targeted
                for client in list(self.clients):
                    p = client.principal
                    if everyone or ({("user", str(p.user_id)), ("session", str(p.session_id)),
                                     ("device", str(p.session_id))} & targeted):
                        await self._recheck(client)
                continue
            next_slice = loop.time() + slice_s
            if not pending:
                pending = list(self.clients)
                per_slice = max(1, int(len(pending) * slice_s / interval) + 1)
            batch, pending = pending[:per_slice], pending[per_slice:]
            for client in batch:
                await self._recheck(client)

    async def _recheck(self, client: Client) -> None:
        if client.state == ClientState.CLOSED:
            return
        p = client.principal
        again = await auth.principal_for(self.app_state, client.token)
        if client.state == ClientState.CLOSED:
            return
        if again is None or again.user_id != p.user_id or again.role != p.role:
            self.revoked_closed += 1
            self.close_client(client, CLOSE_UNAUTHORIZED, "token_revoked")
        else:
            client.principal = again

    def _on_security_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            info = orjson.loads(payload)
            self._recheck_now.add((str(info["kind"]), str(info["id"])))
        except Exception:  # noqa: BLE001 - unknown payload: re-check everyone
            self._recheck_now.add(("all", "*"))
        self._recheck_wake.set()

    async def _security_listen(self) -> None:
        """Revocations NOTIFY ``cad_security`` (migrations/0002): close those sockets at once
        instead of at the next periodic re-check."""
        backoff = 0.2
        while True:
            conn = None
            try:
                conn = await (asyncpg.connect(self._database_url) if self._database_url
                              else self.pool.acquire())
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(SECURITY_CHANNEL, self._on_security_notify)
                backoff = 0.2
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10.0)
                    if not lost.is_set():
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - periodic re-checks still run
                log.warning("security_listen_failed", error=type(exc).__name__)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        if self._database_url:
                            await conn.close()
                        else:
                            await self.pool.release(conn)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def stats(self) -> dict[str, Any]:
        from ws_gateway.lifecycle import gc_pauses, gc_recent

        boards = sum(1 for c in self.clients if c.kind == "board")
        return {
            "gc": {str(g): {k: round(v, 2) for k, v in rec.items()} for g, rec in gc_pauses.items()},
            "gc_recent": list(gc_recent),
            "server_id": self.server_id,
            "hub": type(self.hub).__name__, "hub_connected": self.hub.connected,
            "clients": {"board": boards, "unit": len(self.clients) - boards},
            "event_cursor": self.tailer.cursor,
            "closed_slow_consumer": self.slow_closed, "closed_token": self.revoked_closed,
            "positions": {
                "accepted": self.avl.accepted, "rejected": dict(self.avl.rejected),
                "coalesced": self.avl.coalescer.coalesced, "sent": self.avl.coalescer.sent,
                "breadcrumbs_written": self.avl.writer.written,
                "breadcrumbs_dropped": self.avl.writer.dropped,
            },
        }


def _batch_frame(events: list[Event], positions: list[bytes], cursor: int, *,
                 replay: bool = False) -> str:
    last = max(cursor, events[-1].id) if events else cursor
    head = b'{"type":"batch","replay":true' if replay else b'{"type":"batch"'
    return (head + b',"last_event_id":' + str(last).encode() + b',"events":['
            + b",".join(e.json for e in events) + b'],"positions":['
            + b",".join(positions) + b"]}").decode()


async def _close_ws(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            await ws.close(code=code, reason=reason)
