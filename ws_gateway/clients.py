"""The connected clients of one worker and how frames reach them: a bounded queue per client
drained by that client's sender task. A client whose queue is full is closed with 4408; it
never slows the tick or the others."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

import structlog
from starlette.websockets import WebSocket, WebSocketState

from cad.security.principal import Principal
from schemas.realtime import CloseCode
from ws_gateway.events import Event, EventFilter
from ws_gateway.flood import MessageBudget

log = structlog.get_logger("ws_gateway")

# Plain ints on the hot path (``schemas.realtime.CloseCode`` documents them).
CLOSE_BAD_REQUEST = int(CloseCode.BAD_REQUEST)
CLOSE_UNAUTHORIZED = int(CloseCode.UNAUTHORIZED)
CLOSE_FORBIDDEN = int(CloseCode.FORBIDDEN)
CLOSE_UNKNOWN_UNIT = int(CloseCode.UNKNOWN_UNIT)
CLOSE_SLOW_CONSUMER = int(CloseCode.SLOW_CONSUMER)
CLOSE_RATE_LIMITED = int(CloseCode.RATE_LIMITED)
CLOSE_GOING_AWAY = int(CloseCode.GOING_AWAY)
CLOSE_INTERNAL = int(CloseCode.INTERNAL)

ClientKind = Literal["board", "unit"]


class ClientState:
    """Plain ints: compared for every client on every tick (Enum access costs ~8x more)."""

    SYNCING = 1
    LIVE = 2
    CLOSED = 3


class Client:
    def __init__(self, ws: WebSocket, *, kind: ClientKind, principal: Principal, token: str,
                 filter: EventFilter, queue_max: int, sync_max: int,
                 budget: MessageBudget, fix_budget: MessageBudget | None = None) -> None:
        self.ws = ws
        # What it may send (ws_gateway.flood): messages, and an MDT's fixes; overdrawn: 4429.
        self.budget = budget
        self.fix_budget = fix_budget
        self.kind = kind
        self.principal = principal
        self.token = token
        self.filter = filter
        self.state: int = ClientState.SYNCING
        # Live events that arrived while the snapshot/replay was read (de-duplicated by id
        # when the client goes live).
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


class ClientRegistry:
    """Who is connected, and the one way a frame reaches a client (``enqueue``)."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        # The subset that receives positions (boards): a tick with positions but no events
        # touches only these, not the thousands of MDT sockets.
        self.position_clients: set[Client] = set()
        self.slow_closed = 0
        self.rate_closed = 0

    def register(self, client: Client) -> None:
        self.clients.add(client)
        if client.filter.wants_positions:
            self.position_clients.add(client)

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)
        self.position_clients.discard(client)

    def enqueue(self, client: Client, frame: str, now: float | None = None) -> None:
        """Queue a frame for one client, in order with its others; a full queue closes it."""
        if client.state == ClientState.CLOSED:
            return
        try:
            client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.slow_closed += 1
            log.warning("ws_slow_consumer_closed", kind=client.kind,
                        user=client.principal.username)
            self.close(client, CLOSE_SLOW_CONSUMER, "slow_consumer")
            return
        client.last_enqueue = now if now is not None else time.monotonic()

    def spend(self, client: Client, cost: float, *, fixes: bool = False) -> bool:
        """Charge ``cost`` messages (``fixes``: fixes) to the client's budget; overdrawn: the
        client is closed with 4429, its message budget owes the flood penalty, and False is
        returned (do not handle the message)."""
        budget = client.fix_budget if fixes else client.budget
        if budget is None or budget.spend(cost):
            return True
        client.budget.drain()
        if client.state != ClientState.CLOSED:
            self.rate_closed += 1
            log.warning("ws_rate_limited_closed", kind=client.kind,
                        user=client.principal.username, unit_id=client.principal.unit_id)
            self.close(client, CLOSE_RATE_LIMITED, "rate_limited")
        return False

    def close(self, client: Client, code: int, reason: str) -> None:
        if client.state == ClientState.CLOSED:
            return
        client.state = ClientState.CLOSED
        client.close_code, client.close_reason = code, reason
        self.unregister(client)
        if client.sender is not None:
            client.sender.cancel()
        client.close_task = asyncio.get_running_loop().create_task(
            close_ws(client.ws, code, reason))

    def go_live(self, client: Client) -> None:
        client.state = ClientState.LIVE
        client.sender = asyncio.create_task(self._sender(client), name="ws-sender")

    def forget(self, client: Client) -> None:
        """The client's socket is gone (its reader returned)."""
        if client.state != ClientState.CLOSED:
            client.state = ClientState.CLOSED
            self.unregister(client)
            if client.sender is not None:
                client.sender.cancel()

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
                self.unregister(client)

    def count(self) -> dict[str, int]:
        boards = sum(1 for c in self.clients if c.kind == "board")
        return {"board": boards, "unit": len(self.clients) - boards}


async def close_ws(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state is WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5.0):
            await ws.close(code=code, reason=reason)
