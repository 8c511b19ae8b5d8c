"""Travel-time calibration from imported history: the recorded travel (en route -> on scene)
of units that left their own station for a call in their own first-due area, against the
road graph's ETA for the same trip; speed factors fitted per hour of day on the earlier part
of the history and judged on a held-out last week.

Trips: a unit whose call sign names its station (E39, T13 -> station 39, 13), dispatched first
to a call in that station's area: the one case where the history says where the trip started
(in quarters). Everything else is left out; how many is reported.

Per road class: each routed trip's ETA is split by road class (RoutingService.route_class_times);
factors per class are fitted by a robust (least absolute deviation, iteratively reweighted)
regression of recorded travel on the class times, pulled towards the overall factor where a
class has little driving; a multiplier per hour of day on top gives factors per road class and
hour (class factor x hour multiplier). ``with_class_factors`` (routing/) turns the class factors
into a graph; the hour multipliers then go to CAD_ETA_HOUR_FACTORS."""

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
CLASS_PRIOR_WEIGHT = 0.05    # pull of the overall factor on each class factor (share of the mean
                             # diagonal of the weighted normal equations)
FACTOR_BOUNDS = (0.25, 4.0)  # class factors stay within these multiples of the overall factor


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
    # uncalibrated | overall | by_hour | by_class | by_class_hour, on the held-out trips
    errors: dict[str, ErrorStats]
    class_factors: dict[str, float]           # per road class, all hours
    class_hour_multipliers: dict[int, float]  # per hour, on top of the class factors
    class_time_share: dict[str, float]        # share of the routed time on each class (train)

    def class_hour_factors(self) -> dict[str, dict[int, float]]:
        return {c: {h: round(f * m, 4) for h, m in sorted(self.class_hour_multipliers.items())}
                for c, f in sorted(self.class_factors.items())}

    def as_json(self) -> dict[str, Any]:
        return {"overall_factor": self.overall_factor,
                "hour_factors": {str(h): f for h, f in sorted(self.hour_factors.items())},
                "class_factors": dict(sorted(self.class_factors.items())),
                "class_hour_multipliers": {str(h): f for h, f in
                                           sorted(self.class_hour_multipliers.items())},
                "class_hour_factors": {c: {str(h): f for h, f in hours.items()}
                                       for c, hours in self.class_hour_factors().items()},
                "class_time_share": dict(sorted(self.class_time_share.items())),
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


def fit_class_factors(times: np.ndarray, travel: np.ndarray, *, prior: float) -> np.ndarray:
    """Factors f (one per column of ``times``, seconds per road class) minimising
    sum |travel - times @ f| (iteratively reweighted least squares), each pulled towards
    ``prior`` with a small ridge weight and kept within FACTOR_BOUNDS x prior."""
    k = times.shape[1]
    f = np.full(k, prior)
    lo, hi = FACTOR_BOUNDS[0] * prior, FACTOR_BOUNDS[1] * prior
    for _ in range(50):
        w = 1.0 / np.maximum(np.abs(travel - times @ f), 10.0)
        a = times.T @ (w[:, None] * times)
        lam = CLASS_PRIOR_WEIGHT * float(np.mean(np.diag(a))) + 1e-12
        new = np.clip(np.linalg.solve(a + lam * np.eye(k), times.T @ (w * travel) + lam * prior),
                      lo, hi)
        if np.max(np.abs(new - f)) < 1e-5:
            return new
        f = new
    return f


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
    classes = list(routing.graph.class_names)
    try:
        table = routing.eta_table(lat=[t.lat for t in used], lon=[t.lon for t in used],
                                  unit_ids=[("calibration", s) for s in ids])
        row = {s: i for i, s in enumerate(ids)}
        eta = np.array([table.eta_s[row[t.station], j] for j, t in enumerate(used)])
        ok = np.isfinite(eta) & (eta > 0)
        by_class = np.zeros((int(ok.sum()), len(classes)))
        for i, t in enumerate(u for u, good in zip(used, ok, strict=True) if good):
            parts = routing.route_class_times(("calibration", t.station), lat=t.lat, lon=t.lon)
            for name, sec in parts.class_time_s.items():
                by_class[i, classes.index(name)] = sec
    finally:
        for sid in ids:
            routing.remove_unit(("calibration", sid))
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
    # Per road class (on the class times, which sum to each trip's ETA), then per hour on top.
    used_cols = by_class[train].sum(axis=0) > 0
    fit = fit_class_factors(by_class[train][:, used_cols], travel[train], prior=overall)
    factors = np.full(len(classes), overall)
    factors[used_cols] = fit
    class_eta = by_class @ factors
    class_ratio = travel[train] / class_eta[train]
    multipliers = {}
    for h in range(24):
        sel = hours[train] == h
        multipliers[h] = (round(float(np.median(class_ratio[sel])), 4)
                          if sel.sum() >= MIN_TRIPS_PER_HOUR else 1.0)
    per_class_hour = np.array([multipliers[h] for h in hours[hold]])
    total = float(by_class[train].sum())
    errors = {"uncalibrated": _errors(travel[hold], eta[hold]),
              "overall": _errors(travel[hold], eta[hold] * overall),
              "by_hour": _errors(travel[hold], eta[hold] * per_hour),
              "by_class": _errors(travel[hold], class_eta[hold]),
              "by_class_hour": _errors(travel[hold], class_eta[hold] * per_class_hour)}
    return Calibration(overall_factor=round(overall, 4), hour_factors=hour_factors,
                       trips_considered=len(trips), trips_routed=len(routed),
                       train_trips=int(train.sum()), holdout_trips=int(hold.sum()),
                       holdout_from=split, errors=errors,
                       class_factors={c: round(float(factors[i]), 4)
                                      for i, c in enumerate(classes) if used_cols[i]},
                       class_hour_multipliers=multipliers,
                       class_time_share={c: round(float(by_class[train][:, i].sum()) / total, 4)
                                         for i, c in enumerate(classes) if used_cols[i]})
