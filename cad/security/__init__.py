"""Authentication, authorization and the audit trail (docs/security.md).

The contract other packages code against:

- ``ROLES`` and ``Principal`` (who is calling);
- ``principal_from_token(security_state, token)`` for websocket endpoints (access or MDT token;
  None when invalid, revoked, expired or idle-timed-out);
- ``CurrentPrincipal``, ``Context`` and ``CurrentScope`` dependency aliases,
  ``request_context(request)``; ``Scope`` and ``scope_of(principal, settings)`` (what a
  principal may see: every service takes it, every repository query applies it);
- ``cad.security.policy.RULES``: the endpoint x role table, one row per route.
"""

from cad.security.deps import (
    Context,
    CurrentPrincipal,
    CurrentScope,
    context_from,
    current_principal,
    request_context,
    scope_of,
)
from cad.security.policy import PUBLIC, SELF_AUTHENTICATED
from cad.security.principal import ROLES, Principal
from cad.security.scope import Scope
from cad.security.service import principal_from_token

__all__ = [
    "PUBLIC",
    "ROLES",
    "SELF_AUTHENTICATED",
    "Context",
    "CurrentPrincipal",
    "CurrentScope",
    "Principal",
    "Scope",
    "context_from",
    "current_principal",
    "principal_from_token",
    "request_context",
    "scope_of",
]
