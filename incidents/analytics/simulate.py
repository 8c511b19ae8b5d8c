"""Replay of a historical calls file against a running server, through its public HTTP API as
a console would: each call is created at its (scaled) time and place, the recommendation is
taken and dispatched, the units report en route, on scene after the recommended ETA and
available again after the call's historical time on scene. A discrete-event loop on the
historical clock: with ``speedup`` 0 it runs as fast as the server answers (a load test whose
achieved speed-up is reported).

With a ``Driver`` the units drive: once en route, each unit's routed path is fetched
(``GET /units/{id}/route-to``, as an MDT's navigation would) and the unit sends a position for
every simulated second of the predicted ETA over its own MDT websocket (``/ws/unit/{id}``,
a field-unit account per unit), until on scene; fixes due within one wall tick go as one
``positions`` message.

Training mode (``training_target``, ``copy_roster``): the replay goes into a training agency
(``CAD_TRAINING_AGENCIES``, read from the server's ``/auth/me``), whose boards are the
trainees'; its stations and units are copies of the real agency's roster (ids prefixed
``TR-``, ids being global). Replaying into a real agency must be forced."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import secrets
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from incidents.analytics.mapping import ColumnMapping
from incidents.analytics.parse import parse_calls
from incidents.analytics.service import read_text

_CALL_SIGN = re.compile(r"^[ET](\d+)$")
DEFAULT_ON_SCENE_S = 1200.0     # when the history has no on-scene -> available time
TRAINING_PREFIX = "TR-"         # a training copy's station and unit ids (ids are global)


class TargetRefused(Exception):
    """The replay's agency is not acceptable (a real agency without ``force``, or no training
    agency to replay into)."""


async def training_target(client: httpx.AsyncClient, *, agency: str | None, default: str,
                          training: bool, force: bool) -> tuple[str, bool]:
    """(agency to replay into, whether it is a training agency). ``agency`` named: used as
    given, refused when it is a real agency unless ``force`` (and always with ``training``).
    Not named: with ``training`` the server's one training agency, else ``default`` (the
    mapping's), which must then be a training agency or forced."""
    r = await client.get("/api/v1/auth/me")
    r.raise_for_status()
    configured = list(r.json().get("training_agencies") or [])
    if agency is None and training:
        if len(configured) != 1:
            raise TargetRefused(
                "--training needs --agency naming one of the server's training agencies "
                f"(CAD_TRAINING_AGENCIES: {', '.join(configured) or 'none'})")
        return configured[0], True
    who = agency or default
    if who in configured:
        return who, True
    if training:
        raise TargetRefused(f"{who} is not a training agency of this server "
                            f"(CAD_TRAINING_AGENCIES: {', '.join(configured) or 'none'})")
    if not force:
        raise TargetRefused(f"refusing to replay into the real agency {who}: its dispatchers "
                            "would see the calls; use --training (a training agency) or --force")
    return who, False


async def copy_roster(client: httpx.AsyncClient, *, source: str, target: str,
                      prefix: str = TRAINING_PREFIX) -> int:
    """The real agency's stations and active units copied into the training agency, ids
    prefixed, every unit available in quarters; copies made before are kept. Returns how
    many units were created. The account needs to read ``source`` and write ``target``."""
    r = await client.get("/api/v1/stations")
    r.raise_for_status()
    stations = [s for s in r.json() if s["agency"] == source]
    for s in stations:
        r = await client.put(f"/api/v1/stations/{prefix}{s['id']}", json={
            "id": f"{prefix}{s['id']}", "agency": target, "name": f"{s['name']} (training)",
            "address": s["address"], "lat": s["lat"], "lon": s["lon"]})
        r.raise_for_status()
    r = await client.get("/api/v1/units", params={"agency": source})
    r.raise_for_status()
    made = 0
    for u in r.json():
        if u["agency"] != source or u["id"].startswith(prefix):
            continue
        r = await client.post("/api/v1/units", json={
            "id": f"{prefix}{u['id']}", "agency": target, "discipline": u["discipline"],
            "unit_type": u["unit_type"], "capabilities": u["capabilities"],
            "home_station": f"{prefix}{u['home_station']}" if u["home_station"] else None,
            "staffing": u["staffing"], "status": "available_in_quarters"})
        if r.status_code == 201:
            made += 1
        elif r.status_code != 409:
            r.raise_for_status()
    return made


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
    fixes_sent: int = 0
    fix_messages: int = 0
    fix_problems: int = 0            # fixes the server refused (position_result problems)
    fixes_accepted: int = 0

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
                "fixes_sent": self.fixes_sent, "fix_messages": self.fix_messages,
                "fix_problems": self.fix_problems, "fixes_accepted": self.fixes_accepted,
                "simulated_s": round(self.simulated_s, 1), "wall_s": round(self.wall_s, 2),
                "achieved_speedup": (round(self.simulated_s / self.wall_s, 1)
                                     if self.wall_s > 0 else None)}


