"""Analytics benchmark: a year of a large city (default 200,000 calls, 500,000 unit
responses, generated in PostgreSQL) and the grouped interval reports of
incidents/analytics/service.py against it, with a baseline in the same run that fetches the
rows and computes the same figures in Python (the approach the reports must not take).

    python benchmarks/analytics_bench.py [--units 500000] [--calls 200000] [--repeat 3]

Needs a PostgreSQL server: CAD_BENCH_DATABASE_URL or CAD_TEST_DATABASE_URL (a throw-away
database is created on it and dropped afterwards), else the embedded launcher.
Target: a grouped report under 1 s. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from cad import db
from cad.embedded_pg import EmbeddedPostgres, with_database
from cad.security.scope import Scope
from cad.settings import REPO_ROOT
from incidents.analytics import service

TARGET_S = 1.0
TIMEZONE = "America/Los_Angeles"

GENERATE = """
SELECT setseed(0.42);
INSERT INTO historical_calls (agency, mapping, call_number, call_type, call_type_group, priority,
                              received_at, zone, station, lat, lon)
SELECT 'BENCH', 'bench', g::text,
       (ARRAY['Medical Incident', 'Alarms', 'Structure Fire', 'Traffic Collision', 'Other'])[1 + g % 5],
       (ARRAY['Potentially Life-Threatening', 'Non Life-threatening', 'Alarm', 'Fire',
              NULL])[1 + (g * 7) % 5],
       (ARRAY['2', '3'])[1 + g % 2],
       timestamptz '2025-01-01 08:00:00+00' + floor(random() * 365 * 86400) * interval '1 second',
       'Z' || (g % 40), (g % 45)::text, 37.7 + random() * 0.1, -122.5 + random() * 0.1
FROM generate_series(1, $1::int) g;
INSERT INTO historical_unit_responses (call_id, agency, call_type, call_type_group, priority, zone,
                                       station, received_at, unit_id, unit_type, discipline,
                                       dispatch_seq,
                                       dispatched_at, en_route_at, on_scene_at, cleared_at)
SELECT c.id, c.agency, c.call_type, c.call_type_group, c.priority, c.zone, c.station, c.received_at,
       'U' || ((s.u + s.k * 7) % 500), (ARRAY['ENGINE', 'MEDIC', 'TRUCK', 'CHIEF'])[1 + s.u % 4],
       CASE WHEN s.u % 4 = 1 THEN 'ems' ELSE 'fire' END,
       s.k + 1, t.d, t.e, t.o, t.o + interval '30 minutes'
FROM (SELECT u, (u - 1) / $1::int AS k, 1 + (u - 1) % $1::int AS call_no
      FROM generate_series(1, $2::int) u) s
JOIN historical_calls c ON c.agency = 'BENCH' AND c.call_number = s.call_no::text
CROSS JOIN LATERAL (
    SELECT c.received_at + floor(5 + random() * 120) * interval '1 second' AS d) d0
CROSS JOIN LATERAL (
    SELECT d0.d AS d, d0.d + floor(10 + random() * 90) * interval '1 second' AS e) d1
CROSS JOIN LATERAL (
    SELECT d1.d, d1.e,
           CASE WHEN random() < 0.15 THEN NULL
                ELSE d1.e + floor(60 + random() * 600) * interval '1 second' END AS o) t;
UPDATE historical_calls h SET first_dispatched_at = f.d, first_en_route_at = f.e,
                              first_on_scene_at = f.o
FROM (SELECT call_id, min(dispatched_at) AS d, min(en_route_at) AS e, min(on_scene_at) AS o
      FROM historical_unit_responses GROUP BY call_id) f
