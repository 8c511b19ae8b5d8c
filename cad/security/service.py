"""Security actions: log in, refresh, log out, resolve a token to a principal, administer
users and MDT device tokens, bootstrap the first admin. Keyword-only; one transaction each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from cad.errors import Conflict, Invalid, NotFound, Unauthorized
from cad.security import repository as repo
from cad.security.principal import ROLES, Principal
from cad.security.runtime import SecurityRuntime
from cad.security.scope import Scope
from cad.security.state import SecurityState
from cad.security.tokens import (
    decode_access_token,
    is_device_token,
    issue_access_token,
    new_device_token,
    new_refresh_token,
    refresh_session_id,
    token_hash,
)
from cad.uow import RequestContext, audit_now, unit_of_work

log = structlog.get_logger("cad.security")

BAD_CREDENTIALS = "invalid username or password, or the account is locked or disabled"
BOOTSTRAP_LOCK_KEY = 0x43AD_0004
MAX_ACTOR_CHARS = 64
# Touch last_seen_at at most this often per session: one write per request would double the
# write load of a busy console for no gain in idle-timeout precision.
TOUCH_INTERVAL_MAX_S = 30.0


def normalize_username(username: str) -> str:
    return username.strip().lower()


# --- tokens -> principal -----------------------------------------------------------------------

async def principal_from_token(state: SecurityState, token: str, *, touch: bool = False
                               ) -> Principal | None:
    """The principal of a valid access token or MDT device token; None when the token is
    malformed, expired, revoked, its session idle-timed-out, or its user disabled.

    ``touch=True`` counts the call as user activity (HTTP requests do); websocket re-checks
    leave it False so an open, unattended board still locks after the idle timeout.
    """
    rt, pool = state.runtime, state.pool
    if rt is None or pool is None or not token or len(token) > 4096:
        return None
    now = rt.clock()
    if is_device_token(token):
        return await _device_principal(rt, pool, token, now)
    claims = decode_access_token(rt.secret, token, now=now)
    if claims is None:
        return None
    try:
        row = await repo.session_with_user(pool, str(claims["sid"]))
    except (asyncpg.DataError, ValueError):
        return None
    if row is None or row["user_id"] != claims["sub"]:
        return None
    if not _session_usable(rt, row, now):
        if row["revoked_at"] is None and _idle(rt, row, now):
            await repo.revoke_session(pool, row["session_id"], now=now, reason="idle_timeout")
        return None
    if touch:
        interval = min(TOUCH_INTERVAL_MAX_S, rt.settings.idle_timeout_s / 10)
        if (now - row["last_seen_at"]).total_seconds() >= interval:
            await repo.touch_session(pool, row["session_id"], now)
    return Principal(user_id=row["user_id"], username=row["username"], role=row["role"],
                     unit_id=row["unit_id"], agency=row["agency"], session_id=row["session_id"],
                     agencies=tuple(row["agencies"]))


def _idle(rt: SecurityRuntime, row: asyncpg.Record, now: datetime) -> bool:
    return (now - row["last_seen_at"]).total_seconds() > rt.settings.idle_timeout_s


def _session_usable(rt: SecurityRuntime, row: asyncpg.Record, now: datetime) -> bool:
    return (row["revoked_at"] is None and not row["disabled"] and row["expires_at"] > now
            and not _idle(rt, row, now))


async def _device_principal(rt: SecurityRuntime, pool: asyncpg.Pool, token: str,
                            now: datetime) -> Principal | None:
    row = await repo.device_with_user(pool, token_hash(token))
    if (row is None or row["revoked_at"] is not None or row["disabled"]
            or row["role"] != "field_unit" or row["unit_id"] != row["device_unit"]
            or (row["expires_at"] is not None and row["expires_at"] <= now)):
        return None
    last = row["last_used_at"]
    if last is None or (now - last).total_seconds() >= TOUCH_INTERVAL_MAX_S:
        await repo.touch_device(pool, row["device_id"], now)
    return Principal(user_id=row["user_id"], username=row["username"], role=row["role"],
                     unit_id=row["unit_id"], agency=row["agency"], session_id=row["device_id"],
                     agencies=tuple(row["agencies"]))


# --- login / refresh / logout -----------------------------------------------------------------

@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str
    user: dict[str, Any]


def user_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    view = {k: row[k] for k in ("id", "username", "display_name", "role", "unit_id", "agency",
                                "disabled")}
    return {**view, "agencies": list(row["agencies"] or [])}


async def login(*, rt: SecurityRuntime, pool: asyncpg.Pool, username: str, password: str,
                client_addr: str | None, user_agent: str | None,
                request_id: str | None) -> IssuedTokens:
    now = rt.clock()
    name = normalize_username(username)[:MAX_ACTOR_CHARS] or "-"
    ctx = RequestContext(actor=name, request_id=request_id, client_addr=client_addr, source="api")
    async with pool.acquire() as conn:
        row = await repo.user_by_username(conn, name)
    ok = await rt.passwords.verify(row["password_hash"] if row else None, password)
    reason: str | None = None
    if row is None:
        reason = "unknown_user"
    elif row["disabled"]:
        reason = "disabled"
    elif row["locked_until"] is not None and row["locked_until"] > now:
        reason = "locked"
    elif not ok:
        reason = "bad_password"

    if reason is not None:
        s = rt.settings
        async with unit_of_work(pool, ctx) as uow:
            details: dict[str, Any] = {"reason": reason}
            if reason == "bad_password":
                assert row is not None
                state = await repo.register_failed_login(
                    uow.conn, row["id"], now=now, threshold=s.lockout_threshold,
                    lock_until=now + timedelta(seconds=s.lockout_window_s))
                if state["locked_until"] is not None and state["locked_until"] > now:
                    details["locked_until"] = state["locked_until"].isoformat()
                    uow.audit("auth.lockout", target=f"user:{row['id']}", details=details)
            await repo.record_login_attempt(uow.conn, at=now, username=name,
                                            client_addr=client_addr, success=False, reason=reason)
            uow.audit("auth.login", target=f"user:{row['id']}" if row else None,
                      outcome="failure", details=details)
        log.info("login_failed", username=name, reason=reason)
        raise Unauthorized(BAD_CREDENTIALS)

    assert row is not None
    session_id = str(uuid.uuid4())
    refresh = new_refresh_token(session_id)
    s = rt.settings
    new_hash = await rt.passwords.hash(password) if rt.passwords.needs_rehash(
        row["password_hash"]) else None
    async with unit_of_work(pool, ctx) as uow:
        changes: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
        if new_hash:
            changes["password_hash"] = new_hash
        await repo.update_user(uow.conn, row["id"], changes)
        await repo.insert_session(
            uow.conn, session_id=session_id, user_id=row["id"], refresh_hash=token_hash(refresh),
            now=now, expires_at=now + timedelta(seconds=s.refresh_token_ttl_s),
            client_addr=client_addr, user_agent=(user_agent or "")[:256] or None)
        await repo.record_login_attempt(uow.conn, at=now, username=name, client_addr=client_addr,
                                        success=True, reason=None)
        uow.audit("auth.login", target=f"user:{row['id']}",
                  details={"session_id": session_id, "role": row["role"]})
    return _issue(rt, row, session_id, refresh, now)


def _issue(rt: SecurityRuntime, user: asyncpg.Record, session_id: str, refresh: str,
           now: datetime, *, expires_at: datetime | None = None) -> IssuedTokens:
    s = rt.settings
    user_id = user["user_id"] if "user_id" in user else user["id"]
    access = issue_access_token(rt.secret, user_id=user_id, session_id=session_id,
                                role=user["role"], now=now, ttl_s=s.access_token_ttl_s)
    refresh_left = (int((expires_at - now).total_seconds()) if expires_at is not None
                    else s.refresh_token_ttl_s)
    view = {"id": user_id,
            "username": user["username"], "role": user["role"], "unit_id": user["unit_id"],
            "agency": user["agency"]}
    return IssuedTokens(access_token=access, expires_in=s.access_token_ttl_s,
                        refresh_token=refresh, refresh_expires_in=refresh_left,
                        session_id=session_id, user=view)


async def refresh(*, rt: SecurityRuntime, pool: asyncpg.Pool, refresh_token: str,
                  client_addr: str | None, request_id: str | None) -> IssuedTokens:
    now = rt.clock()
    sid = refresh_session_id(refresh_token)
    if sid is None:
        raise Unauthorized("the refresh token is malformed")
    failure: str | None = None
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.session_with_user(conn, sid, for_update=True)
        if row is None:
            raise Unauthorized("the refresh token is not valid")
        ctx = RequestContext(actor=row["username"], request_id=request_id,
                             client_addr=client_addr, source="api")
        if token_hash(refresh_token) != row["refresh_hash"]:
            # A superseded token came back: someone else holds the current one.
            failure = "refresh_token_reuse"
            await repo.revoke_session(conn, sid, now=now, reason=failure)
        elif not _session_usable(rt, row, now):
            failure = "session_ended"
        else:
            new_refresh = new_refresh_token(sid)
            await repo.rotate_refresh(conn, sid, token_hash(new_refresh))
        details = {"session_id": sid, **({"reason": failure} if failure else {})}
        await audit_now(conn, ctx, "auth.refresh", target=f"user:{row['user_id']}",
                        outcome="failure" if failure else "success", details=details)
    if failure is None:
        return _issue(rt, row, sid, new_refresh, now, expires_at=row["expires_at"])
    raise Unauthorized("the refresh token is not valid")


async def logout(*, rt: SecurityRuntime, pool: asyncpg.Pool, principal: Principal,
                 ctx: RequestContext) -> None:
    if principal.role == "field_unit" and principal.session_id is not None:
        async with pool.acquire() as conn:
            is_device = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM device_tokens WHERE id = $1::uuid)",
                principal.session_id)
        if is_device:
            raise Conflict("a device token has no session to end; a supervisor revokes it")
    async with unit_of_work(pool, ctx) as uow:
        if principal.session_id is not None:
            await repo.revoke_session(uow.conn, principal.session_id, now=rt.clock(),
                                      reason="logout")
        uow.audit("auth.logout", target=f"user:{principal.user_id}",
                  details={"session_id": principal.session_id})


async def change_password(*, rt: SecurityRuntime, pool: asyncpg.Pool, principal: Principal,
                          ctx: RequestContext, current_password: str, new_password: str) -> None:
    check_password_policy(rt, new_password)
    async with pool.acquire() as conn:
        row = await repo.user_by_id(conn, principal.user_id)
    if row is None or not await rt.passwords.verify(row["password_hash"], current_password):
        await audit_now(pool, ctx, "user.password.change", target=f"user:{principal.user_id}",
                        outcome="failure", details={"reason": "bad_current_password"})
        raise Unauthorized("the current password is wrong")
    new_hash = await rt.passwords.hash(new_password)
    now = rt.clock()
    async with unit_of_work(pool, ctx) as uow:
        await repo.update_user(uow.conn, principal.user_id,
                               {"password_hash": new_hash, "password_changed_at": now})
        # Other sessions end: a changed password is often a reaction to a leaked one.
        await uow.conn.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = 'password_changed' "
            "WHERE user_id = $1::uuid AND revoked_at IS NULL AND id IS DISTINCT FROM $3::uuid",
            principal.user_id, now, principal.session_id)
        uow.audit("user.password.change", target=f"user:{principal.user_id}")


# --- user administration ----------------------------------------------------------------------

def check_password_policy(rt: SecurityRuntime, password: str) -> None:
    if len(password) < rt.settings.password_min_length:
        raise Invalid(f"the password must be at least {rt.settings.password_min_length} "
                      f"characters", field="body.password")
    if len(password) > 1024:
        raise Invalid("the password is longer than 1024 characters", field="body.password")


def _check_binding(role: str, unit_id: str | None) -> None:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", field="body.role")
    if role == "field_unit" and not unit_id:
        raise Invalid("a field_unit user is bound to one unit: unit_id is required",
                      field="body.unit_id")
    if role != "field_unit" and unit_id:
        raise Invalid("only field_unit users are bound to a unit", field="body.unit_id")


def _agencies_of(agency: str | None, agencies: list[str] | None) -> tuple[str | None, list[str]]:
    """(home agency, every agency): ``agency`` alone still works; a list names its first
    entry as home unless ``agency`` says otherwise."""
    listed = list(dict.fromkeys(agencies or []))
    if agency is not None and agency not in listed:
        listed.insert(0, agency)
    return (agency if agency is not None else (listed[0] if listed else None)), listed


async def _check_unit_binding(conn: asyncpg.Connection, *, role: str, unit_id: str | None,
                              agencies: list[str]) -> list[str]:
    """A field-unit user is bound to an existing unit of its agency; without an agency it
    takes the unit's. Returns the user's agencies."""
    if role != "field_unit" or unit_id is None:
        return agencies
    unit_agency = await repo.unit_agency(conn, unit_id)
    if unit_agency is None:
        raise Invalid(f"unit {unit_id} does not exist", field="body.unit_id")
    if not agencies:
        return [unit_agency]
    if unit_agency not in agencies:
        raise Invalid(f"unit {unit_id} is not of the user's agency", field="body.unit_id")
    return agencies


async def create_user(*, rt: SecurityRuntime, pool: asyncpg.Pool, ctx: RequestContext,
                      scope: Scope, username: str, password: str, role: str,
                      unit_id: str | None = None, agency: str | None = None,
                      agencies: list[str] | None = None, display_name: str | None = None,
                      action: str = "user.create") -> dict[str, Any]:
    name = normalize_username(username)
    _check_binding(role, unit_id)
    home, listed = _agencies_of(agency, agencies)
    for a in listed:
        scope.require(a, field="body.agencies")
    check_password_policy(rt, password)
    password_hash = await rt.passwords.hash(password)
    try:
        async with unit_of_work(pool, ctx) as uow:
            listed = await _check_unit_binding(uow.conn, role=role, unit_id=unit_id,
                                               agencies=listed)
            if home is None and listed:
                home = listed[0]
            row = await repo.insert_user(uow.conn, username=name, password_hash=password_hash,
                                         role=role, unit_id=unit_id, agency=home,
                                         agencies=listed, display_name=display_name)
            uow.audit(action, target=f"user:{row['id']}",
                      details={"username": name, "role": role, "unit_id": unit_id,
                               "agencies": listed})
    except asyncpg.UniqueViolationError:
        raise Conflict(f"username {name!r} is taken") from None
    except asyncpg.CheckViolationError:
        raise Invalid("username must be 2-64 characters of a-z, 0-9, '.', '_', '@', '-'",
                      field="body.username") from None
    return user_view(row)


async def get_user(*, pool: asyncpg.Pool, ctx: RequestContext, scope: Scope,
                   user_id: str) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await repo.visible_user(conn, user_id, scope=scope)
        if row is None:
            raise NotFound(f"no user {user_id}")
        await audit_now(conn, ctx, "user.read", target=f"user:{user_id}")
    return {**user_view(row), "locked_until": row["locked_until"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


async def list_users(*, pool: asyncpg.Pool, ctx: RequestContext, scope: Scope, role: str | None,
                     include_disabled: bool, limit: int, offset: int) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        rows = await repo.list_users(conn, role=role, include_disabled=include_disabled,
                                     limit=limit, offset=offset, scope=scope)
        await audit_now(conn, ctx, "user.list", details={"role": role, "count": len(rows)})
    return [user_view(r) for r in rows]


async def update_user(*, rt: SecurityRuntime, pool: asyncpg.Pool, ctx: RequestContext,
                      scope: Scope, user_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    now = rt.clock()
    if "password" in changes:
        password = changes.pop("password")
        check_password_policy(rt, password)
        changes["password_hash"] = await rt.passwords.hash(password)
        changes["password_changed_at"] = now
    if changes.pop("unlock", False):
        changes["failed_logins"] = 0
        changes["locked_until"] = None
    async with unit_of_work(pool, ctx) as uow:
        current = await repo.visible_user(uow.conn, user_id, scope=scope, for_update=True)
        if current is None:
            raise NotFound(f"no user {user_id}")
        role = changes.get("role", current["role"])
        unit_id = changes["unit_id"] if "unit_id" in changes else current["unit_id"]
        if role != "field_unit" and "role" in changes and "unit_id" not in changes:
            unit_id = changes["unit_id"] = None
        _check_binding(role, unit_id)
        if "agency" in changes or "agencies" in changes:
            home, listed = _agencies_of(changes.get("agency"), changes.get("agencies"))
            for a in listed:
                scope.require(a, field="body.agencies")
            changes["agency"], changes["agencies"] = home, listed
        if {"agency", "agencies", "unit_id", "role"} & set(changes):
            listed = await _check_unit_binding(
                uow.conn, role=role, unit_id=unit_id,
                agencies=changes.get("agencies", list(current["agencies"] or [])))
            if role == "field_unit" and listed != list(current["agencies"] or []):
                changes["agencies"] = listed
                changes.setdefault("agency", listed[0])
        disabling = changes.get("disabled") is True and not current["disabled"]
        if (current["role"] == "admin" and (disabling or role != "admin")
                and await repo.count_enabled_admins(uow.conn, excluding=user_id) == 0):
            raise Conflict("this is the last enabled admin")
        row = await repo.update_user(uow.conn, user_id, changes)
        revoked = (0, 0)
        if disabling or "password_hash" in changes or role != current["role"] \
                or unit_id != current["unit_id"]:
            revoked = await repo.revoke_user_credentials(
                uow.conn, user_id, now=now, reason="user_changed", by=ctx.actor)
        audited = sorted(k for k in changes if k != "password_hash")
        if "password_hash" in changes:
            audited.append("password")
        uow.audit("user.update", target=f"user:{user_id}",
                  details={"changed": audited, "sessions_revoked": revoked[0],
                           "devices_revoked": revoked[1]})
    assert row is not None
    return user_view(row)


async def disable_user(*, rt: SecurityRuntime, pool: asyncpg.Pool, ctx: RequestContext,
                       scope: Scope, user_id: str) -> None:
    await update_user(rt=rt, pool=pool, ctx=ctx, scope=scope, user_id=user_id,
                      changes={"disabled": True})


# --- MDT device tokens ------------------------------------------------------------------------

async def issue_device(*, rt: SecurityRuntime, pool: asyncpg.Pool, ctx: RequestContext,
                       scope: Scope, user_id: str, label: str, expires_in_days: int | None
                       ) -> tuple[str, dict[str, Any]]:
    """For a field-unit user of the caller's agencies (others are not found), bound to an
    existing unit of the user's agency."""
    now = rt.clock()
    days = expires_in_days or rt.settings.device_token_ttl_days
    token = new_device_token()
    async with unit_of_work(pool, ctx) as uow:
        user = await repo.visible_user(uow.conn, user_id, scope=scope)
        if user is None:
            raise NotFound(f"no user {user_id}")
        if user["role"] != "field_unit" or user["disabled"]:
            raise Invalid("device tokens are issued to enabled field_unit users",
                          field="body.user_id")
        unit_agency = await repo.unit_agency(uow.conn, user["unit_id"])
        if unit_agency is None or unit_agency not in (user["agencies"] or []):
            raise Invalid(f"the user is bound to unit {user['unit_id']}, which is not a unit of "
                          "its agency: bind it to one first", field="body.user_id")
        row = await repo.insert_device(uow.conn, user_id=user_id, unit_id=user["unit_id"],
                                       label=label, token_hash=token_hash(token), now=now,
                                       created_by=ctx.actor,
                                       expires_at=now + timedelta(days=days))
        uow.audit("device.issue", target=f"device:{row['id']}",
                  details={"user_id": user_id, "unit_id": user["unit_id"], "label": label})
    return token, dict(row)


