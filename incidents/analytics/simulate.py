"""Replay of a historical calls file against a running server, through its public HTTP API as
a console would: each call is created at its (scaled) time and place, the recommendation is
taken and dispatched, the units report en route, on scene after the recommended ETA and
available again after the call's historical time on scene. A discrete-event loop on the
historical clock: with ``speedup`` 0 it runs as fast as the server answers (a load test whose
achieved speed-up is reported).

Not done here (docs/analytics.md): units driving their routed paths with 1 Hz positions over
the MDT websocket, and a trainee console's separate data."""

from __future__ import annotations

import asyncio
import heapq
import re
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from incidents.analytics.mapping import ColumnMapping
from incidents.analytics.parse import parse_calls
from incidents.analytics.service import read_text

_CALL_SIGN = re.compile(r"^[ET](\d+)$")
DEFAULT_ON_SCENE_S = 1200.0     # when the history has no on-scene -> available time


@dataclass(frozen=True)
class SimCall:
    number: str
    received_at: datetime
    lat: float
    lon: float
    first_unit: str | None          # the historical first-arriving unit
    travel_s: float | None          # its recorded en route -> on scene
    on_scene_s: float               # how long it stayed (on scene -> available), or the default
    call_type: str | None = None    # the source's call type
    incident_type: str = "OTHER"    # what the mapping's [incident_types] makes of it


@dataclass
class SimReport:
    calls: int = 0
    dispatched: int = 0
    not_dispatched: int = 0          # no unit available for the recommendation
    errors: list[str] = field(default_factory=list)
    recommended_eta_s: list[float] = field(default_factory=list)
    historical_travel_s: list[float] = field(default_factory=list)
    same_unit: list[tuple[float, float]] = field(default_factory=list)   # (ETA, recorded travel)
    simulated_s: float = 0.0
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, float | None]:
            if not values:
                return {"n": 0, "median_s": None, "p90_s": None}
            ordered = sorted(values)
            return {"n": len(values), "median_s": round(statistics.median(ordered), 1),
                    "p90_s": round(_quantile(ordered, 0.9), 1)}

        errors = [abs(e - t) for e, t in self.same_unit]
        return {"calls": self.calls, "dispatched": self.dispatched,
                "not_dispatched": self.not_dispatched, "errors": len(self.errors),
                "recommended_eta": pct(self.recommended_eta_s),
                "historical_first_travel": pct(self.historical_travel_s),
                "same_unit_abs_error": pct(errors),
                "simulated_s": round(self.simulated_s, 1), "wall_s": round(self.wall_s, 2),
                "achieved_speedup": (round(self.simulated_s / self.wall_s, 1)
                                     if self.wall_s > 0 else None)}


