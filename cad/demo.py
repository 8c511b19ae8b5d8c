"""`cad demo`: from a fresh install to a live board in one command (README, "Five minutes").

Builds the San Francisco road graph from the shared sample data (once), serves the app with
it, loads the SFFD stations and a unit per station through the public API, makes a
dispatcher, a supervisor and an admin with fresh random passwords (printed once; there are
no default passwords), and drives a small simulated fleet: field units with MDT device
tokens that report positions over their websockets as they drive along the road graph, so
the board is alive. A wiring-level module (like cad.cli): it may import routing.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import uvicorn
import websockets
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

from cad.settings import REPO_ROOT, Settings
from routing.graph import RoadGraph

log = structlog.get_logger("cad.demo")
out = Console(highlight=False)

GRAPH_SOURCE = "road/tl_2017_06075_roads.zip"
STATIONS_SOURCE = "calls/sffd_fire_stations.csv"
AGENCY = "SFFD"
FIX_INTERVAL_S = 1.0
# City driving for the simulated fleet (TIGER San Francisco runs local streets at 40 km/h).
FLEET_SPEED_MPS = 11.0


def default_shared_dir() -> Path:
    return REPO_ROOT.parent / "shared" / "data"


def build_graph(shared: Path, out_path: Path) -> Path:
    """The sample graph, built once with `cad graph build` (which shows its own progress)."""
    if out_path.exists():
        return out_path
    src = shared / GRAPH_SOURCE
    if not src.exists():
        raise FileNotFoundError(f"{src} is absent: pass --shared-data (the folder holding road/ "
                                "and calls/)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "cad", "graph", "build", str(src), "--out",
                    str(out_path)], check=True)
    return out_path


@dataclass
class Http:
    base_url: str
    token: str | None = None

    def call(self, method: str, path: str, body: Any = None, *,
             content_type: str = "application/json") -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", content_type)
        if self.token:
            req.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None

    async def acall(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await asyncio.to_thread(self.call, method, path, body, **kw)


async def ensure_admin(settings: Settings, database_url: str, password: str) -> None:
    """The demo's admin, made (or its password reset) straight through cad.security, as
    `cad users create` does: the one account the API cannot make for itself."""
    from cad import db
    from cad.security import repository, service
    from cad.security.runtime import SecurityRuntime
    from cad.security.scope import Scope
    from cad.uow import RequestContext

    rt = SecurityRuntime.build(settings)
    ctx = RequestContext(actor="cli:demo", source="system")
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            existing = await repository.user_by_username(conn, "demo-admin")
        if existing is None:
            await service.create_user(rt=rt, pool=pool, ctx=ctx, username="demo-admin",
                                      password=password, role="admin", unit_id=None,
                                      agencies=None, display_name="Demo admin", scope=Scope.ALL)
        else:
            await service.update_user(rt=rt, pool=pool, ctx=ctx, scope=Scope.ALL,
                                      user_id=str(existing["id"]),
                                      changes={"password": password})
    finally:
        await pool.close()


async def ensure_user(api: Http, username: str, password: str, role: str,
                      unit_id: str | None = None) -> str:
    """A user of the demo agency with ``password`` (made, or its password reset); its id."""
    body: dict[str, Any] = {"username": username, "password": password, "role": role,
                            "agencies": [AGENCY]}
    if unit_id:
        body["unit_id"] = unit_id
    code, user = await api.acall("POST", "/api/v1/users", body)
    if code == 409:
        code, users = await api.acall("GET", f"/api/v1/users?role={role}")
        user = next(u for u in users if u["username"] == username)
        code, user = await api.acall("PATCH", f"/api/v1/users/{user['id']}",
                                     {"password": password, "unlock": True})
    if code >= 300:
        raise RuntimeError(f"user {username}: {code} {user}")
    return str(user["id"])


def stations_csv(path: Path) -> tuple[str, list[dict[str, str]]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["station,name,address,lat,lon"]
    for r in rows:
        lines.append(f"{r['station']},Station {r['station']},\"{r['address']}\",{r['lat']},{r['lon']}")
    return "\n".join(lines) + "\n", rows


async def seed(api: Http, shared: Path) -> list[str]:
    """Stations and units: an engine at every station, a medic at every third. The unit ids."""
    body, stations = stations_csv(shared / STATIONS_SOURCE)
    code, answer = await api.acall("POST", f"/api/v1/stations/import?agency={AGENCY}", body,
                                   content_type="text/csv")
    if code != 200:
        raise RuntimeError(f"stations import: {code} {answer}")
    units: list[str] = []
    for k, st in enumerate(stations):
        n = int(st["station"])
        for unit_id, unit_type, discipline in [(f"E{n:02d}", "engine", "fire")] + (
                [(f"M{n + 50:02d}", "medic_als", "ems")] if k % 3 == 0 else []):
            code, answer = await api.acall("POST", "/api/v1/units", {
                "id": unit_id, "agency": AGENCY, "discipline": discipline, "unit_type": unit_type,
                "home_station": st["station"], "status": "available_in_quarters"})
            if code not in (201, 409):
                raise RuntimeError(f"unit {unit_id}: {code} {answer}")
            units.append(unit_id)
    return units


class Drive:
    """A random drive along the graph's edges: the position every ``step(dt)``."""

    def __init__(self, graph: RoadGraph, rng: random.Random, lat: float, lon: float) -> None:
        self.g = graph
        self.rng = rng
        d2 = (np.asarray(graph.node_lat) - lat) ** 2 + (np.asarray(graph.node_lon) - lon) ** 2
        self.node = int(np.argmin(d2))
        self.edge = self._next_edge()
        self.done_m = 0.0

    def _next_edge(self) -> int:
        lo, hi = int(self.g.fwd_indptr[self.node]), int(self.g.fwd_indptr[self.node + 1])
        if hi == lo:   # a dead end one way: jump to a random node
            self.node = self.rng.randrange(self.g.n_nodes)
            return self._next_edge()
        return self.rng.randrange(lo, hi)

    def step(self, dt_s: float) -> tuple[float, float]:
        self.done_m += FLEET_SPEED_MPS * dt_s
        while self.done_m >= float(self.g.edge_length_m[self.edge]):
            self.done_m -= float(self.g.edge_length_m[self.edge])
            self.node = int(self.g.fwd_head[self.edge])
            self.edge = self._next_edge()
        a, b = int(self.g.edge_tail[self.edge]), int(self.g.fwd_head[self.edge])
        f = self.done_m / max(float(self.g.edge_length_m[self.edge]), 1e-6)
        lat = float(self.g.node_lat[a]) + f * (float(self.g.node_lat[b]) - float(self.g.node_lat[a]))
        lon = float(self.g.node_lon[a]) + f * (float(self.g.node_lon[b]) - float(self.g.node_lon[a]))
        return lat, lon


