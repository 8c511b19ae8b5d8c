"""HTTP endpoints: authentication, user administration, MDT device tokens, the audit trail.
Who may call each is in cad.security.policy, not here."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from cad.errors import NotFound
from cad.security import audit as audit_mod
from cad.security import service, witness
from cad.security.deps import Context, CurrentPrincipal, CurrentScope
from cad.security.schemas import (
    AuditPageOut,
    AuditVerifyOut,
    DeviceIssuedOut,
    DeviceIssueIn,
    DeviceOut,
    LoginIn,
    MeOut,
    PasswordChangeIn,
    RefreshIn,
    Role,
    TokensOut,
    UserCreateIn,
    UserDetailOut,
    UserOut,
    UserPatchIn,
)
from cad.security.state import SecurityDep
from cad.uow import audit_now

router = APIRouter(prefix="/api/v1")


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"no {what} {value}") from None


# --- auth --------------------------------------------------------------------------------------

@router.post("/auth/login", tags=["auth"], response_model=TokensOut,
             responses={401: {"description": "bad credentials, locked or disabled"},
                        429: {"description": "too many attempts from this address"}})
async def login(sec: SecurityDep, body: LoginIn, request: Request) -> TokensOut:
    issued = await service.login(
        rt=sec.runtime, pool=sec.pool, username=body.username, password=body.password,
        client_addr=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None))
    return TokensOut(**issued.__dict__)


@router.post("/auth/refresh", tags=["auth"], response_model=TokensOut)
async def refresh(sec: SecurityDep, body: RefreshIn, request: Request) -> TokensOut:
    issued = await service.refresh(rt=sec.runtime, pool=sec.pool, refresh_token=body.refresh_token,
        client_addr=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None))
    return TokensOut(**issued.__dict__)


@router.post("/auth/logout", tags=["auth"], status_code=204)
async def logout(sec: SecurityDep, principal: CurrentPrincipal, ctx: Context) -> Response:
    await service.logout(rt=sec.runtime, pool=sec.pool, principal=principal, ctx=ctx)
    return Response(status_code=204)


@router.get("/auth/me", tags=["auth"], response_model=MeOut)
async def me(principal: CurrentPrincipal, sec: SecurityDep) -> MeOut:
    training = sec.settings.training_agencies
    # As cad.security.scope.scope_for: a non-admin acting only for training agencies.
    trainee = (principal.role != "admin" and bool(principal.agencies)
               and set(principal.agencies) <= set(training))
    return MeOut(**principal.__dict__, training=trainee, training_agencies=sorted(training))


@router.post("/auth/password", tags=["auth"], status_code=204)
async def change_password(sec: SecurityDep, body: PasswordChangeIn, principal: CurrentPrincipal,
                          ctx: Context) -> Response:
    await service.change_password(rt=sec.runtime, pool=sec.pool, principal=principal, ctx=ctx,
                                  current_password=body.current_password,
                                  new_password=body.new_password)
    return Response(status_code=204)


# --- users -------------------------------------------------------------------------------------

@router.get("/users", tags=["users"], response_model=list[UserOut])
async def list_users(sec: SecurityDep, ctx: Context, scope: CurrentScope,
                     role: Role | None = None,
                     include_disabled: bool = False,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200,
                     offset: Annotated[int, Query(ge=0)] = 0) -> list[dict[str, Any]]:
    return await service.list_users(pool=sec.pool, ctx=ctx, scope=scope, role=role,
                                    include_disabled=include_disabled, limit=limit, offset=offset)


@router.post("/users", tags=["users"], response_model=UserOut, status_code=201)
async def create_user(sec: SecurityDep, body: UserCreateIn, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    return await service.create_user(rt=sec.runtime, pool=sec.pool, ctx=ctx, scope=scope,
                                     **body.model_dump())


@router.get("/users/{user_id}", tags=["users"], response_model=UserDetailOut)
async def get_user(sec: SecurityDep, user_id: str, ctx: Context,
                   scope: CurrentScope) -> dict[str, Any]:
    return await service.get_user(pool=sec.pool, ctx=ctx, scope=scope, user_id=_uuid(user_id, "user"))


@router.patch("/users/{user_id}", tags=["users"], response_model=UserOut)
async def update_user(sec: SecurityDep, user_id: str, body: UserPatchIn, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    return await service.update_user(rt=sec.runtime, pool=sec.pool, ctx=ctx, scope=scope,
                                     user_id=_uuid(user_id, "user"), changes=changes)


@router.delete("/users/{user_id}", tags=["users"], status_code=204,
               description="Disables the user and revokes their sessions and device tokens; "
                           "the row stays, because the audit trail refers to it.")
async def delete_user(sec: SecurityDep, user_id: str, ctx: Context,
                      scope: CurrentScope) -> Response:
    await service.disable_user(rt=sec.runtime, pool=sec.pool, ctx=ctx, scope=scope,
                               user_id=_uuid(user_id, "user"))
    return Response(status_code=204)


# --- devices -----------------------------------------------------------------------------------

@router.get("/devices", tags=["devices"], response_model=list[DeviceOut])
async def list_devices(sec: SecurityDep, scope: CurrentScope, user_id: str | None = None,
                       unit_id: str | None = None,
                       include_revoked: bool = False) -> list[dict[str, Any]]:
    async with sec.pool.acquire() as conn:
        from cad.security import repository as repo
        rows = await repo.list_devices(conn, user_id=_uuid(user_id, "user") if user_id else None,
                                       unit_id=unit_id, include_revoked=include_revoked,
                                       scope=scope)
    return [dict(r) for r in rows]


@router.post("/devices", tags=["devices"], response_model=DeviceIssuedOut, status_code=201)
async def issue_device(sec: SecurityDep, body: DeviceIssueIn, ctx: Context,
                       scope: CurrentScope) -> dict[str, Any]:
    token, row = await service.issue_device(
        rt=sec.runtime, pool=sec.pool, ctx=ctx, scope=scope, user_id=_uuid(body.user_id, "user"),
        label=body.label, expires_in_days=body.expires_in_days)
    return {**row, "token": token}


@router.delete("/devices/{device_id}", tags=["devices"], status_code=204)
async def revoke_device(sec: SecurityDep, device_id: str, ctx: Context,
                        scope: CurrentScope) -> Response:
    await service.revoke_device(rt=sec.runtime, pool=sec.pool, ctx=ctx, scope=scope,
                                device_id=_uuid(device_id, "device token"))
    return Response(status_code=204)


# --- audit -------------------------------------------------------------------------------------

@router.get("/audit", tags=["audit"], response_model=AuditPageOut,
            description="Query the audit trail. The query itself is recorded in it.")
async def query_audit(sec: SecurityDep,
    ctx: Context,
    scope: CurrentScope,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=128,
                                        description="exact, or a prefix: 'auth' matches "
                                                    "'auth.login'")] = None,
    target: Annotated[str | None, Query(max_length=256)] = None,
    outcome: Literal["success", "failure", "denied"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    filters = {"actor": actor, "action": action, "target": target, "outcome": outcome,
               "since": since.isoformat() if since else None,
               "until": until.isoformat() if until else None, "after_seq": after_seq,
               "limit": limit}
    async with sec.pool.acquire() as conn:
        await audit_now(conn, ctx, "audit.query",
                        details={k: v for k, v in filters.items() if v is not None})
        entries = await audit_mod.query(conn, actor=actor, action=action, target=target,
                                        outcome=outcome, since=since, until=until,
                                        after_seq=after_seq, limit=limit,
                                        agencies=scope.agency_list)
    return {"entries": entries,
            "next_after_seq": entries[-1]["seq"] if len(entries) == limit else None}


@router.get("/audit/verify", tags=["audit"], response_model=AuditVerifyOut,
            description="Verify the hash chain and the chain heads witnessed outside the database "
                        "(same as `cad audit verify`). Recorded.")
async def verify_audit(sec: SecurityDep, ctx: Context) -> dict[str, Any]:
    settings = sec.settings
    witnesses = await asyncio.to_thread(witness.read_configured, settings)
    async with sec.pool.acquire() as conn:
        result = await audit_mod.verify(conn, witnesses,
                                        retention_days=settings.audit_retention_days)
        await audit_now(conn, ctx, "audit.verify", outcome="success" if result.ok else "failure",
                        details={"entries": result.entries, "problems": len(result.problems),
                                 "witnesses": result.witnesses_checked})
    return result.as_dict()
