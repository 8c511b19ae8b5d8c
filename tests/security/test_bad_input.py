"""Bad input to the security endpoints is a 4xx problem+json, never a 500."""

from __future__ import annotations

import json

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.auth import AuthHeaders
from tests.support import RunningApp

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**31, 2**31) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["username", "password", "refresh_token", "role", "unit_id", "user_id",
                         "label", "x"]), inner, max_size=4),
    max_leaves=8)


@hsettings(max_examples=30, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, target=st.sampled_from(["/api/v1/auth/login", "/api/v1/auth/refresh",
                                          "/api/v1/users", "/api/v1/devices"]))
async def test_fuzzed_bodies_never_500(app: RunningApp, auth_headers: AuthHeaders, body: object,
                                       target: str) -> None:
    headers = await auth_headers("admin")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.post(target, content=json.dumps(body).encode(),
                         headers={**headers, "content-type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_malformed_authorization_headers_are_401(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        for value in ("Bearer", "Basic dXNlcjpwYXNz", "bearer x.y.z", "Bearer " + "a" * 5000,
                      "Bearer mdt_nope", "Bearer rt_00000000-0000-0000-0000-000000000000.x",
                      "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"):
            r = await c.get("/api/v1/auth/me", headers={"authorization": value})
            assert r.status_code == 401, (value[:40], r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
        r = await c.get("/api/v1/auth/me", headers=[(b"authorization", b"Bearer \xff\xfe")])
        assert r.status_code == 401
