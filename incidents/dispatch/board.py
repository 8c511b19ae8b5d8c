"""The dispatch board: open incidents and active units, as a snapshot (with the event-log
position it corresponds to) and as what each event changes (``apply_event``), so a board can
be rebuilt from events alone; and what an MDT shows of its own unit."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from cad.security.scope import Scope
from cad.uow import event_log_head
from incidents import repository as incident_repo
from incidents.views import iso, load_incident_view, open_incident_views
from units import repository as unit_repo
from units.views import unit_view


async def board_snapshot(conn: asyncpg.Connection, *, agencies: Sequence[str] | None,
                         hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Open incidents and active units (of ``agencies``, or all when None), without those of
    the ``hidden`` training agencies nor any marked training when some are hidden. Call it in
    a REPEATABLE READ transaction together with the event-log position it corresponds to."""
    incidents = await open_incident_views(conn, agencies=agencies)
    units = await unit_repo.active_units(conn, agencies=agencies)
    if hidden:
        incidents = {k: v for k, v in incidents.items()
                     if not v["training"] and v["agency"] not in hidden}
        units = [r for r in units if not r["training"] and r["agency"] not in hidden]
    return {"incidents": incidents, "units": {r["id"]: unit_view(r) for r in units}}


async def board_at_head(pool: asyncpg.Pool, *, agencies: Sequence[str] | None,
                        hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A board snapshot and the event id it is current to, read in one REPEATABLE READ
    transaction: a client resumes the stream right after ``last_event_id``."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        last = await event_log_head(conn)
        snap = await board_snapshot(conn, agencies=agencies, hidden=hidden)
    return {"last_event_id": last, **snap}


async def unit_snapshot(conn: asyncpg.Connection, unit_id: str) -> dict[str, Any] | None:
    """What an MDT shows: its unit and, when assigned, the incident (no caller data)."""
    unit = await unit_repo.get_unit(conn, unit_id, scope=Scope.ALL)
    if unit is None:
        return None
    incident = None
    if unit["current_incident"] is not None:
        incident = await load_incident_view(conn, unit["current_incident"])
        if incident is not None:
            narrative = await incident_repo.narrative(conn, unit["current_incident"])
            incident["narrative"] = [
                {"at": iso(n["at"]), "author": n["author"], "text": n["text"]} for n in narrative]
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
