"""How unit status reports move an incident along: one place for the incident's lifecycle
pending -> dispatched -> en_route -> on_scene -> cleared (-> closed, by a dispatcher)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from units.status import ASSIGNMENT_COLUMN, UnitStatus

_FIRST = {UnitStatus.EN_ROUTE: "first_en_route_at", UnitStatus.ON_SCENE: "first_on_scene_at"}


async def record_unit_progress(conn: asyncpg.Connection, *, incident_id: int, unit_id: str,
                               new_status: UnitStatus, clears: bool, at: datetime) -> dict[str, Any]:
    """Update the unit's assignment row and the incident's derived status. Returns
    {"incident_status": ..., "all_cleared": bool}."""
    if clears:
        await conn.execute(
            "UPDATE incident_units SET status = 'cleared', cleared_at = $3 "
            "WHERE incident_id = $1 AND unit_id = $2 AND cleared_at IS NULL", incident_id, unit_id, at)
    else:
        column = ASSIGNMENT_COLUMN.get(new_status)
        extra = f", {column} = coalesce({column}, $3)" if column else ""
        await conn.execute(
            f"UPDATE incident_units SET status = $4{extra} "
            "WHERE incident_id = $1 AND unit_id = $2 AND cleared_at IS NULL",
            incident_id, unit_id, at, new_status.value)
        first = _FIRST.get(new_status)
        if first:
            await conn.execute(
                f"UPDATE incidents SET {first} = coalesce({first}, $2) WHERE id = $1", incident_id, at)
    return await derive_incident_status(conn, incident_id, at=at)


async def derive_incident_status(conn: asyncpg.Connection, incident_id: int, *, at: datetime) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT i.status, i.first_en_route_at, i.first_on_scene_at, "
        "count(a.*) AS n_assigned, count(a.*) FILTER (WHERE a.cleared_at IS NULL) AS n_active "
        "FROM incidents i LEFT JOIN incident_units a ON a.incident_id = i.id "
        "WHERE i.id = $1 GROUP BY i.id", incident_id)
    assert row is not None
    if row["status"] == "closed":
        return {"incident_status": "closed", "all_cleared": row["n_active"] == 0}
    if row["n_assigned"] == 0:
        status = "pending"
    elif row["n_active"] == 0:
        status = "cleared"
    elif row["first_on_scene_at"] is not None:
        status = "on_scene"
    elif row["first_en_route_at"] is not None:
        status = "en_route"
    else:
        status = "dispatched"
    if status != row["status"]:
        await conn.execute(
            "UPDATE incidents SET status = $2::text, version = version + 1, "
            "cleared_at = CASE WHEN $2::text = 'cleared' THEN $3::timestamptz ELSE NULL END WHERE id = $1",
            incident_id, status, at)
    else:
        await conn.execute("UPDATE incidents SET version = version + 1 WHERE id = $1", incident_id)
    return {"incident_status": status, "all_cleared": status == "cleared"}


async def assigned_unit_ids(conn: asyncpg.Connection, incident_id: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT unit_id FROM incident_units WHERE incident_id = $1 ORDER BY unit_id", incident_id)
    return [r["unit_id"] for r in rows]
