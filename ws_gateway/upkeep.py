"""Keeping each worker's routing index current is not the gateway's job, but only the
gateway sees what every worker commits and moves: it reports it through ports the app wires
in (``GatewayPorts.units_changed``, ``units_reset``, ``apply_position``).

* committed events naming units (as aggregate or in ``data.unit_ids``) -> those units changed;
  station events and unit imports (``aggregate_id == "*"``) -> any unit may have;
* a training reset (aggregate ``training``) -> first the positions held in memory of the
  units it names are forgotten (``GatewayPorts.units_reset``), then they are re-read;
* positions other workers published through the hub -> ``apply_position``;
* at start and after a hub outage (fixes published meanwhile are lost; each unit's newest
  is in the database) -> any unit may have changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from ws_gateway.events import Event
from ws_gateway.ports import GatewayPorts

log = structlog.get_logger("ws_gateway")

# The aggregate of a ``training.reset`` event (cad.training.reset): the agency reset.
TRAINING_AGGREGATE = "training"


def reset_units(events: list[Event]) -> set[str]:
    """The units named by the training resets among ``events``."""
    units: set[str] = set()
    for e in events:
        if e.aggregate_type == TRAINING_AGGREGATE:
            units.update(e.unit_ids)
    return units


class IndexUpkeep:
    def __init__(self, ports: GatewayPorts) -> None:
        self._units_changed = ports.units_changed
        self._units_reset = ports.units_reset
        self._apply_position = ports.apply_position

    def events_read(self, events: list[Event], reset: set[str]) -> None:
        """One call per batch the tailer read (one re-read per batch, not per event);
        ``reset``: the batch's reset_units, which the gateway has already taken out."""
        if reset:
            try:
                self._units_reset(reset)
            except Exception:
                log.exception("units_reset_hook_failed")
        named: set[str] = set()
        everything = False
        for e in events:
            if e.aggregate_type == "station" or (e.aggregate_type == "unit"
                                                 and e.aggregate_id == "*"):
                everything = True
                break
            if e.aggregate_type == "unit":
                named.add(e.aggregate_id)
            named.update(e.unit_ids)
        if everything or named:
            try:
                self._units_changed(None if everything else named)
            except Exception:  # the index catches up at the next change; fan-out goes on
                log.exception("units_changed_hook_failed")

    def any_unit_changed(self) -> None:
        self._units_changed(None)

    async def after_hub_reconnect(self) -> None:
        self.any_unit_changed()

    def apply_position(self, unit_id: str, lat: float, lon: float, fix_time: datetime) -> None:
        """This worker's accepted fix; routing trouble must not lose the fix."""
        try:
            self._apply_position(unit_id, lat, lon, fix_time)
        except Exception:
            log.exception("apply_position_failed", unit_id=unit_id)

    def shared_position(self, p: dict[str, Any]) -> None:
        """A position from the hub (``schemas.realtime.Position``), possibly another worker's."""
        try:
            fix_time = datetime.fromisoformat(p["fix_time"])
            self._apply_position(str(p["unit_id"]), float(p["lat"]), float(p["lon"]), fix_time)
        except Exception:  # noqa: BLE001 - a bad batch entry must not stop the fan-out
            log.debug("remote_fix_not_applied", unit_id=p.get("unit_id"))
