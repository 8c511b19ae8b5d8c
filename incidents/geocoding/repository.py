"""All SQL of the ``address_points`` and ``places`` tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

_COLUMNS = ("street", "street_label", "number", "number_suffix", "unit", "lat", "lon", "source")

# Upsert from the staged copy: a re-import of the same file changes nothing; a moved point
# is updated in place. DISTINCT ON keeps one row of each key when a file repeats one.
_MERGE = """
INSERT INTO address_points (street, street_label, number, number_suffix, unit, lat, lon, source)
SELECT DISTINCT ON (street, number, number_suffix, unit)
       street, street_label, number, number_suffix, unit, lat, lon, source
  FROM address_stage ORDER BY street, number, number_suffix, unit
ON CONFLICT (street, number, number_suffix, unit) DO UPDATE
   SET lat = EXCLUDED.lat, lon = EXCLUDED.lon, street_label = EXCLUDED.street_label,
       source = EXCLUDED.source, imported_at = clock_timestamp()
 WHERE (address_points.lat, address_points.lon, address_points.street_label)
       IS DISTINCT FROM (EXCLUDED.lat, EXCLUDED.lon, EXCLUDED.street_label)
"""


async def stage(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE address_stage (LIKE address_points INCLUDING DEFAULTS)"
                       " ON COMMIT DROP")


async def copy_rows(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table("address_stage", records=rows, columns=list(_COLUMNS))


async def merge(conn: asyncpg.Connection) -> int:
    """Rows inserted or changed."""
    status = await conn.execute(_MERGE)
    return int(status.split()[-1])


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM address_points"))


async def all_points(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """One row per point: units of one building collapse onto their address."""
    return await conn.fetch(
        "SELECT DISTINCT ON (street, number) street, street_label, number, lat, lon "
        "FROM address_points ORDER BY street, number, number_suffix, unit")


async def all_places(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM places ORDER BY id")


async def upsert_place(conn: asyncpg.Connection, *, place_id: str, name: str,
                       aliases: list[str], lat: float, lon: float) -> tuple[asyncpg.Record, bool]:
    """The place and whether it was created."""
    row = await conn.fetchrow(
        "INSERT INTO places (id, name, aliases, lat, lon) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, aliases = EXCLUDED.aliases, "
        "lat = EXCLUDED.lat, lon = EXCLUDED.lon, updated_at = clock_timestamp() "
        "RETURNING *, (xmax = 0) AS created", place_id, name, aliases, lat, lon)
    assert row is not None
    return row, bool(row["created"])


async def delete_place(conn: asyncpg.Connection, place_id: str) -> bool:
    return await conn.fetchval("DELETE FROM places WHERE id = $1 RETURNING true", place_id) is True


async def stamp(conn: asyncpg.Connection) -> tuple[Any, ...]:
    """Changes whenever either table does: what a worker compares to rebuild its geocoder."""
    row = await conn.fetchrow(
        "SELECT (SELECT max(id) FROM address_points) AS points_id, "
        "(SELECT max(imported_at) FROM address_points) AS points_at, "
        "(SELECT count(*) FROM places) AS places, (SELECT max(updated_at) FROM places) AS places_at")
    assert row is not None
    return tuple(row.values())
