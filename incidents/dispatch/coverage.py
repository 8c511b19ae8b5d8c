"""Coverage: how much of the agencies' area an available unit of a type reaches by road within a
threshold right now, where the holes are, and what the picture would be if given units were
committed (docs/coverage.md).

Demand points are H3 cells over the agencies' zones (the road graph's extent when they have
none) whose centre lies within the snapping limit of a road; each is weighed by the calls
received in it. A cell's ETA is the road travel time from the nearest available unit, in the
unit -> incident direction, by the routing index the recommendation queries, times the same ETA
factor. ETAs are kept per unit and recomputed only for a unit that moved: a status change costs
no routing at all."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import h3
import numpy as np
import shapely
import structlog

from cad.errors import Conflict, Forbidden, Invalid
from cad.security.scope import Scope
from incidents import repository as incident_repo
from incidents.dispatch import repository as repo
from routing.build import haversine_m
from routing.errors import RoutingError
from routing.service import RoutingService
from units import repository as unit_repo
from units.status import AVAILABLE, UnitStatus

if TYPE_CHECKING:  # the deps hold this module's cache
    from incidents.dispatch.deps import DispatchDeps

log = structlog.get_logger("incidents.dispatch.coverage")

# More demand cells than this is refused (422 naming the resolution): San Francisco is ~1,150
# road cells at resolution 9 and ~8,000 at 10, which still answers in about a second.
MAX_CELLS = 10_000
# Points per routing call. The routing kernels hold the GIL: 128 points over 60 units took
# ~11 ms on /work/sf.cadgraph, which bounds how long the event loop waits on one chunk.
CHUNK_POINTS = 128
# A unit's ETAs are reused until it has moved farther than this from where they were computed
# (AVL): ~100 m is 10-20 s of urban driving, below the spread of the calibration itself.
MOVE_TOLERANCE_M = 100.0
# Grids (cells, zones, call weights) are rebuilt after this long, so new calls and zone edits
# weigh in; the per-unit ETAs go with them.
GRID_TTL_S = 3600.0
GRIDS_KEPT = 16
# Cached ETAs are 4 bytes per unit and cell: 2,000 units over 8,000 cells is 64 MB. Least
# recently used grids go first beyond this.
CACHE_BYTES = 256 * 2**20
MAX_NTH = 10


@dataclass
class Grid:
    """Demand cells for one (agencies, resolution, graph)."""

    cells: list[str]
    lat: np.ndarray
    lon: np.ndarray
    rings: list[list[list[float]]]         # each cell's boundary, closed, [lon, lat]
    zones: list[list[str]]                 # zone ids whose area holds the cell's centre
    zone_info: dict[str, dict[str, Any]]   # zone id -> agency, name, kind
    zone_cells: dict[str, np.ndarray]      # zone id -> indices of its cells
    weight: np.ndarray                     # calls received in the cell
    area_source: str                       # "zones" | "graph_extent"
    cells_off_road: int
    calls_outside: int
    built_at: float
    # unit id -> (lat, lon the ETAs were computed from, ETA s per cell, float32)
    columns: dict[str, tuple[float, float, np.ndarray]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class CoverageCache:
    """This worker's grids and per-unit ETAs (a cache: PostgreSQL stays the truth for which
    units are available, the routing index for where they are)."""

    grids: OrderedDict[tuple[Any, ...], Grid] = field(default_factory=OrderedDict)
    building: dict[tuple[Any, ...], asyncio.Lock] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class CoverageQuery:
    agencies: list[str] | None
    unit_types: list[str]
    threshold_s: float | None
    nth: int
    without: list[str]
    resolution: int


def threshold_for(deps: DispatchDeps, unit_types: Sequence[str], nth: int) -> float:
    """The default threshold: the strictest of the asked types' own (NFPA 1710: 240 s for the
    first engine); the n-th unit and types without one: the default (480 s)."""
    s = deps.settings
    if nth > 1 or not unit_types:
        return s.coverage_default_threshold_s
    return min(s.coverage_thresholds_s.get(t, s.coverage_default_threshold_s) for t in unit_types)


def parse_without(raw: str | None) -> list[str]:
    if raw is None or not raw.strip():
        return []
    ids = [p.strip() for p in raw.split(",") if p.strip()]
    bad = [i for i in ids if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", i)]
    if bad:
        raise Invalid(f"without: {bad[0]!r} is not a unit id", field="without")
    if len(ids) > 50:
        raise Invalid("without: at most 50 units", field="without")
    return sorted(set(ids))


def eta_factor(deps: DispatchDeps, now: datetime) -> float:
    """The recommendation's factor: calibrated per local hour where known, else the one."""
    s = deps.settings
    hour = now.astimezone(ZoneInfo(s.analytics_timezone)).hour
    return float(s.eta_hour_factors.get(hour, s.eta_calibration_factor))