def _quantile(ordered: list[float], p: float) -> float:
    rank = p * (len(ordered) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def along(coords: list[list[float]], fraction: float) -> tuple[float, float]:
    """The (lat, lon) at ``fraction`` (0-1) of a [lon, lat] polyline's length (planar lengths
    with the longitude scaled by cos(latitude): paths are a few km)."""
    if len(coords) == 1:
        return coords[0][1], coords[0][0]
    k = math.cos(math.radians(coords[0][1]))
    seg = [math.hypot((b[0] - a[0]) * k, b[1] - a[1]) for a, b in itertools.pairwise(coords)]
    target = max(0.0, min(1.0, fraction)) * sum(seg)
    for (a, b), d in zip(itertools.pairwise(coords), seg):
        if target <= d and d > 0:
            f = target / d
            return a[1] + (b[1] - a[1]) * f, a[0] + (b[0] - a[0]) * f
        target -= d
    return coords[-1][1], coords[-1][0]


class Driver:
    """The units' MDTs: one field-unit account, device token and websocket per unit, opened on
    its first drive. Needs an admin client (to create the accounts
    ``sim-mdt-<unit>-<random>``)."""

    def __init__(self, admin: httpx.AsyncClient, *, ws_url: str, tick_s: float = 0.1) -> None:
        self.admin = admin
        self.ws_url = ws_url.rstrip("/")
        self.tick_s = tick_s
        self._ws: dict[str, Any] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._last_send: dict[str, float] = {}
        self._last_fix: dict[str, datetime] = {}
        self._report: SimReport | None = None
        self._sent: dict[str, int] = {}      # messages sent per unit (their ref numbers)
        self._acked: dict[str, int] = {}     # the newest ref the server answered per unit
        self._answered = asyncio.Event()

    async def _socket(self, unit: str) -> Any:
        ws = self._ws.get(unit)
        if ws is None:
            name, pw = f"sim-mdt-{unit}-{secrets.token_hex(3)}", secrets.token_urlsafe(18)
            r = await self.admin.post("/api/v1/users", json={
                "username": name, "password": pw, "role": "field_unit", "unit_id": unit})
            r.raise_for_status()
            # An MDT device token for it (as a real MDT is configured; logging in once per
            # unit would also run into the login rate limit).
            r = await self.admin.post("/api/v1/devices", json={
                "user_id": r.json()["id"], "label": "cad simulate"})
            r.raise_for_status()
            ws = await websockets.connect(
                f"{self.ws_url}/ws/unit/{unit}",
                additional_headers={"Authorization": f"Bearer {r.json()['token']}"},
                compression=None, max_size=2**24)
            self._ws[unit] = ws
            self._readers.append(asyncio.create_task(self._drain(unit, ws)))
        return ws

    async def _drain(self, unit: str, ws: Any) -> None:
        """Read what the server sends the MDT (snapshot, batches); count accepted and refused
        fixes from the answers to our messages (each carries a ref)."""
        try:
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg.get("type") == "position_result" and self._report is not None:
                    self._report.fix_problems += len(msg.get("problems") or [])
                    self._report.fixes_accepted += int(msg.get("accepted") or 0)
                    ref = str(msg.get("ref") or "")
                    if ref.isdigit():
                        self._acked[unit] = max(self._acked.get(unit, 0), int(ref))
                        self._answered.set()
        except websockets.ConnectionClosed:
            pass

    async def fix(self, unit: str, lat: float, lon: float, report: SimReport,
                  fix_time: datetime | None = None) -> None:
        """One position, taken at ``fix_time`` (default now; kept strictly after the unit's
        previous fix); sent with the others due when a wall tick has passed since the unit's
        last message."""
        self._report = report
        now = fix_time or datetime.now(UTC)
        last = self._last_fix.get(unit)
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1000)
        self._last_fix[unit] = now
        self._pending.setdefault(unit, []).append(
            {"lat": round(lat, 6), "lon": round(lon, 6), "fix_time": now.isoformat()})
        if time.perf_counter() - self._last_send.get(unit, 0.0) >= self.tick_s:
            await self.flush(unit, report)

    async def flush(self, unit: str, report: SimReport) -> None:
        fixes = self._pending.pop(unit, [])
        if not fixes:
            return
        ws = await self._socket(unit)
        n = self._sent[unit] = self._sent.get(unit, 0) + 1
        await ws.send(orjson.dumps({"type": "positions", "fixes": fixes, "ref": str(n)}).decode())
        self._last_send[unit] = time.perf_counter()
        report.fixes_sent += len(fixes)
        report.fix_messages += 1

    async def close(self, report: SimReport, *, timeout_s: float = 10.0) -> None:
        """Send what is pending, wait until the server has answered every message (so every
        fix was handled), then close the sockets."""
        for unit in list(self._pending):
            await self.flush(unit, report)
        deadline = time.perf_counter() + timeout_s
        while any(self._acked.get(u, 0) < n for u, n in self._sent.items()):
            self._answered.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                report.errors.append("MDT sockets: not every position message was answered")
                break
            try:
                await asyncio.wait_for(self._answered.wait(), left)
            except TimeoutError:
                pass
        for ws in self._ws.values():
            await ws.close()
        for task in self._readers:
            await task


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
                       medics: dict[str, str] | None = None, prefix: str = "") -> int:
    """Stations and their engines (E) and ladders (T), and ``medics`` (unit -> station) as
    ALS ambulances, available in quarters; existing ones are kept. Returns how many units
    were created. ``prefix``: before every id (a training agency's copy)."""
    for sid, (lat, lon) in sorted(stations.items()):
        r = await client.put(f"/api/v1/stations/{prefix}S{sid}", json={
            "id": f"{prefix}S{sid}", "agency": agency, "name": f"Station {sid}", "lat": lat,
            "lon": lon})
        r.raise_for_status()
    made = 0
    for unit in sorted(units):
        m = _CALL_SIGN.match(unit)
        if m is None or str(int(m.group(1))) not in stations:
            continue
        r = await client.post("/api/v1/units", json={
            "id": f"{prefix}{unit}", "agency": agency, "discipline": "fire",
            "unit_type": "engine" if unit.startswith("E") else "ladder",
            "home_station": f"{prefix}S{int(m.group(1))}", "status": "available_in_quarters"})
        if r.status_code == 201:
            made += 1
        elif r.status_code != 409:
            r.raise_for_status()
    for unit, sid in sorted((medics or {}).items()):
        if sid not in stations:
            continue
        r = await client.post("/api/v1/units", json={
            "id": f"{prefix}{unit}", "agency": agency, "discipline": "ems", "unit_type": "medic_als",
            "home_station": f"{prefix}S{sid}", "status": "available_in_quarters"})
        if r.status_code == 201:
            made += 1
        elif r.status_code != 409:
            r.raise_for_status()
    return made


