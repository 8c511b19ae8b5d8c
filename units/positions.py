"""Where AVL fixes and unit changes enter the dispatch side: called by ws_gateway for every
accepted fix (this worker's and, with a shared hub, every other worker's) and for every batch
of events from the event log."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


def _locator(app_state: Any) -> Any | None:
    return getattr(getattr(app_state, "services", None), "locator", None)


def apply_position(app_state: Any, unit_id: str, lat: float, lon: float, fix_time: datetime) -> None:
    locator = _locator(app_state)
    if locator is not None:
        locator.move(unit_id, lat, lon, fix_time)


def units_changed(app_state: Any, unit_ids: Iterable[str] | None) -> None:
    """Units named by committed events (None: all of them, e.g. a station moved)."""
    locator = _locator(app_state)
    if locator is not None:
        locator.schedule_refresh(unit_ids)
