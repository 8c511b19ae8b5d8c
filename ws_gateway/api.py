"""Websocket endpoints (board, MDT) and the AVL HTTP endpoints (batch ingest, track replay).

The websocket protocol (frames, messages, close codes) is defined by ``schemas.realtime`` and
published as AsyncAPI 3.0 at ``/asyncapi.json`` (``ws_gateway.asyncapi``); docs/realtime.md
describes it for people.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, WebSocket
from starlette.requests import HTTPConnection

from cad.deps import wired
from cad.errors import Forbidden, Invalid, NotFound, TooManyRequests, problem
from cad.security.deps import scope_of
from cad.security.principal import Principal
from ws_gateway import auth, frames
from ws_gateway.asyncapi import asyncapi_document
from ws_gateway.avl import OutsideServiceArea
from ws_gateway.clients import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_INTERNAL,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNKNOWN_UNIT,
    Client,
    close_ws,
)
from ws_gateway.events import BoardFilter, UnitFilter
from ws_gateway.gateway import Gateway
from ws_gateway.schemas import (
    MAX_FIXES_PER_REQUEST,
    AsyncApiDocument,
    PositionBatch,
    PositionBatchResult,
    RealtimeStats,
    Track,
    UnitPosition,
)

router = APIRouter()
log = structlog.get_logger("ws_gateway.api")

MAX_TRACK_POINTS = 100_000
MAX_TRACK_SPAN = timedelta(days=31)


# This worker's gateway, provided by cad.wiring once it has started.
gateway_dep: Callable[[HTTPConnection], Awaitable[Gateway]] = wired("gateway")
RunningGateway = Annotated[Gateway, Depends(gateway_dep)]


def _last_event_id(ws: WebSocket) -> tuple[bool, int | None]:
    raw = ws.query_params.get("last_event_id")
    if raw is None or raw == "":
        return True, None
    try:
        value = int(raw)
    except ValueError:
        return False, None
    return value >= 0, value


async def _authenticate(ws: WebSocket, gw: Gateway,
                        roles: frozenset[str]) -> tuple[Principal, str] | None:
    """Accept, then check: a refused client gets a close code it can act on, not a bare 403."""
    token = auth.token_from_scope(ws.scope)
    principal = None
    if token:
        principal = await auth.principal_for(gw.ports.resolve_principal, token, touch=True)
    await ws.accept()
    if principal is None or token is None:
        await close_ws(ws, CLOSE_UNAUTHORIZED, "unauthorized")
        return None
    if principal.role not in roles:
        await close_ws(ws, CLOSE_FORBIDDEN, f"role {principal.role} may not open this stream")
        return None
    return principal, token


@router.websocket("/ws/board")
async def board_socket(ws: WebSocket, gw: RunningGateway) -> None:
    authed = await _authenticate(ws, gw, auth.BOARD_ROLES)
    if authed is None:
        return
    principal, token = authed
    ok, last_event_id = _last_event_id(ws)
    if not ok:
        await close_ws(ws, CLOSE_BAD_REQUEST, "last_event_id must be a non-negative integer")
        return
    agencies, hidden = auth.board_agencies(principal, gw.settings)
    s = gw.settings
    client = Client(ws, kind="board", principal=principal, token=token,
                    filter=BoardFilter(agencies, hidden=hidden), queue_max=s.ws_client_queue_max,
                    sync_max=s.ws_sync_buffer_max, budget=gw.budgets.fresh())
    board_snapshot = gw.ports.board_snapshot
    await gw.serve(client, last_event_id=last_event_id,
                   snapshot=lambda conn: board_snapshot(conn, agencies=agencies, hidden=hidden))


@router.websocket("/ws/unit/{unit_id}")
async def unit_socket(ws: WebSocket, unit_id: str, gw: RunningGateway) -> None:
    owed = gw.budgets.peek(unit_id)
    if owed is not None and not owed.has(1.0):
        # Recently closed for flooding (only the unit's own token can get it there): refused
        # at the handshake before any lookup, so a flooder reconnecting in a loop costs an
        # HTTP exchange, no more.
        await _refuse_handshake(ws, owed.retry_after_s(1.0))
        return
    authed = await _authenticate(ws, gw, auth.MDT_ROLES)
    if authed is None:
        return
    principal, token = authed
    if principal.unit_id != unit_id:
        await close_ws(ws, CLOSE_FORBIDDEN, "this token is bound to another unit")
        return
    ok, last_event_id = _last_event_id(ws)
    if not ok:
        await close_ws(ws, CLOSE_BAD_REQUEST, "last_event_id must be a non-negative integer")
        return
    try:
        agency = await _unit_agency_in_scope(gw, principal, unit_id)
    except Exception:  # the database is away: the MDT comes back later (1011)
        log.exception("unit_lookup_failed", unit_id=unit_id)
        await close_ws(ws, CLOSE_INTERNAL, "unit_lookup_failed")
        return
    if agency is None:
        await close_ws(ws, CLOSE_UNKNOWN_UNIT, f"no unit {unit_id}")
        return
    s = gw.settings
    client = Client(ws, kind="unit", principal=principal, token=token,
                    filter=UnitFilter(unit_id), queue_max=s.ws_client_queue_max,
                    sync_max=s.ws_sync_buffer_max, budget=gw.budgets.of(unit_id),
                    fix_budget=gw.fix_budgets.of(unit_id))

    try:
        await gw.avl.prime(unit_id)
    except Exception:  # noqa: BLE001 - looked up again on the first fix
        log.warning("avl_prime_failed", unit_id=unit_id)

    async def on_message(c: Client, msg: dict[str, Any]) -> None:
        mtype = msg["type"]
        if mtype == "position":
            fixes: Any = [msg]
        elif mtype == "positions":
            fixes = msg.get("fixes")
            if not isinstance(fixes, list) or len(fixes) > MAX_FIXES_PER_REQUEST:
                gw.send(c, frames.error(
                    "bad_message", f"fixes must be a list of at most {MAX_FIXES_PER_REQUEST}"))
                return
        else:
            gw.send(c, frames.error("unknown_message_type", f"unknown message type {mtype!r}"))
            return
        # The message was charged to the message budget; its fixes go to the fix budget.
        if not gw.registry.spend(c, len(fixes), fixes=True):
            return
        try:
            accepted, problems = await gw.avl.ingest(unit_id, agency, fixes)
        except OutsideServiceArea as exc:
            field = f"fixes.{exc.index}.lat" if mtype == "positions" else "lat"
            gw.send(c, frames.error("outside_service_area", exc.detail, field=field,
                                    ref=msg.get("ref")))
            return
        except Exception:  # the database is away (first fix of a unit reads its last one)
            log.exception("avl_ingest_failed", unit_id=unit_id)
            gw.send(c, frames.error("ingest_unavailable",
                                    "positions could not be taken now; resend them later",
                                    ref=msg.get("ref")))
            return
        if "ref" in msg:
            gw.send(c, frames.position_result(accepted, problems, ref=msg["ref"]))
        elif problems:
            gw.send(c, frames.position_result(accepted, problems))

    unit_snapshot = gw.ports.unit_snapshot
    await gw.serve(client, last_event_id=last_event_id,
                   snapshot=lambda conn: unit_snapshot(conn, unit_id), on_message=on_message)


async def _refuse_handshake(ws: WebSocket, retry_after_s: float) -> None:
    """HTTP 429 + Retry-After instead of the upgrade (close 4429 where the server cannot send
    a denial response)."""
    response = problem(429, "Too many requests",
                       "this unit's connection was closed for flooding; reconnect later",
                       slug="too-many-requests", instance=ws.url.path,
                       headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
                       retry_after_s=round(retry_after_s, 3))
    try:
        await ws.send_denial_response(response)
    except RuntimeError:  # no websocket.http.response extension
        await ws.accept()
        await close_ws(ws, CLOSE_RATE_LIMITED, "rate_limited")


# --- HTTP ------------------------------------------------------------------------------------

@router.post("/api/v1/units/{unit_id}/positions", response_model=PositionBatchResult,
             tags=["avl"], summary="Batch AVL ingest from an MDT (the websocket is cheaper)",
             responses={
                 404: {"description": "No such unit in the caller's scope"},
                 422: {"description": "A fix lies outside the unit's service area (named as "
                                      "body.fixes.N.lat/lon); nothing of the batch was taken"},
                 429: {"description": "The unit's budget (ws_message_rate_per_s requests, "
                                      "avl_fix_rate_per_s fixes) is spent; Retry-After says "
                                      "when to resend",
                       "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                   "description": "seconds"}}}})
async def post_positions(unit_id: str, body: PositionBatch, gw: RunningGateway,
                         principal: Annotated[Principal, Depends(auth.require(auth.MDT_ROLES))]
                         ) -> PositionBatchResult:
    if principal.unit_id != unit_id:
        raise Forbidden("this token is bound to another unit")
    # The unit's budgets, shared with its MDT socket: one message, one per fix.
    messages, fixes = gw.budgets.of(unit_id), gw.fix_budgets.of(unit_id)
    n = len(body.fixes)
    if not messages.has(1.0) or not fixes.has(n):
        raise TooManyRequests(
            f"unit {unit_id} sends more than {gw.settings.ws_message_rate_per_s:g} messages/s "
            f"or {gw.settings.avl_fix_rate_per_s:g} fixes/s",
            retry_after_s=max(messages.retry_after_s(1.0), fixes.retry_after_s(n)))
    messages.spend(1.0)
    fixes.spend(n)
    agency = await _unit_agency_in_scope(gw, principal, unit_id)
    if agency is None:
        raise NotFound(f"no unit {unit_id}")
    try:
        accepted, problems = await gw.avl.ingest(unit_id, agency, body.fixes)
    except OutsideServiceArea as exc:
        raise Invalid(exc.detail, extra={"errors": [
            {"field": f"body.fixes.{exc.index}.{name}", "message": exc.detail}
            for name in ("lat", "lon")]}) from None
    return PositionBatchResult.model_validate({"accepted": accepted, "problems": problems})


async def _unit_agency_in_scope(gw: Gateway, principal: Principal, unit_id: str) -> str | None:
    """The unit's agency when the principal may act for the unit (the scope HTTP uses:
    ``cad.security.scope_of``; a field unit only for its own); None when the unit does not
    exist or is another agency's (not disclosed)."""
    scope = scope_of(principal, gw.settings)
    if scope.unit_id is not None and scope.unit_id != unit_id:
        return None
    async with gw.pool.acquire() as conn:
        agency = await gw.ports.unit_agency(conn, unit_id)
    return agency if agency is not None and scope.covers(agency) else None


