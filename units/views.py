"""Unit rows as the wire sees them: one serialiser, used for API answers, event payloads and
board snapshots alike, so a board rebuilt from events equals a fresh snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from units.status import APCO_CODES, UnitStatus


def iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def unit_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agency": row["agency"],
        "discipline": row["discipline"],
        "unit_type": row["unit_type"],
        "capabilities": sorted(row["capabilities"] or []),
        "home_station": row["home_station"],
        "staffing": row["staffing"],
        "status": row["status"],
        "apco_code": APCO_CODES[UnitStatus(row["status"])],
        "status_changed_at": iso(row["status_changed_at"]),
        "last_checkin_at": iso(row["last_checkin_at"]),
        "incident_id": row["current_incident"],
        "active": row["active"],
        "version": row["version"],
        "training": row["training"],
    }


def status_log_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "from_status": row["from_status"], "to_status": row["to_status"],
            "at": row["at"].isoformat(), "reported_at": iso(row["reported_at"]),
            "incident_id": row["incident_id"], "actor": row["actor"], "source": row["source"]}
