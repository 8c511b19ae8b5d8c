"""One contract, two backends: MemoryHub and RedisHub (real Redis) behave the same for
subscribers of one process; RedisHub also links processes and survives Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ws_gateway.helpers import free_port
from ws_gateway.hub import Hub, MemoryHub, RedisHub, create_hub


class Inbox:
    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._changed = asyncio.Event()

    def __call__(self, payload: bytes) -> None:
        self.items.append(payload)
        self._changed.set()

    async def wait_len(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.items) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.items)} of {n} messages")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass


@pytest.fixture(params=["memory", "redis"])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[Hub]:
    if request.param == "memory":
        h: Hub = MemoryHub()
    else:
        url = request.getfixturevalue("redis_url")
        h = RedisHub(url, prefix=f"cad-test-{time.monotonic_ns()}")
    await h.start()
    try:
        yield h
    finally:
        await h.close()


async def test_every_subscriber_of_a_channel_gets_every_message_in_order(hub: Hub) -> None:
    a, b, other = Inbox(), Inbox(), Inbox()
    hub.subscribe("positions", a)
    hub.subscribe("positions", b)
    hub.subscribe("events", other)
    for i in range(100):
        await hub.publish("positions", str(i).encode())
    await a.wait_len(100)
    await b.wait_len(100)
    assert a.items == b.items == [str(i).encode() for i in range(100)]
    assert other.items == []


async def test_closed_subscription_gets_nothing_more(hub: Hub) -> None:
    a, b = Inbox(), Inbox()
    sub = hub.subscribe("c", a)
    hub.subscribe("c", b)
    await hub.publish("c", b"1")
    await a.wait_len(1)
    sub.close()
    await hub.publish("c", b"2")
    await b.wait_len(2)
    assert a.items == [b"1"]


async def test_a_failing_handler_does_not_stop_the_others(hub: Hub) -> None:
    def broken(_: bytes) -> None:
        raise RuntimeError("boom")

    ok = Inbox()
    hub.subscribe("c", broken)
    hub.subscribe("c", ok)
    await hub.publish("c", b"x")
    await hub.publish("c", b"y")
    await ok.wait_len(2)
    assert ok.items == [b"x", b"y"]


async def test_binary_payloads_pass_unchanged(hub: Hub) -> None:
    inbox = Inbox()
    hub.subscribe("c", inbox)
    payload = bytes(range(256)) + b"|with|separators|"
    await hub.publish("c", payload)
    await inbox.wait_len(1)
    assert inbox.items == [payload]


def test_backend_is_chosen_by_url() -> None:
    assert isinstance(create_hub(None), MemoryHub)
    assert isinstance(create_hub("redis://127.0.0.1:6379/0"), RedisHub)


async def test_redis_links_two_hubs_without_echo(redis_url: str) -> None:
    prefix = f"cad-test-{time.monotonic_ns()}"
    one, two = RedisHub(redis_url, prefix=prefix), RedisHub(redis_url, prefix=prefix)
    in_one, in_two = Inbox(), Inbox()
    one.subscribe("c", in_one)  # subscribed before start: active once start() returns
    two.subscribe("c", in_two)
    await one.start()
    await two.start()
    try:
        assert one.connected and two.connected
        for i in range(50):
            await one.publish("c", f"a{i}".encode())
            await two.publish("c", f"b{i}".encode())
        await in_one.wait_len(100)
        await in_two.wait_len(100)
        # each side: its own 50 (delivered locally) + the other's 50, none twice, in order
        assert sorted(in_one.items) == sorted(in_two.items)
        assert len(set(in_one.items)) == 100
        for inbox in (in_one, in_two):
            for tag in (b"a", b"b"):
                assert [x for x in inbox.items if x.startswith(tag)] == \
                    [tag + str(i).encode() for i in range(50)]
        # a late subscriber on a new channel is subscribed on the running connection
        late = Inbox()
        two.subscribe("late", late)
        await _publish_until_seen(one, late, channel="late")
    finally:
        await one.close()
        await two.close()


@pytest.fixture
def private_redis(tmp_path: Path):
    """A Redis server of our own that the test can stop and start (the shared one must stay up)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port, socket_connect_timeout=0.2).ping()
                return proc
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    state = {"proc": start()}

    class Control:
        url = f"redis://127.0.0.1:{port}/0"

        def stop(self) -> None:
            state["proc"].kill()
            state["proc"].wait(10)

        def start(self) -> None:
            state["proc"] = start()

    yield Control()
    state["proc"].kill()
    state["proc"].wait(10)


async def test_redis_outage_keeps_local_delivery_and_reconnects(private_redis) -> None:
    one, two = RedisHub(private_redis.url), RedisHub(private_redis.url)
    await one.start()
    await two.start()
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    two.on_reconnect(on_reconnect)
    try:
        local, remote = Inbox(), Inbox()
        one.subscribe("c", local)
        two.subscribe("c", remote)
        await _publish_until_seen(one, remote)
        private_redis.stop()
        await _wait(lambda: not one.connected and not two.connected)
        before = len(local.items)
        await one.publish("c", b"while-down")  # must not raise or hang
        assert local.items[before:] == [b"while-down"]
        private_redis.start()
        await asyncio.wait_for(reconnected.wait(), 15)
        await _wait(lambda: one.connected)
        remote.items.clear()
        await _publish_until_seen(one, remote)
        assert remote.items and b"while-down" not in remote.items
    finally:
        await one.close()
        await two.close()


async def _publish_until_seen(pub: Hub, inbox: Inbox, timeout: float = 10.0, *,
                              channel: str = "c") -> None:
    """Pub/sub subscriptions become active asynchronously: probe until one gets through."""
    deadline = time.monotonic() + timeout
    while not inbox.items:
        assert time.monotonic() < deadline, "message never arrived"
        await pub.publish(channel, b"probe")
        with contextlib.suppress(TimeoutError):
            await inbox.wait_len(1, timeout=0.05)


async def _wait(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)
