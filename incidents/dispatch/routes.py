"""A unit's road route to an incident (the console's incident map and the MDT): the routing
service's ``route()`` from where this worker's index places the unit."""

from __future__ import annotations

from typing import Any

import numpy as np

from cad.errors import Conflict, Forbidden, NotFound
from cad.security.scope import Scope
from incidents import repository as incident_repo
from incidents.dispatch.deps import DispatchDeps
from routing.errors import RoutingError
from units import repository as unit_repo


async def unit_route(*, deps: DispatchDeps, scope: Scope, unit_id: str, incident_id: int | None,
                     acting_unit: str | None) -> dict[str, Any]:
    """``incident_id`` defaults to the unit's current incident. A field unit reads only its own
    unit's route; an incident outside the caller's agencies is readable only as the incident
    the unit is assigned to (mutual aid)."""
    async with deps.pool.acquire() as conn:
        unit = await unit_repo.get_unit(conn, unit_id, scope=scope)
        if unit is None:  # another agency's unit does not exist for the caller
            raise NotFound(f"unit {unit_id} does not exist")
        if acting_unit is not None and acting_unit != unit_id:
            raise Forbidden("a field unit reads only its own unit's route")
        target = incident_id if incident_id is not None else unit["current_incident"]
        if target is None:
            raise Conflict(f"unit {unit_id} is on no incident: give incident_id")
        inc = await incident_repo.get_incident(conn, target)
    if inc is None or not (scope.agencies is None or inc["agency"] in scope.agencies
                           or unit["current_incident"] == target):
        raise NotFound(f"incident {target} does not exist")
    if inc["lat"] is None:
        raise Conflict(f"incident {target} has no location")
    if deps.routing is None:
        raise Conflict("no road graph is loaded: routes need one")
    to_lat, to_lon = ((inc["access_lat"], inc["access_lon"]) if inc["access_lat"] is not None
                      else (inc["lat"], inc["lon"]))
    try:
        r = deps.routing.route(unit_id, lat=to_lat, lon=to_lon)
    except RoutingError as e:
        raise Conflict(f"no road route for unit {unit_id}: {e}") from None
    factor = deps.settings.eta_calibration_factor
    return {"unit_id": unit_id, "incident_id": target, "eta_s": round(r.eta_s * factor, 1),
            "distance_m": round(r.distance_m, 1),
            "off_road": bool(r.unit.beyond_limit),
            "points": np.round(r.lonlat[:, ::-1], 6).tolist()}
