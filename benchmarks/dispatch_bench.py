"""Dispatch API benchmark: create an incident and ask for a recommendation, through HTTP.

San Francisco TIGER road graph, 200 units at the 45 SFFD stations, incident locations and
types replayed from real SFFD calls. The server runs as `cad serve` in its own process; this
process is the load generator (open loop at --rate operations/s). Baselines measured in the
same run on the same server: GET /healthz (the HTTP floor) and incident creation alone.

    python benchmarks/dispatch_bench.py [--rate 100] [--duration 20] [--graph PATH] [--quick]

Prints a table, then one JSON line. Target: create + recommend p99 <= 25 ms at
100 incidents/s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import gzip
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cad.embedded_pg import EmbeddedPostgres, with_database

TARGET_P99_MS = 25.0
CALL_TYPES = {
    "Medical Incident": "MED", "Structure Fire": "STRUCT", "Alarms": "ALARM",
    "Traffic Collision": "TC", "Outside Fire": "OUTSIDE", "Vehicle Fire": "VEHFIRE",
    "Gas Leak (Natural and LP Gases)": "GAS", "Citizen Assist / Service Call": "OTHER",
}


def shared_data() -> Path:
    return Path(os.environ.get("CAD_SHARED_DATA", REPO.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def load_calls(n: int, seed: int) -> list[tuple[float, float, str]]:
    path = shared_data() / "calls" / "sffd_calls_2020-04-07_to_2020-04-20.csv.gz"
    seen: set[str] = set()
    calls = []
    with gzip.open(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            if row["Call Number"] in seen:
                continue
            seen.add(row["Call Number"])
            lat_s, lon_s = row["Location"].strip("()").split(",")
            lat, lon = float(lat_s), float(lon_s)
            if not (37.70 < lat < 37.84 and -122.52 < lon < -122.35):
                continue  # SFO airport is outside the county's road graph
            calls.append((lat, lon, CALL_TYPES.get(row["Call Type"], "OTHER")))
    random.Random(seed).shuffle(calls)
    return (calls * (n // max(len(calls), 1) + 1))[:n]


def roster(stations: list[dict[str, str]]) -> str:
    """200 units: 45 engines, 25 ladders, 10 battalion chiefs, 90 ALS and 30 BLS medics."""
    ids = [s["station"] for s in stations]
    rows = ["id,agency,discipline,unit_type,capabilities,home_station,staffing"]
    rows += [f"E{sid.zfill(2)},SFFD,fire,engine,,{sid},4" for sid in ids]
    rows += [f"T{sid.zfill(2)},SFFD,fire,ladder,,{sid},4" for sid in ids[:25]]
    rows += [f"B{i + 1:02d},SFFD,fire,battalion_chief,,{ids[i * 4]},1" for i in range(10)]
    rows += [f"M{i + 1:03d},SFFD,ems,medic_als,,{ids[i % len(ids)]},2" for i in range(90)]
    rows += [f"R{i + 1:03d},SFFD,ems,medic_bls,,{ids[(i * 7) % len(ids)]},2" for i in range(30)]
    assert len(rows) == 201
    return "\n".join(rows) + "\n"


def cpu_seconds(server_pid: int, embedded: EmbeddedPostgres | None) -> dict[str, float]:
    """CPU time used so far by the server (all workers), the database and this process:
    CPU per operation does not depend on what else the machine is doing, latency does."""
    import psutil

    def tree(pid: int) -> float:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    me = psutil.Process().cpu_times()
    pg_pid = embedded._proc.pid if embedded is not None and embedded._proc is not None else None
    return {"server": tree(server_pid), "database": tree(pg_pid) if pg_pid else float("nan"),
            "generator": me.user + me.system}


async def seed_stations(c: httpx.AsyncClient, admin_pw: str
                        ) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
    """Log in as the bench admin, make an SFFD dispatcher, import the 45 SFFD stations.
    Returns (admin headers, dispatcher headers, the stations' rows)."""
    tok = (await c.post("/api/v1/auth/login", json={"username": "bench-admin",
                                                   "password": admin_pw})).json()
    admin = {"Authorization": f"Bearer {tok['access_token']}"}
    disp_pw = "bench-dispatcher-" + os.urandom(8).hex()
    r = await c.post("/api/v1/users", headers=admin, json={
        "username": "bench-dispatcher", "password": disp_pw, "role": "dispatcher",
        "agency": "SFFD"})
    assert r.status_code == 201, r.text
    tok = (await c.post("/api/v1/auth/login", json={"username": "bench-dispatcher",
                                                   "password": disp_pw})).json()
    disp = {"Authorization": f"Bearer {tok['access_token']}"}
    with open(shared_data() / "calls" / "sffd_fire_stations.csv", newline="") as f:  # noqa: ASYNC230
        stations = list(csv.DictReader(f))
    lines = ["station,name,address,lat,lon"] + [
        f"{s['station']},Station {s['station']},\"{s['address']}\",{s['lat']},{s['lon']}"
        for s in stations]
    r = await c.post("/api/v1/stations/import?agency=SFFD", content="\n".join(lines) + "\n",
                     headers={**admin, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    return admin, disp, stations


def stop_server_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole process group (started with ``start_new_session``),
    SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


async def create_database(server_url: str, prefix: str) -> tuple[str, str]:
    """A fresh database on the server (name, URL): every run starts empty, whatever an earlier
    run (or anything else) left in the server's own database."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(with_database(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def database_and_graph(work: Path, graph_arg: str | None, *,
                       build_env: dict[str, str] | None = None
                       ) -> tuple[str, EmbeddedPostgres | None, Path]:
    """Set-up shared by the benchmarks that start `cad serve`: the server URL
    (``CAD_DATABASE_URL``, else an embedded cluster under ``work``, returned so the caller
    stops it) and the graph (``--graph``, else the San Francisco TIGER graph built into
    ``work``; ``build_env`` overrides the build's environment, e.g. its numba cache)."""
    embedded = None
    url = os.environ.get("CAD_DATABASE_URL")
    if url is None:
        embedded = EmbeddedPostgres(work / "pg")
        url = embedded.start()
        # The server logs in as cad_app, whose password this cluster made.
        os.environ["CAD_DB_APP_PASSWORD"] = embedded.app_password or ""
    graph = Path(graph_arg) if graph_arg else work / "sf.cadgraph"
    if not graph_arg:
        print("building the San Francisco graph ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "cad", "graph", "build",
                        str(shared_data() / "road" / "tl_2017_06075_roads.zip"), "--out", str(graph)],
                       check=True, capture_output=True, env={**os.environ, **(build_env or {})})
    return url, embedded, graph


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cad-bench-"))
    work.chmod(0o755)
    embedded = None
    server = None
    db_name: str | None = None
    server_url = ""
    try:
        server_url, embedded, graph = database_and_graph(work, args.graph)
        db_name, url = await create_database(server_url, "cad_dispatch_bench")
        port = free_port()
        admin_pw = "bench-admin-" + os.urandom(8).hex()
        env = {**os.environ, "CAD_DATABASE_URL": url, "CAD_GRAPH_PATH": str(graph),
               "CAD_PORT": str(port), "CAD_LOG_LEVEL": "warning", "CAD_LOG_FORMAT": "json",
               "CAD_DATA_DIR": str(work), "CAD_BOOTSTRAP_ADMIN_USERNAME": "bench-admin",
               "CAD_BOOTSTRAP_ADMIN_PASSWORD": admin_pw, "CAD_DB_POOL_MAX": "20",
               # numba's default cache (beside the sources) outlives this temporary data dir:
               # the server starts warm, not compiling the kernels again every run
               "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", ""),
               "CAD_WORKERS": str(args.workers)}
        if args.workers > 1 and args.redis_url:
            env["CAD_REDIS_URL"] = args.redis_url
        prefix = args.server_prefix.split() if args.server_prefix else []
        with open(work / "server.log", "wb") as server_log:  # noqa: ASYNC230 - set-up, before any load
            server = subprocess.Popen(  # noqa: ASYNC220 - set-up, before any load
                [*prefix, sys.executable, "-m", "cad", "serve"], env=env, stdout=server_log,
                stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     limits=httpx.Limits(max_connections=64)) as c:
            for _ in range(600):
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"server did not start: {(work / 'server.log').read_text()[-2000:]}")
            admin, disp, stations = await seed_stations(c, admin_pw)
            r = await c.post("/api/v1/units/import", content=roster(stations),
                             headers={**admin, "content-type": "text/csv"})
            assert r.status_code == 200 and r.json()["created"] == 200, r.text
            units = (await c.get("/api/v1/units", headers=disp)).json()
            for u in units:  # on duty, in quarters
                r = await c.post(f"/api/v1/units/{u['id']}/status", headers=admin,
                                 json={"status": "available_in_quarters"})
                assert r.status_code == 200, r.text

            n_ops = int(args.rate * args.duration)
            calls = load_calls(n_ops + 400 + int(args.rate * args.warmup_s), seed=args.seed)
            errors: dict[str, int] = {}

            # The measured requests go through aiohttp: about a third of httpx's CPU per
            # request, and the load generator shares the two cores with what it measures.
            session = aiohttp.ClientSession(
                base_url=base, headers=disp, connector=aiohttp.TCPConnector(limit=64),
                json_serialize=lambda o: orjson.dumps(o).decode())

            async def op(lat: float, lon: float, itype: str) -> tuple[float, float, float]:
                t0 = time.perf_counter()
                async with session.post("/api/v1/incidents", json={
                        "agency": "SFFD", "incident_type": itype,
                        "location": {"lat": lat, "lon": lon}}) as r1:
                    body = await r1.read()
                t1 = time.perf_counter()
                if r1.status != 201:
                    errors[f"create {r1.status}"] = errors.get(f"create {r1.status}", 0) + 1
                    return float("nan"), float("nan"), float("nan")
                iid = orjson.loads(body)["id"]
                async with session.post(f"/api/v1/incidents/{iid}/recommendation") as r2:
                    await r2.read()
                t2 = time.perf_counter()
                if r2.status != 201:
                    errors[f"recommend {r2.status}"] = errors.get(f"recommend {r2.status}", 0) + 1
                return (t2 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000

            async def healthz_ms() -> float:
                t0 = time.perf_counter()
                async with session.get("/healthz") as r:
                    await r.read()
                return (time.perf_counter() - t0) * 1000

            # Warm-up (JIT, pools, caches), then the baselines, one at a time.
            for lat, lon, itype in calls[:50]:
                await op(lat, lon, itype)
            healthz = [await healthz_ms() for _ in range(300)]
            cpu0 = cpu_seconds(server.pid, embedded)
            serial = [await op(*x) for x in calls[50:350]]
            cpu1 = cpu_seconds(server.pid, embedded)
            cpu_per_op_ms = {k: (cpu1[k] - cpu0[k]) / len(serial) * 1000 for k in cpu0}

            async def open_loop(batch: list[tuple[float, float, str]], rec_starts: list[float] | None,
                                rec_late: list[float] | None
                                ) -> tuple[list[tuple[float, float, float]], float]:
                tasks = []
                t_start = time.perf_counter()
                for i, (lat, lon, itype) in enumerate(batch):
                    due = t_start + i / args.rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if rec_late is not None:
                        rec_late.append(max(0.0, -delay) * 1000)
                    if rec_starts is not None:
                        rec_starts.append(due - t_start)
                    tasks.append(asyncio.create_task(op(lat, lon, itype)))
                out = await asyncio.gather(*tasks)
                return out, time.perf_counter() - t_start

            # Warm-up at the target rate too (connections, pools, caches sized for concurrency;
            # not measured), then the measured open-loop run: one operation started every
            # 1/rate s, whatever the others do.
            n_warm = int(args.rate * args.warmup_s)
            await open_loop(calls[350 + n_ops:350 + n_ops + n_warm], None, None)
            lateness: list[float] = []
            starts: list[float] = []
            results, elapsed = await open_loop(calls[350:350 + n_ops], starts, lateness)
            await session.close()
            stats = (await c.get("/api/v1/realtime/stats", headers=admin)).json()
            gc_stats = stats.get("gc", {})
    finally:
        if server is not None:
            # The whole process group: with --server-prefix the server is the wrapper's child,
            # and a server left running would load the next benchmark's machine.
            stop_server_group(server)
        if db_name is not None:
            await drop_database(server_url, db_name)
        if embedded is not None:
            embedded.stop()
        if os.environ.get("CAD_BENCH_VERBOSE") and (work / "server.log").exists():
            shutil.copy(work / "server.log", Path(tempfile.gettempdir()) / "dispatch_bench_server.log")
        shutil.rmtree(work, ignore_errors=True)

    ok = [r for r in results if r[0] == r[0]]
    total = [r[0] for r in ok]
    return {
        "rate_per_s": args.rate, "duration_s": args.duration, "operations": len(results),
        "completed": len(ok), "errors": errors, "achieved_per_s": round(len(ok) / elapsed, 1),
        "healthz_ms": (statistics.median(healthz), pct(healthz, 99)),
        "serial_total_ms": (statistics.median([s[0] for s in serial]), pct([s[0] for s in serial], 99)),
        "serial_create_ms": (statistics.median([s[1] for s in serial]), pct([s[1] for s in serial], 99)),
        "serial_recommend_ms": (statistics.median([s[2] for s in serial]), pct([s[2] for s in serial], 99)),
        "load_total_ms": (statistics.median(total), pct(total, 99)) if total else (float("nan"),) * 2,
        "load_create_ms": (statistics.median([r[1] for r in ok]), pct([r[1] for r in ok], 99)),
        "load_recommend_ms": (statistics.median([r[2] for r in ok]), pct([r[2] for r in ok], 99)),
        "generator_lateness_p99_ms": pct(lateness, 99),
        "cpu_per_op_ms": cpu_per_op_ms,
        "gc": gc_stats,
        "slow_starts_s": [round(t, 2) for t, r in zip(starts, results) if r[0] > TARGET_P99_MS],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=100.0, help="operations (incidents) per second")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of open-loop load")
    ap.add_argument("--graph", help="a built graph file (default: build SF TIGER)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warmup-s", type=float, default=3.0, help="unmeasured seconds at the rate first")
    ap.add_argument("--quick", action="store_true", help="5 s of load")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--redis-url", default=os.environ.get("CAD_REDIS_URL"),
                    help="fan-out between workers (used when --workers > 1)")
    ap.add_argument("--server-prefix", help="run the server under this wrapper "
                    "(e.g. 'taskset -c 1'); to profile, attach "
                         "'py-spy record --pid' to the running server instead")
    args = ap.parse_args()
    if args.workers > 1 and not args.redis_url:
        ap.error("--workers > 1 needs --redis-url (or CAD_REDIS_URL): cad serve refuses without it")
    if args.quick:
        args.duration = 5.0
    res = asyncio.run(run(args))
    rows = [("GET /healthz (floor), serial", res["healthz_ms"]),
            ("create, serial", res["serial_create_ms"]),
            ("recommend, serial", res["serial_recommend_ms"]),
            ("create + recommend, serial", res["serial_total_ms"]),
            (f"create, at {args.rate:g}/s", res["load_create_ms"]),
            (f"recommend, at {args.rate:g}/s", res["load_recommend_ms"]),
            (f"create + recommend, at {args.rate:g}/s", res["load_total_ms"])]
    print(f"{'operation':<36} {'p50 ms':>9} {'p99 ms':>9}")
    for name, (p50, p99) in rows:
        print(f"{name:<36} {p50:>9.2f} {p99:>9.2f}")
    if os.environ.get("CAD_BENCH_VERBOSE"):
        print("operations over the target, by start time (s):", res["slow_starts_s"][:200])
        print("server GC pauses by generation:", res["gc"])
    cpu = res["cpu_per_op_ms"]
    print(f"CPU per create+recommend (serial): server {cpu['server']:.2f} ms, database "
          f"{cpu['database']:.2f} ms, load generator {cpu['generator']:.2f} ms")
    print(f"achieved {res['achieved_per_s']} ops/s of {args.rate:g} requested; "
          f"{res['completed']}/{res['operations']} completed; errors {res['errors'] or 'none'}; "
          f"generator lateness p99 {res['generator_lateness_p99_ms']:.1f} ms")
    p99 = res["load_total_ms"][1]
    print(json.dumps({
        "benchmark": "dispatch_api", "rate_per_s": args.rate, "achieved_per_s": res["achieved_per_s"],
        "create_recommend_p50_ms": round(res["load_total_ms"][0], 2),
        "create_recommend_p99_ms": round(p99, 2), "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(p99 <= TARGET_P99_MS and not res["errors"]),
        "p99_over_target": round(p99 / TARGET_P99_MS, 3),
        "p50_over_healthz_p50": round(res["load_total_ms"][0] / res["healthz_ms"][0], 2),
        "load_over_serial_p99": round(p99 / res["serial_total_ms"][1], 2),
        "cpu_ms_per_op": {k: round(v, 2) for k, v in cpu.items()},
        "errors": res["errors"]}))


if __name__ == "__main__":
    main()
