"""Enforcement of cad.security.policy for every HTTP and websocket route, in one place.

Pure ASGI and outside FastAPI's routing, so it runs before any body is read or validated and
no route can opt out: the route that Starlette would pick is matched here, its rule looked up,
and a route without a rule is refused (fail closed).
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import parse_qs

import orjson
import structlog
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from starlette._utils import get_route_path
from starlette.routing import Mount, WebSocketRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cad.errors import PROBLEM_BASE, PROBLEM_JSON
from cad.middleware import _drain
from cad.security.policy import LOGIN_RATE_LIMITED, PUBLIC, SELF_AUTHENTICATED
from cad.security.principal import Principal
from cad.security.service import principal_from_token
from cad.security.state import SecurityState
from cad.uow import RequestContext, audit_now, request_audit_count

log = structlog.get_logger("cad.security")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The console's page and Swagger UI set a policy of their own (cad.console.api: the app's own
# origin only); everything else is JSON and needs nothing.
_OWN_CSP_PATHS = ("/docs", "/console/")
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"


def client_addr(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    if scope["type"] == "websocket":
        # Browsers cannot set headers on a websocket handshake.
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = qs.get("access_token")
        if values:
            return values[0]
    return None


def context_for(principal: Principal, scope: Scope) -> RequestContext:
    state = scope.get("state") or {}
    return RequestContext(actor=principal.username, request_id=state.get("request_id"),
                          client_addr=client_addr(scope),
                          source="mdt" if principal.role == "field_unit" else "console",
                          agency=principal.agency)


def iter_routes(app: Any) -> list[tuple[str, frozenset[str] | None, bool]]:
    """(path template, methods, is_websocket) of every route, routers included flattened."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x: lazy inclusion
        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        contexts = list(app.routes)
    out: list[tuple[str, frozenset[str] | None, bool]] = []
    for rc in contexts:
        path = getattr(rc, "path", None)
        if path is None:
            continue
        original = getattr(rc, "original_route", rc)
        is_ws = isinstance(original, (WebSocketRoute, APIWebSocketRoute))
        if isinstance(original, Mount):
            path = path.rstrip("/") + "/{path:path}"
        methods = getattr(rc, "methods", None)
        out.append((path, frozenset(methods) if methods else None, is_ws))
    return out


