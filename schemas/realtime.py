"""The websocket protocol of ``/ws/board`` and ``/ws/unit/{unit_id}``: every frame the server
sends, every message a client may send, and the close codes. ``/asyncapi.json`` is
generated from these models (``ws_gateway.asyncapi``).

The gateway builds frames from these models without validating them per frame (the fan-out
is hot): ``ws_gateway.frames`` writes exactly these fields, and the tests validate frames
captured from a real socket against the published document.
"""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.board import BoardSnapshot, UnitSnapshot
from schemas.events import AnyEvent


class CloseCode(IntEnum):
    """Websocket close codes (4000-4999 are the application's; the last three digits mirror
    HTTP). The docstring of each member's meaning is published in the AsyncAPI document."""

    BAD_REQUEST = 4400       # malformed query (last_event_id) or message
    UNAUTHORIZED = 4401      # no/invalid token at connect, or revoked/expired later
    FORBIDDEN = 4403         # role may not use this stream, or another unit's stream
    UNKNOWN_UNIT = 4404      # /ws/unit/{unit_id} of a unit that does not exist (in scope)
    SLOW_CONSUMER = 4408     # the client did not keep up; reconnect with last_event_id
    RATE_LIMITED = 4429      # the client sent more messages than its budget (flooding)
    GOING_AWAY = 1001        # server shutting down; reconnect with last_event_id
    INTERNAL = 1011          # internal error; reconnect with back-off


CLOSE_CODE_MEANINGS: dict[CloseCode, tuple[str, str]] = {
    CloseCode.BAD_REQUEST: ("bad last_event_id", "fix the request"),
    CloseCode.UNAUTHORIZED: ("no/invalid token at connect, or token revoked/expired/idle later",
                             "log in / renew, reconnect"),
    CloseCode.FORBIDDEN: ("role may not open this stream, or MDT token bound to another unit",
                          "none"),
    CloseCode.UNKNOWN_UNIT: (("/ws/unit/{unit_id} of an unknown unit, or of another "
                              "agency's (not disclosed)"), "none"),
    CloseCode.SLOW_CONSUMER: (("slow consumer: its queue was full, or too many events "
                              "while syncing"),
                              "reconnect with last_event_id"),
    CloseCode.RATE_LIMITED: (("too many messages: the connection's budget (ws_message_rate_per_s, "
                              "burst ws_message_burst; a positions batch costs one per fix; "
                              "an MDT's budget is its unit's) was overdrawn"),
                             "reconnect after a back-off, send at most the configured rate"),
    CloseCode.GOING_AWAY: ("server shutting down", "reconnect with last_event_id"),
    CloseCode.INTERNAL: ("internal error", "reconnect with back-off"),
}


class _Frame(BaseModel):
    # Published schemas are closed: a field the server adds must be added here first.
    model_config = ConfigDict(extra="forbid")


# --- positions -------------------------------------------------------------------------------

class Position(_Frame):
    """A unit's AVL fix as boards receive it."""

    unit_id: str
    agency: str | None
    lat: float
    lon: float
    heading_deg: float | None
    speed_mps: float | None
    accuracy_m: float | None
    fix_time: datetime
    coalesced: int = Field(ge=0, description="Fixes of this unit dropped on purpose since the "
                           "previous one sent (so a client can tell coalescing from loss)")


POSITION_FIELDS: tuple[str, ...] = tuple(Position.model_fields)


class FixProblem(_Frame):
    index: int = Field(ge=0, description="Position of the fix in the message")
    reason: str = Field(description="bad_coordinates, bad_heading, bad_speed, bad_accuracy, "
                        "bad_timestamp, timestamp_in_future, timestamp_too_old, out_of_order")
    detail: str
    status: Literal["rejected", "ignored"]


# --- server -> client ------------------------------------------------------------------------

class SnapshotFrame(_Frame):
    """The client's whole state, and the event id it corresponds to. Always replaces it."""

    type: Literal["snapshot"]
    last_event_id: int
    server_id: str
    heartbeat_interval_s: float
    snapshot: BoardSnapshot | UnitSnapshot = Field(description="BoardSnapshot on /ws/board, "
                                                   "UnitSnapshot on /ws/unit/{unit_id}")


class ResumeFrame(_Frame):
    """Reconnect accepted: replay batches (``replay: true``) follow."""

    type: Literal["resume"]
    from_event_id: int
    last_event_id: int
    server_id: str
    heartbeat_interval_s: float


class ResyncRequiredFrame(_Frame):
    """The client's cursor cannot be resumed from; a fresh snapshot follows at once."""

    type: Literal["resync_required"]
    reason: Literal["older_than_retention", "too_far_behind", "unknown_event_id"]
    from_event_id: int
    oldest_event_id: int
    last_event_id: int


class BatchFrame(_Frame):
    """Everything since the previous frame: events in id order, coalesced positions."""

    type: Literal["batch"]
    replay: Literal[True] | None = Field(default=None, description="Present on replayed "
                                         "events after ``resume``")
    last_event_id: int = Field(description="Resume cursor: everything up to it that concerns "
                               "this client has been sent")
    events: list[AnyEvent]  # type: ignore[valid-type]  # see schemas.events.AnyEvent
    positions: list[Position]


class HeartbeatFrame(_Frame):
    """Sent when nothing else was sent for ``heartbeat_interval_s``."""

    type: Literal["heartbeat"]
    last_event_id: int
    server_time: datetime


class PongFrame(_Frame):
    type: Literal["pong"]
    server_time: datetime
    last_event_id: int


class AuthOkFrame(_Frame):
    """The renewed token was accepted."""

    type: Literal["auth_ok"]


class ErrorFrame(_Frame):
    """A message could not be handled; the socket stays open."""

    type: Literal["error"]
    reason: Literal["bad_message", "unknown_message_type", "ingest_unavailable",
                    "outside_service_area"]
    detail: str
    field: str | None = Field(default=None, description="The message field at fault, e.g. "
                              "``fixes.3.lat`` (``outside_service_area``); the message was "
                              "not taken")
    ref: Any = Field(default=None, description="The message's ``ref``, when it had one")


class PositionResultFrame(_Frame):
    """MDT: sent only when some fix was not taken, or the message had a ``ref``."""

    type: Literal["position_result"]
    accepted: int
    problems: list[FixProblem]
    ref: Any = None


# --- client -> server ------------------------------------------------------------------------

class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


class PingMessage(_Message):
    type: Literal["ping"]


class AuthMessage(_Message):
    """Renew the socket's token (same user and role, else the socket closes with 4401)."""

    type: Literal["auth"]
    access_token: str


class Fix(_Message):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    fix_time: datetime | float = Field(description="ISO 8601 with an offset, or epoch "
                                       "seconds/milliseconds")
    heading_deg: float | None = Field(default=None, ge=0, le=360)
    speed_mps: float | None = Field(default=None, ge=0, le=300)
    accuracy_m: float | None = Field(default=None, ge=0)


class PositionMessage(Fix):
    """MDT: one fix."""

    type: Literal["position"]
    ref: Any = Field(default=None, description="Echoed in the position_result")


class PositionsMessage(_Message):
    """MDT: several fixes, oldest first (at most 1,000)."""

    type: Literal["positions"]
    fixes: list[Fix] = Field(max_length=1_000)
    ref: Any = None


SERVER_FRAMES: tuple[type[BaseModel], ...] = (
    SnapshotFrame, ResumeFrame, ResyncRequiredFrame, BatchFrame, HeartbeatFrame, PongFrame,
    AuthOkFrame, ErrorFrame, PositionResultFrame)