# --- the grid ----------------------------------------------------------------------------------
def _km2(geom: shapely.Geometry) -> float:
    lat = geom.centroid.y if not geom.is_empty else 0.0
    return float(geom.area) * 111.32 ** 2 * max(np.cos(np.radians(lat)), 0.01)


def build_grid(routing: RoutingService, zones: list[dict[str, Any]], *, resolution: int,
               calls: list[tuple[float, float, int]]) -> Grid:
    """Cells over the zones (or the graph's extent), off-road cells dropped, weighed by calls.
    CPU only: run it off the event loop."""
    cell_area = h3.average_hexagon_area(resolution, "km^2")
    members: dict[str, list[str]] = {}
    zone_info: dict[str, dict[str, Any]] = {}
    if zones:
        geoms = [shapely.geometry.shape(z["geometry"]) for z in zones]
        estimate = sum(_km2(g) for g in geoms) / cell_area
        if estimate > 4 * MAX_CELLS:
            raise Invalid(f"resolution {resolution} makes about {estimate:,.0f} cells over these "
                          f"zones (at most {MAX_CELLS:,}): choose a coarser one", field="resolution")
        for z in zones:
            zone_info[z["id"]] = {"agency": z["agency"], "name": z["name"], "kind": z["kind"]}
            for c in h3.geo_to_cells(z["geometry"], resolution):
                members.setdefault(c, []).append(z["id"])
        source = "zones"
    else:
        g = routing.graph
        lat0, lat1 = float(g.node_lat.min()), float(g.node_lat.max())
        lon0, lon1 = float(g.node_lon.min()), float(g.node_lon.max())
        box = shapely.box(lon0, lat0, lon1, lat1)
        estimate = _km2(box) / cell_area
        if estimate > 4 * MAX_CELLS:
            raise Invalid(f"resolution {resolution} makes about {estimate:,.0f} cells over the road "
                          f"graph (at most {MAX_CELLS:,}): choose a coarser one", field="resolution")
        poly = h3.LatLngPoly([(lat0, lon0), (lat0, lon1), (lat1, lon1), (lat1, lon0)])
        members = {c: [] for c in h3.polygon_to_cells(poly, resolution)}
        source = "graph_extent"
    cells = sorted(members)
    if len(cells) > 4 * MAX_CELLS:
        raise Invalid(f"resolution {resolution} makes {len(cells):,} cells (at most {MAX_CELLS:,} "
                      "near a road): choose a coarser one", field="resolution")
    centres = np.array([h3.cell_to_latlng(c) for c in cells], dtype=float).reshape(-1, 2)
    on_road = np.ones(len(cells), dtype=bool)
    if len(cells):
        on_road = ~np.asarray(routing.snap(centres[:, 0], centres[:, 1]).beyond_limit, dtype=bool)
    kept = [c for c, keep in zip(cells, on_road.tolist(), strict=True) if keep]
    if len(kept) > MAX_CELLS:
        raise Invalid(f"resolution {resolution} makes {len(kept):,} cells near a road (at most "
                      f"{MAX_CELLS:,}): choose a coarser one", field="resolution")
    where = {c: i for i, c in enumerate(kept)}
    weight = np.zeros(len(kept))
    outside = 0
    for lat, lon, n in calls:
        i = where.get(h3.latlng_to_cell(lat, lon, resolution))
        if i is None:
            outside += n
        else:
            weight[i] += n
    rings = []
    for c in kept:
        ring = [[round(lo, 6), round(la, 6)] for la, lo in h3.cell_to_boundary(c)]
        ring.append(ring[0])
        rings.append(ring)
    zone_cells: dict[str, list[int]] = {}
    for i, c in enumerate(kept):
        for zid in members[c]:
            zone_cells.setdefault(zid, []).append(i)
    return Grid(cells=kept, lat=centres[on_road, 0], lon=centres[on_road, 1], rings=rings,
                zones=[members[c] for c in kept], zone_info=zone_info,
                zone_cells={z: np.array(ix, dtype=np.int64) for z, ix in zone_cells.items()},
                weight=weight,
                area_source=source, cells_off_road=int((~on_road).sum()), calls_outside=outside,
                built_at=time.monotonic())


