"""A failure the code did not foresee: a 500 problem+json, the access log says 500, and the
client's keep-alive connection stays usable (a raw HTTP/1.1 client keeps one socket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import APIRouter

from cad.security.policy import PUBLIC
from cad.settings import Settings
from tests.support import RunningApp, running_app

boom_router = APIRouter()


@boom_router.get("/api/v1/_boom")
async def boom() -> dict[str, str]:
    raise RuntimeError("an unforeseen failure")


RULES = {("GET", "/api/v1/_boom"): PUBLIC}


@pytest.fixture
async def boom_app(database_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        db_pool_min=1, db_pool_max=4)
    async with running_app(settings, extra_routers=[boom_router], policy_overrides=RULES) as running:
        yield running


class KeepAliveClient:
    """HTTP/1.1 over one socket, requests one after the other: what a browser or a load
    balancer does with a keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, base_url: str) -> KeepAliveClient:
        host, port = base_url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout=10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in
                   (line.split(":", 1) for line in lines[1:] if ":" in line)}
        body = await asyncio.wait_for(self.reader.readexactly(int(headers["content-length"])),
                                      timeout=10)
        return status, headers, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_after_a_500_the_same_keep_alive_connection_serves_the_next_request(
        boom_app: RunningApp) -> None:
    client = await KeepAliveClient.connect(boom_app.base_url)
    try:
        status, headers, body = await client.get("/api/v1/_boom")
        assert status == 500
        assert headers["content-type"].startswith("application/problem+json")
        assert "connection" not in headers or headers["connection"].lower() != "close"
        problem = json.loads(body)
        assert problem["status"] == 500 and problem["instance"] == "/api/v1/_boom"
        assert "unforeseen" not in body.decode()  # the cause is logged, not shown
        # The next request on the same socket: before the fix the server closed it (reset).
        status, _, body2 = await client.get("/healthz")
        assert status == 200, body2
        assert headers["x-request-id"]  # answered inside the request-id middleware
        status, _, _ = await client.get("/api/v1/_boom")
        assert status == 500
        status, _, _ = await client.get("/healthz")
        assert status == 200
    finally:
        await client.close()


async def test_the_access_log_records_500_for_an_unhandled_failure(
        boom_app: RunningApp, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    client = await KeepAliveClient.connect(boom_app.base_url)
    try:
        status, headers, _ = await client.get("/api/v1/_boom")
    finally:
        await client.close()
    assert status == 500
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()
             if line.startswith("{")]
    access = [e for e in lines if e.get("event") == "http_request"
              and e.get("path") == "/api/v1/_boom"]
    assert [e["status"] for e in access] == [500]
    errors = [e for e in lines if e.get("event") == "unhandled_error"]
    assert len(errors) == 1 and "an unforeseen failure" in errors[0]["exception"]
    assert errors[0]["request_id"] == headers["x-request-id"] == access[0]["request_id"]
