"""Where AVL fixes enter the dispatch side (called by ws_gateway.avl for every accepted fix)."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def apply_position(app_state: Any, unit_id: str, lat: float, lon: float, fix_time: datetime) -> None:
    services = getattr(app_state, "services", None)
    locator = getattr(services, "locator", None) if services is not None else None
    if locator is not None:
        locator.move(unit_id, lat, lon, fix_time)
