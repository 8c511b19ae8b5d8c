"""Address and place actions: import an address file, manage places, build the geocoder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import structlog

from cad.errors import NotFound
from cad.uow import RequestContext, unit_of_work
from incidents.geocode import StreetIndex
from incidents.geocoding import repository as repo
from incidents.geocoding.importer import ParseResult, parse_file, parse_places
from incidents.geocoding.index import (
    AddressPoints,
    Geocoder,
    GeocoderRef,
    Place,
    Reverse,
    tie_to_streets,
)
from routing.graph import RoadGraph

log = structlog.get_logger("incidents.geocoding")

COPY_BATCH = 20_000
# A point farther than this from every known address is described by its street and corners.
DESCRIBE_WITHIN_M = 60.0


@dataclass(frozen=True)
class ImportResult:
    format: str
    rows_read: int
    changed: int          # inserted or moved: 0 when the same file is imported again
    total: int            # points in the table afterwards
    bad: list[tuple[int, str]]
    n_bad: int


async def import_addresses(*, pool: asyncpg.Pool, path: Path,
                           progress: Callable[[str, int, int], None] | None = None
                           ) -> ImportResult:
    """Load ``path`` into ``address_points`` in one transaction: parse, COPY into a staging
    table, merge. Idempotent (a second run changes nothing); bad rows are reported by line.
    ``progress(phase, done, total)`` is called as it goes."""
    def parsed(n: int) -> None:
        if progress is not None:
            progress("read", n, 0)

    parsed_file: ParseResult = parse_file(path, progress=parsed)
    rows = [r.as_tuple() for r in parsed_file.rows]
    async with pool.acquire() as conn, conn.transaction():
        await repo.stage(conn)
        for lo in range(0, len(rows), COPY_BATCH):
            await repo.copy_rows(conn, rows[lo:lo + COPY_BATCH])
            if progress is not None:
                progress("load", min(lo + COPY_BATCH, len(rows)), len(rows))
        changed = await repo.merge(conn)
        total = await repo.count(conn)
    return ImportResult(parsed_file.format, len(rows) + parsed_file.n_bad, changed, total,
                        parsed_file.bad, parsed_file.n_bad)


@dataclass(frozen=True)
class TieReport:
    points: int
    tied: int                            # on an edge of the graph carrying their street's name
    median_distance_m: float
    untied_streets: list[tuple[str, int]]   # (street, points), most points first


def tie_report(*, path: Path, graph: RoadGraph, top: int = 10) -> TieReport:
    """How the points of an address file tie to the road graph's streets: what the server
    will route each address to, and which streets of the file the graph does not name."""
    rows = parse_file(path).rows
    streets = [r.street for r in rows]
    ties = tie_to_streets(graph, streets, np.array([r.lat for r in rows]),
                          np.array([r.lon for r in rows]))
    ok = ties.edge >= 0
    missing: dict[str, int] = {}
    for s, t in zip(streets, ok.tolist(), strict=True):
        if not t:
            missing[s] = missing.get(s, 0) + 1
    worst = sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return TieReport(len(rows), int(ok.sum()),
                     float(np.median(ties.distance_m[ok])) if ok.any() else float("nan"), worst)


def place_view(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "aliases": list(row["aliases"]),
            "lat": row["lat"], "lon": row["lon"], "updated_at": row["updated_at"].isoformat()}


def to_place(row: Any) -> Place:
    return Place(row["id"], row["name"], tuple(row["aliases"]), row["lat"], row["lon"])


async def load_geocoder(*, pool: asyncpg.Pool, graph: RoadGraph | None,
                        streets: StreetIndex | None) -> GeocoderRef:
    """Read the address and place tables and build the index in a thread (the build ties
    every point to its street edge: seconds on a city, not for the event loop)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                       readonly=True):
        stamp = await repo.stamp(conn)
        points = await repo.all_points(conn)
        places = await repo.all_places(conn)
    data = AddressPoints(
        [r["street"] for r in points], [r["street_label"] for r in points],
        np.fromiter((r["number"] for r in points), np.int64, len(points)),
        np.fromiter((r["lat"] for r in points), np.float64, len(points)),
        np.fromiter((r["lon"] for r in points), np.float64, len(points)))
    built = await asyncio.to_thread(Geocoder, data, places=[to_place(p) for p in places],
                                    graph=graph, streets=streets)
    return GeocoderRef(built, stamp=stamp)