async def drive_unit(ws_url: str, unit_id: str, token: str, drive: Drive,
                     stop: asyncio.Event) -> None:
    """One simulated MDT: a position frame every second, reconnecting when the link drops."""
    url = f"{ws_url}/ws/unit/{unit_id}?access_token={token}"
    while not stop.is_set():
        try:
            async with websockets.connect(url) as ws:
                while not stop.is_set():
                    lat, lon = drive.step(FIX_INTERVAL_S)
                    await ws.send(json.dumps({"type": "position", "lat": lat, "lon": lon,
                                              "fix_time": datetime.now(UTC).isoformat(),
                                              "speed_mps": FLEET_SPEED_MPS}))
                    with_timeout = asyncio.create_task(stop.wait())
                    await asyncio.wait({with_timeout}, timeout=FIX_INTERVAL_S)
                    with_timeout.cancel()
        except (OSError, websockets.WebSocketException) as exc:
            log.info("demo_unit_reconnecting", unit_id=unit_id, error=str(exc))
            await asyncio.wait({asyncio.create_task(stop.wait())}, timeout=2.0)


@dataclass(frozen=True)
class DemoInfo:
    base_url: str
    passwords: dict[str, str]    # role -> password of demo-<role>
    units: list[str]
    fleet: list[str]             # units driving with simulated MDTs


