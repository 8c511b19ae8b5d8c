"""Cold-start benchmark: the real server (`cad serve`) started on an empty numba cache, again
on the cache that start filled, and (baseline, same run) with the kernel warm-up switched
off on another empty cache, as before the warm-up existed.

Per start it measures:

* **ready**: from spawning `cad serve` to the first ``/readyz`` 200 (the server opens its
  socket only once warm), and the CPU time the server and its compiling child used until
  then (the wall time on an idle machine; on a shared one the wall time is longer);
* **first unit import** and **first recommendation** after ready, through the HTTP API as
  benchmarks/dispatch_bench.py does it (its helpers are imported): 45 SFFD stations, 200
  units made available, then incidents from real SFFD calls, each created and recommended;
* **longest event-loop stall**, from the server's own probe (``CAD_LOOP_LAG_MONITOR=1``,
  cad/warmup.py: a 10 ms tick, every wake-up 10 ms or more late logged), split into
  start-up (spawn to ready) and operations (ready to the end of the 20th create +
  recommend); plus, as a cross-check from outside, the slowest ``/healthz`` answer while
  polling it every 10 ms through the operations (before ready there is no socket to poll).

    python benchmarks/coldstart_bench.py [--graph sf.cadgraph] [--no-baseline]

Targets: cold ready <= 30 s, warm ready <= 3 s, first recommendation <= 100 ms,
no stall over 100 ms. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatch_bench import (
    create_database,
    database_and_graph,
    drop_database,
    free_port,
    load_calls,
    roster,
    seed_stations,
    stop_server_group,
)

TARGET_COLD_READY_S = 30.0
TARGET_WARM_READY_S = 3.0
TARGET_FIRST_RECOMMENDATION_MS = 100.0
TARGET_STALL_MS = 100.0
OPERATIONS = 20
HEALTHZ_POLL_S = 0.01


@dataclass
class ServerLog:
    """The server's output, each line stamped with when this process read it."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def events(self, name: str) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for t, line in self.lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if rec.get("event") == name:
                        out.append((t, rec))
        return out

    def tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _read(stream: Any, log: ServerLog) -> None:
    for raw in iter(stream.readline, b""):
        log.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))