def route_table(app: Any) -> list[tuple[re.Pattern[str], frozenset[str] | None, str, bool]]:
    return [(compile_path(path)[0], methods, path, is_ws)
            for path, methods, is_ws in iter_routes(app)]


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, routes_of: FastAPI, state: SecurityState) -> None:
        self.app = app
        self.routes_of = routes_of  # the app whose routes the policy covers
        self.state = state
        self.policy = state.policy
        self._table_key: tuple[int, ...] | None = None
        self._table_cache: list[tuple[re.Pattern[str], frozenset[str] | None, str, bool]] = []

    def _route(self, scope: Scope) -> str | None:
        """The template of the route the router will pick (first full match, as Starlette
        does); None when nothing matches or only the method differs (the router answers
        404 / 405 without running anything)."""
        table = self._table()
        path = get_route_path(scope)
        want_ws = scope["type"] == "websocket"
        for regex, methods, template, is_ws in table:
            if is_ws != want_ws or not regex.match(path):
                continue
            if is_ws or methods is None or scope["method"] in methods:
                return template
        return None

    def _table(self) -> list[tuple[re.Pattern[str], frozenset[str] | None, str, bool]]:
        routes = self.routes_of.router.routes
        key = (len(routes), *(id(r) for r in routes))
        if self._table_key != key:
            self._table_cache = route_table(self.routes_of)
            self._table_key = key
        return self._table_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        template = self._route(scope)
        if template is None:
            await self.app(scope, receive, self._with_headers(scope, send))
            return
        method = scope["method"] if scope["type"] == "http" else "WEBSOCKET"
        rule = self.policy.rule_for(method, template)
        if rule is None:
            log.error("route_without_policy_rule", method=method, path=template)
            await self._refuse(scope, receive, send, 403, "Forbidden",
                               f"no access rule is defined for {method} {template}")
            return
        if rule is PUBLIC:
            rt = self.state.runtime
            if rt is not None and scope["type"] == "http":
                is_login = (method, template) in LOGIN_RATE_LIMITED
                wait_s = await rt.rate_limit("login" if is_login else "public",
                                             rt.login_limiter if is_login else rt.public_limiter,
                                             client_addr(scope) or "-")
                if wait_s > 0:
                    await self._refuse(scope, receive, send, 429, "Too many requests",
                                       "rate limit exceeded; retry later",
                                       headers=[(b"retry-after", str(math.ceil(wait_s)).encode())])
                    return
            await self.app(scope, receive, self._with_headers(scope, send))
            return
        if rule is SELF_AUTHENTICATED:
            await self.app(scope, receive, send)
            return

        token = bearer_token(scope)
        principal: Principal | None = None
        if token is not None:
            try:
                principal = await principal_from_token(self.state, token, touch=True)
            except Exception:
                log.exception("authentication_unavailable")
                await self._refuse(scope, receive, send, 503, "Service unavailable",
                                   "authentication is temporarily unavailable")
                return
        if principal is None:
            await self._refuse(scope, receive, send, 401, "Authentication required",
                               "a valid bearer token is required" if token is None
                               else "the token is invalid, expired or revoked",
                               headers=[(b"www-authenticate", b'Bearer realm="cad"')])
            return
        if not self.policy.allows(rule, principal.role):
            await self._audit(principal, scope, "access.denied", f"{method} {template}",
                              "denied", {"role": principal.role, "path": scope.get("path")})
            await self._refuse(scope, receive, send, 403, "Forbidden",
                               f"role {principal.role} may not {method} {template}")
            return
        scope.setdefault("state", {})["principal"] = principal

        if method not in WRITE_METHODS:
            await self.app(scope, receive, self._with_headers(scope, send))
            return
        # Every write leaves an audit record: if the endpoint wrote none itself (it should,
        # through unit_of_work), a generic one is written here.
        counter = [0]
        recorded = False
        token_var = request_audit_count.set(counter)
        send_h = self._with_headers(scope, send)

        async def record(code: int) -> None:
            nonlocal recorded
            if recorded or counter[0]:
                return
            recorded = True
            outcome = "success" if code < 400 else "denied" if code in (401, 403) else "failure"
            await self._audit(principal, scope, f"http.{method.lower()}", scope.get("path"),
                              outcome, {"route": template, "status": code})

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Before the response goes out: the handler is done, and a client reading
                # the audit trail right after the response finds the record.
                await record(message["status"])
            await send_h(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BaseException:
            await record(500)
            raise
        finally:
            request_audit_count.reset(token_var)

    async def _audit(self, principal: Principal, scope: Scope, action: str, target: str | None,
                     outcome: str, details: dict[str, Any]) -> None:
        pool = self.state.pool
        if pool is None:
            return
        try:
            await audit_now(pool, context_for(principal, scope), action, target=target,
                            outcome=outcome, details=details)
        except Exception:
            log.exception("audit_write_failed", action=action)

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        if scope["type"] != "http":
            return send
        rt = self.state.runtime
        hsts = rt.settings.hsts_max_age_s if rt is not None else 0
        path = scope.get("path", "")
        csp = path != "/" and not path.startswith(_OWN_CSP_PATHS)

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # a page that sets its own policy (the public pages, incidents.public) keeps it
                if csp and not any(k.lower() == b"content-security-policy" for k, _ in headers):
                    headers.append((b"content-security-policy", _API_CSP))
                if hsts:
                    headers.append((b"strict-transport-security",
                                    f"max-age={hsts}; includeSubDomains".encode()))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, title: str,
                      detail: str, *, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if scope["type"] == "websocket":
            message = await receive()
            if message["type"] == "websocket.connect":
                # Closing before accept makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": title})
            return
        body = orjson.dumps({
            "type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title,
            "status": status, "detail": detail, "instance": scope.get("path", ""),
        })
        send_h = self._with_headers(scope, send)
        if scope.get("method") in WRITE_METHODS:
            await _drain(receive)  # unread input makes the close an RST that can eat the answer
        await send_h({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ]})
        await send_h({"type": "http.response.body", "body": body})