@router.get("/api/v1/units/{unit_id}/track", tags=["avl"], response_model=Track,
            summary="A unit's stored breadcrumbs between two times, oldest first")
async def get_track(
    unit_id: str, gw: RunningGateway,
    principal: Annotated[Principal, Depends(auth.require(auth.TRACK_ROLES))],
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TRACK_POINTS)] = 10_000,
) -> dict[str, Any]:
    to = to or datetime.now(UTC)
    from_ = from_ or (to - timedelta(hours=1))
    if to.tzinfo is None or from_.tzinfo is None:
        raise Invalid("from and to need a UTC offset", field="query.from")
    if from_ > to:
        raise Invalid("from must not be after to", field="query.from")
    if to - from_ > MAX_TRACK_SPAN:
        raise Invalid(f"at most {MAX_TRACK_SPAN.days} days per request", field="query.to")
    async with gw.pool.acquire() as conn:
        agency = await gw.ports.unit_agency(conn, unit_id)
        allowed = auth.principal_agencies(principal, gw.settings)
        if agency is None or (allowed is not None and agency not in allowed):
            raise NotFound(f"no unit {unit_id}")  # other agencies' units are not disclosed
        rows = await conn.fetch(
            "SELECT fix_time, received_at, lat, lon, heading_deg, speed_mps, accuracy_m "
            "FROM unit_positions WHERE unit_id = $1 AND fix_time >= $2 AND fix_time <= $3 "
            "ORDER BY fix_time LIMIT $4", unit_id, from_, to, limit + 1)
    truncated = len(rows) > limit
    return {
        "unit_id": unit_id, "from": from_, "to": to, "truncated": truncated,
        "fixes": [dict(r) for r in rows[:limit]],
    }


