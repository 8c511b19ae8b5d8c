"""Every frame builder writes exactly its model of schemas.realtime (the captured-socket test
checks the same against the published document; this one needs no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from schemas.realtime import (
    AuthOkFrame,
    BatchFrame,
    ErrorFrame,
    HeartbeatFrame,
    Position,
    PositionResultFrame,
    ResumeFrame,
    ResyncRequiredFrame,
    SnapshotFrame,
)
from ws_gateway import frames
from ws_gateway.avl import Fix, fix_wire
from ws_gateway.events import Event

UNIT: dict[str, Any] = {"id": "E1", "agency": "A", "discipline": "fire", "unit_type": "engine",
        "capabilities": [], "home_station": None, "staffing": 0, "status": "off_duty",
        "apco_code": "OFD", "status_changed_at": None, "last_checkin_at": None,
        "incident_id": None, "active": True, "version": 1}


def _check(model: type[BaseModel], frame: str) -> dict:
    data = orjson.loads(frame)
    model.model_validate_json(frame)
    return data


def _event(i: int) -> Event:
    body = {"id": i, "type": "unit.created", "occurred_at": datetime.now(UTC),
            "aggregate_type": "unit", "aggregate_id": "E1", "agency": "A", "actor": "t",
            "request_id": None, "data": {"unit": UNIT}}
    return Event(i, "A", "unit", "E1", frozenset(), orjson.dumps(body))


def test_batch_frames_are_batch_frames() -> None:
    pos = orjson.dumps(fix_wire(Fix("E1", 37.7, -122.4, datetime.now(UTC), 90.0), "A", 2))
    Position.model_validate_json(pos)
    live = _check(BatchFrame, frames.batch([_event(3), _event(5)], [pos], 4))
    assert live["last_event_id"] == 5 and "replay" not in live
    replay = _check(BatchFrame, frames.batch([_event(7)], [], 9, replay=True))
    assert replay["replay"] is True and replay["last_event_id"] == 9
    # Byte layout the benchmark's readers match on.
    assert frames.batch([], [pos], 4).startswith('{"type":"batch","last_event_id":4,')


def test_control_frames_are_their_models() -> None:
    snap = _check(SnapshotFrame, frames.snapshot(
        last_event_id=3, server_id="s", heartbeat_interval_s=15.0,
        snapshot={"unit": UNIT, "incident": None}))
    assert list(snap) == ["type", "last_event_id", "server_id", "heartbeat_interval_s",
                          "snapshot"]
    _check(ResumeFrame, frames.resume(from_event_id=1, last_event_id=2, server_id="s",
                                      heartbeat_interval_s=1.0))
    _check(ResyncRequiredFrame, frames.resync_required(
        reason="too_far_behind", from_event_id=1, oldest_event_id=1, last_event_id=9))
    hb = _check(HeartbeatFrame, frames.heartbeat(7))
    assert hb["server_time"].endswith("+00:00")  # as before: orjson, not pydantic's "Z"
    _check(AuthOkFrame, frames.AUTH_OK)
    assert "ref" not in _check(ErrorFrame, frames.error("bad_message", "no"))
    assert _check(ErrorFrame, frames.error("ingest_unavailable", "later", ref=None))["ref"] is None
    problem = {"index": 0, "reason": "bad_speed", "detail": "x", "status": "rejected"}
    result = _check(PositionResultFrame, frames.position_result(1, [problem], ref={"n": 1}))
    assert result["ref"] == {"n": 1}
    assert "ref" not in _check(PositionResultFrame, frames.position_result(0, [problem]))


def test_frame_models_are_closed() -> None:
    with pytest.raises(ValidationError):
        HeartbeatFrame.model_validate({"type": "heartbeat", "last_event_id": 1,
                                       "server_time": datetime.now(UTC), "extra": 1})
