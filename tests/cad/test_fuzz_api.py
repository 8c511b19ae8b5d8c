"""Schema-driven fuzzing (schemathesis) of every endpoint: whatever the generated input, the
answer is never a 5xx, and every error is problem+json.

CAD_FUZZ_EXAMPLES raises the examples per operation for a longer hunt (default 12);
CAD_FUZZ_RANDOM=1 draws new examples each run instead of the same derandomized ones."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from tests.dispatch_fixtures import Api, create_unit

schemathesis = pytest.importorskip("schemathesis")

PREFIXES = ("/api/v1/units", "/api/v1/incidents", "/api/v1/stations", "/api/v1/zones",
            "/api/v1/response-plans", "/api/v1/substitutions", "/api/v1/incident-types",
            "/api/v1/timers", "/api/v1/board", "/api/v1/geocode", "/api/v1/places",
            "/api/v1/analytics", "/api/v1/alerts", "/api/v1/alert-subscriptions",
            "/api/v1/publication", "/api/v1/recommendations", "/api/v1/coverage",
            "/api/v1/reports", "/api/v1/feedback")
# The rest: sign-in, sessions, users, devices, audit, AVL, realtime, health. Each operation
# gets a session of its own, so a fuzzed logout or password change cannot starve the others.
OTHER_PREFIXES = ("/api/v1/auth", "/api/v1/users", "/api/v1/devices", "/api/v1/audit",
                  "/api/v1/realtime", "/api/v1/basemap", "/api/v1/console", "/healthz", "/readyz",
                  "/asyncapi.json", "/public", "/api/v1/training")
EXAMPLES_PER_OPERATION = int(os.environ.get("CAD_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = os.environ.get("CAD_FUZZ_RANDOM") != "1"


def _operations(spec: dict[str, Any], prefixes: tuple[str, ...],
                suffixes: tuple[str, ...] = ()) -> list[Any]:
    schema = schemathesis.openapi.from_dict(spec)
    ops = [r.ok() for r in schema.get_all_operations()]
    return [op for op in ops if op.path.startswith(prefixes) or op.path.endswith(suffixes)]


def _fuzz(ops: list[Any], base_url: str, headers: list[dict[str, str]]) -> list[str]:
    problems: list[str] = []
    for op, hdrs in zip(ops, headers, strict=True):
        _fuzz_operation(op, base_url, hdrs, problems)
    return problems


def _fuzz_operation(op: Any, base_url: str, hdrs: dict[str, str], problems: list[str]) -> None:
    @hsettings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE,
               suppress_health_check=list(HealthCheck), database=None)
    @given(case=op.as_strategy())
    def run(case: Any) -> None:
        resp = case.call(base_url=base_url, headers=hdrs)
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


async def test_schema_generated_requests_never_get_a_server_error(api: Api) -> None:
    sup = await api.as_("supervisor")
    r = await sup.put("/api/v1/stations/S1", json={"id": "S1", "agency": "SFFD", "name": "One",
                                                   "lat": 37.77, "lon": -122.42})
    assert r.status_code == 200
    await create_unit(sup, "E01", station="S1")
    headers = await api.auth("admin")
    async with httpx.AsyncClient(base_url=api.running.base_url) as c:
        spec = (await c.get("/openapi.json")).json()
    ops = _operations(spec, PREFIXES, ("/positions", "/track"))
    assert len(ops) >= 25, f"only {len(ops)} operations matched: the filter is stale"
    problems = await asyncio.to_thread(_fuzz, ops, api.running.base_url, [headers] * len(ops))
    assert problems == [], "\n".join(problems[:20])


async def test_schema_generated_security_and_realtime_requests_never_get_a_server_error(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.running.base_url) as c:
        spec = (await c.get("/openapi.json")).json()
    ops = _operations(spec, OTHER_PREFIXES)
    covered = {op.path for op in ops} | {
        op.path for op in _operations(spec, PREFIXES, ("/positions", "/track"))}
    assert covered == set(spec["paths"]), f"not fuzzed: {sorted(set(spec['paths']) - covered)}"
    headers = [await api.auth("admin", fresh=True) for _ in ops]
    problems = await asyncio.to_thread(_fuzz, ops, api.running.base_url, headers)
    assert problems == [], "\n".join(problems[:20])