async def run(settings: Settings, *, database_url: str, shared: Path, fleet: int,
              until: asyncio.Event | None = None,
              on_ready: Callable[[DemoInfo], None] | None = None) -> DemoInfo:
    """Serve and drive the fleet until the server stops (Ctrl+C) or ``until`` is set."""
    from cad.app import create_app

    password = {role: secrets.token_urlsafe(12) for role in ("admin", "dispatcher", "supervisor")}
    await ensure_admin(settings, database_url, password["admin"])
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port,
                                           log_config=None, access_log=False,
                                           ws_per_message_deflate=False))
    serving = asyncio.create_task(server.serve())
    base = f"http://{settings.host}:{settings.port}"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=out,
                  transient=True) as progress:
        task = progress.add_task("starting the server (routing kernels, graph)", total=None)
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the server did not start")
            await asyncio.wait({serving}, timeout=0.1)
        admin = Http(base)
        code, tokens = await admin.acall("POST", "/api/v1/auth/login",
                                         {"username": "demo-admin", "password": password["admin"]})
        if code != 200:
            raise RuntimeError(f"demo admin login: {code} {tokens}")
        admin.token = tokens["access_token"]
        progress.update(task, description="loading stations and units")
        units = await seed(admin, shared)
        progress.update(task, description="making users and MDT device tokens")
        await ensure_user(admin, "demo-dispatcher", password["dispatcher"], "dispatcher")
        await ensure_user(admin, "demo-supervisor", password["supervisor"], "supervisor")
        stations = {r["station"]: r for r in stations_csv(shared / STATIONS_SOURCE)[1]}
        rng = random.Random(7)
        drivers: list[tuple[str, str, Drive]] = []
        graph = RoadGraph.load(settings.graph_path) if settings.graph_path else None
        for unit_id in [u for u in units if u.startswith("E")][:fleet]:
            if graph is None:
                break
            user_id = await ensure_user(admin, f"demo-mdt-{unit_id.lower()}",
                                        secrets.token_urlsafe(16), "field_unit", unit_id=unit_id)
            code, device = await admin.acall("POST", "/api/v1/devices",
                                             {"user_id": user_id, "label": f"demo {unit_id}",
                                              "expires_in_days": 1})
            if code != 201:
                raise RuntimeError(f"device for {unit_id}: {code} {device}")
            await admin.acall("POST", f"/api/v1/units/{unit_id}/status",
                              {"status": "available_on_radio"})
            st = stations[str(int(unit_id[1:]))]
            drivers.append((unit_id, device["token"],
                            Drive(graph, rng, float(st["lat"]), float(st["lon"]))))
    out.print(f"\n[bold]The console is at {base}/[/bold]  (API docs: {base}/docs)\n")
    out.print("Sign in as (passwords are new on every run):")
    for role in ("dispatcher", "supervisor", "admin"):
        out.print(f"  {role:<11} demo-{role:<11} {password[role]}")
    out.print(f"\n{len(units)} units at {len(stations)} stations; {len(drivers)} of them driving "
              "(simulated MDTs). Try: new call at 'Market St & 5th St', then Enter to dispatch.")
    out.print("Ctrl+C stops the demo.")
    stop = asyncio.Event()
    ws_base = base.replace("http://", "ws://", 1)
    fleet_tasks = [asyncio.create_task(drive_unit(ws_base, u, t, d, stop)) for u, t, d in drivers]
    info = DemoInfo(base_url=base, passwords=password, units=units,
                    fleet=[u for u, _, _ in drivers])
    if on_ready is not None:
        on_ready(info)
    try:
        if until is None:
            await serving
        else:
            await asyncio.wait({serving, asyncio.create_task(until.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
        return info
    finally:
        stop.set()
        for t in fleet_tasks:
            t.cancel()
        await asyncio.gather(*fleet_tasks, return_exceptions=True)
        server.should_exit = True
        if not serving.done():
            await serving
