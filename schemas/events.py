"""The event envelope every consumer (board, MDT, analytics) reads from the event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class EventEnvelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    type: str
    occurred_at: datetime
    aggregate_type: str
    aggregate_id: str
    agency: str | None = None
    actor: str | None = None
    request_id: str | None = None
    data: dict[str, Any]
