"""Server -> client frames, built from the models of ``schemas.realtime``.

Control frames (resume, resync, heartbeat, pong, auth_ok, error, position_result) are model
instances: a few fields validated, microseconds, at most one per client per heartbeat
interval. The two frames that carry bulk are not validated per frame: ``batch`` is joined
from bytes serialised once per event (``ws_gateway.events``) and once per position
(``ws_gateway.avl.fix_wire``), and ``snapshot`` carries the domain's snapshot dict as it is.
Their keys are the models' fields, checked here at import; the tests validate frames
captured from a real socket against ``/asyncapi.json``.

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

# The hand-joined frames write these keys in this order; a model change must change them.
if tuple(BatchFrame.model_fields) != ("type", "replay", "last_event_id", "events", "positions"):
    raise RuntimeError("schemas.realtime.BatchFrame changed: update ws_gateway.frames.batch")
_SNAPSHOT_KEYS = ("type", "last_event_id", "server_id", "heartbeat_interval_s", "snapshot")
if tuple(SnapshotFrame.model_fields) != _SNAPSHOT_KEYS:
    raise RuntimeError("schemas.realtime.SnapshotFrame changed: update ws_gateway.frames.snapshot")

_BATCH_HEAD = b'{"type":"batch","last_event_id":'
_REPLAY_HEAD = b'{"type":"batch","replay":true,"last_event_id":'


def _dumps(frame: BaseModel) -> str:
    # exclude_unset: optional keys (ref, replay) appear only when given, as before.
    return orjson.dumps(frame.model_dump(exclude_unset=True)).decode()


def now() -> datetime:
    return datetime.now(UTC)


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


def heartbeat(last_event_id: int) -> str:
    return _dumps(HeartbeatFrame(type="heartbeat", last_event_id=last_event_id,
                                 server_time=now()))


def pong(last_event_id: int) -> str:
    return _dumps(PongFrame(type="pong", server_time=now(), last_event_id=last_event_id))


AUTH_OK = _dumps(AuthOkFrame(type="auth_ok"))

ErrorReason = Literal["bad_message", "unknown_message_type", "ingest_unavailable"]
_NO_REF: Any = object()


def error(reason: ErrorReason, detail: str, *, ref: Any = _NO_REF) -> str:
    if ref is _NO_REF:
        return _dumps(ErrorFrame(type="error", reason=reason, detail=detail))
    return _dumps(ErrorFrame(type="error", reason=reason, detail=detail, ref=ref))


def position_result(accepted: int, problems: list[dict[str, Any]], *, ref: Any = _NO_REF) -> str:
    probs = [FixProblem.model_validate(p) for p in problems]
    if ref is _NO_REF:
        return _dumps(PositionResultFrame(type="position_result", accepted=accepted,
                                          problems=probs))
    return _dumps(PositionResultFrame(type="position_result", accepted=accepted,
                                      problems=probs, ref=ref))
