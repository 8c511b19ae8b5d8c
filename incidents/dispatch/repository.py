"""All SQL of the dispatch tables: ``recommendations``, ``response_plans``,
``slot_substitutions`` and ``timer_alerts``. Rows of incidents and units are read and
written through their own packages' repositories.

The coverage weights read the ``analytics_incidents`` view (calls per location); it only reads.

The recommendation context is one read across tables (incident, its most specific plan, the
substitutions, the units on it): one round trip where four would cost the dispatch
benchmark's p99; it only reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cad.security.scope import Scope

_RECOMMEND_CONTEXT = """
SELECT i.*,
  (SELECT row_to_json(p) FROM (
      SELECT id, name, slots FROM response_plans
       WHERE (incident_type IS NULL OR incident_type = i.incident_type)
         AND (priority IS NULL OR priority = i.priority) AND (zone_id IS NULL OR zone_id = i.zone_id)
       ORDER BY (zone_id IS NOT NULL)::int * 4 + (incident_type IS NOT NULL)::int * 2
                + (priority IS NOT NULL)::int DESC, id LIMIT 1) p) AS plan,
  (SELECT coalesce(json_agg(json_build_array(slot_type, unit_type) ORDER BY slot_type, unit_type), '[]')
     FROM slot_substitutions) AS substitutions,
  (SELECT coalesce(json_agg(json_build_object('id', u.id, 'unit_type', u.unit_type)
                            ORDER BY a.dispatched_at, u.id), '[]')
     FROM incident_units a JOIN units u ON u.id = a.unit_id
    WHERE a.incident_id = i.id AND a.cleared_at IS NULL) AS assigned
FROM incidents i WHERE i.id = $1 AND ($2::text[] IS NULL OR i.agency = ANY($2))
"""


# --- recommendations ---------------------------------------------------------------------------
async def recommend_context(conn: asyncpg.Connection, incident_id: int, *,
                            scope: Scope) -> asyncpg.Record | None:
    """The incident with ``plan`` (the most specific: zone beats type beats priority),
    ``substitutions`` and ``assigned`` (its units not yet cleared); None when it does not
    exist or is of an agency outside ``scope`` (field units do not recommend)."""
    return await conn.fetchrow(_RECOMMEND_CONTEXT, incident_id, scope.agency_list)


async def insert_recommendation(conn: asyncpg.Connection, *, incident_id: int, created_by: str,
                                plan_id: int | None, eta_method: str, picks: list[dict[str, Any]],
                                shortfalls: list[dict[str, Any]]) -> int:
    return await conn.fetchval(
        "INSERT INTO recommendations (incident_id, created_by, plan_id, eta_method, picks, shortfalls) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        incident_id, created_by, plan_id, eta_method, picks, shortfalls)


async def lock_recommendation(conn: asyncpg.Connection, *, recommendation_id: int,
                              incident_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM recommendations WHERE id = $1 AND incident_id = $2 FOR UPDATE",
        recommendation_id, incident_id)


async def record_outcome(conn: asyncpg.Connection, *, recommendation_id: int, outcome: str,
                         reason: str | None, by: str, unit_ids: Sequence[str]) -> None:
    await conn.execute(
        "UPDATE recommendations SET outcome = $2, outcome_reason = $3, outcome_at = clock_timestamp(), "
        "outcome_by = $4, dispatched_units = $5 WHERE id = $1",
        recommendation_id, outcome, reason, by, list(unit_ids))


async def overridden_recommendations(conn: asyncpg.Connection, *, agencies: Sequence[str] | None,
                                     limit: int) -> list[asyncpg.Record]:
    """Recommendations whose dispatch differed from the picks, newest decision first, with the
    incident's number and agency (the read joins incidents; it writes nothing there)."""
    return await conn.fetch(
        "SELECT r.id, r.incident_id, i.number, i.agency, r.created_at, r.created_by, r.picks, "
        "r.outcome_reason, r.outcome_at, r.outcome_by, r.dispatched_units "
        "FROM recommendations r JOIN incidents i ON i.id = r.incident_id "
        "WHERE r.outcome = 'overridden' AND ($1::text[] IS NULL OR i.agency = ANY($1)) "
        "ORDER BY r.outcome_at DESC, r.id DESC LIMIT $2", agencies, limit)


# --- response plans and substitutions -----------------------------------------------------------
async def list_plans(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM response_plans ORDER BY id")


async def upsert_plan(conn: asyncpg.Connection, *, name: str, incident_type: str | None,
                      priority: int | None, zone_id: str | None,
                      slots: list[dict[str, Any]]) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO response_plans (name, incident_type, priority, zone_id, slots) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_type, priority, zone_id) "
        "DO UPDATE SET name = EXCLUDED.name, slots = EXCLUDED.slots RETURNING *",
        name, incident_type, priority, zone_id, slots)


async def delete_plan(conn: asyncpg.Connection, plan_id: int) -> asyncpg.Record | None:
    """Recommendations made with the plan keep their picks and lose the reference."""
    await conn.execute("UPDATE recommendations SET plan_id = NULL WHERE plan_id = $1", plan_id)
    return await conn.fetchrow("DELETE FROM response_plans WHERE id = $1 RETURNING *", plan_id)


async def list_substitutions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM slot_substitutions ORDER BY 1, 2")


async def add_substitution(conn: asyncpg.Connection, *, slot_type: str, unit_type: str) -> None:
    await conn.execute("INSERT INTO slot_substitutions VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       slot_type, unit_type)


# --- timers --------------------------------------------------------------------------------------
async def claim_alert(conn: asyncpg.Connection, *, kind: str, subject: str, since: datetime,
                      threshold_s: float) -> bool:
    """True for the one sweep (of any worker) that records this crossing first."""
    return bool(await conn.fetchval(
        "INSERT INTO timer_alerts (kind, subject, since, threshold_s) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT DO NOTHING RETURNING 1", kind, subject, since, threshold_s))


# --- coverage ----------------------------------------------------------------------------------
async def calls_per_location(conn: asyncpg.Connection, *, agencies: Sequence[str] | None,
                             days: int) -> list[asyncpg.Record]:
    """Calls (live and imported) received in the last ``days`` per distinct location: the
    coverage cells' weights. Reads the ``analytics_incidents`` view (incidents and
    ``historical_calls``); agencies geocode to the block, so a year is a few thousand rows."""
    return list(await conn.fetch(
        """SELECT lat, lon, count(*) AS n FROM analytics_incidents
           WHERE ($1::text[] IS NULL OR agency = ANY($1)) AND lat IS NOT NULL AND lon IS NOT NULL
             AND received_at >= now() - make_interval(days => $2)
           GROUP BY lat, lon""", agencies, days))