async def replay(client: httpx.AsyncClient, calls: list[SimCall], *, agency: str,
                 speedup: float, incident_type: str | None = None,
                 progress: Callable[[int], None] | None = None,
                 driver: Driver | None = None, unit_prefix: str = "") -> SimReport:
    """Drive the server with ``calls``: ``speedup`` historical seconds per wall second (0: no
    waiting at all). Each call is created with its mapped incident type (``SimCall.
    incident_type``), or ``incident_type`` for all when given. ``unit_prefix``: the roster
    is a training copy (``copy_roster``), whose unit ``TR-E01`` is the history's ``E01``."""
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
    start = datetime.now(UTC)
    done = 0
    driving: set[str] = set()
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
                                        incident_type=incident_type, report=report,
                                        driver=driver, unit_prefix=unit_prefix)
                for delay, what, data in followups:
                    order += 1
                    heapq.heappush(queue, (at + delay, order, what, data))
                    if what == "fix":
                        driving.add(data[0])
                done += 1
                if progress is not None:
                    progress(done)
            elif action == "fix":
                assert driver is not None
                unit, lat, lon = payload
                if unit in driving:
                    # Taken when the schedule says (the wall time of this simulated second),
                    # even when the replay runs behind: the track keeps its 1 Hz spacing.
                    await driver.fix(unit, lat, lon, report, fix_time=(
                        start + timedelta(seconds=at / speedup) if speedup > 0 else None))
            else:
                if driver is not None and action == "on_scene":
                    await driver.flush(payload, report)   # the last fixes before the status
                    driving.discard(payload)
                r = await client.post(f"/api/v1/units/{payload}/status", json={"status": action})
                if r.status_code != 200:
                    report.errors.append(f"{payload} {action}: {r.status_code} {r.text[:120]}")
        except (httpx.HTTPError, websockets.WebSocketException, OSError) as exc:
            report.errors.append(f"{action}: {type(exc).__name__}: {exc}")
    if driver is not None:
        await driver.close(report)
    report.wall_s = time.perf_counter() - wall0
    return report


async def _call(client: httpx.AsyncClient, call: SimCall, *, agency: str,
                incident_type: str | None, report: SimReport,
                driver: Driver | None = None, unit_prefix: str = "") -> list[tuple[float, str, Any]]:
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
        if first["unit_id"].removeprefix(unit_prefix) == call.first_unit:
            report.same_unit.append((first["eta_s"], call.travel_s))
    followups: list[tuple[float, str, Any]] = []
    for p in picks:
        r = await client.post(f"/api/v1/units/{p['unit_id']}/status", json={"status": "en_route"})
        if r.status_code != 200:
            report.errors.append(f"{p['unit_id']} en_route: {r.status_code} {r.text[:120]}")
            continue
        if driver is not None:
            r = await client.get(f"/api/v1/units/{p['unit_id']}/route-to",
                                 params={"lat": call.lat, "lon": call.lon})
            if r.status_code != 200:
                report.errors.append(f"{p['unit_id']} route: {r.status_code} {r.text[:120]}")
            else:
                coords = r.json()["coordinates"]
                # 1 Hz along the path over the predicted ETA; the last fix is the scene.
                for k in range(1, int(p["eta_s"]) + 1):
                    lat, lon = along(coords, k / p["eta_s"])
                    followups.append((float(k), "fix", (p["unit_id"], lat, lon)))
        followups.append((p["eta_s"], "on_scene", p["unit_id"]))
        followups.append((p["eta_s"] + call.on_scene_s, "available_in_quarters", p["unit_id"]))
    return followups
