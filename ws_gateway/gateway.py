"""The per-worker gateway: puts its parts together and serves one websocket client's life
(register, sync, live, read its messages, close).

Parts, one job each:

* ``clients``  - the client registry, bounded per-client queues and sender tasks;
* ``fanout``   - the tick: one frame per client group, heartbeats (``frames`` builds them);
* ``resume``   - snapshot / resume / resync / replay of a connecting client;
* ``recheck``  - token re-checks (periodic, on revocation NOTIFY, renewal on the socket);
* ``tailer``   - reads the event log; ``listen`` - the worker's one LISTEN connection;
* ``avl``      - AVL ingest; ``hub`` - pub/sub between workers;
* ``upkeep``   - reports unit changes and other workers' fixes to the app (routing index);
* ``gcstats``  - GC tuning and pause statistics.

What it needs from the domains comes in as :class:`~ws_gateway.ports.GatewayPorts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import structlog
from starlette.websockets import WebSocketDisconnect

from cad.settings import Settings
from ws_gateway import frames
from ws_gateway.avl import POSITIONS_CHANNEL, AvlIngest
from ws_gateway.clients import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    Client,
    ClientRegistry,
    ClientState,
)
from ws_gateway.events import Event
from ws_gateway.fanout import Fanout
from ws_gateway.flood import Budgets
from ws_gateway.gcstats import gc_stats
from ws_gateway.hub import Hub, create_hub
from ws_gateway.listen import PgListener
from ws_gateway.ports import GatewayPorts
from ws_gateway.recheck import TokenRechecker
from ws_gateway.resume import Resumer, SnapshotFn
from ws_gateway.tailer import EventTailer
from ws_gateway.upkeep import IndexUpkeep, reset_units

log = structlog.get_logger("ws_gateway")

WAKE_CHANNEL = "events"

# An MDT socket's own messages (positions); ping and auth are handled here.
OnMessage = Callable[[Client, dict[str, Any]], Awaitable[None]]


class Gateway:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, ports: GatewayPorts, *,
                 database_url: str | None = None, hub: Hub | None = None) -> None:
        """``database_url``: for the LISTEN connection (None: a pool connection)."""
        self.settings = settings
        self.pool = pool
        self.ports = ports
        self.server_id = secrets.token_hex(4)
        self.hub = hub or create_hub(settings.redis_url, prefix=settings.hub_channel_prefix)
        self.registry = ClientRegistry()
        # Per unit (an MDT socket and the unit's HTTP posts share them); boards get their own
        # message budget.
        self.budgets = Budgets(rate_per_s=settings.ws_message_rate_per_s,
                               burst=settings.ws_message_burst)
        self.fix_budgets = Budgets(rate_per_s=settings.avl_fix_rate_per_s,
                                   burst=settings.avl_fix_burst)
        self.upkeep = IndexUpkeep(ports)
        self.listener = PgListener(pool, database_url)
        self.tailer = EventTailer(pool, self.listener, self._on_events,
                                  poll_interval_s=settings.ws_tailer_poll_interval_s)
        self.avl = AvlIngest(pool, settings=settings, apply_position=self.upkeep.apply_position,
                             store_last_fixes=ports.store_last_fixes,
                             place_refusal=ports.place_refusal)
        self.fanout = Fanout(self.registry, settings, self.hub,
                             take_due_positions=self.avl.take_due_positions,
                             event_cursor=lambda: self.tailer.cursor,
                             on_shared_position=self.upkeep.shared_position)
        self.resumer = Resumer(pool, settings, self.registry, server_id=self.server_id)
        self.rechecker = TokenRechecker(self.registry, ports.resolve_principal,
                                        interval_s=settings.ws_token_recheck_interval_s,
                                        listener=self.listener)
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.hub.start()
        self.hub.subscribe(POSITIONS_CHANNEL, self.fanout.add_position_batch)
        self.hub.subscribe(WAKE_CHANNEL, self.tailer.wake)
        self.hub.on_reconnect(self.tailer.catch_up)
        # After a hub outage fixes other workers published meanwhile are gone, but their AVL
        # writers stored each unit's newest fix in the database: re-read every unit.
        self.hub.on_reconnect(self.upkeep.after_hub_reconnect)
        await self.tailer.start()
        await self.listener.start()
        # The routing index was filled before the tailer's starting cursor was read: a change
        # committed in between would be in neither. Re-read every unit once, now.
        self.upkeep.any_unit_changed()
        await self.avl.start()
        self._tasks.append(asyncio.create_task(self.fanout.run(), name="ws-tick"))
        self._tasks.append(asyncio.create_task(self.rechecker.run(), name="ws-token-recheck"))
        log.info("gateway_started", server_id=self.server_id,
                 hub=type(self.hub).__name__, cursor=self.tailer.cursor)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for client in list(self.registry.clients):
            self.registry.close(client, CLOSE_GOING_AWAY, "server_shutdown")
        await self.listener.close()
        await self.tailer.close()
        await self.avl.close()
        await self.hub.close()

    async def wake_tailers(self) -> None:
        """Every worker's tailer reads the event log now (through the hub)."""
        await self.hub.publish(WAKE_CHANNEL, b"")

    def _on_events(self, events: list[Event]) -> None:
        reset = reset_units(events)
        if reset:  # a training reset deleted their track: this worker's pending fixes go too
            self.avl.drop_units(reset)
        self.fanout.add_events(events)
        self.upkeep.events_read(events, reset)

    # --- one client --------------------------------------------------------------------------

    def send(self, client: Client, frame: str) -> None:
        """Queue a frame (``ws_gateway.frames``) for one client, in order with its others."""
        self.registry.enqueue(client, frame)

    async def serve(self, client: Client, *, last_event_id: int | None,
                    snapshot: SnapshotFn, on_message: OnMessage | None = None) -> None:
        """Sync the client (snapshot or replay), then stream live until it disconnects."""
        self.registry.register(client)
        try:
            try:
                ok = await self.resumer.sync(client, last_event_id, snapshot)
            except WebSocketDisconnect:
                return
            except Exception:  # database trouble: tell the client to come back, keep serving others
                log.exception("ws_sync_failed", kind=client.kind)
                self.registry.close(client, CLOSE_INTERNAL, "sync_failed")
                return
            if not ok or client.state == ClientState.CLOSED:
                return
            self.fanout.go_live(client)
            await self._read_loop(client, on_message)
        finally:
            self.registry.forget(client)
            if client.close_task is not None:
                # The endpoint must not return before its close frame is out, or the client
                # sees 1006 instead of the code that tells it what to do.
                with contextlib.suppress(BaseException):
                    await client.close_task

    async def _read_loop(self, client: Client, on_message: OnMessage | None) -> None:
        ws = client.ws
        while client.state != ClientState.CLOSED:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if not self.registry.spend(client, 1.0):  # before parsing: a flood costs little
                return
            text = msg.get("text")
            if text is None and msg.get("bytes") is not None:
                text = msg["bytes"]
            try:
                data = orjson.loads(text) if text is not None else None
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                self.send(client, frames.error("bad_message",
                                               "messages are JSON objects with a type"))
                continue
            mtype = data["type"]
            if mtype == "ping":
                self.send(client, frames.pong(max(self.fanout.fanned_cursor,
                                                  client.last_event_id)))
            elif mtype == "auth":
                await self.rechecker.reauth(client, data.get("access_token"))
            elif on_message is not None:
                await on_message(client, data)
            else:
                self.send(client, frames.error("unknown_message_type",
                                               f"unknown message type {mtype!r}"))

    # --- stats -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """``ws_gateway.schemas.RealtimeStats``."""
        avl = self.avl
        return {
            **gc_stats(),
            "server_id": self.server_id,
            "hub": type(self.hub).__name__, "hub_connected": self.hub.connected,
            "clients": self.registry.count(),
            "event_cursor": self.tailer.cursor,
            "closed_slow_consumer": self.registry.slow_closed,
            "closed_rate_limited": self.registry.rate_closed,
            "closed_token": self.rechecker.revoked_closed,
            "positions": {
                "accepted": avl.accepted, "rejected": dict(avl.rejected),
                "coalesced": avl.coalescer.coalesced, "sent": avl.coalescer.sent,
                "breadcrumbs_written": avl.writer.written,
                "breadcrumbs_dropped": avl.writer.dropped,
                "breadcrumbs_coalesced": avl.writer.thinner.coalesced,
            },
        }