async def _grid(deps: DispatchDeps, cache: CoverageCache, routing: RoutingService,
                agencies: list[str] | None, resolution: int) -> Grid:
    key = (tuple(agencies) if agencies is not None else None, resolution, id(routing.graph))
    lock = cache.building.setdefault(key, asyncio.Lock())
    async with lock:
        grid = cache.grids.get(key)
        if grid is not None and time.monotonic() - grid.built_at < GRID_TTL_S:
            cache.grids.move_to_end(key)
            return grid
        async with deps.pool.acquire() as conn:
            zones = [dict(z) for z in await incident_repo.list_zones(conn, agencies=agencies)]
            days = deps.settings.coverage_demand_days
            calls = ([(float(r["lat"]), float(r["lon"]), int(r["n"])) for r in
                      await repo.calls_per_location(conn, agencies=agencies, days=days)]
                     if days > 0 else [])
        grid = await asyncio.to_thread(build_grid, routing, zones, resolution=resolution, calls=calls)
        cache.stats["grids_built"] += 1
        cache.grids[key] = grid
        while len(cache.grids) > GRIDS_KEPT:
            old, _ = cache.grids.popitem(last=False)
            cache.building.pop(old, None)
        return grid


def _evict(cache: CoverageCache, *, keep: Grid) -> None:
    """Drop least recently used grids while the cached ETAs exceed CACHE_BYTES."""
    def size() -> int:
        return sum(len(g.cells) * len(g.columns) * 4 for g in cache.grids.values())
    while size() > CACHE_BYTES:
        key = next((k for k, g in cache.grids.items() if g is not keep), None)
        if key is None:
            return
        del cache.grids[key]
        cache.building.pop(key, None)
        cache.stats["grids_evicted"] += 1


# --- per-unit ETAs -----------------------------------------------------------------------------
async def _columns(routing: RoutingService, grid: Grid, units: dict[str, tuple[float, float]],
                   cache: CoverageCache) -> None:
    """Make sure ``grid.columns`` holds every unit's ETAs from its current indexed position."""
    stale = [uid for uid, (la, lo) in units.items()
             if (col := grid.columns.get(uid)) is None
             or float(haversine_m(col[0], col[1], la, lo)) > MOVE_TOLERANCE_M]
    if not stale or not len(grid.cells):
        return
    t0 = time.perf_counter()
    fresh = {uid: np.empty(len(grid.cells), dtype=np.float32) for uid in stale}
    for start in range(0, len(grid.cells), CHUNK_POINTS):
        stop = start + CHUNK_POINTS
        lat, lon = grid.lat[start:stop].tolist(), grid.lon[start:stop].tolist()
        ids = [u for u in stale if u in fresh]
        try:
            table = await asyncio.to_thread(routing.eta_table, lat=lat, lon=lon, unit_ids=ids)
        except RoutingError:
            # a unit left the index meanwhile (taken off the roster): leave it out this round
            present = set(routing.unit_ids())
            for u in ids:
                if u not in present:
                    fresh.pop(u, None)
            ids = [u for u in ids if u in present]
            table = await asyncio.to_thread(routing.eta_table, lat=lat, lon=lon, unit_ids=ids)
        for row, uid in enumerate(table.unit_ids):
            fresh[str(uid)][start:stop] = table.eta_s[row]
    for uid, etas in fresh.items():
        la, lo = units[uid]
        grid.columns[uid] = (la, lo, etas)
    cache.stats["unit_columns_computed"] += len(fresh)
    log.debug("coverage_columns", units=len(fresh), cells=len(grid.cells),
              ms=round((time.perf_counter() - t0) * 1000, 1))


def _nth_best(grid: Grid, ids: list[str], nth: int, factor: float) -> tuple[np.ndarray, list[str | None]]:
    """Per cell: the n-th smallest ETA (s, inf when fewer units reach it) and that unit."""
    n = len(grid.cells)
    if len(ids) < nth or n == 0:
        return np.full(n, np.inf), [None] * n
    m = np.vstack([grid.columns[u][2] for u in ids])
    # Ties by unit id, as the recommendation breaks them: ids are sorted, and argmin and a
    # stable argsort take the first. The factor scales every ETA alike: applied after.
    order = m.argmin(axis=0) if nth == 1 else np.argsort(m, axis=0, kind="stable")[nth - 1]
    eta = m[order, np.arange(n)].astype(np.float64) * factor
    who: list[str | None] = [ids[i] if np.isfinite(t) else None
                             for i, t in zip(order.tolist(), eta.tolist(), strict=True)]
    return eta, who


