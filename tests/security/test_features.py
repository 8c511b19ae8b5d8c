"""User administration, MDT device tokens, bootstrap, abuse limits, headers, CORS, and
revocation reaching open websockets."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from cad.security import principal_from_token
from cad.settings import Settings
from tests.auth import AuthHeaders, ensure_unit, login_tokens, make_user
from tests.support import RunningApp, running_app

API = "/api/v1"
PASSWORD = "correct horse battery staple"


def _settings(database_url: str, tmp_path, **kw) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                    db_pool_min=1, db_pool_max=6, **kw)


async def test_admin_manages_users(app: RunningApp, auth_headers: AuthHeaders) -> None:
    admin = await auth_headers("admin")
    for unit in ("M12", "M14"):
        await ensure_unit(app.pool, unit, "SFFD")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.post(f"{API}/users", headers=admin, json={
            "username": "Medic-12", "password": PASSWORD, "role": "field_unit", "unit_id": "M12",
            "agency": "SFFD"})
        assert r.status_code == 201, r.text
        user = r.json()
        assert user["username"] == "medic-12" and user["unit_id"] == "M12"
        assert "password" not in r.text and "argon2" not in r.text
        dup = await c.post(f"{API}/users", headers=admin, json={
            "username": "medic-12", "password": PASSWORD, "role": "analyst"})
        assert dup.status_code == 409
        for bad in ({"username": "a1", "password": "short", "role": "analyst"},
                    {"username": "d1", "password": PASSWORD, "role": "dispatcher", "unit_id": "E1"},
                    {"username": "f1", "password": PASSWORD, "role": "field_unit"},
                    {"username": "bad name!", "password": PASSWORD, "role": "analyst"},
                    {"username": "r1", "password": PASSWORD, "role": "root"}):
            resp = await c.post(f"{API}/users", headers=admin, json=bad)
            assert resp.status_code == 422, (bad, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")
        assert (await c.get(f"{API}/users/not-a-uuid", headers=admin)).status_code == 404
        got = await c.get(f"{API}/users/{user['id']}", headers=admin)
        assert got.status_code == 200 and got.json()["role"] == "field_unit"

        tokens = await login_tokens(app.base_url, "medic-12", PASSWORD)
        assert await principal_from_token(app.security_state, tokens["access_token"]) is not None
        # Moving the user to another unit ends their sessions.
        moved = await c.patch(f"{API}/users/{user['id']}", headers=admin, json={"unit_id": "M14"})
        assert moved.status_code == 200 and moved.json()["unit_id"] == "M14"
        assert await principal_from_token(app.security_state, tokens["access_token"]) is None
        gone = await c.delete(f"{API}/users/{user['id']}", headers=admin)
        assert gone.status_code == 204
        denied = await c.post(f"{API}/auth/login", json={"username": "medic-12", "password": PASSWORD})
        assert denied.status_code == 401
    actions = [r["action"] for r in await app.pool.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY seq", f"user:{user['id']}")]
    assert actions[:2] == ["user.create", "user.read"] and actions.count("user.update") == 2


async def test_last_admin_cannot_be_removed(app: RunningApp, auth_headers: AuthHeaders) -> None:
    admin_user = await auth_headers.user("admin")
    uid = await app.pool.fetchval("SELECT id::text FROM users WHERE username = $1",
                                            admin_user.username)
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.delete(f"{API}/users/{uid}", headers=admin_user.headers)
        assert r.status_code == 409
        r = await c.patch(f"{API}/users/{uid}", headers=admin_user.headers, json={"role": "analyst"})
        assert r.status_code == 409


async def test_device_tokens_issue_use_revoke(app: RunningApp, auth_headers: AuthHeaders) -> None:
    sup = await auth_headers("supervisor")
    await ensure_unit(app.pool, "E7")
    unit_user = await auth_headers.user("field_unit", unit_id="E7")
    uid = await app.pool.fetchval("SELECT id::text FROM users WHERE username = $1",
                                            unit_user.username)
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.post(f"{API}/devices", headers=sup, json={"user_id": uid, "label": "MDT 0042"})
        assert r.status_code == 201, r.text
        device = r.json()
        token = device["token"]
        assert token.startswith("mdt_") and device["unit_id"] == "E7"
        p = await principal_from_token(app.security_state, token)
        assert p is not None and (p.role, p.unit_id, p.session_id) == ("field_unit", "E7", device["id"])
        me = await c.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["unit_id"] == "E7"
        listed = await c.get(f"{API}/devices", headers=sup, params={"unit_id": "E7"})
        assert [d["id"] for d in listed.json()] == [device["id"]] and "token" not in listed.json()[0]
        dispatcher = await auth_headers("dispatcher")
        not_a_unit = await c.post(f"{API}/devices", headers=sup, json={
            "user_id": await app.pool.fetchval(
                "SELECT id::text FROM users WHERE role = 'dispatcher'"), "label": "x"})
        assert not_a_unit.status_code == 422
        assert (await c.post(f"{API}/devices", headers=dispatcher,
                             json={"user_id": uid, "label": "x"})).status_code == 403
        assert (await c.delete(f"{API}/devices/{device['id']}", headers=sup)).status_code == 204
        assert await principal_from_token(app.security_state, token) is None
        assert (await c.get(f"{API}/auth/me",
                            headers={"Authorization": f"Bearer {token}"})).status_code == 401
        assert (await c.delete(f"{API}/devices/not-a-uuid", headers=sup)).status_code == 404


async def test_denied_requests_and_unaudited_writes_are_recorded(app: RunningApp,
                                                                 auth_headers: AuthHeaders) -> None:
    analyst = await auth_headers("analyst")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.post(f"{API}/users", headers=analyst, json={})
        assert r.status_code == 403
        r = await c.post(f"{API}/auth/password", headers=analyst, json={"current_password": "x"})
        assert r.status_code == 422
    rows = await app.pool.fetch(
        "SELECT action, outcome, target, source_actor FROM (SELECT action, outcome, target, "
        "actor AS source_actor FROM audit_log ORDER BY seq) t")
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("access.denied", "denied"), ("http.post", "failure")]
    assert rows[0]["target"] == "POST /api/v1/users"


async def test_bootstrap_admin_from_environment(database_url: str, tmp_path) -> None:
    settings = _settings(database_url, tmp_path, bootstrap_admin_username="Chief",
                         bootstrap_admin_password=PASSWORD)
    async with running_app(settings) as running:
        tokens = await login_tokens(running.base_url, "chief", PASSWORD)
        assert tokens["user"]["role"] == "admin"
    # A second start (or worker) does not create another or reset the password.
    again = _settings(database_url, tmp_path, bootstrap_admin_username="other",
                      bootstrap_admin_password=PASSWORD)
    async with running_app(again) as running:
        assert await running.pool.fetchval(
            "SELECT array_agg(username) FROM users") == ["chief"]


async def test_login_rate_limit(database_url: str, tmp_path) -> None:
    settings = _settings(database_url, tmp_path, rate_limit_login_burst=3,
                         rate_limit_login_per_min=1)
    async with running_app(settings) as running, \
            httpx.AsyncClient(base_url=running.base_url) as c:
        codes = [(await c.post(f"{API}/auth/login",
                               json={"username": "x", "password": "y"})).status_code
                 for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        r = await c.post(f"{API}/auth/login", json={"username": "x", "password": "y"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        # Other public endpoints have their own budget.
        assert (await c.get("/healthz")).status_code == 200


async def test_public_rate_limit(database_url: str, tmp_path) -> None:
    settings = _settings(database_url, tmp_path, rate_limit_public_burst=5,
                         rate_limit_public_per_s=0.5)
    async with running_app(settings) as running, \
            httpx.AsyncClient(base_url=running.base_url) as c:
        codes = [(await c.get("/healthz")).status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


async def test_security_headers(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.get("/healthz")
        denied = await c.get(f"{API}/users")
        docs = await c.get("/docs")
    for resp in (r, denied):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["content-security-policy"].startswith("default-src 'none'")
        assert resp.headers["strict-transport-security"].startswith("max-age=31536000")
        assert resp.headers["cache-control"] == "no-store"
    # Swagger UI is served by the app (cad.console): its own origin, no CDN.
    assert docs.headers["content-security-policy"].startswith("default-src 'self'")


async def test_cors_is_off_by_default_and_configurable(app: RunningApp, database_url: str,
                                                       tmp_path) -> None:
    preflight = {"origin": "https://console.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization"}
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.options(f"{API}/auth/login", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    settings = _settings(database_url, tmp_path / "c", cors_origins=["https://console.example"])
    async with running_app(settings) as running, \
            httpx.AsyncClient(base_url=running.base_url) as c:
        ok = await c.options(f"{API}/auth/login", headers=preflight)
        assert ok.headers["access-control-allow-origin"] == "https://console.example"
        other = await c.options(f"{API}/auth/login",
                                headers={**preflight, "origin": "https://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"
        unauth = await c.get(f"{API}/auth/me", headers={"origin": "https://console.example"})
        assert unauth.status_code == 401
        assert unauth.headers["access-control-allow-origin"] == "https://console.example"


async def test_logout_closes_open_websocket(database_url: str, tmp_path) -> None:
    settings = _settings(database_url, tmp_path, ws_token_recheck_interval_s=30.0)
    async with running_app(settings) as running:
        username, password = await make_user(running.pool, "dispatcher")
        tokens = await login_tokens(running.base_url, username, password)
        url = f"{running.ws_url}/ws/board?access_token={tokens['access_token']}"
        async with websockets.connect(url) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # the snapshot: connected and authorised
            async with httpx.AsyncClient(base_url=running.base_url) as c:
                r = await c.post(f"{API}/auth/logout",
                                 headers={"Authorization": f"Bearer {tokens['access_token']}"})
                assert r.status_code == 204
            # Well before the 30 s periodic re-check: the revocation is pushed.
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
