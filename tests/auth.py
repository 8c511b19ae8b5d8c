"""The one helper module for authenticated test callers: users made straight in the
database, logins over HTTP, sessions and tokens signed with the app's key, and httpx clients
per role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from tests.support import RunningApp

# Cheap argon2 parameters for test users: verification reads the parameters from the hash, and
# the first real login re-hashes with the configured ones.
_TEST_HASHER_PARAMS: dict[str, Any] = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}


# The agency the tests' data belongs to (tests/dispatch_fixtures.py): a test user acts for it
# unless the test names others. Admins are global.
TEST_AGENCY = "SFFD"


async def make_user(pool: Any, role: str, *, unit_id: str | None = None,
                    agency: str | None = None, username: str | None = None,
                    password: str | None = None,
                    agencies: list[str] | None = None) -> tuple[str, str]:
    """Insert a user straight into the database; returns (username, password). A field_unit
    user without ``unit_id`` gets a made-up one. The user acts for ``agencies``, else
    ``agency``, else TEST_AGENCY."""
    import secrets
    import uuid

    from argon2 import PasswordHasher

    username = username or f"{role.replace('_', '-')}-{uuid.uuid4().hex[:10]}"
    password = password or secrets.token_urlsafe(18)
    if role == "field_unit" and unit_id is None:
        unit_id = f"TEST-{uuid.uuid4().hex[:6].upper()}"
    password_hash = PasswordHasher(**_TEST_HASHER_PARAMS).hash(password)
    if agencies is None:
        agencies = [agency] if agency is not None else [TEST_AGENCY]
    await pool.execute(
        "INSERT INTO users (username, password_hash, role, unit_id, agency, agencies) "
        "VALUES ($1, $2, $3, $4, $5, $6)", username, password_hash, role, unit_id, agency,
        agencies)
    return username, password


async def ensure_unit(pool: Any, unit_id: str, agency: str = TEST_AGENCY) -> None:
    """A roster unit to bind a field-unit user to (bindings need an existing unit of the
    user's agency)."""
    await pool.execute(
        "INSERT INTO units (id, agency, discipline, unit_type) VALUES ($1, $2, 'fire', 'engine') "
        "ON CONFLICT (id) DO NOTHING", unit_id, agency)


async def login_tokens(base_url: str, username: str, password: str) -> dict[str, Any]:
    """POST /api/v1/auth/login; the token response (access_token, refresh_token, ...)."""
    import httpx

    async with httpx.AsyncClient(base_url=base_url) as client:
        resp = await client.post("/api/v1/auth/login",
                                 json={"username": username, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def login_headers(base_url: str, username: str, password: str) -> dict[str, str]:
    """Log in over HTTP; ``{"Authorization": "Bearer <access token>"}``."""
    tokens = await login_tokens(base_url, username, password)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def session_headers(running: RunningApp, username: str) -> dict[str, str]:
    """A session for ``username`` made directly (no password check, no login rate limit) and
    an access token for it signed with the app's key: for tests that need many callers."""
    import uuid

    from cad.security.tokens import issue_access_token, new_refresh_token, token_hash

    rt = running.security
    pool = running.pool
    now = rt.clock()
    user = await pool.fetchrow("SELECT id::text AS id, role FROM users WHERE username = $1",
                               username)
    assert user is not None, f"no user {username}"
    session_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_seen_at, expires_at) "
        "VALUES ($1::uuid, $2::uuid, $3, $4::timestamptz, $4::timestamptz, "
        "$4::timestamptz + make_interval(secs => $5))",
        session_id, user["id"], token_hash(new_refresh_token(session_id)), now,
        float(rt.settings.refresh_token_ttl_s))
    token = issue_access_token(rt.secret, user_id=user["id"], session_id=session_id,
                               role=user["role"], now=now, ttl_s=rt.settings.access_token_ttl_s)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class AuthUser:
    username: str
    password: str
    role: str
    unit_id: str | None
    agency: str | None
    headers: dict[str, str]


class AuthHeaders:
    """``await auth_headers("dispatcher")`` -> Authorization headers of a user with that role.
    Repeated calls with the same arguments reuse the user unless ``fresh=True``; ``.users``
    holds every AuthUser made (username, password, unit_id, headers)."""

    def __init__(self, running: RunningApp) -> None:
        self.running = running
        self.users: list[AuthUser] = []
        self._cache: dict[tuple[str, str | None, str | None, tuple[str, ...] | None],
                          AuthUser] = {}

    async def user(self, role: str, *, unit_id: str | None = None, agency: str | None = None,
                   fresh: bool = False, agencies: list[str] | None = None) -> AuthUser:
        key = (role, unit_id, agency, tuple(agencies) if agencies is not None else None)
        if not fresh and key in self._cache:
            return self._cache[key]
        pool = self.running.pool
        username, password = await make_user(pool, role, unit_id=unit_id, agency=agency,
                                             agencies=agencies)
        unit = await pool.fetchval("SELECT unit_id FROM users WHERE username = $1", username)
        headers = await session_headers(self.running, username)
        made = AuthUser(username, password, role, unit, agency, headers)
        self.users.append(made)
        self._cache[key] = made
        return made

    async def __call__(self, role: str, *, unit_id: str | None = None, agency: str | None = None,
                       fresh: bool = False, agencies: list[str] | None = None) -> dict[str, str]:
        return (await self.user(role, unit_id=unit_id, agency=agency, fresh=fresh,
                                agencies=agencies)).headers


class Api:
    """An httpx client per role on one running app."""

    def __init__(self, running: RunningApp) -> None:
        self.running = running
        self.auth = AuthHeaders(running)
        self._clients: list[httpx.AsyncClient] = []

    async def as_(self, role: str, **kw: Any) -> httpx.AsyncClient:
        headers = await self.auth(role, **kw)
        c = httpx.AsyncClient(base_url=self.running.base_url, headers=headers, timeout=30)
        self._clients.append(c)
        return c

    async def close(self) -> None:
        for c in self._clients:
            await c.aclose()


# --- tokens for websocket clients (boards, MDTs) -------------------------------------------------
async def insert_unit(pool: asyncpg.Pool, unit_id: str, agency: str) -> None:
    await pool.execute(
        "INSERT INTO units (id, agency, discipline, unit_type) VALUES ($1, $2, 'fire', 'engine') "
        "ON CONFLICT (id) DO NOTHING", unit_id, agency)


async def board_token(pool: asyncpg.Pool, secret: str, *, role: str = "dispatcher",
                      agency: str | None = "A") -> str:
    """A user of ``role`` and a live session; the access token signed with ``secret``."""
    from cad.security.tokens import issue_access_token, new_refresh_token, token_hash

    username, _ = await make_user(pool, role, agency=agency)
    user_id = await pool.fetchval("SELECT id::text FROM users WHERE username = $1", username)
    session_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO sessions (id, user_id, refresh_hash, created_at, last_seen_at, expires_at) "
        "VALUES ($1::uuid, $2::uuid, $3, $4::timestamptz, $4, $4 + interval '12 hours')",
        session_id, user_id, token_hash(new_refresh_token(session_id)), now)
    return issue_access_token(secret, user_id=user_id, session_id=session_id, role=role, now=now,
                              ttl_s=3600)


async def device_token(pool: asyncpg.Pool, unit_id: str, *, agency: str = "A") -> str:
    """A field_unit user bound to ``unit_id`` and an MDT device token for it."""
    from cad.security.tokens import new_device_token, token_hash

    await insert_unit(pool, unit_id, agency)
    username, _ = await make_user(pool, "field_unit", unit_id=unit_id, agency=agency)
    user_id = await pool.fetchval("SELECT id::text FROM users WHERE username = $1", username)
    token = new_device_token()
    await pool.execute(
        "INSERT INTO device_tokens (user_id, unit_id, label, token_hash, created_at, created_by, "
        "expires_at) VALUES ($1::uuid, $2, 'test', $3, now(), 'tests', now() + interval '1 day')",
        user_id, unit_id, token_hash(token))
    return token
