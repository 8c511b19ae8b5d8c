"""Real-time gateway load benchmark: M units send AVL positions at R Hz over their MDT
websockets, N boards receive them, all on loopback against a real server.

    python benchmarks/realtime_bench.py               # 2,000 units @ 1 Hz, 200 boards, 30 s
    python benchmarks/realtime_bench.py --quick       # smaller and shorter, < 60 s in all
    python benchmarks/realtime_bench.py --mode memory --units 1000 --boards 100 --duration 20
    python benchmarks/realtime_bench.py --flood       # the same run without, then with a flooder

Modes (run side by side by default):
* ``memory`` - one uvicorn worker, in-process hub (the default deployment);
* ``redis``  - two uvicorn workers, hub through Redis (``--redis-url``); each worker holds
  about half of the boards and half of the units, so most positions cross Redis.

Everything is real: an embedded PostgreSQL (or ``--database-url``), the app as
``uvicorn cad.app:create_app --factory`` in a subprocess, device and access tokens in the
security tables, ``websockets`` clients. The load generator runs in two more processes (one
for the units, one for the boards) on the same machine.

Measured per run, over the measurement window after a warm-up:
* delivered: positions received by boards per second (sum over boards);
* latency: board receive time - fix_time (the unit stamps the fix when it sends it), p50/p99
  over every position received by a sample of boards;
* coalesced: fixes superseded on purpose (the server reports them in-band per position);
* lost: sent - delivered - coalesced, per board, after a drain period (must be 0);
* slow-closed boards (close code 4408) and the server processes' CPU use.

Flood mode (``--flood``, memory mode unless ``--mode redis``): the run is made twice in one
process, the second time with one more terminal (``--role flooder``) sending positions over
its MDT socket as fast as it can (``--flood-batch N``: N fixes per message), reconnecting at
once whenever it is closed. Reported beside the normal units' p99, delivery and board losses:
the normal units' breadcrumbs stored vs sent (read from the database after the server has
stopped and flushed), the flooder's messages sent, closes by code, reconnects and rows
stored, and /healthz latency probed every 200 ms by this process. The final JSON line has
``flood``: the normal p99 and delivery ratios flood/no-flood and the normal fixes lost.

Baseline in the same run: ``memory`` is the baseline of ``redis``; the run without the
flooder is the baseline of the run with it. docs/realtime.md (design
note) has the bare-FastAPI fan-out measured on this machine for scale.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JWT_SECRET = "realtime-bench-" + "k" * 40
AGENCY = "BENCH"


# --- provisioning ------------------------------------------------------------------------------

async def provision(url: str, n_units: int, n_boards: int, *, flooder: bool = False
                    ) -> dict[str, Any]:
    """Units, field-unit users with device tokens, dispatchers with sessions; returns tokens."""
    import asyncpg
    from argon2 import PasswordHasher

    from cad.security.tokens import (
        issue_access_token,
        new_device_token,
        new_refresh_token,
        token_hash,
    )

    conn = await asyncpg.connect(url)
    try:
        pw = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("unused-" + "x" * 12)
        run = uuid.uuid4().hex[:6]
        units = [f"B{run}-{i:05d}" for i in range(n_units + (1 if flooder else 0))]
        await conn.copy_records_to_table(
            "units", records=[(u, AGENCY, "fire", "engine") for u in units],
            columns=("id", "agency", "discipline", "unit_type"))
        user_rows = [(uuid.uuid4(), f"u-{run}-{i}", pw, "field_unit", u, AGENCY)
                     for i, u in enumerate(units)]
        board_rows = [(uuid.uuid4(), f"d-{run}-{i}", pw, "dispatcher", None, AGENCY)
                      for i in range(n_boards)]
        board_rows.append((uuid.uuid4(), f"s-{run}", pw, "supervisor", None, AGENCY))
        await conn.copy_records_to_table(
            "users", records=user_rows + board_rows,
            columns=("id", "username", "password_hash", "role", "unit_id", "agency"))
        now = datetime.now(UTC)
        device_tokens = [new_device_token() for _ in units]
        await conn.copy_records_to_table(
            "device_tokens",
            records=[(r[0], r[4], "bench", token_hash(t), now, "bench")
                     for r, t in zip(user_rows, device_tokens, strict=True)],
            columns=("user_id", "unit_id", "label", "token_hash", "created_at", "created_by"))
        board_tokens = []
        sessions = []
        for r in board_rows:
            sid = uuid.uuid4()
            sessions.append((sid, r[0], token_hash(new_refresh_token(str(sid))), now, now,
                             datetime.fromtimestamp(now.timestamp() + 43_200, UTC)))
            board_tokens.append(issue_access_token(JWT_SECRET, user_id=str(r[0]),
                                                   session_id=str(sid), role=r[3],
                                                   now=now, ttl_s=3600))
        await conn.copy_records_to_table(
            "sessions", records=sessions,
            columns=("id", "user_id", "refresh_hash", "created_at", "last_seen_at", "expires_at"))
    finally:
        await conn.close()
    pairs = [[u, t] for u, t in zip(units, device_tokens, strict=True)]
    return {"units": pairs[:n_units], "flooder": pairs[n_units] if flooder else None,
            "boards": board_tokens[:-1], "supervisor": board_tokens[-1]}


# --- load generator roles (run as subprocesses of this script) ----------------------------------

async def _connect_all(urls_tokens: list[tuple[str, str]], concurrency: int) -> list[Any]:
    import websockets

    sem = asyncio.Semaphore(concurrency)
    out: list[Any] = [None] * len(urls_tokens)

    async def one(i: int, url: str, token: str) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    ws = await websockets.connect(
                        url, additional_headers={"Authorization": f"Bearer {token}"},
                        compression=None, open_timeout=30, max_size=2**24, ping_interval=None)
                    first = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    assert first["type"] == "snapshot", first
                    out[i] = ws
                    return
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    await asyncio.gather(*(one(i, u, t) for i, (u, t) in enumerate(urls_tokens)))
    return out


def _wait_go() -> tuple[float, float]:
    print("READY", flush=True)
    line = sys.stdin.readline().split()
    assert line[0] == "GO", line
    return float(line[1]), float(line[2])


async def role_units(args: argparse.Namespace) -> None:
    cfg = json.loads(Path(args.config).read_text())
    units = cfg["units"]
    conns = await _connect_all([(f"{args.ws}/ws/unit/{u}", t) for u, t in units], 100)
    loop = asyncio.get_running_loop()
    t_start, t_end = await loop.run_in_executor(None, _wait_go)
    period = 1.0 / args.rate
    rnd = random.Random(7)
    # every unit on its own random phase
    next_at = [t_start + rnd.random() * period for _ in units]
    sent = 0
    sent_window = 0
    late_max = 0.0
    problems = 0

    async def drain_replies(ws: Any) -> None:
        nonlocal problems
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("type") == "position_result":
                    problems += len(msg.get("problems", []))
        except Exception:  # noqa: BLE001, S110 - the socket closes at the end of the run
            pass

    readers = [asyncio.create_task(drain_replies(ws)) for ws in conns]
    lat0, lon0 = 37.70, -122.50
    heap = [(t, i) for i, t in enumerate(next_at)]
    heapq.heapify(heap)
    while True:
        now = time.time()
        if now >= t_end:
            break
        while heap[0][0] <= now:
            due, i = heapq.heappop(heap)
            fix_t = time.time()
            late_max = max(late_max, fix_t - due)
            lat, lon = lat0 + (i % 100) * 0.001, lon0 + (i // 100) * 0.001
            # a send on an open socket does not suspend unless the socket is backed up
            await conns[i].send(f'{{"type":"position","lat":{lat:.6f},"lon":{lon:.6f},'
                                f'"heading_deg":90,"speed_mps":10,"accuracy_m":5,'
                                f'"fix_time":{fix_t:.6f}}}')
            heapq.heappush(heap, (due + period, i))
            sent += 1
            if fix_t >= t_start + args.warmup:
                sent_window += 1
        await asyncio.sleep(max(0.0, min(heap[0][0] - time.time(), 0.01)))
    await asyncio.sleep(0.5)
    for ws in conns:
        await ws.close()
    for r in readers:
        r.cancel()
    print(json.dumps({"sent": sent, "sent_window": sent_window, "problems": problems,
                      "send_late_max_ms": late_max * 1000, "cpu_s": time.process_time()}),
          flush=True)


async def role_flooder(args: argparse.Namespace) -> None:
    """One terminal sending positions as fast as its socket takes them (fix time = now,
    strictly increasing), reconnecting at once whenever it is closed, and retrying a refused
    handshake after ``--flood-retry-s`` (ignoring Retry-After): an adversary."""
    import websockets

    cfg = json.loads(Path(args.config).read_text())
    unit, token = cfg["flooder"]
    url = f"{args.ws}/ws/unit/{unit}"
    loop = asyncio.get_running_loop()
    t_start, t_end = await loop.run_in_executor(None, _wait_go)
    await asyncio.sleep(max(0.0, t_start - time.time()))
    messages = fixes = connects = refused = 0
    closes: dict[str, int] = {}
    last_t = 0.0
    n = max(1, args.flood_batch)

    async def drain(ws: Any) -> None:  # read what the server sends, or it closes us as slow
        try:
            async for _ in ws:
                pass
        except Exception:  # noqa: BLE001, S110 - closed
            pass

    while time.time() < t_end:
        try:
            ws = await websockets.connect(
                url, additional_headers={"Authorization": f"Bearer {token}"},
                compression=None, open_timeout=10, max_size=2**24, ping_interval=None)
        except Exception:  # noqa: BLE001 - refused at the handshake (429 while it owes)
            refused += 1
            await asyncio.sleep(args.flood_retry_s)
            continue
        connects += 1
        reader = asyncio.create_task(drain(ws))
        try:
            while time.time() < t_end:
                items = []
                for _ in range(n):
                    last_t = max(time.time(), last_t + 1e-6)
                    items.append(f'{{"lat":37.750000,"lon":-122.450000,"fix_time":{last_t:.6f}}}')
                if n == 1:
                    msg = '{"type":"position",' + items[0][1:]
                else:
                    msg = '{"type":"positions","fixes":[' + ",".join(items) + "]}"
                await ws.send(msg)
                messages += 1
                fixes += n
                if messages % 50 == 0:
                    await asyncio.sleep(0)  # let the close frame in
            await ws.close()
        except websockets.ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        code = str(rcvd.code) if rcvd is not None else "1006"
        closes[code] = closes.get(code, 0) + 1
        reader.cancel()
    print(json.dumps({"messages": messages, "fixes": fixes, "connects": connects,
                      "refused": refused, "closes": closes, "cpu_s": time.process_time()}),
          flush=True)


async def role_boards(args: argparse.Namespace) -> None:
    cfg = json.loads(Path(args.config).read_text())
    tokens = cfg["boards"]
    # The flooder's positions are not counted (it has no sent count to compare with).
    flooder = cfg["flooder"][0] if cfg.get("flooder") else None
    flooder_key = f'"unit_id":"{flooder}"'.encode() if flooder else None
    conns = await _connect_all([(f"{args.ws}/ws/board", t) for t in tokens], 50)
    loop = asyncio.get_running_loop()
    n = len(conns)
    sample = set(range(0, n, max(1, n // args.latency_sample)))
    delivered = [0] * n
    coalesced = [0] * n
    delivered_window = [0] * n
    latencies: list[float] = []
    closed: dict[int, int] = {}
    frames = 0
    window = [0.0, 0.0]
    go = asyncio.Event()

    async def reader(i: int, ws: Any) -> None:
        """Sampled boards parse every frame and time every position; the others count
        positions without parsing (the load generator shares the machine with the server)."""
        nonlocal frames
        measure = i in sample
        try:
            while True:
                raw = await ws.recv(decode=False)  # bytes: no UTF-8 decode of 20 KB frames
                recv_t = time.time()
                if not raw.startswith(b'{"type":"batch"'):
                    continue
                frames += 1
                if not go.is_set():
                    continue
                in_window = window[0] <= recv_t < window[1]
                if measure:
                    pos = orjson.loads(raw)["positions"]
                    if flooder_key is not None:
                        pos = [p for p in pos if p["unit_id"] != flooder]
                    d = len(pos)
                    c = sum(p["coalesced"] for p in pos)
                    if in_window:
                        for p in pos:
                            latencies.append(recv_t - datetime.fromisoformat(p["fix_time"]).timestamp())
                elif flooder_key is not None and flooder_key in raw:
                    pos = [p for p in orjson.loads(raw)["positions"] if p["unit_id"] != flooder]
                    d = len(pos)
                    c = sum(p["coalesced"] for p in pos)
                else:
                    d = raw.count(b'"unit_id":')
                    c = 0
                    if raw.count(b'"coalesced":0,') + raw.count(b'"coalesced":0}') != d:
                        c = sum(p["coalesced"] for p in orjson.loads(raw)["positions"])
                delivered[i] += d
                coalesced[i] += c
                if in_window:
                    delivered_window[i] += d
        except Exception:  # noqa: BLE001, S110 - the socket closes at the end of the run
            pass
        finally:
            if ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code != 1000:
                closed[i] = ws.protocol.close_rcvd.code

    tasks = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(conns)]
    t_start, t_end = await loop.run_in_executor(None, _wait_go)
    window[0], window[1] = t_start + args.warmup, t_end
    go.set()
    await asyncio.sleep(max(0.0, t_end - time.time()) + args.drain)
    for ws in conns:
        await ws.close()
    for t in tasks:
        t.cancel()
    latencies.sort()
    print(json.dumps({
        "boards": n, "delivered": delivered, "coalesced": coalesced,
        "delivered_window": delivered_window, "closed": closed, "frames": frames,
        "lat_count": len(latencies),
        "p50_ms": _pct(latencies, 50) * 1000, "p99_ms": _pct(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else None,
        "cpu_s": time.process_time(),
    }), flush=True)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


# --- orchestration -----------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its children that are still alive (the workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def _postmaster_pid(root: Path) -> int | None:
    for pidfile in root.rglob("postmaster.pid"):
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
    return None


def _host_busy_seconds() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _spawn_role(role: str, args: argparse.Namespace, ws_url: str, config: Path
                ) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--role", role, "--ws", ws_url, "--config", str(config),
           "--rate", str(args.rate), "--warmup", str(args.warmup), "--drain", str(args.drain),
           "--latency-sample", str(args.latency_sample), "--flood-batch", str(args.flood_batch),
           "--flood-retry-s", str(args.flood_retry_s)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO)


def _wait_ready(proc: subprocess.Popen[str], what: str, timeout: float) -> None:
    import select

    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            line = proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line:
                break
    raise RuntimeError(f"{what} load process did not get ready (exit {proc.poll()})")


async def _probe_healthz(base: str, t_from: float, t_to: float) -> list[float]:
    """/healthz latency every 200 ms between two wall-clock times: what any other client of
    the server sees."""
    import httpx

    out: list[float] = []
    await asyncio.sleep(max(0.0, t_from - time.time()))
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while time.time() < t_to:
            t0 = time.perf_counter()
            try:
                await http.get("/healthz")
                out.append(time.perf_counter() - t0)
            except httpx.HTTPError:
                out.append(30.0)
            await asyncio.sleep(0.2)
    return sorted(out)


async def run_mode(mode: str, args: argparse.Namespace, server_url: str, work: Path,
                   pg_pid: int | None, *, flood: bool = False) -> dict[str, Any]:
    import asyncpg
    import httpx

    label = f"{mode}+flood" if flood else mode
    db = f"bench_{mode}{'_flood' if flood else ''}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(_with_db(server_url, "postgres"))
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    url = _with_db(server_url, db)
    port = _free_port()
    workers = 2 if mode == "redis" else 1
    env = {**os.environ, "CAD_DATABASE_URL": url, "CAD_DATA_DIR": str(work),
           "CAD_JWT_SECRET": JWT_SECRET, "CAD_LOG_LEVEL": "warning", "CAD_LOG_FORMAT": "json",
           "CAD_WS_BATCH_INTERVAL_MS": str(args.batch_ms), "CAD_DB_POOL_MAX": "10",
           "CAD_WS_HEARTBEAT_INTERVAL_S": "15", "PYTHONPATH": str(REPO)}
    env.pop("CAD_REDIS_URL", None)
    if mode == "redis":
        env["CAD_REDIS_URL"] = args.redis_url
        env["CAD_HUB_CHANNEL_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}"
    log = open(work / f"server-{mode}.log", "w")  # noqa: SIM115, ASYNC230 - closed below; set-up
    server = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is timed
        [sys.executable, "-m", "uvicorn", "cad.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--ws-per-message-deflate", "false",
         "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    procs: list[subprocess.Popen[str]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(base_url=base) as http:
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start; see " + log.name)
                await asyncio.sleep(0.2)
        tokens = await provision(url, args.units, args.boards, flooder=flood)
        config = work / f"tokens-{label}.json"
        config.write_text(json.dumps(tokens))
        ws_url = f"ws://127.0.0.1:{port}"
        boards = _spawn_role("boards", args, ws_url, config)
        procs.append(boards)
        _wait_ready(boards, "boards", 120)
        units = _spawn_role("units", args, ws_url, config)
        procs.append(units)
        _wait_ready(units, "units", 180)
        flooder = None
        if flood:
            flooder = _spawn_role("flooder", args, ws_url, config)
            procs.append(flooder)
            _wait_ready(flooder, "flooder", 60)
        t_start = time.time() + 0.5
        t_end = t_start + args.duration
        cpu0 = _cpu_seconds(server.pid)
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"GO {t_start} {t_end}\n")
            p.stdin.flush()
        probe = asyncio.create_task(_probe_healthz(base, t_start + args.warmup, t_end))
        await asyncio.sleep(max(0.0, t_start + args.warmup - time.time()))
        cpu_w0, tw0 = _cpu_seconds(server.pid), time.time()
        gen_w0 = sum(_cpu_seconds(p.pid) for p in procs)
        pg_w0 = _cpu_seconds(pg_pid) if pg_pid else 0.0
        host_w0 = _host_busy_seconds()
        spy = None
        if args.profile_server:
            spy = subprocess.Popen(["py-spy",  # noqa: ASYNC220 - optional profiler start "record", "-p", str(server.pid), "--subprocesses", *args.profile_flags.split(),
                                    "-d", str(round(t_end - time.time())), "-f", "raw",
                                    "-o", f"{args.profile_server}.{mode}.txt"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(max(0.0, t_end - time.time()))
        cpu_w1, tw1 = _cpu_seconds(server.pid), time.time()
        gen_w1 = sum(_cpu_seconds(p.pid) for p in procs)
        pg_w1 = _cpu_seconds(pg_pid) if pg_pid else 0.0
        host_w1 = _host_busy_seconds()
        load1 = float(Path("/proc/loadavg").read_text().split()[0])
        if spy is not None:
            spy.wait(60)
        stats = []
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            seen = set()
            for _ in range(10 * workers):  # one answer per worker (requests land anywhere)
                r = await http.get("/api/v1/realtime/stats",
                                   headers={"Authorization": f"Bearer {tokens['supervisor']}"})
                if r.status_code == 200 and r.json()["server_id"] not in seen:
                    seen.add(r.json()["server_id"])
                    stats.append(r.json())
                if len(seen) == workers:
                    break
        out_u, _ = await asyncio.to_thread(units.communicate, timeout=120)
        out_b, _ = await asyncio.to_thread(boards.communicate, timeout=120)
        ru = json.loads(out_u.strip().splitlines()[-1])
        rb = json.loads(out_b.strip().splitlines()[-1])
        rf: dict[str, Any] = {}
        if flooder is not None:
            out_f, _ = await asyncio.to_thread(flooder.communicate, timeout=120)
            rf = json.loads(out_f.strip().splitlines()[-1])
        healthz = await probe
        del cpu0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    # The server has stopped and flushed every breadcrumb (held ones included).
    flooder_id = tokens["flooder"][0] if tokens.get("flooder") else ""
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE unit_id <> $1) AS normal, "
            "count(*) FILTER (WHERE unit_id = $1) AS flooder FROM unit_positions", flooder_id)
    finally:
        await conn.close()
    sent = ru["sent"]
    lost = [max(0, sent - d - c) for d, c in zip(rb["delivered"], rb["coalesced"], strict=True)]
    window_s = args.duration - args.warmup
    return {
        "mode": label, "workers": workers, "units": args.units, "boards": args.boards,
        "rate_hz": args.rate, "window_s": window_s,
        "sent": sent, "sent_per_s": ru["sent_window"] / window_s,
        "delivered_per_s": sum(rb["delivered_window"]) / window_s,
        "expected_per_s": ru["sent_window"] * args.boards / window_s,
        "p50_ms": rb["p50_ms"], "p99_ms": rb["p99_ms"], "max_ms": rb["max_ms"],
        "latency_samples": rb["lat_count"],
        "coalesced": sum(rb["coalesced"]), "lost": sum(lost), "lost_max_board": max(lost),
        "slow_closed": len(rb["closed"]), "rejected": ru["problems"],
        "server_cpu_pct": 100 * (cpu_w1 - cpu_w0) / (tw1 - tw0),
        "loadgen_cpu_pct": 100 * (gen_w1 - gen_w0) / (tw1 - tw0),
        # the embedded PostgreSQL (breadcrumb COPY, last-position UPDATE), % of one core
        "pg_cpu_pct": 100 * (pg_w1 - pg_w0) / (tw1 - tw0),
        # everything else on the machine (other people's test runs, Redis), % of one core
        "other_cpu_pct": 100 * ((host_w1 - host_w0) - (cpu_w1 - cpu_w0) - (gen_w1 - gen_w0)
                                - (pg_w1 - pg_w0)) / (tw1 - tw0),
        "loadavg_1m": load1,
        "frames": rb["frames"], "send_late_max_ms": ru["send_late_max_ms"],
        "server_stats": stats,
        "units_proc_cpu_s": ru["cpu_s"], "boards_proc_cpu_s": rb["cpu_s"],
        "window": [tw0, tw1],
        "normal_stored": stored["normal"], "normal_not_stored": sent - stored["normal"],
        "flooder_rows": stored["flooder"],
        "flooder_messages": rf.get("messages", 0), "flooder_fixes": rf.get("fixes", 0),
        "flooder_connects": rf.get("connects", 0), "flooder_closes": rf.get("closes", {}),
        "flooder_refused": rf.get("refused", 0),
        "healthz_p50_ms": _pct(healthz, 50) * 1000, "healthz_p99_ms": _pct(healthz, 99) * 1000,
        "healthz_max_ms": (healthz[-1] * 1000) if healthz else float("nan"),
    }


def _with_db(url: str, name: str) -> str:
    """The same server, another database."""
    from cad.embedded_pg import with_database

    return with_database(url, name)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_ok(url: str) -> bool:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return True
    except Exception:  # noqa: BLE001 - not reachable
        return False


async def orchestrate(args: argparse.Namespace) -> int:
    from cad.embedded_pg import EmbeddedPostgres

    modes = ["memory", "redis"] if args.mode == "both" else [args.mode]
    if args.flood:
        modes = ["memory"] if args.mode == "both" else [args.mode]
    if "redis" in modes and not _redis_ok(args.redis_url):
        print(f"Redis at {args.redis_url} is not reachable: skipping the redis mode",
              file=sys.stderr)
        modes.remove("redis")
    # --repeat alternates the runs (A B A B ...): on a shared machine the others' load drifts
    # within minutes, and a ratio of medians of alternated runs follows it less.
    runs = [(m, f) for _ in range(args.repeat) for m in modes
            for f in ((False, True) if args.flood else (False,))]
    work = Path(tempfile.mkdtemp(prefix="cad-rt-bench-"))
    work.chmod(0o755)
    embedded = None
    url = args.database_url
    results = []
    try:
        pg_pid = None
        if url is None:
            embedded = EmbeddedPostgres(work / "pg")
            url = embedded.start()
            # The server logs in as cad_app, whose password this cluster made.
            os.environ["CAD_DB_APP_PASSWORD"] = embedded.app_password or ""
            pg_pid = _postmaster_pid(work / "pg")
        for mode, flood in runs:
            results.append(await run_mode(mode, args, url, work, pg_pid, flood=flood))
    finally:
        if embedded is not None:
            embedded.stop()
    _report(results, args)
    return 0 if all(r["lost"] == 0 and r["normal_not_stored"] == 0 for r in results) else 1


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    cols = [("mode", "{}"), ("workers", "{}"), ("units", "{}"), ("boards", "{}"),
            ("sent_per_s", "{:.0f}"), ("expected_per_s", "{:.0f}"), ("delivered_per_s", "{:.0f}"),
            ("p50_ms", "{:.1f}"), ("p99_ms", "{:.1f}"), ("max_ms", "{:.1f}"),
            ("coalesced", "{}"), ("lost", "{}"), ("slow_closed", "{}"),
            ("server_cpu_pct", "{:.0f}"), ("loadgen_cpu_pct", "{:.0f}"), ("pg_cpu_pct", "{:.0f}"),
            ("other_cpu_pct", "{:.0f}"), ("loadavg_1m", "{:.1f}"),
            ("healthz_p99_ms", "{:.1f}"), ("normal_not_stored", "{}")]
    if args.flood:
        cols += [("flooder_messages", "{}"), ("flooder_connects", "{}"), ("flooder_rows", "{}")]
    widths = [max(len(c), 9) for c, _ in cols]
    print(" | ".join(c.ljust(w) for (c, _), w in zip(cols, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in results:
        print(" | ".join(f.format(r[c]).ljust(w) for (c, f), w in zip(cols, widths, strict=True)))
    by = {r["mode"]: r for r in results}
    summary: dict[str, Any] = {
        "bench": "realtime", "quick": args.quick, "units": args.units, "boards": args.boards,
        "rate_hz": args.rate, "batch_ms": args.batch_ms, "duration_s": args.duration,
        "target_p99_ms": 100,
    }
    for mode, r in by.items():
        summary[mode] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                         if k not in ("mode", "server_stats")}
        summary[mode]["server_coalesced"] = sum(st["positions"]["coalesced"]
                                                for st in r["server_stats"])
        print(f"{mode}: server stats {json.dumps(r['server_stats'])}", file=sys.stderr)
    if "memory" in by:
        m = by["memory"]
        summary["memory_meets_target"] = bool(m["p99_ms"] <= 100 and m["lost"] == 0)
        summary["memory_delivery_ratio"] = round(m["delivered_per_s"] / m["expected_per_s"], 4)
    for mode in ("memory", "redis"):
        bases = [r for r in results if r["mode"] == mode]
        floods = [r for r in results if r["mode"] == f"{mode}+flood"]
        if not bases or not floods:
            continue

        def med(rs: list[dict[str, Any]], key: str) -> float:
            return float(statistics.median(r[key] for r in rs))

        def delivery(rs: list[dict[str, Any]]) -> float:
            return float(statistics.median(r["delivered_per_s"] / r["expected_per_s"] for r in rs))

        p99_ratio = med(floods, "p99_ms") / med(bases, "p99_ms")
        delivery_ratio = delivery(floods) / delivery(bases)
        lost = sum(r["lost"] for r in floods)
        not_stored = sum(r["normal_not_stored"] for r in floods)
        summary["flood"] = {
            "mode": mode, "flood_batch": args.flood_batch, "repeat": len(floods),
            "base_p99_ms": [round(r["p99_ms"], 1) for r in bases],
            "flood_p99_ms": [round(r["p99_ms"], 1) for r in floods],
            "other_cpu_pct": [round(r["other_cpu_pct"]) for r in results
                              if r["mode"] in (mode, f"{mode}+flood")],
            "normal_p99_ratio": round(p99_ratio, 3),
            "normal_delivery_ratio": round(delivery_ratio, 4),
            "normal_fixes_lost": lost,
            "normal_fixes_not_stored": not_stored,
            "healthz_p99_ratio": round(med(floods, "healthz_p99_ms") / med(bases, "healthz_p99_ms"), 3),
            "flooder_messages": sum(r["flooder_messages"] for r in floods),
            "flooder_fixes": sum(r["flooder_fixes"] for r in floods),
            "flooder_connects": sum(r["flooder_connects"] for r in floods),
            "flooder_refused_handshakes": sum(r["flooder_refused"] for r in floods),
            "flood_retry_s": args.flood_retry_s,
            "flooder_closes": [r["flooder_closes"] for r in floods],
            "flooder_rows_stored": [r["flooder_rows"] for r in floods],
            "within_10pct": bool(p99_ratio <= 1.10 and delivery_ratio >= 0.9
                                 and lost == 0 and not_stored == 0),
        }
    if "memory" in by and "redis" in by:
        summary["redis_vs_memory_p99_ratio"] = round(by["redis"]["p99_ms"] / by["memory"]["p99_ms"], 2)
        summary["redis_vs_memory_delivered_ratio"] = round(
            by["redis"]["delivered_per_s"] / by["memory"]["delivered_per_s"], 4)
        summary["redis_meets_target"] = bool(by["redis"]["p99_ms"] <= 100 and by["redis"]["lost"] == 0)
    print(json.dumps(summary))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["memory", "redis", "both"], default="both")
    ap.add_argument("--units", type=int, default=2000)
    ap.add_argument("--boards", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1.0, help="positions per unit per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of sending per mode")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds not measured")
    ap.add_argument("--drain", type=float, default=1.5, help="seconds boards keep reading")
    ap.add_argument("--batch-ms", type=int, default=50)
    ap.add_argument("--latency-sample", type=int, default=20, help="boards measuring latency")
    ap.add_argument("--quick", action="store_true", help="300 units, 50 boards, 8 s per mode")
    ap.add_argument("--flood", action="store_true",
                    help="run once without and once with a terminal flooding positions")
    ap.add_argument("--flood-batch", type=int, default=1,
                    help="fixes per flooder message (1: position messages)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="alternate the runs this many times; ratios from medians")
    ap.add_argument("--flood-retry-s", type=float, default=0.1,
                    help="the flooder's wait after a refused handshake (0: a connection flood)")
    ap.add_argument("--profile-server", default=None,
                    help="py-spy the server during the window into FILE.<mode>.txt (collapsed)")
    ap.add_argument("--profile-flags", default="", help=argparse.SUPPRESS)
    ap.add_argument("--database-url", default=None, help="PostgreSQL server URL (else embedded)")
    ap.add_argument("--redis-url", default=os.environ.get("CAD_TEST_REDIS_URL",
                                                          "redis://127.0.0.1:6379/0"))
    # internal: load-generator processes
    ap.add_argument("--role", choices=["units", "boards", "flooder"], help=argparse.SUPPRESS)
    ap.add_argument("--ws", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.role == "units":
        asyncio.run(role_units(args))
        return 0
    if args.role == "boards":
        asyncio.run(role_boards(args))
        return 0
    if args.role == "flooder":
        asyncio.run(role_flooder(args))
        return 0
    if args.quick:
        args.units, args.boards, args.duration, args.warmup = 300, 50, 8.0, 2.0
    return asyncio.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
