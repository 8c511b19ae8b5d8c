"""Login, tokens, refresh rotation, logout, lockout, idle timeout, device tokens."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from cad.security import principal_from_token
from cad.settings import Settings
from tests.auth import login_tokens, make_user
from tests.support import RunningApp, running_app

API = "/api/v1"


def _problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return resp.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_me_logout(app: RunningApp) -> None:
    username, password = await make_user(app.pool, "dispatcher", agency="SFPD")
    tokens = await login_tokens(app.base_url, username, password)
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"].startswith("rt_")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        me = await c.get(f"{API}/auth/me", headers=_bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["username"] == username and me.json()["role"] == "dispatcher"
        assert me.json()["agency"] == "SFPD"
        out = await c.post(f"{API}/auth/logout", headers=_bearer(tokens["access_token"]))
        assert out.status_code == 204
        after = await c.get(f"{API}/auth/me", headers=_bearer(tokens["access_token"]))
        _problem(after, 401)
        assert after.headers["www-authenticate"].startswith("Bearer")
        again = await c.post(f"{API}/auth/refresh",
                             json={"refresh_token": tokens["refresh_token"]})
        _problem(again, 401)
    assert await principal_from_token(app.security_state, tokens["access_token"]) is None


async def test_password_is_stored_as_argon2(app: RunningApp) -> None:
    username, password = await make_user(app.pool, "analyst")
    await login_tokens(app.base_url, username, password)
    stored = await app.pool.fetchval(
        "SELECT password_hash FROM users WHERE username = $1", username)
    assert stored.startswith("$argon2id$") and password not in stored
    # The cheap test hash was upgraded to the configured parameters at login.
    assert "m=65536,t=3" in stored


async def test_bad_credentials_are_401_and_audited(app: RunningApp) -> None:
    username, _ = await make_user(app.pool, "dispatcher")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r1 = await c.post(f"{API}/auth/login", json={"username": username, "password": "wrong"})
        r2 = await c.post(f"{API}/auth/login", json={"username": "nobody", "password": "x"})
        r3 = await c.post(f"{API}/auth/login", json={"username": username})
        r4 = await c.post(f"{API}/auth/login", content=b"{", headers={"content-type": "application/json"})
    assert _problem(r1, 401)["detail"] == _problem(r2, 401)["detail"]  # no user enumeration
    _problem(r3, 422)
    _problem(r4, 400)
    rows = await app.pool.fetch(
        "SELECT actor, outcome, details, client_addr FROM audit_log "
        "WHERE action = 'auth.login' ORDER BY seq")
    assert [(r["actor"], r["outcome"], r["details"]["reason"]) for r in rows] == [
        (username, "failure", "bad_password"), ("nobody", "failure", "unknown_user")]
    assert rows[0]["client_addr"] == "127.0.0.1"


async def test_refresh_rotates_and_reuse_revokes_the_session(app: RunningApp) -> None:
    username, password = await make_user(app.pool, "supervisor")
    first = await login_tokens(app.base_url, username, password)
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        r = await c.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert r.status_code == 200, r.text
        second = r.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["session_id"] == first["session_id"]
        ok = await c.get(f"{API}/auth/me", headers=_bearer(second["access_token"]))
        assert ok.status_code == 200
        # The superseded token comes back: treated as stolen, the whole session ends.
        stolen = await c.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
        _problem(stolen, 401)
        dead = await c.get(f"{API}/auth/me", headers=_bearer(second["access_token"]))
        _problem(dead, 401)
        bad = await c.post(f"{API}/auth/refresh", json={"refresh_token": "rt_garbage"})
        _problem(bad, 401)


async def test_lockout_after_threshold_then_expires(app: RunningApp) -> None:
    s = app.settings
    username, password = await make_user(app.pool, "dispatcher")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        for _ in range(s.lockout_threshold):
            r = await c.post(f"{API}/auth/login", json={"username": username, "password": "nope"})
            _problem(r, 401)
        locked = await c.post(f"{API}/auth/login", json={"username": username, "password": password})
        _problem(locked, 401)
        reasons = [r["reason"] for r in await app.pool.fetch(
            "SELECT reason FROM login_attempts WHERE username = $1 ORDER BY id", username)]
        assert reasons == ["bad_password"] * s.lockout_threshold + ["locked"]
        assert await app.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'auth.lockout'") == 1
        # The lockout lasts lockout_window_s: move the app's clock past it.
        rt = app.security
        real = rt.clock
        rt.clock = lambda: real() + timedelta(seconds=s.lockout_window_s + 1)
        try:
            ok = await c.post(f"{API}/auth/login", json={"username": username, "password": password})
            assert ok.status_code == 200, ok.text
        finally:
            rt.clock = real


async def test_consecutive_failures_reset_on_success(app: RunningApp) -> None:
    s = app.settings
    username, password = await make_user(app.pool, "dispatcher")
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        for _ in range(s.lockout_threshold - 1):
            await c.post(f"{API}/auth/login", json={"username": username, "password": "nope"})
        assert (await c.post(f"{API}/auth/login",
                             json={"username": username, "password": password})).status_code == 200
        for _ in range(s.lockout_threshold - 1):
            await c.post(f"{API}/auth/login", json={"username": username, "password": "nope"})
        assert (await c.post(f"{API}/auth/login",
                             json={"username": username, "password": password})).status_code == 200


async def test_idle_timeout_ends_the_session(app: RunningApp) -> None:
    idle = app.settings.idle_timeout_s
    username, password = await make_user(app.pool, "dispatcher")
    tokens = await login_tokens(app.base_url, username, password)
    rt = app.security
    real = rt.clock
    t0 = real()

    def at(offset_s: float) -> None:
        rt.clock = lambda: t0 + timedelta(seconds=offset_s) + (real() - t0)

    async with httpx.AsyncClient(base_url=app.base_url) as c:
        try:
            # Just inside the idle window: the refresh works and a request counts as activity.
            at(idle - 60)
            r = await c.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200, r.text
            tokens = r.json()
            assert (await c.get(f"{API}/auth/me", headers=_bearer(tokens["access_token"]))).status_code == 200
            # That activity moved the window: twice the idle time after login is still fine.
            at(2 * idle - 120)
            r = await c.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200, r.text
            tokens = r.json()
            # Refreshing is not activity (clients do it unattended): idle past the last request.
            at(idle - 60 + idle + 1)
            _problem(await c.get(f"{API}/auth/me", headers=_bearer(tokens["access_token"])), 401)
            _problem(await c.post(f"{API}/auth/refresh",
                                  json={"refresh_token": tokens["refresh_token"]}), 401)
            row = await app.pool.fetchrow(
                "SELECT revoked_reason FROM sessions WHERE id = $1::uuid", tokens["session_id"])
            assert row["revoked_reason"] == "idle_timeout"
        finally:
            rt.clock = real


async def test_idle_timeout_with_real_time(database_url: str, tmp_path) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path, log_format="json",
                        idle_timeout_s=1, db_pool_min=1, db_pool_max=4)
    async with running_app(settings) as app:
        username, password = await make_user(app.pool, "analyst")
        tokens = await login_tokens(app.base_url, username, password)
        token = tokens["access_token"]
        assert await principal_from_token(app.security_state, token) is not None
        import asyncio
        await asyncio.sleep(1.3)
        assert await principal_from_token(app.security_state, token) is None


async def test_expired_and_forged_access_tokens(app: RunningApp) -> None:
    import jwt

    username, password = await make_user(app.pool, "dispatcher")
    tokens = await login_tokens(app.base_url, username, password)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, "x" * 40, algorithm="HS256")
    none_alg = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]  # the attack: no key
    rt = app.security
    real = rt.clock
    async with httpx.AsyncClient(base_url=app.base_url) as c:
        for bad in (forged, none_alg, "garbage", tokens["refresh_token"]):
            _problem(await c.get(f"{API}/auth/me", headers=_bearer(bad)), 401)
        rt.clock = lambda: real() + timedelta(seconds=app.settings.access_token_ttl_s + 1)
        try:
            _problem(await c.get(f"{API}/auth/me", headers=_bearer(tokens["access_token"])), 401)
        finally:
            rt.clock = real


async def test_jwt_secret_is_generated_0600_and_reused(app: RunningApp) -> None:
    path = app.settings.data_dir / "jwt_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    from cad.security.tokens import load_or_create_secret
    assert load_or_create_secret(None, app.settings.data_dir) == app.security.secret
    with pytest.raises(ValueError):
        load_or_create_secret("short", app.settings.data_dir)
