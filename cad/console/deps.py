"""What the console's endpoints need from the running app, provided by cad.wiring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cad.deps import wired
from cad.settings import Settings

# zoom -> the base map drawn at that zoom, as GeoJSON bytes (cached by the wiring).
RenderBaseMap = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True)
class ConsoleDeps:
    settings: Settings
    render_basemap: RenderBaseMap | None          # None: no road graph loaded
    bounds: tuple[float, float, float, float] | None  # west, south, east, north


console_deps = wired("console")
