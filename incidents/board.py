"""The dispatch board: one serialiser per entity, used for API answers, event payloads and
snapshots alike, so the board can be rebuilt from events alone (``apply_event``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from units.status import APCO_CODES, UnitStatus


def _ts(v: datetime | None) -> str | None:
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
        "status_changed_at": _ts(row["status_changed_at"]),
        "last_checkin_at": _ts(row["last_checkin_at"]),
        "incident_id": row["current_incident"],
        "active": row["active"],
        "version": row["version"],
    }


ASSIGNMENT_FIELDS = ("dispatched_at", "en_route_at", "on_scene_at", "transporting_at",
                     "at_hospital_at", "cleared_at")


def assignment_view(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"unit_id": row["unit_id"], "status": row["status"]}
    for f in ASSIGNMENT_FIELDS:
        out[f] = _ts(row[f])
    return out


def incident_view(row: Mapping[str, Any], assignments: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "number": row["number"],
        "agency": row["agency"],
        "incident_type": row["incident_type"],
        "priority": row["priority"],
        "status": row["status"],
        "lat": row["lat"],
        "lon": row["lon"],
        "location_text": row["location_text"],
        "location_source": row["location_source"],
        "zone_id": row["zone_id"],
        "received_at": _ts(row["received_at"]),
        "answered_at": _ts(row["answered_at"]),
        "created_at": _ts(row["created_at"]),
        "first_dispatched_at": _ts(row["first_dispatched_at"]),
        "first_en_route_at": _ts(row["first_en_route_at"]),
        "first_on_scene_at": _ts(row["first_on_scene_at"]),
        "cleared_at": _ts(row["cleared_at"]),
        "closed_at": _ts(row["closed_at"]),
        "disposition": row["disposition"],
        "duplicate_candidates": list(row["duplicate_candidates"] or []),
        "merged_into": row["merged_into"],
        "version": row["version"],
        "units": [assignment_view(a) for a in sorted(
            assignments, key=lambda a: (a["dispatched_at"], a["unit_id"]))],
    }


async def load_incident_view(conn: asyncpg.Connection, incident_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
    if row is None:
        return None
    units = await conn.fetch("SELECT * FROM incident_units WHERE incident_id = $1", incident_id)
    return incident_view(row, units)


async def load_unit_view(conn: asyncpg.Connection, unit_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM units WHERE id = $1", unit_id)
    return unit_view(row) if row is not None else None


async def board_snapshot(conn: asyncpg.Connection, *, agencies: list[str] | None) -> dict[str, Any]:
    """Open incidents and active units (of ``agencies``, or all when None). Call it in a
    REPEATABLE READ transaction together with the event-log position it corresponds to."""
    inc = await conn.fetch(
        "SELECT * FROM incidents WHERE status <> 'closed' AND ($1::text[] IS NULL OR agency = ANY($1))"
        " ORDER BY id", agencies)
    ids = [r["id"] for r in inc]
    assigned = await conn.fetch("SELECT * FROM incident_units WHERE incident_id = ANY($1)", ids)
    by_incident: dict[int, list[Mapping[str, Any]]] = {}
    for a in assigned:
        by_incident.setdefault(a["incident_id"], []).append(a)
    units = await conn.fetch(
        "SELECT * FROM units WHERE active AND ($1::text[] IS NULL OR agency = ANY($1)) ORDER BY id",
        agencies)
    return {
        "incidents": {str(r["id"]): incident_view(r, by_incident.get(r["id"], [])) for r in inc},
        "units": {r["id"]: unit_view(r) for r in units},
    }


async def unit_snapshot(conn: asyncpg.Connection, unit_id: str) -> dict[str, Any] | None:
    """What an MDT shows: its unit and, when assigned, the incident (no caller data)."""
    unit = await conn.fetchrow("SELECT * FROM units WHERE id = $1", unit_id)
    if unit is None:
        return None
    incident = None
    if unit["current_incident"] is not None:
        incident = await load_incident_view(conn, unit["current_incident"])
        if incident is not None:
            narrative = await conn.fetch(
                "SELECT at, author, text FROM incident_narrative WHERE incident_id = $1 ORDER BY id",
                unit["current_incident"])
            incident["narrative"] = [
                {"at": _ts(n["at"]), "author": n["author"], "text": n["text"]} for n in narrative]
    return {"unit": unit_view(unit), "incident": incident}


def apply_event(board: dict[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """The board after ``event`` (an event_log row or envelope). Events carry the full
    post-change view of every entity they touch, so applying is an upsert."""
    data = event["data"]
    agencies = board.get("_agencies")
    new = copy.deepcopy(board)
    for unit in data.get("units_after", []) + ([data["unit"]] if "unit" in data else []):
        if agencies is not None and unit["agency"] not in agencies:
            continue
        if unit["active"]:
            new["units"][unit["id"]] = unit
        else:
            new["units"].pop(unit["id"], None)
    if "incident" in data:
        inc = data["incident"]
        if agencies is None or inc["agency"] in agencies:
            if inc["status"] == "closed":
                new["incidents"].pop(str(inc["id"]), None)
            else:
                new["incidents"][str(inc["id"])] = inc
    return new
