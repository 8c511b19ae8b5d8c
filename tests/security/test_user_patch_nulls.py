"""PATCH /users/{id} with an explicit null for a field that cannot be null is a 422 naming the
field (it was a 500 for the password and a 409 naming a database constraint for disabled)."""

from __future__ import annotations

import httpx

from tests.auth import AuthHeaders
from tests.support import RunningApp

API = "/api/v1"


async def test_null_for_a_field_that_cannot_be_null_is_422_naming_it(
        app: RunningApp, auth_headers: AuthHeaders) -> None:
    admin = await auth_headers("admin")
    target = await auth_headers.user("dispatcher")
    pool = app.pool
    uid = await pool.fetchval("SELECT id::text FROM users WHERE username = $1", target.username)
    before = dict(await pool.fetchrow("SELECT * FROM users WHERE id = $1::uuid", uid))
    async with httpx.AsyncClient(base_url=app.base_url, headers=admin) as c:
        for name in ("password", "disabled", "role", "unlock"):
            r = await c.patch(f"{API}/users/{uid}", json={name: None})
            assert r.status_code == 422, (name, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in r.json()["errors"]] == [f"body.{name}"], r.text
        # Fields that may be cleared still can be.
        r = await c.patch(f"{API}/users/{uid}", json={"display_name": None, "agency": None})
        assert r.status_code == 200, r.text
        # The user is as it was, and still works.
        after = dict(await pool.fetchrow("SELECT * FROM users WHERE id = $1::uuid", uid))
        for col in ("password_hash", "disabled", "role", "failed_logins"):
            assert after[col] == before[col], col
        assert (await c.get(f"{API}/auth/me", headers=target.headers)).status_code == 200