def _share(part: float, whole: float) -> float | None:
    return None if whole <= 0 else round(part / whole, 4)


def bands(threshold_s: float) -> list[dict[str, Any]]:
    """ETA bands the map colours by; each with words a screen reader says."""
    half, over = threshold_s / 2, threshold_s * 1.5
    return [
        {"band": 0, "label": f"covered: within {half:.0f} s", "covered": True,
         "min_eta_s": 0.0, "max_eta_s": half},
        {"band": 1, "label": f"covered: {half:.0f} to {threshold_s:.0f} s", "covered": True,
         "min_eta_s": half, "max_eta_s": threshold_s},
        {"band": 2, "label": f"not covered: {threshold_s:.0f} to {over:.0f} s", "covered": False,
         "min_eta_s": threshold_s, "max_eta_s": over},
        {"band": 3, "label": f"not covered: over {over:.0f} s", "covered": False,
         "min_eta_s": over, "max_eta_s": None},
        {"band": 4, "label": "not covered: no available unit reaches it", "covered": False,
         "min_eta_s": None, "max_eta_s": None},
    ]


def _band(eta: np.ndarray, threshold_s: float) -> np.ndarray:
    b = np.full(len(eta), 4, dtype=np.int8)
    finite = np.isfinite(eta)
    b[finite] = 3
    b[finite & (eta <= threshold_s * 1.5)] = 2
    b[finite & (eta <= threshold_s)] = 1
    b[finite & (eta <= threshold_s / 2)] = 0
    return b


def _features(grid: Grid, eta: np.ndarray, who: list[str | None], covered: np.ndarray,
              band: np.ndarray, lost: np.ndarray) -> list[dict[str, Any]]:
    etas = [round(e, 1) if np.isfinite(e) else None for e in eta.tolist()]
    weights, cov, bands_, lost_ = grid.weight.tolist(), covered.tolist(), band.tolist(), lost.tolist()
    return [{"type": "Feature", "id": cell,
             "geometry": {"type": "Polygon", "coordinates": [grid.rings[i]]},
             "properties": {"h3": cell, "zones": grid.zones[i], "weight": weights[i],
                            "eta_s": etas[i], "unit_id": who[i], "covered": cov[i], "band": bands_[i],
                            "lost_coverage": lost_[i]}}
            for i, cell in enumerate(grid.cells)]


