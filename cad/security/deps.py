"""FastAPI dependencies: the authenticated principal and the RequestContext built from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from cad.errors import Unauthorized
from cad.security.middleware import client_addr
from cad.security.principal import Principal
from cad.security.scope import Scope, scope_for
from cad.security.state import SecurityDep
from cad.settings import Settings
from cad.uow import RequestContext


async def current_principal(conn: HTTPConnection) -> Principal:
    principal = conn.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        # Reached only from a PUBLIC or self-authenticated route that asked for a principal.
        raise Unauthorized("a valid bearer token is required")
    return principal


def context_from(principal: Principal, *, request_id: str | None,
                 client_addr: str | None) -> RequestContext:
    """For code that authenticated by itself (websocket endpoints)."""
    return RequestContext(actor=principal.username, request_id=request_id,
                          client_addr=client_addr,
                          source="mdt" if principal.role == "field_unit" else "console",
                          agency=principal.agency)


def request_context(conn: HTTPConnection) -> RequestContext:
    """The RequestContext of an authenticated request (actor = username)."""
    principal = conn.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("a valid bearer token is required")
    return context_from(principal, request_id=conn.scope.get("state", {}).get("request_id"),
                        client_addr=client_addr(conn.scope))


async def _request_context_dep(conn: HTTPConnection) -> RequestContext:
    return request_context(conn)


def scope_of(principal: Principal, settings: Settings) -> Scope:
    """The one place a principal becomes what it may see and touch (cad.security.scope)."""
    return scope_for(role=principal.role, agencies=principal.agencies, unit_id=principal.unit_id,
                     assignment_window_s=settings.field_unit_assignment_window_s,
                     caller_data_for_units=settings.field_unit_caller_data,
                     mutual_aid=settings.mutual_aid, mutual_aid_roles=settings.mutual_aid_roles,
                     training=settings.training_agencies)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
Context = Annotated[RequestContext, Depends(_request_context_dep)]


async def _scope_dep(principal: CurrentPrincipal, sec: SecurityDep) -> Scope:
    return scope_of(principal, sec.settings)


CurrentScope = Annotated[Scope, Depends(_scope_dep)]