async def revoke_device(*, rt: SecurityRuntime, pool: asyncpg.Pool, ctx: RequestContext,
                        scope: Scope, device_id: str) -> None:
    async with unit_of_work(pool, ctx) as uow:
        row = await repo.revoke_device(uow.conn, device_id, now=rt.clock(), by=ctx.actor,
                                       scope=scope)
        if row is None:
            raise NotFound(f"no device token {device_id}")
        uow.audit("device.revoke", target=f"device:{device_id}",
                  details={"user_id": row["user_id"], "unit_id": row["unit_id"]})


# --- bootstrap --------------------------------------------------------------------------------

async def bootstrap_admin(*, rt: SecurityRuntime, pool: asyncpg.Pool, username: str,
                          password: str) -> bool:
    """Create ``username`` as admin if no admin exists yet. True if it was created."""
    ctx = RequestContext.system("bootstrap")
    async with pool.acquire() as conn, conn.transaction():
        # Several workers start at once; one creates, the others see it.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BOOTSTRAP_LOCK_KEY)
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')")
        if exists:
            return False
        await create_user(rt=rt, pool=pool, ctx=ctx, scope=Scope.ALL, username=username,
                          password=password, role="admin", action="user.bootstrap")
    log.info("admin_bootstrapped", username=normalize_username(username))
    return True
