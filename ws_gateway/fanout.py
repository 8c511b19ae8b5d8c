"""The tick: every ``ws_batch_interval_ms`` one frame per client group (same agency set, or
same unit) carrying every event and position since the previous tick, built once and shared
by the group; heartbeats for clients that got nothing for a while.

Data path of an event: commit -> NOTIFY cad_events -> tailer reads ``id > cursor`` ->
:meth:`Fanout.add_events` -> next tick -> each client's bounded queue -> its sender task.

Data path of a position: MDT -> validation -> coalescer -> at the next tick one hub message
with every due position -> every worker's :meth:`Fanout.add_position_batch` -> the same
tick's frames (own worker) or the next tick (other workers through Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from cad.settings import Settings
from ws_gateway import frames
from ws_gateway.avl import POSITIONS_CHANNEL
from ws_gateway.clients import CLOSE_SLOW_CONSUMER, Client, ClientRegistry, ClientState
from ws_gateway.events import Event, TickView
from ws_gateway.hub import Hub, MemoryHub

log = structlog.get_logger("ws_gateway")

# How long before a tick positions are published through a shared hub. Tuned against the
# Redis hop on loopback (~1 ms) plus scheduling jitter of a loaded 2-core machine.
PUBLISH_LEAD_S = 0.010


class Fanout:
    def __init__(self, registry: ClientRegistry, settings: Settings, hub: Hub, *,
                 take_due_positions: Callable[[], bytes | None],
                 event_cursor: Callable[[], int],
                 on_shared_position: Callable[[dict[str, Any]], None]) -> None:
        """``take_due_positions``: this worker's coalesced positions due now (one hub
        message); ``event_cursor``: the tailer's cursor; ``on_shared_position``: every position
        that came through a shared hub (possibly another worker's fix)."""
        self.registry = registry
        self.settings = settings
        self.hub = hub
        self._take_due_positions = take_due_positions
        self._event_cursor = event_cursor
        self._on_shared_position = on_shared_position
        self._events: list[Event] = []
        self._position_batches: list[bytes] = []
        self._last_hb_sweep = 0.0
        # Every event up to this id has been fanned out (into frames or sync buffers): the
        # only cursor safe to advertise to a client outside a tick.
        self.fanned_cursor = 0
        self.ticks = 0

    # --- inputs ------------------------------------------------------------------------------

    def add_events(self, events: list[Event]) -> None:
        self._events.extend(events)

    def add_position_batch(self, payload: bytes) -> None:
        """Hub handler of ``POSITIONS_CHANNEL``."""
        self._position_batches.append(payload)

    # --- the tick ----------------------------------------------------------------------------

    async def run(self) -> None:
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
                due = self._take_due_positions()
                if due is not None:
                    await self.hub.publish(POSITIONS_CHANNEL, due)
                if lead:
                    await asyncio.sleep(max(0.0, tick_at - time.time()))
                self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tick_failed")

    def tick(self) -> None:
        self.ticks += 1
        events, self._events = self._events, []
        batches, self._position_batches[:] = list(self._position_batches), []
        positions: list[tuple[str | None, bytes]] = []
        shared = not isinstance(self.hub, MemoryHub)
        for batch in batches:
            for p in orjson.loads(batch):
                positions.append((p.get("agency"), orjson.dumps(p)))
                if shared:  # possibly another worker's fix
                    self._on_shared_position(p)
        now = time.monotonic()
        hb_interval = self.settings.ws_heartbeat_interval_s
        cursor = self.fanned_cursor = self._event_cursor()
        if events or positions:
            self._frames(events, positions, cursor, now)
        # Heartbeats: one sweep a second is plenty for an interval of seconds.
        if now - self._last_hb_sweep >= min(1.0, hb_interval / 4):
            self._last_hb_sweep = now
            server_time = frames.now_iso()
            for client in list(self.registry.clients):
                if client.state == ClientState.LIVE and now - client.last_enqueue >= hb_interval:
                    self.registry.enqueue(client, frames.heartbeat(
                        max(cursor, client.last_event_id), server_time), now)

    def _frames(self, events: list[Event], positions: list[tuple[str | None, bytes]],
                cursor: int, now: float) -> None:
        registry = self.registry
        view = TickView(events, positions)
        groups: dict[tuple[Any, ...], tuple[list[Event], list[bytes], str | None]] = {}
        for client in list(registry.clients if events else registry.position_clients):
            f = client.filter
            if client.state == ClientState.SYNCING:
                mine = f.select(view)[0]
                if mine:
                    client.pending.extend(mine)
                    if len(client.pending) > client.sync_max:
                        registry.close(client, CLOSE_SLOW_CONSUMER, "too_far_behind_while_syncing")
                continue
            if client.state != ClientState.LIVE:
                continue
            group = groups.get(f.key)
            if group is None:
                sel, pos = f.select(view)
                group = (sel, pos, frames.batch(sel, pos, cursor) if (sel or pos) else None)
                groups[f.key] = group
            sel, pos, frame = group
            if frame is None:
                continue
            if sel and sel[0].id <= client.last_event_id:
                # Already sent in this client's replay: drop those, keep the rest.
                mine = [e for e in sel if e.id > client.last_event_id]
                if not mine and not pos:
                    continue
                frame = frames.batch(mine, pos, cursor)
            if sel:
                client.last_event_id = max(client.last_event_id, sel[-1].id)
            registry.enqueue(client, frame, now)

    def go_live(self, client: Client) -> None:
        """End of a client's sync: what arrived meanwhile and was not in its snapshot/replay
        goes out first, then it is served by the ticks."""
        pending = [e for e in client.pending if e.id > client.last_event_id]
        client.pending = []
        self.registry.go_live(client)
        if pending:
            client.last_event_id = pending[-1].id
            self.registry.enqueue(client, frames.batch(pending, [], self.fanned_cursor))