@router.get("/api/v1/units/{unit_id}/position", tags=["avl"], response_model=UnitPosition,
            summary="A unit's newest stored AVL fix, described in words (reverse geocoding)")
async def get_position(
    unit_id: str, gw: RunningGateway,
    principal: Annotated[Principal, Depends(auth.require(auth.BOARD_ROLES))],
) -> dict[str, Any]:
    """What the board asks when a unit's row is opened: the live frames carry coordinates
    only; describing every fix of every unit would cost the event loop ~16 % of a core at
    2,000 units and 1 Hz, this costs one lookup per opened row (docs/geocoding.md)."""
    async with gw.pool.acquire() as conn:
        agency = await gw.ports.unit_agency(conn, unit_id)
        allowed = auth.principal_agencies(principal, gw.settings)
        if agency is None or (allowed is not None and agency not in allowed):
            raise NotFound(f"no unit {unit_id}")  # other agencies' units are not disclosed
        row = await conn.fetchrow(
            "SELECT fix_time, received_at, lat, lon FROM unit_positions WHERE unit_id = $1 "
            "ORDER BY fix_time DESC LIMIT 1", unit_id)
    if row is None:
        raise NotFound(f"unit {unit_id} has not reported a position")
    return {"unit_id": unit_id, **dict(row),
            "description": gw.ports.describe_place(row["lat"], row["lon"])}


@router.get("/api/v1/realtime/stats", tags=["avl"], response_model=RealtimeStats,
            summary="This worker's gateway counters (clients, positions, drops)")
async def get_stats(gw: RunningGateway,
                    principal: Annotated[Principal, Depends(auth.require({"supervisor", "admin"}))]
                    ) -> dict[str, Any]:
    return gw.stats()


@router.get("/asyncapi.json", tags=["realtime"], response_model=AsyncApiDocument,
            summary="The websocket protocol (/ws/board, /ws/unit/{unit_id}) as AsyncAPI 3.0")
async def get_asyncapi() -> dict[str, Any]:
    return asyncapi_document()
