"""HTTP bodies of the gateway's endpoints (the websocket protocol is in schemas.realtime)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.realtime import FixProblem

MAX_FIXES_PER_REQUEST = 1_000


class PositionBatch(BaseModel):
    fixes: list[dict[str, Any]] = Field(max_length=MAX_FIXES_PER_REQUEST,
                                        description="Oldest first: lat, lon, fix_time, "
                                        "heading_deg?, speed_mps?, accuracy_m?")


class PositionBatchResult(BaseModel):
    accepted: int
    problems: list[FixProblem] = Field(
        description="One per fix not taken: index, reason, detail, status (rejected|ignored).")


class UnitPosition(BaseModel):
    unit_id: str
    lat: float
    lon: float
    fix_time: datetime
    received_at: datetime
    description: str = Field(description="The position in words, as the board shows it when a "
                             "unit's row is opened: the nearest address and the cross streets "
                             "(reverse geocoding), or the coordinates without a geocoder.")


class TrackFix(BaseModel):
    fix_time: datetime
    received_at: datetime
    lat: float
    lon: float
    heading_deg: float | None
    speed_mps: float | None
    accuracy_m: float | None


class Track(BaseModel):
    unit_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    truncated: bool = Field(description="More fixes than ``limit`` lie in the window")
    fixes: list[TrackFix]


class GcGeneration(BaseModel):
    count: float
    total_ms: float
    max_ms: float


class PositionCounters(BaseModel):
    accepted: int
    rejected: dict[str, int] = Field(description="Fixes not taken, by reason")
    coalesced: int
    sent: int
    breadcrumbs_written: int
    breadcrumbs_dropped: int = Field(description="Lost: the buffer overflowed while the "
                                     "database was unreachable")
    breadcrumbs_coalesced: int = Field(description="Not stored on purpose: a newer fix of the "
                                       "unit within avl_store_max_per_unit_per_s replaced it")


class ClientCounts(BaseModel):
    board: int
    unit: int


class RealtimeStats(BaseModel):
    gc: dict[str, GcGeneration] = Field(description="Collections per GC generation")
    gc_recent: list[tuple[float, int, float]] = Field(
        description="The last 20 collections: (wall time, generation, pause ms)")
    server_id: str
    hub: str
    hub_connected: bool
    clients: ClientCounts
    event_cursor: int
    closed_slow_consumer: int
    closed_rate_limited: int = Field(description="Sockets closed with 4429 (message budget "
                                     "overdrawn)")
    closed_token: int
    positions: PositionCounters


class AsyncApiDocument(BaseModel):
    """An AsyncAPI 3.0 document (https://www.asyncapi.com/docs/reference/specification/v3.0.0)."""

    model_config = ConfigDict(extra="allow")

    asyncapi: Literal["3.0.0"]
    info: dict[str, Any]
    channels: dict[str, Any]
    operations: dict[str, Any]
    components: dict[str, Any]
