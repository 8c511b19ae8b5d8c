"""Incident rows as the wire sees them: one serialiser per entity, used for API answers,
event payloads and board snapshots alike, so the board can be rebuilt from events alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from incidents import repository as repo


def iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


ASSIGNMENT_FIELDS = ("dispatched_at", "en_route_at", "on_scene_at", "transporting_at",
                     "at_hospital_at", "cleared_at")


def assignment_view(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"unit_id": row["unit_id"], "status": row["status"]}
    for f in ASSIGNMENT_FIELDS:
        out[f] = iso(row[f])
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
        "location_precision": row["location_precision"],
        "location_unit": row["location_unit"],
        "access_lat": row["access_lat"],
        "access_lon": row["access_lon"],
        "zone_id": row["zone_id"],
        "received_at": iso(row["received_at"]),
        "answered_at": iso(row["answered_at"]),
        "created_at": iso(row["created_at"]),
        "first_dispatched_at": iso(row["first_dispatched_at"]),
        "first_en_route_at": iso(row["first_en_route_at"]),
        "first_on_scene_at": iso(row["first_on_scene_at"]),
        "cleared_at": iso(row["cleared_at"]),
        "closed_at": iso(row["closed_at"]),
        "disposition": row["disposition"],
        "duplicate_candidates": list(row["duplicate_candidates"] or []),
        "merged_into": row["merged_into"],
        "version": row["version"],
        "training": row["training"],
        "units": [assignment_view(a) for a in sorted(
            assignments, key=lambda a: (a["dispatched_at"], a["unit_id"]))],
    }


def narrative_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "at": row["at"].isoformat(), "author": row["author"],
            "text": row["text"]}


async def load_incident_view(conn: asyncpg.Connection, incident_id: int) -> dict[str, Any] | None:
    row = await repo.get_incident(conn, incident_id)
    if row is None:
        return None
    return incident_view(row, await repo.assignments(conn, incident_id))


async def open_incident_views(conn: asyncpg.Connection, *,
                              agencies: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Open incidents (of ``agencies``, or all when None) keyed by id as text, the board's form."""
    rows = await repo.open_incidents(conn, agencies=agencies)
    by_incident: dict[int, list[Mapping[str, Any]]] = {}
    for a in await repo.assignments_of(conn, [r["id"] for r in rows]):
        by_incident.setdefault(a["incident_id"], []).append(a)
    return {str(r["id"]): incident_view(r, by_incident.get(r["id"], [])) for r in rows}
