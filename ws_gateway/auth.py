"""Token -> principal for the gateway: a thin adapter over ``cad.security``.

It fails closed: when ``cad.security`` cannot be imported every token is refused. There is
no user or token store here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from fastapi import Request

from cad.errors import Forbidden, Unauthorized

log = structlog.get_logger("ws_gateway.auth")

Resolver = Callable[..., Awaitable[Any]]

BOARD_ROLES = frozenset({"dispatcher", "supervisor"})
MDT_ROLES = frozenset({"field_unit"})
TRACK_ROLES = frozenset({"analyst", "supervisor"})


def _load_resolver() -> Resolver | None:
    try:
        from cad.security import principal_from_token  # type: ignore[attr-defined]
    except ImportError:
        try:
            from cad.security.service import principal_from_token
        except ImportError:
            return None
    return principal_from_token  # type: ignore[no-any-return]


_resolver: Resolver | None = None
_accepts_touch = False


def _resolver_fn() -> Resolver | None:
    global _resolver, _accepts_touch
    if _resolver is None:
        _resolver = _load_resolver()
        if _resolver is None:
            log.error("security_unavailable_all_tokens_refused")
            return None
        _accepts_touch = "touch" in inspect.signature(_resolver).parameters
    return _resolver


async def principal_for(app_state: Any, token: str | None, *, touch: bool = False) -> Any | None:
    """The principal of ``token`` or None (unknown, expired, revoked, idle, or no security
    module). ``touch`` counts as user activity (connect yes, periodic re-checks no)."""
    if not token:
        return None
    fn = _resolver_fn()
    if fn is None:
        return None
    try:
        if _accepts_touch:
            return await fn(app_state.runtime.security, token, touch=touch)
        return await fn(app_state, token)
    except Exception:  # fail closed; a broken check must not let anyone in
        log.exception("principal_lookup_failed")
        return None


def token_from_scope(scope: Mapping[str, Any]) -> str | None:
    """``Authorization: Bearer`` or, on a websocket handshake only (browsers cannot set its
    headers), the ``access_token`` query parameter: the security package's one reading."""
    from cad.security.middleware import bearer_token

    return bearer_token(scope)  # type: ignore[arg-type]


def principal_agencies(principal: Any) -> list[str] | None:
    """The agencies a board shows. A principal without an agency sees none (fail closed),
    except that supervisors without an agency see every agency (regional supervisors)."""
    agency = getattr(principal, "agency", None)
    if agency is None:
        return None if principal.role == "supervisor" else []
    if isinstance(agency, (list, tuple, set, frozenset)):
        return sorted(agency)
    return [str(agency)]


def require(roles: Iterable[str]) -> Callable[[Request], Awaitable[Any]]:
    """FastAPI dependency: the caller's principal, with one of ``roles``.

    Uses the principal the security middleware attached when it is installed, otherwise
    resolves the bearer token itself."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Any:
        principal = getattr(request.state, "principal", None)
        if principal is None:
            principal = await principal_for(request.app.state, token_from_scope(request.scope),
                                            touch=True)
        if principal is None:
            raise Unauthorized("a valid bearer token is required")
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not use this endpoint")
        return principal

    return dependency
