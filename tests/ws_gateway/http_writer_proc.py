"""Writer for the crash test through the dispatch HTTP API: call intake, dispatch,
en route, on scene, available — repeated over a few units, each request retried through
server restarts (dispatches and status changes with an Idempotency-Key, so a request that
committed before the crash is answered from the stored result, not applied twice).

    python -m tests.ws_gateway.http_writer_proc BASE_URL TOKEN CYCLES UNIT [UNIT ...]
Prints one line per completed request.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import httpx

RETRY_FOR_S = 60.0


async def _call(http: httpx.AsyncClient, path: str, body: dict[str, Any], *,
                idempotent: bool) -> httpx.Response:
    headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotent else {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_FOR_S
    while True:
        try:
            r = await http.post(path, json=body, headers=headers)
            if r.status_code < 500:
                return r
        except httpx.TransportError:
            pass  # the server is down (SIGKILL) or restarting
        if loop.time() > deadline:
            raise RuntimeError(f"{path} kept failing")
        await asyncio.sleep(0.05)


async def main(base_url: str, token: str, cycles: int, units: list[str]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(cycles):
            unit = units[i % len(units)]
            r = await _call(http, "/api/v1/incidents", {
                "agency": "A", "incident_type": "MED",
                "location": {"lat": 37.77 + i * 1e-4, "lon": -122.42}}, idempotent=False)
            assert r.status_code == 201, r.text
            inc = r.json()["id"]
            r = await _call(http, f"/api/v1/incidents/{inc}/dispatch",
                            {"unit_ids": [unit], "override_reason": "crash test"}, idempotent=True)
            assert r.status_code == 200, r.text
            for status in ("en_route", "on_scene", "available_on_radio"):
                r = await _call(http, f"/api/v1/units/{unit}/status", {"status": status},
                                idempotent=True)
                assert r.status_code == 200, r.text
            print(i, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