def _quantile(ordered: list[float], p: float) -> float:
    rank = p * (len(ordered) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def load_calls(path: Path, mapping: ColumnMapping, *, limit: int | None = None) -> list[SimCall]:
    """The file's calls in received order (the export is sorted by call number)."""
    with read_text(path) as text:
        parsed = parse_calls(text, mapping)
    by_call: dict[str, list[dict[str, Any]]] = {}
    for u in parsed.units:
        by_call.setdefault(u["call_number"], []).append(u)
    out = []
    for number, call in parsed.calls.items():
        if call["lat"] is None:
            continue
        arrived = [u for u in by_call.get(number, []) if u["on_scene_at"] is not None]
        first = min(arrived, key=lambda u: u["on_scene_at"]) if arrived else None
        travel = None
        on_scene = DEFAULT_ON_SCENE_S
        if first is not None:
            if first["en_route_at"] is not None and first["on_scene_at"] >= first["en_route_at"]:
                travel = (first["on_scene_at"] - first["en_route_at"]).total_seconds()
            if first["cleared_at"] is not None and first["cleared_at"] > first["on_scene_at"]:
                on_scene = (first["cleared_at"] - first["on_scene_at"]).total_seconds()
        out.append(SimCall(number, call["received_at"], call["lat"], call["lon"],
                           first["unit_id"] if first else None, travel, on_scene,
                           call["call_type"], mapping.incident_type(call["call_type"])))
    out.sort(key=lambda c: (c.received_at, c.number))
    return out[:limit] if limit is not None else out


def roster_from_calls(path: Path, mapping: ColumnMapping) -> set[str]:
    """Engines and trucks of the file whose call sign names their station (E39 -> 39)."""
    with read_text(path) as text:
        parsed = parse_calls(text, mapping)
    return {u["unit_id"] for u in parsed.units if _CALL_SIGN.match(u["unit_id"])}


def medics_from_calls(path: Path, mapping: ColumnMapping) -> dict[str, str]:
    """Medic units of the file (unit type MEDIC; their call signs name no station) -> the
    station area of the first call each answered, where the replay puts it in quarters."""
    with read_text(path) as text:
        parsed = parse_calls(text, mapping)
    out: dict[str, str] = {}
    for u in sorted(parsed.units, key=lambda u: (u["dispatched_at"] is None, u["dispatched_at"])):
        station = (parsed.calls.get(u["call_number"]) or {}).get("station")
        if (u["unit_type"] or "").upper() == "MEDIC" and station and u["unit_id"] not in out:
            out[u["unit_id"]] = str(int(station)) if station.isdigit() else station
    return out


async def setup_roster(client: httpx.AsyncClient, *, agency: str,
                       stations: dict[str, tuple[float, float]], units: Iterable[str],
                       medics: dict[str, str] | None = None) -> int:
    """Stations and their engines (E) and ladders (T), and ``medics`` (unit -> station) as
    ALS ambulances, available in quarters; existing ones are kept. Returns how many units
    were created."""
    for sid, (lat, lon) in sorted(stations.items()):
        r = await client.put(f"/api/v1/stations/S{sid}", json={
            "id": f"S{sid}", "agency": agency, "name": f"Station {sid}", "lat": lat, "lon": lon})
        r.raise_for_status()
    made = 0
    for unit in sorted(units):
        m = _CALL_SIGN.match(unit)
        if m is None or str(int(m.group(1))) not in stations:
            continue
        r = await client.post("/api/v1/units", json={
            "id": unit, "agency": agency, "discipline": "fire",
            "unit_type": "engine" if unit.startswith("E") else "ladder",
            "home_station": f"S{int(m.group(1))}", "status": "available_in_quarters"})
        if r.status_code == 201:
            made += 1
        elif r.status_code != 409:
            r.raise_for_status()
    for unit, sid in sorted((medics or {}).items()):
        if sid not in stations:
            continue
        r = await client.post("/api/v1/units", json={
            "id": unit, "agency": agency, "discipline": "ems", "unit_type": "medic_als",
            "home_station": f"S{sid}", "status": "available_in_quarters"})
        if r.status_code == 201:
            made += 1
        elif r.status_code != 409:
            r.raise_for_status()
    return made


async def replay(client: httpx.AsyncClient, calls: list[SimCall], *, agency: str,
                 speedup: float, incident_type: str | None = None,
                 progress: Callable[[int], None] | None = None) -> SimReport:
    """Drive the server with ``calls``: ``speedup`` historical seconds per wall second (0: no
    waiting at all). Each call is created with its mapped incident type (``SimCall.
    incident_type``), or ``incident_type`` for all when given."""
    report = SimReport()
    if not calls:
        return report
    t0 = calls[0].received_at
    # (simulated s, order, action, payload)
    queue: list[tuple[float, int, str, Any]] = [
        ((c.received_at - t0).total_seconds(), i, "call", c) for i, c in enumerate(calls)]
    heapq.heapify(queue)
    order = len(queue)
    wall0 = time.perf_counter()
    done = 0
    while queue:
        at, _, action, payload = heapq.heappop(queue)
        if speedup > 0:
            lag = at / speedup - (time.perf_counter() - wall0)
            if lag > 0:
                await asyncio.sleep(lag)
        report.simulated_s = at
        try:
            if action == "call":
                followups = await _call(client, payload, agency=agency,
                                        incident_type=incident_type, report=report)
                for delay, what, data in followups:
                    order += 1
                    heapq.heappush(queue, (at + delay, order, what, data))
                done += 1
                if progress is not None:
                    progress(done)
            else:
                r = await client.post(f"/api/v1/units/{payload}/status", json={"status": action})
                if r.status_code != 200:
                    report.errors.append(f"{payload} {action}: {r.status_code} {r.text[:120]}")
        except httpx.HTTPError as exc:
            report.errors.append(f"{action}: {type(exc).__name__}: {exc}")
    report.wall_s = time.perf_counter() - wall0
    return report


async def _call(client: httpx.AsyncClient, call: SimCall, *, agency: str,
                incident_type: str | None, report: SimReport) -> list[tuple[float, str, str]]:
    report.calls += 1
    r = await client.post("/api/v1/incidents", json={
        "agency": agency, "incident_type": incident_type or call.incident_type,
        "location": {"lat": call.lat, "lon": call.lon},
        "narrative": f"replay of call {call.number}"})
    if r.status_code != 201:
        report.errors.append(f"call {call.number}: create {r.status_code} {r.text[:120]}")
        return []
    incident_id = r.json()["id"]
    r = await client.post(f"/api/v1/incidents/{incident_id}/recommendation")
    if r.status_code != 201:
        report.errors.append(f"call {call.number}: recommend {r.status_code} {r.text[:120]}")
        return []
    rec = r.json()
    picks = rec["picks"]
    if not picks:
        report.not_dispatched += 1
        return []
    r = await client.post(f"/api/v1/incidents/{incident_id}/dispatch", json={
        "unit_ids": [p["unit_id"] for p in picks], "recommendation_id": rec["id"]})
    if r.status_code != 200:
        report.errors.append(f"call {call.number}: dispatch {r.status_code} {r.text[:120]}")
        return []
    report.dispatched += 1
    first = picks[0]
    report.recommended_eta_s.append(first["eta_s"])
    if call.travel_s is not None:
        report.historical_travel_s.append(call.travel_s)
        if first["unit_id"] == call.first_unit:
            report.same_unit.append((first["eta_s"], call.travel_s))
    followups = []
    for p in picks:
        r = await client.post(f"/api/v1/units/{p['unit_id']}/status", json={"status": "en_route"})
        if r.status_code != 200:
            report.errors.append(f"{p['unit_id']} en_route: {r.status_code} {r.text[:120]}")
            continue
        followups.append((p["eta_s"], "on_scene", p["unit_id"]))
        followups.append((p["eta_s"] + call.on_scene_s, "available_in_quarters", p["unit_id"]))
    return followups
