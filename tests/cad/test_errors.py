"""Bad input always gets a clear 4xx problem+json naming the field; never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from cad.security.policy import PUBLIC
from cad.settings import Settings
from tests.support import RunningApp, running_app

BODY_LIMIT = 4096


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call_sign: str = Field(min_length=1, max_length=16)
    priority: int = Field(ge=1, le=5)
    lat: float = Field(ge=-90, le=90)


probe_router = APIRouter()


@probe_router.post("/api/v1/_probe", status_code=201)
async def probe(body: Probe) -> dict[str, object]:
    return body.model_dump()


@probe_router.get("/api/v1/_probe/{probe_id}")
async def get_probe(probe_id: int) -> dict[str, int]:
    return {"id": probe_id}


PROBE_RULES = {("POST", "/api/v1/_probe"): PUBLIC, ("GET", "/api/v1/_probe/{probe_id}"): PUBLIC}


@pytest.fixture
async def probe_app(database_url: str, tmp_path) -> AsyncIterator[RunningApp]:
    settings = Settings(database_url=database_url, data_dir=tmp_path, max_body_bytes=BODY_LIMIT,
                        log_format="json")
    async with running_app(settings, extra_routers=[probe_router],
                           policy_overrides=PROBE_RULES) as running:
        yield running


def _is_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["status"] == status
    assert body["title"] and body["detail"] and body["type"].startswith("https://")
    return body


async def test_valid_request_passes(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", json={"call_sign": "E1", "priority": 2, "lat": 37.7})
    assert r.status_code == 201
    assert r.json() == {"call_sign": "E1", "priority": 2, "lat": 37.7}


async def test_malformed_json_is_400(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", content=b'{"call_sign": "E1",',
                         headers={"content-type": "application/json"})
    body = _is_problem(r, 400)
    assert body["errors"][0]["type"] == "json_invalid"


async def test_wrong_types_name_the_field(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", json={"call_sign": "E1", "priority": "high", "lat": 37})
    body = _is_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["body.priority"]
    assert "body.priority" in body["detail"]


async def test_unknown_and_missing_fields_are_named(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", json={"call_sign": "E1", "lat": 1, "colour": "red"})
    body = _is_problem(r, 422)
    assert sorted(e["field"] for e in body["errors"]) == ["body.colour", "body.priority"]


async def test_out_of_range_and_path_parameter(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r1 = await c.post("/api/v1/_probe", json={"call_sign": "E1", "priority": 9, "lat": 91})
        r2 = await c.get("/api/v1/_probe/not-a-number")
    assert sorted(e["field"] for e in _is_problem(r1, 422)["errors"]) == ["body.lat", "body.priority"]
    assert _is_problem(r2, 422)["errors"][0]["field"] == "path.probe_id"


async def test_oversized_bodies_are_413(probe_app: RunningApp) -> None:
    big = b'{"call_sign": "' + b"x" * (BODY_LIMIT * 2) + b'"}'

    async def chunks():
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        declared = await c.post("/api/v1/_probe", content=big,
                                headers={"content-type": "application/json"})
        streamed = await c.post("/api/v1/_probe", content=chunks(),
                                headers={"content-type": "application/json"})
    assert _is_problem(declared, 413)["limit_bytes"] == BODY_LIMIT
    assert "transfer-encoding" not in declared.request.headers
    _is_problem(streamed, 413)
    assert streamed.request.headers.get("transfer-encoding") == "chunked"


async def test_wrong_method_and_path(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r1 = await c.delete("/api/v1/_probe")
        r2 = await c.get("/api/v1/nothing-here")
        r3 = await c.put("/healthz")
    assert "DELETE" in _is_problem(r1, 405)["detail"]
    assert "/api/v1/nothing-here" in _is_problem(r2, 404)["detail"]
    _is_problem(r3, 405)


async def test_wrong_content_type_is_4xx(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", content=b"call_sign=E1",
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_request_id_is_returned_and_honoured(probe_app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        own = await c.get("/healthz", headers={"x-request-id": "console-7:abc"})
        bad = await c.get("/healthz", headers={"x-request-id": "bad id with spaces"})
        new = await c.get("/healthz")
    assert own.headers["x-request-id"] == "console-7:abc"
    assert bad.headers["x-request-id"] != "bad id with spaces"
    assert len(new.headers["x-request-id"]) == 32


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=300),
    st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers()
                 | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
))
async def test_fuzzed_bodies_never_500(probe_app: RunningApp, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=probe_app.base_url) as c:
        r = await c.post("/api/v1/_probe", content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")