async def one_start(label: str, *, server_url: str, graph: Path, numba_cache: Path, work: Path,
                    warmup: bool) -> dict[str, Any]:
    db_name, url = await create_database(server_url, "cad_coldstart")
    data_dir = work / f"data-{label}"
    data_dir.mkdir()
    port = free_port()
    admin_pw = "bench-admin-" + os.urandom(8).hex()
    env = {**os.environ, "CAD_DATABASE_URL": url, "CAD_GRAPH_PATH": str(graph),
           "CAD_PORT": str(port), "CAD_LOG_LEVEL": "info", "CAD_LOG_FORMAT": "json",
           "CAD_DATA_DIR": str(data_dir), "NUMBA_CACHE_DIR": str(numba_cache),
           "CAD_LOOP_LAG_MONITOR": "1", "CAD_ROUTING_WARMUP": "1" if warmup else "0",
           "CAD_BOOTSTRAP_ADMIN_USERNAME": "bench-admin",
           "CAD_BOOTSTRAP_ADMIN_PASSWORD": admin_pw}
    log = ServerLog()
    t_spawn = time.monotonic()
    server = subprocess.Popen(  # noqa: ASYNC220 - nothing else runs while it starts
        [sys.executable, "-m", "cad", "serve"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True)
    reader = threading.Thread(target=_read, args=(server.stdout, log), daemon=True)
    reader.start()
    base = f"http://127.0.0.1:{port}"
    res: dict[str, Any] = {"label": label}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"{label}: cad serve exited:\n{log.tail()}")
                if time.monotonic() - t_spawn > 900:
                    raise SystemExit(f"{label}: not ready after 900 s:\n{log.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await c.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            t_ready = time.monotonic()
            res["ready_s"] = t_ready - t_spawn
            # CPU the start took, the compiling child included (reaped, so counted): what the
            # wall time would be on an idle machine, where nothing else takes the cores.
            cpu = psutil.Process(server.pid).cpu_times()
            res["ready_cpu_s"] = cpu.user + cpu.system + cpu.children_user + cpu.children_system

            poll_ms: list[float] = []
            polling = asyncio.Event()

            async def poll_healthz() -> None:
                async with httpx.AsyncClient(base_url=base, timeout=60) as hc:
                    while not polling.is_set():
                        t0 = time.perf_counter()
                        await hc.get("/healthz")
                        poll_ms.append((time.perf_counter() - t0) * 1000)
                        await asyncio.sleep(HEALTHZ_POLL_S)

            poller = asyncio.create_task(poll_healthz())
            try:
                res.update(await _operations(c, admin_pw))
            finally:
                polling.set()
                await poller
            t_done = time.monotonic()
            res["healthz_max_ms"] = max(poll_ms) if poll_ms else float("nan")
            res["healthz_polls"] = len(poll_ms)
    finally:
        stop_server_group(server)
        reader.join(timeout=5)
        await drop_database(server_url, db_name)
        (work / f"server-{label}.log").write_text("\n".join(line for _, line in log.lines))
    stalls = log.events("event_loop_stall")
    res["stall_startup_ms"] = max((r["lag_ms"] for t, r in stalls if t <= t_ready), default=0.0)
    res["stall_operations_ms"] = max(
        (r["lag_ms"] for t, r in stalls if t_ready < t <= t_done), default=0.0)
    final = log.events("event_loop_lag")
    res["stall_whole_run_ms"] = final[-1][1]["max_ms"] if final else float("nan")
    ready = log.events("routing_kernels_ready")
    if ready:
        rec = ready[-1][1]
        res["kernels"] = {k: rec.get(k) for k in ("seconds", "from_cache", "child_compile_s",
                                                    "compiled_in_process", "child_cpu_s")}
    return res


async def _operations(c: httpx.AsyncClient, admin_pw: str) -> dict[str, Any]:
    """Set-up like dispatch_bench (stations, 200 units made available), then OPERATIONS
    incidents created and recommended, one at a time."""
    admin, disp, stations = await seed_stations(c, admin_pw)
    t0 = time.perf_counter()
    r = await c.post("/api/v1/units/import", content=roster(stations),
                     headers={**admin, "content-type": "text/csv"})
    unit_import_ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 200 and r.json()["created"] == 200, r.text
    units = (await c.get("/api/v1/units", headers=disp)).json()
    t0 = time.perf_counter()
    for u in units:
        r = await c.post(f"/api/v1/units/{u['id']}/status", headers=admin,
                         json={"status": "available_in_quarters"})
        assert r.status_code == 200, r.text
    status_ms = (time.perf_counter() - t0) * 1000
    recommend_ms: list[float] = []
    create_ms: list[float] = []
    for lat, lon, itype in load_calls(OPERATIONS, seed=7):
        t0 = time.perf_counter()
        r = await c.post("/api/v1/incidents", headers=disp, json={
            "agency": "SFFD", "incident_type": itype, "location": {"lat": lat, "lon": lon}})
        assert r.status_code == 201, r.text
        t1 = time.perf_counter()
        r = await c.post(f"/api/v1/incidents/{r.json()['id']}/recommendation", headers=disp)
        assert r.status_code == 201, r.text
        t2 = time.perf_counter()
        create_ms.append((t1 - t0) * 1000)
        recommend_ms.append((t2 - t1) * 1000)
    return {"unit_import_ms": unit_import_ms, "status_changes_ms": status_ms,
            "first_create_ms": create_ms[0], "first_recommendation_ms": recommend_ms[0],
            "recommendation_max_ms": max(recommend_ms),
            "recommendation_median_ms": sorted(recommend_ms)[len(recommend_ms) // 2]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cad-coldstart-"))
    work.chmod(0o755)
    embedded = None
    try:
        # The graph is built with a numba cache of its own: the measured starts' caches
        # begin empty.
        server_url, embedded, graph = database_and_graph(
            work, args.graph, build_env={"NUMBA_CACHE_DIR": str(work / "numba-build")})
        cache = work / "numba-cache"
        out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
        print("cold start (empty numba cache) ...", file=sys.stderr)
        out["cold"] = await one_start("cold", server_url=server_url, graph=graph,
                                      numba_cache=cache, work=work, warmup=True)
        print("warm start (the cache the cold start filled) ...", file=sys.stderr)
        out["warm"] = await one_start("warm", server_url=server_url, graph=graph,
                                      numba_cache=cache, work=work, warmup=True)
        if args.baseline:
            print("baseline: no warm-up, empty numba cache ...", file=sys.stderr)
            out["baseline"] = await one_start("baseline", server_url=server_url, graph=graph,
                                              numba_cache=work / "numba-cache-baseline",
                                              work=work, warmup=False)
        out["load_after"] = os.getloadavg()[0]
        return out
    finally:
        if embedded is not None:
            embedded.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", help="a built graph file (default: build SF TIGER once)")
    ap.add_argument("--no-baseline", dest="baseline", action="store_false",
                    help="skip the start without warm-up (saves one cold compile)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir and server logs")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    runs = [k for k in ("cold", "warm", "baseline") if k in res]

    def row(name: str, key: str, fmt: str, target: float | None = None) -> None:
        cells = [format(res[k].get(key, float("nan")), fmt) for k in runs]
        tgt = "" if target is None else f"<= {target:g}"
        print(f"{name:<38}" + "".join(f"{c:>12}" for c in cells) + f"{tgt:>10}")

    print(f"{'':<38}" + "".join(f"{k:>12}" for k in runs) + f"{'target':>10}")
    row("ready after spawn (s)", "ready_s", ".2f")
    row("  CPU used until ready (s)", "ready_cpu_s", ".2f")
    row("first unit import, 200 units (ms)", "unit_import_ms", ".0f")
    row("first recommendation (ms)", "first_recommendation_ms", ".1f",
        TARGET_FIRST_RECOMMENDATION_MS)
    row(f"slowest of {OPERATIONS} recommendations (ms)", "recommendation_max_ms", ".1f")
    row("longest stall, start-up (ms)", "stall_startup_ms", ".0f", TARGET_STALL_MS)
    row("longest stall, operations (ms)", "stall_operations_ms", ".0f", TARGET_STALL_MS)
    row("slowest /healthz, operations (ms)", "healthz_max_ms", ".0f")
    for k in runs:
        if "kernels" in res[k]:
            print(f"  {k}: routing_kernels_ready {res[k]['kernels']}")
    print(f"  load average {res['load_before']:.1f} before, {res['load_after']:.1f} after "
          f"(2 cores)")
    cold, warm = res["cold"], res["warm"]
    stall = max(cold["stall_startup_ms"], cold["stall_operations_ms"],
                warm["stall_startup_ms"], warm["stall_operations_ms"])
    first_rec = max(cold["first_recommendation_ms"], warm["first_recommendation_ms"])
    figures: dict[str, Any] = {
        "bench": "coldstart",
        "cold_ready_s": round(cold["ready_s"], 2), "warm_ready_s": round(warm["ready_s"], 2),
        "ready_cpu_s": {k: round(res[k]["ready_cpu_s"], 2) for k in runs},
        "first_recommendation_ms": {"cold": round(cold["first_recommendation_ms"], 1),
                                    "warm": round(warm["first_recommendation_ms"], 1)},
        "longest_stall_ms": {k: {"startup": res[k]["stall_startup_ms"],
                                 "operations": res[k]["stall_operations_ms"]} for k in runs},
        "healthz_max_ms": {k: round(res[k]["healthz_max_ms"], 1) for k in runs},
        "unit_import_ms": {k: round(res[k]["unit_import_ms"], 1) for k in runs},
        "kernels": {k: res[k].get("kernels") for k in runs},
        "ratios": {
            "cold_ready_to_target": round(cold["ready_s"] / TARGET_COLD_READY_S, 2),
            "warm_ready_to_target": round(warm["ready_s"] / TARGET_WARM_READY_S, 2),
            "first_recommendation_to_target": round(first_rec / TARGET_FIRST_RECOMMENDATION_MS, 2),
            "longest_stall_to_target": round(stall / TARGET_STALL_MS, 2),
        },
        "load_average": [round(res["load_before"], 2), round(res["load_after"], 2)],
    }
    if "baseline" in res:
        b = res["baseline"]
        figures["baseline_first_recommendation_ms"] = round(b["first_recommendation_ms"], 1)
        figures["ratios"]["baseline_to_warm_first_unit_import"] = round(
            b["unit_import_ms"] / warm["unit_import_ms"], 1)
        figures["ratios"]["baseline_to_cold_longest_operations_stall"] = round(
            b["stall_operations_ms"] / max(cold["stall_operations_ms"], 1.0), 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