async def refresh_geocoder(*, pool: asyncpg.Pool, ref: GeocoderRef) -> bool:
    """Rebuild this worker's geocoder when the tables changed since it was built (an import,
    or a place edited through another worker); True when it did."""
    async with pool.acquire() as conn:
        stamp = await repo.stamp(conn)
    if stamp == ref.stamp:
        return False
    current = ref.current
    if stamp[:2] == (ref.stamp or (None, None))[:2]:   # only places changed: keep the points
        async with pool.acquire() as conn:
            places = [to_place(r) for r in await repo.all_places(conn)]
        ref.current, ref.stamp = current.with_places(places), stamp
        return True
    new = await load_geocoder(pool=pool, graph=current.graph, streets=current.street_index)
    ref.current, ref.stamp = new.current, new.stamp
    return True


async def run_refresher(*, pool: asyncpg.Pool, ref: GeocoderRef, interval_s: float,
                        stop: asyncio.Event) -> None:
    """Every ``interval_s`` until ``stop``: pick up imports and other workers' place edits."""
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
            return
        except TimeoutError:
            pass
        try:
            if await refresh_geocoder(pool=pool, ref=ref):
                log.info("geocoder_refreshed", address_points=ref.current.n_points,
                         places=ref.current.n_places)
        except Exception:  # retried next round; serving goes on with the index it has
            log.exception("geocoder_refresh_failed")


async def list_places(*, pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        return [place_view(r) for r in await repo.all_places(conn)]


async def put_place(*, pool: asyncpg.Pool, ctx: RequestContext, place_id: str, name: str,
                    aliases: list[str], lat: float, lon: float) -> tuple[dict[str, Any], bool,
                                                                         list[Place]]:
    """Create or change a place; returns its view, whether it was created, and all places
    (for the caller to refresh the geocoder)."""
    async with unit_of_work(pool, ctx) as uow:
        row, created = await repo.upsert_place(uow.conn, place_id=place_id, name=name,
                                               aliases=aliases, lat=lat, lon=lon)
        uow.audit("place.put", target=place_id, details={"name": name, "aliases": aliases})
        places = [to_place(r) for r in await repo.all_places(uow.conn)]
    return place_view(row), created, places


async def delete_place(*, pool: asyncpg.Pool, ctx: RequestContext, place_id: str) -> list[Place]:
    async with unit_of_work(pool, ctx) as uow:
        if not await repo.delete_place(uow.conn, place_id):
            raise NotFound(f"no place {place_id}")
        uow.audit("place.delete", target=place_id, details={})
        places = [to_place(r) for r in await repo.all_places(uow.conn)]
    return places


@dataclass(frozen=True)
class PlacesImport:
    rows_read: int
    bad: list[tuple[int, str]]
    created: int
    changed: int
    total: int


async def import_places(*, pool: asyncpg.Pool, ctx: RequestContext, path: Path) -> PlacesImport:
    """Load a places file (``importer.parse_places``): every good row is created or changed
    by id in one transaction with one audit record; importing the same file again leaves
    every place as it was (a row equal to its place is not written). Running workers pick the
    places up at their next refresh."""
    parsed = await asyncio.to_thread(parse_places, path)
    latest = {r.id: r for r in parsed.rows}
    created = changed = 0
    async with unit_of_work(pool, ctx) as uow:
        have = {r["id"]: r for r in await repo.all_places(uow.conn)}
        for r in latest.values():
            old = have.get(r.id)
            if old is not None and (old["name"], list(old["aliases"]), old["lat"], old["lon"]) == (
                    r.name, r.aliases, r.lat, r.lon):
                continue
            _, was_created = await repo.upsert_place(uow.conn, place_id=r.id, name=r.name,
                                                     aliases=r.aliases, lat=r.lat, lon=r.lon)
            created += was_created
            changed += not was_created
        if created or changed:
            uow.audit("place.import", target=path.name,
                      details={"created": created, "changed": changed, "bad": len(parsed.bad)})
        total = len(await repo.all_places(uow.conn))
    return PlacesImport(len(parsed.rows) + len(parsed.bad), parsed.bad, created, changed, total)


def describe(r: Reverse) -> str:
    """'935 FOLSOM ST (between 5TH ST and 6TH ST)', or the street, or the coordinates."""
    if r.address is not None and r.distance_m is not None and r.distance_m <= DESCRIBE_WITHIN_M:
        head = r.address
    elif r.street is not None:
        head = r.street
    else:
        return f"{r.lat:.5f}, {r.lon:.5f}"
    if len(r.cross_streets) == 2:
        return f"{head} (between {r.cross_streets[0]} and {r.cross_streets[1]})"
    if len(r.cross_streets) == 1:
        return f"{head} (near {r.cross_streets[0]})"
    return head
