"""Wire shapes of the console's endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Out


class ConsoleConfig(Out):
    """What the console needs to draw its map before it reads anything else."""

    tile_url: str | None = Field(description="External raster tile server (``{z}/{x}/{y}`` "
                                 "template) when one is configured; else the base map is drawn "
                                 "from the road graph (GET /api/v1/basemap).")
    tile_attribution: str
    basemap: bool = Field(description="The app serves a base map drawn from its road graph.")
    bounds: tuple[float, float, float, float] | None = Field(
        description="west, south, east, north of the road graph")
    basemap_zoom_bands: list[int] = Field(description="Zooms at which the base map changes detail.")
    libraries: dict[str, str] = Field(description="Browser libraries served, with versions.")


class BaseMapProperties(Out):
    tier: Literal["major", "collector", "local"]
    zoom: int = Field(description="The first zoom of the band this feature was drawn for.")


class BaseMapGeometry(Out):
    type: Literal["MultiLineString"]
    coordinates: list[list[tuple[float, float]]] = Field(description="lon, lat pairs")


class BaseMapFeature(Out):
    type: Literal["Feature"]
    properties: BaseMapProperties
    geometry: BaseMapGeometry


class BaseMap(Out):
    """GeoJSON FeatureCollection: the road network, simplified for the zoom asked."""

    type: Literal["FeatureCollection"]
    features: list[BaseMapFeature]
