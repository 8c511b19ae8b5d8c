"""Typed domain errors and their single mapping to RFC 9457 problem+json."""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://cad.invalid/problems/"

log = structlog.get_logger("cad.errors")


class CADError(Exception):
    """Base for errors that map to a problem response."""

    status: int = 400
    slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}
        self.headers: dict[str, str] | None = None


class Invalid(CADError):
    status, slug, title = 422, "invalid", "Invalid request"

    def __init__(self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None):
        extra = dict(extra or {})
        if field is not None:
            extra.setdefault("errors", [{"field": field, "message": detail}])
        super().__init__(detail, extra=extra)


class NotFound(CADError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(CADError):
    status, slug, title = 409, "conflict", "Conflict"


class Unauthorized(CADError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(CADError):
    status, slug, title = 403, "forbidden", "Forbidden"


class PayloadTooLarge(CADError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class TooManyRequests(CADError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: float) -> None:
        super().__init__(detail, extra={"retry_after_s": round(retry_after_s, 3)})
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class ServiceUnavailable(CADError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (slug or _slug_for(status)),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _slug_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return "error"


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts)


def validation_errors(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    malformed = False
    for err in exc.errors():
        etype = err.get("type", "")
        if etype == "json_invalid":
            malformed = True
        loc = err.get("loc", ())
        entry = {"field": _field_path(loc), "message": err.get("msg", "invalid"), "type": etype}
        errors.append(entry)
    if malformed:
        return 400, "Malformed JSON body", errors
    fields = ", ".join(e["field"] for e in errors[:5])
    return 422, f"Request validation failed: {fields}", errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CADError)
    async def _cad_error(request: Request, exc: CADError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, slug=exc.slug,
                       instance=request.url.path, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail, errors = validation_errors(exc)
        title = "Malformed request body" if status == 400 else "Invalid request"
        return problem(status, title, detail, slug="malformed" if status == 400 else "invalid",
                       instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _phrase(exc.status_code)
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No resource at {request.url.path}"
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, title, detail, instance=request.url.path,
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(asyncpg.DataError)
    async def _data_error(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # SQLSTATE class 22: the database refused a value (out of range, bad encoding) that
        # validation let through. A client error, not a server fault; logged to fix the gap.
        log.error("database_refused_input", path=request.url.path, error=str(exc))
        return problem(422, "Invalid request", f"a value was refused: {type(exc).__name__}",
                       slug="invalid", instance=request.url.path)

    @app.exception_handler(asyncpg.IntegrityConstraintViolationError)
    async def _integrity(request: Request, exc: asyncpg.IntegrityConstraintViolationError) -> JSONResponse:
        # A constraint the request broke that validation should have caught first: still the
        # client's conflict with the data, not a server fault; logged as an error to fix the gap.
        log.error("database_constraint_refused", path=request.url.path, error=str(exc))
        return problem(409, "Conflict", f"the change conflicts with existing data: "
                       f"{getattr(exc, 'constraint_name', None) or type(exc).__name__}",
                       slug="conflict", instance=request.url.path)

    @app.exception_handler(asyncpg.TransactionRollbackError)
    async def _transient(request: Request, exc: asyncpg.TransactionRollbackError) -> JSONResponse:
        # A deadlock or serialization failure that outlived the retries of
        # cad.uow.retry_transient: the request did nothing and may simply be sent again.
        log.error("transaction_conflict_persisted", path=request.url.path,
                  error=type(exc).__name__)
        return problem(503, "Service unavailable", "the change collided with concurrent "
                       "changes and was not applied; retry", slug="retry",
                       instance=request.url.path, headers={"retry-after": "1"})

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path)
        return problem(500, "Internal server error",
                       "The server failed to handle this request; it has been logged.",
                       instance=request.url.path)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
