"""Travel-time calibration from imported history: the recorded travel (en route -> on scene)
of units that left their own station for a call in their own first-due area, against the
road graph's ETA for the same trip; speed factors fitted per hour of day on the earlier part
of the history and judged on a held-out last week.

Trips: a unit whose call sign names its station (E39, T13 -> station 39, 13), dispatched first
to a call in that station's area: the one case where the history says where the trip started
(in quarters). Everything else is left out; how many is reported."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from routing.service import RoutingService

_CALL_SIGN = re.compile(r"^[ET](\d+)$")
MIN_TRIPS_PER_HOUR = 20      # fewer: the hour takes the overall factor
MAX_TRAVEL_S = 1800.0        # longer "travel" is a unit that stopped on the way


@dataclass(frozen=True)
class Trip:
    station: str
    lat: float
    lon: float
    hour: int
    received_at: datetime
    travel_s: float


@dataclass(frozen=True)
class ErrorStats:
    n: int
    median_abs_s: float
    p90_abs_s: float


@dataclass(frozen=True)
class Calibration:
    overall_factor: float
    hour_factors: dict[int, float]
    trips_considered: int
    trips_routed: int
    train_trips: int
    holdout_trips: int
    holdout_from: datetime
    errors: dict[str, ErrorStats]   # uncalibrated | overall | by_hour, on the held-out trips

    def as_json(self) -> dict[str, Any]:
        return {"overall_factor": self.overall_factor,
                "hour_factors": {str(h): f for h, f in sorted(self.hour_factors.items())},
                "trips_considered": self.trips_considered, "trips_routed": self.trips_routed,
                "train_trips": self.train_trips, "holdout_trips": self.holdout_trips,
                "holdout_from": self.holdout_from.isoformat(),
                "errors": {k: vars(v) for k, v in self.errors.items()}}


def read_stations(path: Path) -> dict[str, tuple[float, float]]:
    """station,address,lat,lon (the SFFD stations file's columns) -> {station: (lat, lon)}."""
    with open(path, newline="") as f:
        return {row["station"].strip(): (float(row["lat"]), float(row["lon"]))
                for row in csv.DictReader(f)}


async def load_trips(pool: asyncpg.Pool, *, agency: str | None, timezone: str) -> list[Trip]:
    rows = await pool.fetch(
        """SELECT r.unit_id, h.station, h.lat, h.lon, h.received_at,
                  extract(hour FROM h.received_at AT TIME ZONE $2)::int AS hour,
                  date_part('epoch', r.on_scene_at - r.en_route_at) AS travel_s
           FROM historical_unit_responses r JOIN historical_calls h ON h.id = r.call_id
           WHERE ($1::text IS NULL OR h.agency = $1) AND r.dispatch_seq = 1
             AND h.lat IS NOT NULL AND r.on_scene_at > r.en_route_at""", agency, timezone)
    trips = []
    for r in rows:
        m = _CALL_SIGN.match(r["unit_id"])
        if m is None or r["station"] is None or str(int(m.group(1))) != r["station"].lstrip("0"):
            continue
        if r["travel_s"] > MAX_TRAVEL_S:
            continue
        trips.append(Trip(str(int(m.group(1))), r["lat"], r["lon"], r["hour"], r["received_at"],
                          float(r["travel_s"])))
    return trips


def _errors(actual: np.ndarray, predicted: np.ndarray) -> ErrorStats:
    err = np.abs(actual - predicted)
    return ErrorStats(n=len(err), median_abs_s=round(float(np.median(err)), 1),
                      p90_abs_s=round(float(np.quantile(err, 0.9)), 1))


def calibrate(routing: RoutingService, trips: Sequence[Trip],
              stations: dict[str, tuple[float, float]], *, holdout_days: float = 7.0
              ) -> Calibration:
    """Fit factors (recorded travel / routed ETA; the median per hour of day, robust to the
    trips that did not start in quarters after all) on the trips before the last
    ``holdout_days`` and measure the ETA error on the held-out ones."""
    used = [t for t in trips if t.station in stations]
    if not used:
        raise ValueError("no trip from a known station: import history and give the stations")
    ids = sorted({t.station for t in used})
    for sid in ids:
        lat, lon = stations[sid]
        routing.upsert_unit(("calibration", sid), lat=lat, lon=lon)
    try:
        table = routing.eta_table(lat=[t.lat for t in used], lon=[t.lon for t in used],
                                  unit_ids=[("calibration", s) for s in ids])
    finally:
        for sid in ids:
            routing.remove_unit(("calibration", sid))
    row = {s: i for i, s in enumerate(ids)}
    eta = np.array([table.eta_s[row[t.station], j] for j, t in enumerate(used)])
    ok = np.isfinite(eta) & (eta > 0)
    routed = [t for t, good in zip(used, ok, strict=True) if good]
    eta = eta[ok]
    travel = np.array([t.travel_s for t in routed])
    hours = np.array([t.hour for t in routed])
    split = max(t.received_at for t in routed) - timedelta(days=holdout_days)
    hold = np.array([t.received_at > split for t in routed])
    train = ~hold
    if train.sum() < MIN_TRIPS_PER_HOUR or hold.sum() == 0:
        raise ValueError(f"too few trips to fit and test: {int(train.sum())} before and "
                         f"{int(hold.sum())} after {split.isoformat()}")
    ratio = travel[train] / eta[train]
    overall = float(np.median(ratio))
    hour_factors = {}
    for h in range(24):
        sel = hours[train] == h
        hour_factors[h] = (round(float(np.median(ratio[sel])), 4)
                           if sel.sum() >= MIN_TRIPS_PER_HOUR else round(overall, 4))
    per_hour = np.array([hour_factors[h] for h in hours[hold]])
    errors = {"uncalibrated": _errors(travel[hold], eta[hold]),
              "overall": _errors(travel[hold], eta[hold] * overall),
              "by_hour": _errors(travel[hold], eta[hold] * per_hour)}
    return Calibration(overall_factor=round(overall, 4), hour_factors=hour_factors,
                       trips_considered=len(trips), trips_routed=len(routed),
                       train_trips=int(train.sum()), holdout_trips=int(hold.sum()),
                       holdout_from=split, errors=errors)