# --- the query ---------------------------------------------------------------------------------
async def coverage(*, deps: DispatchDeps, scope: Scope, query: CoverageQuery) -> dict[str, Any]:
    routing = deps.routing
    if routing is None:
        raise Conflict("no road graph is loaded: coverage needs road travel times "
                       "(set CAD_GRAPH_PATH)")
    if not 1 <= query.nth <= MAX_NTH:
        raise Invalid(f"nth must be 1..{MAX_NTH}", field="nth")
    if query.agencies is not None:
        for a in query.agencies:
            scope.require(a, field="agency")
    agencies = scope.narrowed(query.agencies)
    if agencies is not None and not agencies:
        raise Forbidden("you act for no agency", extra={"field": "agency"})
    cache = deps.coverage
    await deps.locator.settle()  # changes seen in the event log are in the index first
    now = datetime.now(UTC)
    # Training agencies the caller does not act for alone stay out unless named (a training
    # exercise's units never cover the real area: docs/analytics.md, "Training mode").
    hidden = frozenset(scope.hidden_for(query.agencies))
    async with deps.pool.acquire() as conn:
        rows = [r for r in await unit_repo.units_with_stations(conn)
                if r["active"] and (agencies is None or r["agency"] in agencies)
                and r["agency"] not in hidden]
    roster_types = sorted({r["unit_type"] for r in rows})
    unknown = sorted(set(query.unit_types) - set(roster_types))
    if unknown:
        raise Invalid(f"unit_type: no unit of your agencies is of type {', '.join(unknown)} "
                      f"(types: {', '.join(roster_types) or 'none'})", field="unit_type")
    ids_here = {r["id"] for r in rows}
    not_ours = [u for u in query.without if u not in ids_here]
    if not_ours:  # another agency's unit reads as unknown: its existence is not disclosed
        raise Invalid(f"without: unknown unit {not_ours[0]}", field="without")
    without = set(query.without)
    grid = await _grid(deps, cache, routing, agencies, query.resolution)

    now_available: dict[str, str] = {}  # unit id -> type: available in the database, placed
    no_position: list[str] = []
    positions: dict[str, tuple[float, float]] = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        if UnitStatus(r["status"]) not in AVAILABLE:
            continue
        pos = deps.locator.indexed.get(r["id"])
        if pos is None:
            if r["id"] not in without:
                no_position.append(r["id"])
            continue
        now_available[r["id"]] = r["unit_type"]
        positions[r["id"]] = (pos.lat, pos.lon)
    available = {u: t for u, t in now_available.items() if u not in without}
    async with grid.lock:
        for gone in set(grid.columns) - ids_here:   # off the roster: its ETAs are dead weight
            del grid.columns[gone]
        await _columns(routing, grid, positions, cache)
        _evict(cache, keep=grid)
        factor = eta_factor(deps, now)
        counted = [u for u, t in available.items() if (not query.unit_types or t in query.unit_types)
                   and u in grid.columns]
        threshold = query.threshold_s or threshold_for(deps, query.unit_types, query.nth)
        eta, who = _nth_best(grid, counted, query.nth, factor)
        eta_now = eta
        if without:   # the picture as it is, to show the hole the what-if leaves
            eta_now, _ = _nth_best(grid, [u for u, t in now_available.items() if u in grid.columns
                                          and (not query.unit_types or t in query.unit_types)],
                                   query.nth, factor)
        by_type = []
        for t in roster_types:
            t_ids = [u for u, ut in available.items() if ut == t and u in grid.columns]
            t_thr = threshold_for(deps, [t], 1)
            t_eta, _ = _nth_best(grid, t_ids, 1, factor)
            t_cov = t_eta <= t_thr
            by_type.append({"unit_type": t, "threshold_s": t_thr, "units_available": len(t_ids),
                            "cells_covered": int(t_cov.sum()),
                            "covered_share": _share(float(t_cov.sum()), len(grid.cells)),
                            "demand_covered_share": _share(float(grid.weight[t_cov].sum()),
                                                           float(grid.weight.sum()))})
    covered = eta <= threshold
    lost = (eta_now <= threshold) & ~covered
    # Thousands of small dicts: built in a thread, which yields the GIL to the event loop.
    features = await asyncio.to_thread(_features, grid, eta, who, covered, _band(eta, threshold), lost)
    zones_out = []
    for zid, info in sorted(grid.zone_info.items()):
        idx = grid.zone_cells.get(zid, np.zeros(0, dtype=np.int64))
        cov = covered[idx]
        w = grid.weight[idx]
        zones_out.append({"zone_id": zid, **info, "cells": len(idx), "cells_covered": int(cov.sum()),
                          "covered_share": _share(float(cov.sum()), len(idx)),
                          "demand": float(w.sum()),
                          "demand_covered_share": _share(float(w[cov].sum()), float(w.sum()))})
    total_w = float(grid.weight.sum())
    summary = {
        "agencies": agencies, "unit_types": list(query.unit_types), "threshold_s": threshold,
        "nth": query.nth, "without": sorted(without), "resolution": query.resolution,
        "area_source": grid.area_source, "cells": len(grid.cells), "cells_covered": int(covered.sum()),
        "covered_share": _share(float(covered.sum()), len(grid.cells)),
        "cells_off_road": grid.cells_off_road, "demand_days": deps.settings.coverage_demand_days,
        "demand": total_w, "demand_covered_share": _share(float(grid.weight[covered].sum()), total_w),
        "calls_outside_cells": grid.calls_outside, "eta_factor": factor,
        "units_counted": counted, "units_without_position": no_position,
        "what_if": None if not without else {
            "covered_share_now": _share(float((eta_now <= threshold).sum()), len(grid.cells)),
            "cells_losing_coverage": int(lost.sum()),
            "demand_losing_coverage": float(grid.weight[lost].sum())},
        "computed_at": now.isoformat(), "bands": bands(threshold), "by_type": by_type,
        "zones": zones_out}
    return {"type": "FeatureCollection", "features": features, "summary": summary}
