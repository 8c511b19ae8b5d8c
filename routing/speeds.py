"""Response speeds per road class, and OSM ``maxspeed`` parsing.

The defaults are *emergency response* speeds in km/h: what a fire engine or
ambulance with lights can hold on a road of that class where no ``maxspeed`` is
tagged. They sit near the posted urban limits on purpose (heavy vehicles,
intersections taken slowly); calibrate against recorded en-route -> on-scene
times before replaying responses (see docs/routing.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# OSM highway=* classes kept for emergency vehicles ("drive" plus service roads).
OSM_SPEEDS_KMH: dict[str, float] = {
    "motorway": 90.0,
    "motorway_link": 50.0,
    "trunk": 80.0,
    "trunk_link": 45.0,
    "primary": 60.0,
    "primary_link": 40.0,
    "secondary": 50.0,
    "secondary_link": 35.0,
    "tertiary": 45.0,
    "tertiary_link": 30.0,
    "unclassified": 40.0,
    "residential": 30.0,
    "living_street": 15.0,
    "road": 30.0,
    "service": 20.0,
    "busway": 40.0,
}
OSM_FALLBACK_KMH = 30.0

# TIGER/Line MTFCC road classes that are drivable, with response speeds in km/h
# (the posted-speed assumptions of shared/data/road/README.md: 55, 30, 25, 35, 15, 10 mph).
TIGER_SPEEDS_KMH: dict[str, float] = {
    "S1100": 88.5,  # primary road (limited-access freeway)
    "S1200": 48.3,  # secondary road (arterial)
    "S1400": 40.2,  # local city street
    "S1630": 56.3,  # ramp
    "S1640": 24.1,  # service drive
    "S1730": 16.1,  # alley
}

# The default `cad graph build` multiplies TIGER travel times by: SFFD engines and trucks
# took 1.81x the posted-speed time from en route to on scene (median over 2,447 first-due
# responses of the shared 2016/17 and 2020 call files predicted at 60 s or more;
# benchmarks/eta_calibration.py, docs/routing.md "Speed models"). Rounded to 1.8.
TIGER_TIME_FACTOR = 1.8

MPH_TO_KMH = 1.609344
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph)?\s*$", re.IGNORECASE)


def parse_maxspeed_kmh(value: object) -> float | None:
    """Parse an OSM maxspeed tag; None when absent or not a number.

    Handles "50", "30 mph", "50;70" (first value), NaN and the string "nan" that
    pyrosm produces, and symbolic values ("RU:urban", "signals", "none") -> None.
    """
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value) or value <= 0:
            return None
        return float(value)
    text = str(value).split(";")[0].split("|")[0]
    m = _NUMBER.match(text)
    if not m:
        return None
    speed = float(m.group(1))
    if m.group(2) and m.group(2).lower() == "mph":
        speed *= MPH_TO_KMH
    return speed if speed > 0 else None


def merged_speeds(defaults: Mapping[str, float], overrides: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(defaults)
    for key, kmh in (overrides or {}).items():
        if not (kmh > 0 and math.isfinite(kmh)):
            raise ValueError(f"speed for {key!r} must be a positive number of km/h, got {kmh}")
        out[key] = float(kmh)
    return out


def parse_speed_overrides(items: list[str] | None) -> dict[str, float]:
    """CLI form ``class=kmh`` (e.g. ``residential=35``) -> dict."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"speed override must look like CLASS=KMH, got {item!r}")
        out[key.strip()] = float(val)
    return out
