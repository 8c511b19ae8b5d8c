"""Schema-driven fuzzing (schemathesis) of the dispatch endpoints: whatever the generated
input, the answer is never a 5xx, and every error is problem+json."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings

from tests.incidents.conftest import Api, create_unit

schemathesis = pytest.importorskip("schemathesis")

PREFIXES = ("/api/v1/units", "/api/v1/incidents", "/api/v1/stations", "/api/v1/zones",
            "/api/v1/response-plans", "/api/v1/substitutions", "/api/v1/incident-types",
            "/api/v1/timers", "/api/v1/board")
EXAMPLES_PER_OPERATION = 12


def _fuzz(spec: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(spec)
    problems: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if not op.path.startswith(PREFIXES):
            continue
        ran += 1

        @hsettings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                   suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            resp = case.call(base_url=base_url, headers=headers)
            where = f"{case.method} {case.formatted_path} -> {resp.status_code}"
            if resp.status_code >= 500:
                problems.append(f"{where}: {resp.text[:300]}")
            ctype = resp.headers.get("content-type") or resp.headers.get("Content-Type") or ""
            if isinstance(ctype, list):
                ctype = ctype[0] if ctype else ""
            if resp.status_code < 500 and resp.status_code >= 400 and not ctype.startswith(
                    "application/problem+json"):
                problems.append(f"{where}: not problem+json")

        run()
    assert ran >= 25, f"only {ran} operations matched: the filter is stale"
    return problems


async def test_schema_generated_requests_never_get_a_server_error(api: Api) -> None:
    sup = await api.as_("supervisor")
    r = await sup.put("/api/v1/stations/S1", json={"id": "S1", "agency": "SFFD", "name": "One",
                                                   "lat": 37.77, "lon": -122.42})
    assert r.status_code == 200
    await create_unit(sup, "E01", station="S1")
    headers = await api.auth("admin")
    async with httpx.AsyncClient(base_url=api.running.base_url) as c:
        spec = (await c.get("/openapi.json")).json()
    problems = await asyncio.to_thread(_fuzz, spec, api.running.base_url, headers)
    assert problems == [], "\n".join(problems[:20])
