"""Server -> client frames, built from the models of ``schemas.realtime``.

Rare control frames (resume, resync_required, auth_ok, error) are model instances, validated
as they are built. Frequent ones are not validated per frame: ``batch`` (one per client group
per tick) is joined from bytes serialised once per event (``ws_gateway.events``) and once per
position (``ws_gateway.avl.fix_wire``); ``snapshot`` carries the domain's snapshot dict as it
is; ``heartbeat`` (a sweep can send thousands at once), ``pong`` and ``position_result`` (one
per MDT message with a ``ref``) are plain dicts - a model instance costs 12 us per heartbeat
against 2.4 us. Their keys are the models' fields, checked here at import; the tests
validate every builder against its model and frames captured from a real socket against
``/asyncapi.json``.

Everything is serialised with orjson (datetimes as ``2026-01-01T00:00:00+00:00``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from schemas.realtime import (
    AuthOkFrame,
    BatchFrame,
    ErrorFrame,
    FixProblem,
    HeartbeatFrame,
    PongFrame,
    PositionResultFrame,
    ResumeFrame,
    ResyncRequiredFrame,
    SnapshotFrame,
)
from ws_gateway.events import Event


def _keys(model: type[BaseModel], *keys: str) -> tuple[str, ...]:
    """The unvalidated builders write exactly these keys: a model change must change them."""
    if tuple(model.model_fields) != keys:
        raise RuntimeError(f"schemas.realtime.{model.__name__} changed: update ws_gateway.frames")
    return keys


_keys(BatchFrame, "type", "replay", "last_event_id", "events", "positions")
_SNAPSHOT_KEYS = _keys(SnapshotFrame, "type", "last_event_id", "server_id",
                       "heartbeat_interval_s", "snapshot")
_keys(HeartbeatFrame, "type", "last_event_id", "server_time")
_keys(PongFrame, "type", "server_time", "last_event_id")
_keys(PositionResultFrame, "type", "accepted", "problems", "ref")
_keys(FixProblem, "index", "reason", "detail", "status")

_BATCH_HEAD = b'{"type":"batch","last_event_id":'
_REPLAY_HEAD = b'{"type":"batch","replay":true,"last_event_id":'


def _dumps(frame: BaseModel) -> str:
    # exclude_unset: optional keys (ref, replay) appear only when given, as before.
    return orjson.dumps(frame.model_dump(exclude_unset=True)).decode()


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def batch(events: Sequence[Event], positions: Sequence[bytes], cursor: int, *,
          replay: bool = False) -> str:
    """``BatchFrame``: the hot path (one per client group per tick), joined from bytes."""
    last = max(cursor, events[-1].id) if events else cursor
    return ((_REPLAY_HEAD if replay else _BATCH_HEAD) + str(last).encode() + b',"events":['
            + b",".join(e.json for e in events) + b'],"positions":['
            + b",".join(positions) + b"]}").decode()


def snapshot(*, last_event_id: int, server_id: str, heartbeat_interval_s: float,
             snapshot: dict[str, Any]) -> str:
    """``SnapshotFrame``; ``snapshot`` is the domain's (``GatewayPorts`` board/unit snapshot)."""
    return orjson.dumps(dict(zip(_SNAPSHOT_KEYS, (
        "snapshot", last_event_id, server_id, heartbeat_interval_s, snapshot), strict=True)),
        default=str).decode()


def resume(*, from_event_id: int, last_event_id: int, server_id: str,
           heartbeat_interval_s: float) -> str:
    return _dumps(ResumeFrame(type="resume", from_event_id=from_event_id,
                              last_event_id=last_event_id, server_id=server_id,
                              heartbeat_interval_s=heartbeat_interval_s))


ResyncReason = Literal["older_than_retention", "too_far_behind", "unknown_event_id"]


def resync_required(*, reason: ResyncReason, from_event_id: int, oldest_event_id: int,
                    last_event_id: int) -> str:
    return _dumps(ResyncRequiredFrame(type="resync_required", reason=reason,
                                      from_event_id=from_event_id,
                                      oldest_event_id=oldest_event_id,
                                      last_event_id=last_event_id))


def heartbeat(last_event_id: int, server_time: str | None = None) -> str:
    """``server_time``: ISO 8601; a sweep passes one for all its heartbeats."""
    return orjson.dumps({"type": "heartbeat", "last_event_id": last_event_id,
                         "server_time": server_time or now_iso()}).decode()


def pong(last_event_id: int) -> str:
    return orjson.dumps({"type": "pong", "server_time": now_iso(),
                         "last_event_id": last_event_id}).decode()


AUTH_OK = _dumps(AuthOkFrame(type="auth_ok"))

ErrorReason = Literal["bad_message", "unknown_message_type", "ingest_unavailable",
                      "outside_service_area"]
_NO_REF: Any = object()


def error(reason: ErrorReason, detail: str, *, ref: Any = _NO_REF, field: str | None = None) -> str:
    """``field``: the message field at fault (only then is the key sent)."""
    extra: dict[str, Any] = {} if field is None else {"field": field}
    if ref is not _NO_REF:
        extra["ref"] = ref
    return _dumps(ErrorFrame(type="error", reason=reason, detail=detail, **extra))


def position_result(accepted: int, problems: list[dict[str, Any]], *, ref: Any = _NO_REF) -> str:
    """``problems``: ``FixProblem`` dicts as ``AvlIngest.ingest`` makes them."""
    frame: dict[str, Any] = {"type": "position_result", "accepted": accepted,
                             "problems": problems}
    if ref is not _NO_REF:
        frame["ref"] = ref
    return orjson.dumps(frame, default=str).decode()
