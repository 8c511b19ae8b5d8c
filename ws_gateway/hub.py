"""The hub: small pub/sub between the gateway's parts and between workers.

One interface, two backends chosen by ``Settings.redis_url``:

* :class:`MemoryHub` - one process (the default).
* :class:`RedisHub` - several workers or hosts; every message is delivered to the local
  subscribers at once and published to Redis for the others.

The hub is *not* the source of truth for events: Redis pub/sub drops messages when a
connection breaks, so it carries only wake-ups and coalesced positions (ephemeral). Clients
resume from the PostgreSQL event log. When Redis goes away, local delivery goes on, the
listener reconnects with back-off and the reconnect callbacks run (the tailer catches up).

Handlers are plain callables run on the event loop; they must not block. A handler that
raises is logged and does not stop delivery to the others.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub

log = structlog.get_logger("ws_gateway.hub")

Handler = Callable[[bytes], None]
ReconnectCallback = Callable[[], Awaitable[None]]

RECONNECT_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)
OUTBOX_MAX = 1_000
_ORIGIN_SEP = b"|"


class Subscription:
    def __init__(self, hub: Hub, channel: str, handler: Handler) -> None:
        self._hub, self.channel, self.handler = hub, channel, handler
        self.active = True

    def close(self) -> None:
        if self.active:
            self.active = False
            self._hub._remove(self)


class Hub(abc.ABC):
    """publish(channel, payload) reaches every subscription of ``channel`` in every process
    sharing the hub (best effort across processes; always in this process)."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Subscription]] = {}
        self._reconnect_callbacks: list[ReconnectCallback] = []
        self.published = 0
        self.delivered = 0
        self.remote_failures = 0

    async def start(self) -> None:
        """Connect (no-op for the memory hub)."""

    async def close(self) -> None:
        """Disconnect; subscriptions stay registered but nothing is delivered any more."""

    @property
    def connected(self) -> bool:
        return True

    @abc.abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(self, channel: str, handler: Handler) -> Subscription:
        sub = Subscription(self, channel, handler)
        subs = self._subs.setdefault(channel, [])
        subs.append(sub)
        if len(subs) == 1:
            self._channel_added(channel)
        return sub

    def on_reconnect(self, callback: ReconnectCallback) -> None:
        """``callback`` runs after the hub re-established a lost connection (messages
        published meanwhile are gone: re-read the authoritative store)."""
        self._reconnect_callbacks.append(callback)

    def _channel_added(self, channel: str) -> None:
        pass

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs and sub in subs:
            subs.remove(sub)

    def _deliver(self, channel: str, payload: bytes) -> None:
        for sub in list(self._subs.get(channel, ())):
            try:
                sub.handler(payload)
                self.delivered += 1
            except Exception:  # one broken subscriber must not starve the others
                log.exception("hub_handler_failed", channel=channel)


class MemoryHub(Hub):
    async def publish(self, channel: str, payload: bytes) -> None:
        self.published += 1
        self._deliver(channel, payload)


class RedisHub(Hub):
    """Redis pub/sub with local short-circuit: a worker's own messages are delivered to its
    own subscribers directly (so they survive a Redis outage) and skipped when they come back
    from Redis (each message is tagged with the publishing hub's random origin id)."""

    def __init__(self, url: str, *, prefix: str = "cad") -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix.rstrip(":") + ":"
        self.origin = secrets.token_hex(8).encode()
        self._redis: aioredis.Redis | None = None  # for publishing
        self._listener: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        # Messages waiting for Redis; full (Redis stalled) = dropped and counted: Redis only
        # carries wake-ups and positions, both superseded by the next ones.
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=OUTBOX_MAX)
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def client_name(self) -> str:
        return f"cad-hub-{self.origin.decode()}"

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=2, socket_timeout=2, client_name=self.client_name,
        )
        self._listener = asyncio.create_task(self._listen(), name="redis-hub-listener")
        self._sender = asyncio.create_task(self._send_outbox(), name="redis-hub-sender")
        # Start-up waits briefly for Redis, but a missing Redis must not stop the worker:
        # local delivery works and the listener keeps trying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=3.0)
        if not self.connected:
            log.warning("redis_hub_not_connected_at_start", url=_mask(self.url))

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    async def close(self) -> None:
        # Let what is queued go out first (briefly: a stalled Redis must not stall shutdown),
        # and never cancel a publish half-way: redis-py's connection would be left unusable.
        if self._sender is not None and self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 1.0)
        self._closing = True
        for task in (self._listener, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._redis.aclose()
        self._connected.clear()

    async def publish(self, channel: str, payload: bytes) -> None:
        """Local delivery now; the Redis publish is queued for a sender task, so a slow or
        vanished Redis never holds up the caller (the gateway's tick)."""
        self.published += 1
        self._deliver(channel, payload)
        if not self.connected:
            self.remote_failures += 1
            return
        try:
            self._outbox.put_nowait((self.prefix + channel, self.origin + _ORIGIN_SEP + payload))
        except asyncio.QueueFull:
            self.remote_failures += 1

    async def _send_outbox(self) -> None:
        while True:
            channel, data = await self._outbox.get()
            try:
                if not self.connected or self._redis is None:
                    self.remote_failures += 1
                    continue
                await self._redis.publish(channel, data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: local delivery already happened
                self.remote_failures += 1
                log.warning("redis_publish_failed", channel=channel, error=type(exc).__name__)
            finally:
                self._outbox.task_done()

    def _channel_added(self, channel: str) -> None:
        if self._pubsub is not None and self.connected:
            asyncio.get_running_loop().create_task(
                self._subscribe_quietly(self._pubsub, channel))

    async def _subscribe_quietly(self, pubsub: PubSub, channel: str) -> None:
        try:
            await pubsub.subscribe(self.prefix + channel)
        except Exception as exc:  # noqa: BLE001 - the listener resubscribes on reconnect
            log.warning("redis_subscribe_failed", channel=channel, error=type(exc).__name__)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        attempt = 0
        first = True
        while not self._closing:
            pubsub = None
            client = None
            try:
                client = aioredis.Redis.from_url(
                    self.url, socket_connect_timeout=2, client_name=self.client_name,
                    health_check_interval=5,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                channels = [self.prefix + c for c in self._subs] or [self.prefix + "_"]
                await pubsub.subscribe(*channels)
                self._pubsub = pubsub
                self._connected.set()
                attempt = 0
                if not first:
                    self.reconnects += 1
                    log.info("redis_hub_reconnected", reconnects=self.reconnects)
                    for cb in list(self._reconnect_callbacks):
                        try:
                            await cb()
                        except Exception:
                            log.exception("hub_reconnect_callback_failed")
                first = False
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    data: bytes = msg["data"]
                    origin, _, payload = data.partition(_ORIGIN_SEP)
                    if origin == self.origin:
                        continue
                    channel = msg["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    self._deliver(channel[len(self.prefix):], payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: drop the link and retry
                if self.connected:
                    log.warning("redis_hub_disconnected", error=type(exc).__name__)
                self._connected.clear()
                self._pubsub = None
                first = False
                delay = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
                attempt += 1
                await asyncio.sleep(delay)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()


def create_hub(redis_url: str | None, *, prefix: str = "cad") -> Hub:
    return RedisHub(redis_url, prefix=prefix) if redis_url else MemoryHub()


def _mask(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
