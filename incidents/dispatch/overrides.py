"""Overridden recommendations for the supervisor: what was recommended, what was sent
instead, by whom and why, as recorded with the dispatch (``recommendations.outcome``)."""

from __future__ import annotations

from typing import Any

from cad.security.scope import Scope
from incidents.dispatch import repository as repo
from incidents.dispatch.deps import DispatchDeps


async def overridden(*, deps: DispatchDeps, scope: Scope, limit: int) -> list[dict[str, Any]]:
    """The caller's agencies' incidents only, newest decision first."""
    async with deps.pool.acquire() as conn:
        rows = await repo.overridden_recommendations(conn, agencies=scope.agency_list, limit=limit)
    return [{"recommendation_id": r["id"], "incident_id": r["incident_id"], "number": r["number"],
             "agency": r["agency"], "recommended_at": r["created_at"], "recommended_by": r["created_by"],
             "recommended_units": [p["unit_id"] for p in r["picks"]],
             "dispatched_units": list(r["dispatched_units"] or []),
             "reason": r["outcome_reason"], "overridden_at": r["outcome_at"],
             "overridden_by": r["outcome_by"]} for r in rows]