WHERE h.id = f.call_id;
"""

REPORTS: dict[str, service.ReportQuery] = {
    "incident: type group x priority": service.ReportQuery(
        metrics=["call_processing", "total_response"], group_by=["call_type_group", "priority"]),
    "incident: zone (40)": service.ReportQuery(
        metrics=["call_processing", "total_response"], group_by=["zone"]),
    "unit: unit type x hour of day": service.ReportQuery(
        metrics=["turnout", "travel"], group_by=["unit_type", "hour_of_day"]),
    "incident: week (53)": service.ReportQuery(metrics=["total_response"], group_by=["week"]),
}


def _percentile(sorted_values: list[float], p: float) -> float:
    rank = p * (len(sorted_values) - 1)
    lo = int(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (rank - lo)


async def baseline(pool: asyncpg.Pool, query: service.ReportQuery) -> int:
    """Fetch the rows and group, sort and count in Python: the same statistics."""
    unit_level = service.INTERVALS[query.metrics[0]][0] == "unit"
    view = "analytics_unit_responses" if unit_level else "analytics_incidents"
    cols = {"hour_of_day": f"extract(hour FROM received_at AT TIME ZONE '{TIMEZONE}')::int",
            "week": f"date_trunc('week', received_at AT TIME ZONE '{TIMEZONE}')::date"}
    dims = [cols.get(g, g) for g in query.group_by]
    exprs = [service.INTERVALS[m][1] for m in query.metrics]
    rows = await pool.fetch(f"SELECT {', '.join(dims + exprs)} FROM {view}")
    groups: dict[tuple[Any, ...], list[list[float]]] = defaultdict(
        lambda: [[] for _ in query.metrics])
    nd = len(dims)
    for r in rows:
        lists = groups[tuple(r[:nd])]
        for i in range(len(query.metrics)):
            v = r[nd + i]
            if v is not None and v >= 0:
                lists[i].append(v)
    for lists in groups.values():
        for i, values in enumerate(lists):
            if values:
                values.sort()
                _percentile(values, 0.5)
                _percentile(values, 0.9)
                threshold = service.INTERVALS[query.metrics[i]][2]
                sum(1 for v in values if v <= threshold)
    return len(groups)


def backend_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) the PostgreSQL backend ``pid`` has used: the server's own
    work, independent of how many other processes share the cores (the wall time is not)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # the server runs elsewhere
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int, pid: int | None = None
                ) -> tuple[float, float | None, Any]:
    """Median wall time, median backend CPU time, last result."""
    times, cpus, result = [], [], None
    for _ in range(repeat):
        c0 = backend_cpu_s(pid)
        t0 = time.perf_counter()
        result = await fn()
        times.append(time.perf_counter() - t0)
        c1 = backend_cpu_s(pid)
        if c0 is not None and c1 is not None:
            cpus.append(c1 - c0)
    return statistics.median(times), (statistics.median(cpus) if cpus else None), result


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    conn = await db.connect(url)
    try:
        await db.migrate(conn, REPO_ROOT / "migrations")
        t0 = time.perf_counter()
        await conn.execute(GENERATE.replace("$1::int", str(args.calls)).replace("$2::int", str(args.units)))
        await conn.execute("ANALYZE historical_calls; ANALYZE historical_unit_responses")
        generate_s = time.perf_counter() - t0
        units = await conn.fetchval("SELECT count(*) FROM historical_unit_responses")
    finally:
        await conn.close()
    # One connection: the backend whose CPU time is read is the one that ran the report.
    pool = await db.create_pool(url, min_size=1, max_size=1)
    results: list[dict[str, Any]] = []
    try:
        pid = await pool.fetchval("SELECT pg_backend_pid()")
        for name, query in REPORTS.items():
            report_s, cpu_s, report = await timed(lambda q=query: service.report(  # type: ignore[misc]
                pool=pool, scope=Scope.ALL, query=q, timezone=TIMEZONE), args.repeat, pid)
            entry: dict[str, Any] = {"report": name, "groups": len(report["rows"]),
                                     "sql_s": round(report_s, 4),
                                     "server_cpu_s": None if cpu_s is None else round(cpu_s, 3)}
            if not args.no_baseline:
                base_s, _cpu, groups = await timed(lambda q=query: baseline(pool, q), 1)  # type: ignore[misc]
                assert groups == len(report["rows"]), (groups, len(report["rows"]))
                entry["python_baseline_s"] = round(base_s, 4)
                entry["speedup"] = round(base_s / report_s, 1)
            results.append(entry)
    finally:
        await pool.close()
    cpu = [r["server_cpu_s"] for r in results if r["server_cpu_s"] is not None]
    return {"calls": args.calls, "unit_responses": units, "generate_s": round(generate_s, 1),
            "reports": results, "target_s": TARGET_S, "load_average_1m": os.getloadavg()[0],
            "cpus": os.cpu_count(),
            "worst_report_s": max(r["sql_s"] for r in results),
            "worst_report_server_cpu_s": max(cpu) if cpu else None,
            "meets_target_wall": all(r["sql_s"] < TARGET_S for r in results),
            "meets_target_server_cpu": bool(cpu) and max(cpu) < TARGET_S}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("CAD_BENCH_DATABASE_URL") or os.environ.get("CAD_TEST_DATABASE_URL")
    embedded = None
    if not server:
        import tempfile

        embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="cad-analytics-bench-")))
        server = embedded.start()
    name = f"cad_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(with_database(server, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return await run(with_database(server, name), args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        if embedded is not None:
            embedded.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--units", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(main_async(args))
    print(f"{out['calls']:,} calls, {out['unit_responses']:,} unit responses "
          f"(generated in {out['generate_s']} s)")
    print(f"{'report':36} {'groups':>7} {'wall s':>8} {'server CPU s':>13} {'Python s':>9} "
          f"{'speed-up':>9}")
    nan = float("nan")
    for r in out["reports"]:
        cpu = r["server_cpu_s"] if r["server_cpu_s"] is not None else nan
        print(f"{r['report']:36} {r['groups']:>7} {r['sql_s']:>8.3f} {cpu:>13.3f} "
              f"{r.get('python_baseline_s', nan):>9.3f} {r.get('speedup', nan):>9}")
    print(f"load average {out['load_average_1m']:.1f} on {out['cpus']} CPUs; target: every report "
          f"under {TARGET_S} s -> wall {'met' if out['meets_target_wall'] else 'MISSED'}, "
          f"server CPU {'met' if out['meets_target_server_cpu'] else 'MISSED'}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
