"""The websocket protocol as an AsyncAPI 3.0 document (served at ``/asyncapi.json``),
generated from the models of ``schemas.realtime`` (frames) and ``schemas.events`` (the event
registry), so the published protocol is the one the gateway speaks.

Operations are from the server's side, as AsyncAPI 3.0 has it: ``send`` = frames the server
sends, ``receive`` = messages it accepts. Close codes, which AsyncAPI has no field for, are
in ``x-close-codes`` of each channel.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from schemas.realtime import (
    CLOSE_CODE_MEANINGS,
    AuthMessage,
    AuthOkFrame,
    BatchFrame,
    CloseCode,
    ErrorFrame,
    HeartbeatFrame,
    PingMessage,
    PongFrame,
    PositionMessage,
    PositionResultFrame,
    PositionsMessage,
    ResumeFrame,
    ResyncRequiredFrame,
    SnapshotFrame,
)

ASYNCAPI_VERSION = "3.0.0"
PROTOCOL_VERSION = "1.0.0"
_REF = "#/components/schemas/{model}"

# message name (the frame's ``type``) -> model, and who sends it
_SERVER: dict[str, type[BaseModel]] = {
    "snapshot": SnapshotFrame, "resume": ResumeFrame, "resync_required": ResyncRequiredFrame,
    "batch": BatchFrame, "heartbeat": HeartbeatFrame, "pong": PongFrame,
    "auth_ok": AuthOkFrame, "error": ErrorFrame, "position_result": PositionResultFrame,
}
_CLIENT: dict[str, type[BaseModel]] = {
    "ping": PingMessage, "auth": AuthMessage, "position": PositionMessage,
    "positions": PositionsMessage,
}
_CHANNELS: dict[str, dict[str, Any]] = {
    "board": {
        "address": "/ws/board",
        "title": "Dispatch board",
        "description": "Incidents and units of the principal's agency (a supervisor without "
                       "agency: all), events without agency, positions of the agency's "
                       "units. Roles: dispatcher, supervisor.",
        "server": [n for n in _SERVER if n != "position_result"],
        "client": ["ping", "auth"],
        "close": [CloseCode.BAD_REQUEST, CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN,
                  CloseCode.SLOW_CONSUMER, CloseCode.RATE_LIMITED, CloseCode.GOING_AWAY,
                  CloseCode.INTERNAL],
    },
    "unit": {
        "address": "/ws/unit/{unit_id}",
        "title": "Mobile data terminal of one unit",
        "description": "Events whose aggregate is the unit or whose data.unit_ids names it "
                       "(dispatches, status changes); the MDT sends its positions. Role: "
                       "field_unit bound to unit_id, the unit in its agencies. After a 4429 "
                       "close the unit's reconnects are refused with HTTP 429 and Retry-After "
                       "for 5 s.",
        "parameters": {"unit_id": {"description": "The unit's call sign"}},
        "server": list(_SERVER),
        "client": list(_CLIENT),
        "close": list(CloseCode),
    },
}


def _schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "serialization") for m in _SERVER.values()]
    models += [(m, "validation") for m in _CLIENT.values()]
    keys, top = models_json_schema(models, ref_template=_REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return {"refs": {(m, mode): s["$ref"] for (m, mode), s in keys.items()}, "defs": defs}


def _message(name: str, model: type[BaseModel], ref: str, sender: Literal["server", "client"]
             ) -> dict[str, Any]:
    doc = (model.__doc__ or "").strip()
    return {
        "name": name,
        "title": f"{name} ({'server -> client' if sender == 'server' else 'client -> server'})",
        **({"summary": doc.splitlines()[0]} if doc else {}),
        "contentType": "application/json",
        "payload": {"$ref": ref},
    }


@functools.cache
def asyncapi_document() -> dict[str, Any]:
    generated = _schemas()
    refs: dict[tuple[type[BaseModel], str], str] = generated["refs"]
    messages: dict[str, Any] = {}
    for name, model in _SERVER.items():
        messages[name] = _message(name, model, refs[(model, "serialization")], "server")
    for name, model in _CLIENT.items():
        messages[name] = _message(name, model, refs[(model, "validation")], "client")

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for cname, spec in _CHANNELS.items():
        channel: dict[str, Any] = {
            "address": spec["address"], "title": spec["title"],
            "description": spec["description"],
            "messages": {n: {"$ref": f"#/components/messages/{n}"}
                         for n in spec["server"] + spec["client"]},
            "bindings": {"ws": {
                "bindingVersion": "0.1.0",
                "query": {"type": "object", "properties": {
                    "last_event_id": {"type": "integer", "minimum": 0, "description":
                                      "Resume after this event (the client's "
                                      "max(last_event_id) of every snapshot/batch/heartbeat)"},
                    "access_token": {"type": "string", "description":
                                     "For browsers, which cannot set the Authorization "
                                     "header on a handshake"},
                }},
                "headers": {"type": "object", "properties": {
                    "Authorization": {"type": "string", "description": "Bearer <token>"}}},
            }},
            "x-close-codes": [
                {"code": int(c), "name": c.name.lower(), "meaning": CLOSE_CODE_MEANINGS[c][0],
                 "client_action": CLOSE_CODE_MEANINGS[c][1]} for c in spec["close"]],
        }
        if "parameters" in spec:
            channel["parameters"] = spec["parameters"]
        channels[cname] = channel
        operations[f"{cname}.send"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{cname}"},
            "summary": "Frames the server sends on this socket",
            "messages": [{"$ref": f"#/channels/{cname}/messages/{n}"} for n in spec["server"]],
        }
        operations[f"{cname}.receive"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{cname}"},
            "summary": "Messages the server accepts on this socket",
            "messages": [{"$ref": f"#/channels/{cname}/messages/{n}"} for n in spec["client"]],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "CAD real-time gateway",
            "version": PROTOCOL_VERSION,
            "description": "Live dispatch board and MDT streams: a snapshot with the event id "
                           "it corresponds to, then every later event that concerns the "
                           "client, in id order, once; reconnect with last_event_id to get "
                           "exactly what was missed (or resync_required). docs/realtime.md.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": generated["defs"]},
    }
