"""Coverage computation cost, and how long it holds the event loop.

    python benchmarks/coverage_bench.py [--graph /work/sf.cadgraph] [--units 60 300] [--reps 5]

The coverage service's own functions (incidents/dispatch/coverage.py) on a road graph, without
the database: demand cells over the graph's extent (resolution 9 and 10), units at random road
points. For each unit count:

* ``grid``      - cells, off-road filtering by snapping (once per hour per agency set);
* ``cold``      - every unit's ETAs to every cell (a worker's first query, or a new graph);
* ``one_moved`` - one unit moved beyond the tolerance: only its ETAs are recomputed;
* ``status``    - nothing moved (a status change, a what-if): the minimum over the cached ETAs;
* ``loop_max``  - the longest the event loop waited on the cold computation (a 1 ms ticker
                  runs beside it): the chunking's bound;
* ``baseline``  - the same cold table computed in one call (no chunks), for comparison.

Every figure is the median over ``--reps``. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incidents.dispatch import coverage as cov
from routing.service import RoutingService


async def _loop_lag(work: Any) -> tuple[float, float]:
    """(seconds the work took, longest gap between 1 ms ticks while it ran)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    t = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await work
    took = time.perf_counter() - t0
    done.set()
    await t
    return took, max(gaps, default=0.0)


async def run(graph: Path, unit_counts: list[int], resolutions: list[int], reps: int) -> dict[str, Any]:
    svc = RoutingService.from_file(graph)
    g = svc.graph
    rng = np.random.default_rng(7)
    out: dict[str, Any] = {"graph": str(graph), "nodes": g.n_nodes, "rows": []}
    # JIT compile outside the timings (the app's warm-up does the same at start).
    svc.upsert_unit("warm", node=int(g.node_ext_id[0]), unit_type="engine")
    svc.eta_table(lat=[float(g.node_lat[1])], lon=[float(g.node_lon[1])])
    svc.remove_unit("warm")
    print(f"{'res':>3} {'units':>5} {'cells':>6} {'grid ms':>8} {'cold ms':>8} {'base ms':>8} "
          f"{'1 moved ms':>10} {'status ms':>9} {'loop max ms':>11}")
    for res in resolutions:
        for n_units in unit_counts:
            for u in list(svc.unit_ids()):
                svc.remove_unit(u)
            nodes = rng.choice(g.n_nodes, size=n_units, replace=False)
            units = {}
            for i, n in enumerate(nodes.tolist()):
                uid = f"U{i:04d}"
                svc.upsert_unit(uid, lat=float(g.node_lat[n]), lon=float(g.node_lon[n]),
                                unit_type="engine" if i % 2 else "medic")
                units[uid] = (float(g.node_lat[n]), float(g.node_lon[n]))
            ids = sorted(units)
            t_grid, t_cold, t_base, t_moved, t_status, lag = [], [], [], [], [], []
            cache = cov.CoverageCache()
            for _ in range(reps):
                t0 = time.perf_counter()
                grid = cov.build_grid(svc, [], resolution=res, calls=[])
                t_grid.append(time.perf_counter() - t0)
                took, gap = await _loop_lag(cov._columns(svc, grid, units, cache))
                t_cold.append(took)
                lag.append(gap)
                t0 = time.perf_counter()
                svc.eta_table(lat=grid.lat.tolist(), lon=grid.lon.tolist(), unit_ids=ids)
                t_base.append(time.perf_counter() - t0)
                moved = dict(units)
                la, lo = moved[ids[0]]
                moved[ids[0]] = (la + 0.01, lo)   # ~1.1 km: beyond the tolerance
                svc.move_unit(ids[0], lat=la + 0.01, lon=lo)
                t0 = time.perf_counter()
                await cov._columns(svc, grid, moved, cache)
                t_moved.append(time.perf_counter() - t0)
                svc.move_unit(ids[0], lat=la, lon=lo)
                t0 = time.perf_counter()
                await cov._columns(svc, grid, moved, cache)   # nothing to do
                cov._nth_best(grid, [u for u in ids if int(u[1:]) % 2], 1, 1.0)
                t_status.append(time.perf_counter() - t0)
            row = {"resolution": res, "units": n_units, "cells": len(grid.cells),
                   "grid_ms": statistics.median(t_grid) * 1e3,
                   "cold_ms": statistics.median(t_cold) * 1e3,
                   "baseline_one_call_ms": statistics.median(t_base) * 1e3,
                   "one_moved_ms": statistics.median(t_moved) * 1e3,
                   "status_ms": statistics.median(t_status) * 1e3,
                   "loop_max_ms": statistics.median(lag) * 1e3}
            out["rows"].append(row)
            print(f"{res:>3} {n_units:>5} {row['cells']:>6} {row['grid_ms']:>8.1f} {row['cold_ms']:>8.1f} "
                  f"{row['baseline_one_call_ms']:>8.1f} {row['one_moved_ms']:>10.1f} "
                  f"{row['status_ms']:>9.2f} {row['loop_max_ms']:>11.1f}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graph", type=Path, default=Path("/work/sf.cadgraph"))
    p.add_argument("--units", type=int, nargs="+", default=[60, 300])
    p.add_argument("--resolutions", type=int, nargs="+", default=[9, 10])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    result = asyncio.run(run(a.graph, a.units, a.resolutions, a.reps))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
