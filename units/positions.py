"""Where AVL fixes and unit changes enter the dispatch side: called by ws_gateway for every
accepted fix (this worker's and, with a shared hub, every other worker's) and for every batch
of events from the event log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


def apply_position(app_state: Any, unit_id: str, lat: float, lon: float, fix_time: datetime) -> None:
    services = getattr(app_state, "services", None)
    locator = getattr(services, "locator", None) if services is not None else None
    if locator is not None:
        locator.move(unit_id, lat, lon, fix_time)


def units_changed(app_state: Any, unit_ids: Iterable[str] | None) -> None:
    """Units named by committed events (None: all of them, e.g. a station moved)."""
    services = getattr(app_state, "services", None)
    locator = getattr(services, "locator", None) if services is not None else None
    if locator is not None:
        locator.schedule_refresh(unit_ids)
