"""Pure-ASGI middleware: request ids, access log, body size limit, security headers."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cad.errors import PROBLEM_BASE, PROBLEM_JSON

log = structlog.get_logger("cad.http")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _problem_bytes(status: int, title: str, detail: str, path: str, **extra: object) -> bytes:
    body = {"type": PROBLEM_BASE + title.lower().replace(" ", "-"), "title": title,
            "status": status, "detail": detail, "instance": path, **extra}
    return orjson.dumps(body)


class RequestContextMiddleware:
    """Binds a request id (client-supplied if well-formed, else new) to the log context and
    the response; logs one access line per request; enforces the request body limit."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        supplied = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        path = scope.get("path", "")
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await self._reject(send, 400, "Bad request", "Content-Length is not a number",
                                   path, request_id)
                return
            if too_big:
                await self._reject(send, 413, "Payload too large",
                                   f"request body exceeds the limit of {limit} bytes", path,
                                   request_id, drain=receive, limit_bytes=limit)
                return

        received = 0
        status_holder = {"status": 0}
        started = False
        rejected = False

        async def limited_receive() -> Message:
            # The 413 is sent from here, not raised: frameworks turn exceptions raised while
            # reading the body into their own 400. The app then sees the client disconnect
            # and whatever it still tries to send is dropped.
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    if not started:
                        await self._reject(send, 413, "Payload too large",
                                           f"request body exceeds the limit of {limit} bytes",
                                           path, request_id, drain=receive, limit_bytes=limit)
                        status_holder["status"] = 413
                    return {"type": "http.disconnect"}
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                status_holder["status"] = message["status"]
                hdrs = list(message.get("headers", []))
                hdrs.append((b"x-request-id", request_id.encode()))
                # A response that set its own (the console's static files, the base map)
                # keeps it; everything else gets the defaults.
                present = {name.lower() for name, _ in hdrs}
                hdrs.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": hdrs}
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, limited_receive, send_wrapper)
        except Exception:
            if rejected:
                pass
            elif started:
                raise  # part of a response is out: the server can only close the connection
            else:
                # Answered here, not by Starlette's ServerErrorMiddleware: that one re-raises
                # after its 500, the server then closes the keep-alive connection under the
                # client's next request, and this access line would say status 0.
                log.exception("unhandled_error", path=path)
                await self._reject(send, 500, "Internal server error",
                                   "The server failed to handle this request; it has been "
                                   "logged.", path, request_id, close=False)
                status_holder["status"] = 500
        finally:
            log.info("http_request", method=scope.get("method"), path=path,
                     status=status_holder["status"],
                     duration_ms=round((time.perf_counter() - t0) * 1000, 2))

    async def _reject(self, send: Send, status: int, title: str, detail: str, path: str,
                      request_id: str, *, drain: Receive | None = None, close: bool = True,
                      **extra: object) -> None:
        body = _problem_bytes(status, title, detail, path, **extra)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()), *([(b"connection", b"close")] if close else []),
            *_SECURITY_HEADERS,
        ]})
        if drain is not None:
            # Before the response completes: the server stops reading once it has.
            await _drain(drain)
        await send({"type": "http.response.body", "body": body})


DRAIN_LIMIT_BYTES = 1 << 20
DRAIN_TIMEOUT_S = 1.0


async def _drain(receive: Receive) -> None:
    """Read (a bounded amount of) the rest of a rejected body before the connection closes:
    closing a socket with unread input makes the kernel send RST, and the client may then
    lose the 413 it was sent."""
    drained = 0
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            while drained < DRAIN_LIMIT_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
