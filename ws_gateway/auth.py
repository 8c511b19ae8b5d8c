"""Who may use the gateway: roles per stream, the token of a handshake, agencies a board
shows. Tokens are resolved by ``GatewayPorts.resolve_principal`` (``cad.security``); there
is no user or token store here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import structlog
from starlette.requests import HTTPConnection
from starlette.types import Scope

from cad.errors import Forbidden
from cad.security.deps import current_principal, scope_of
from cad.security.middleware import bearer_token
from cad.security.principal import Principal
from cad.settings import Settings
from ws_gateway.ports import ResolvePrincipal

log = structlog.get_logger("ws_gateway.auth")

BOARD_ROLES = frozenset({"dispatcher", "supervisor"})
MDT_ROLES = frozenset({"field_unit"})
TRACK_ROLES = frozenset({"analyst", "supervisor"})


async def principal_for(resolve: ResolvePrincipal, token: str | None, *,
                        touch: bool = False) -> Principal | None:
    """The principal of ``token`` or None (unknown, expired, revoked, idle). ``touch`` counts
    as user activity (connect yes, periodic re-checks no). Fails closed."""
    if not token:
        return None
    try:
        return await resolve(token, touch=touch)
    except Exception:  # a broken check must not let anyone in
        log.exception("principal_lookup_failed")
        return None


def token_from_scope(scope: Scope) -> str | None:
    """``Authorization: Bearer`` or, on a websocket handshake only (browsers cannot set its
    headers), the ``access_token`` query parameter: the security package's one reading."""
    return bearer_token(scope)


def principal_agencies(principal: Principal, settings: Settings) -> list[str] | None:
    """The agencies a board shows and whose units' tracks may be read: the principal's scope
    (cad.security.scope_of, the same derivation HTTP uses), None = every agency (admins).
    A user without an agency sees none (fail closed)."""
    return scope_of(principal, settings).agency_list


def board_agencies(principal: Principal, settings: Settings
                   ) -> tuple[list[str] | None, frozenset[str]]:
    """The agencies a board shows (as ``principal_agencies``) and the training agencies it
    leaves out (``Scope.hidden``: a board of a real agency, or of all, never shows a
    training run; a trainee's board shows only that)."""
    scope = scope_of(principal, settings)
    return scope.agency_list, scope.hidden


def require(roles: Iterable[str]) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """FastAPI dependency: the caller's principal (authenticated by the security
    middleware), with one of ``roles``."""
    allowed = frozenset(roles)

    async def dependency(conn: HTTPConnection) -> Principal:
        principal = await current_principal(conn)
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not use this endpoint")
        return principal

    return dependency
