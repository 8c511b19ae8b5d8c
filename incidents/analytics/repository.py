"""All SQL of analytics: the imported history (``historical_calls``,
``historical_unit_responses``) and ``disposition_codes``, which this package owns, and the
reads over ``analytics_incidents`` / ``analytics_unit_responses`` (migration 0008), the views
that put live incidents (owned by the incidents core) and imported history side by side.
Every aggregate is computed by PostgreSQL; Python sees one row per group."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

_CALL_COLS = ("call_number", "incident_number", "call_type", "call_type_group", "priority",
              "received_at", "entry_at", "disposition", "disposition_raw", "zone", "station",
              "battalion", "address", "lat", "lon")
_UNIT_COLS = ("call_number", "unit_id", "unit_type", "discipline", "dispatch_seq", "dispatched_at",
              "en_route_at", "on_scene_at", "transporting_at", "at_hospital_at", "cleared_at")


async def import_history(conn: asyncpg.Connection, *, agency: str, mapping: str,
                         calls: Sequence[dict[str, Any]], units: Sequence[dict[str, Any]]
                         ) -> tuple[int, int]:
    """Insert calls and unit responses that are not there yet (natural keys: agency + call
    number, call + unit id); returns (calls added, unit responses added). Runs in the caller's
    transaction. Writes no event and sends no NOTIFY: imported history is not live."""
    await conn.execute(
        "CREATE TEMP TABLE hist_call_stage (call_number text, incident_number text, "
        "call_type text, call_type_group text, priority text, received_at timestamptz, "
        "entry_at timestamptz, disposition text, disposition_raw text, zone text, station text, "
        "battalion text, address text, lat double precision, lon double precision) ON COMMIT DROP;"
        "CREATE TEMP TABLE hist_unit_stage (call_number text, unit_id text, unit_type text, "
        "discipline text, "
        "dispatch_seq integer, dispatched_at timestamptz, en_route_at timestamptz, "
        "on_scene_at timestamptz, transporting_at timestamptz, at_hospital_at timestamptz, "
        "cleared_at timestamptz) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "hist_call_stage", columns=_CALL_COLS,
        records=[tuple(c[k] for k in _CALL_COLS) for c in calls])
    await conn.copy_records_to_table(
        "hist_unit_stage", columns=_UNIT_COLS,
        records=[tuple(u[k] for k in _UNIT_COLS) for u in units])
    calls_added = await conn.fetchval(
        """WITH ins AS (
               INSERT INTO historical_calls (agency, mapping, call_number, incident_number,
                   call_type, call_type_group, priority, received_at, entry_at, disposition,
                   disposition_raw, zone, station, battalion, address, lat, lon)
               SELECT $1, $2, call_number, incident_number, call_type, call_type_group,
                      priority, received_at, entry_at, disposition, disposition_raw, zone,
                      station, battalion, address, lat, lon
               FROM hist_call_stage
               ON CONFLICT (agency, call_number) DO NOTHING
               RETURNING 1)
           SELECT count(*) FROM ins""", agency, mapping)
    units_added = await conn.fetchval(
        """WITH ins AS (
               INSERT INTO historical_unit_responses (call_id, agency, call_type,
                   call_type_group, priority, zone, station, received_at, unit_id, unit_type,
                   discipline,
                   dispatch_seq, dispatched_at, en_route_at, on_scene_at, transporting_at,
                   at_hospital_at, cleared_at)
               SELECT h.id, h.agency, h.call_type, h.call_type_group, h.priority, h.zone,
                      h.station, h.received_at, s.unit_id, s.unit_type, s.discipline,
                      s.dispatch_seq,
                      s.dispatched_at,
                      s.en_route_at, s.on_scene_at, s.transporting_at, s.at_hospital_at,
                      s.cleared_at
               FROM hist_unit_stage s
               JOIN historical_calls h ON h.agency = $1 AND h.call_number = s.call_number
               ON CONFLICT (call_id, unit_id) DO NOTHING
               RETURNING 1)
           SELECT count(*) FROM ins""", agency)
    # A second statement: a data-modifying WITH does not see its own inserts.
    await conn.execute(
        """UPDATE historical_calls h
           SET first_dispatched_at = f.d, first_en_route_at = f.e, first_on_scene_at = f.o
           FROM (
               -- The earliest recorded time of each kind among the call's units (all of
               -- them, those imported before included).
               SELECT r.call_id, min(r.dispatched_at) AS d, min(r.en_route_at) AS e,
                      min(r.on_scene_at) AS o
               FROM historical_unit_responses r
               JOIN historical_calls c ON c.id = r.call_id AND c.agency = $1
               WHERE c.call_number IN (SELECT call_number FROM hist_unit_stage)
               GROUP BY r.call_id) f
           WHERE h.id = f.call_id""", agency)
    return int(calls_added), int(units_added)


async def history_counts(conn: asyncpg.Connection | asyncpg.Pool, *, agency: str | None = None
                         ) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM historical_calls WHERE $1::text IS NULL OR agency = $1),"
        " (SELECT count(*) FROM historical_unit_responses r JOIN historical_calls h"
        "  ON h.id = r.call_id WHERE $1::text IS NULL OR h.agency = $1)", agency)
    assert row is not None
    return int(row[0]), int(row[1])


# Hash aggregation keeps every group's valid values of each interval (8 bytes a value):
# 500,000 unit responses x 2 intervals fit in memory (benchmarks/analytics_bench.py).
REPORT_WORK_MEM = "64MB"


async def grouped_report(pool: asyncpg.Pool, *, view: str,
                         dimensions: Sequence[tuple[str, str]],
                         metrics: Sequence[tuple[str, str, float | str]],
                         agencies: list[str] | None, start: datetime | None, end: datetime | None,
                         source: str | None, timezone: str,
                         filters: Sequence[tuple[str, list[str]]] = (),
                         hidden: Sequence[str] = ()) -> list[asyncpg.Record]:
    """One row per group of ``dimensions`` ((alias, SQL expression) pairs from the service's
    whitelist, never from the request) with, per metric ((name, interval SQL in seconds,
    threshold: seconds, or an SQL expression of the row from the service's constants)):
    valid n, missing, out-of-order, median and 90th percentile (continuous:
    ``percentile_cont``) and the share within the threshold. ``$5`` is the time zone of the
    hour-of-day, day-of-week and week expressions. ``hidden``: training agencies left out
    (cad.security.scope.Scope.hidden_for).

    Three levels: each interval computed once per row; rows hashed into their groups, each
    group collecting its valid values; the percentiles of each group's values (a sort of that
    group only). The usual plan (sort all rows by group, then ordered-set aggregates) sorted
    the whole table first: 30-45 % slower at 500,000 rows."""
    assert view in ("analytics_incidents", "analytics_unit_responses")
    args: list[Any] = [agencies, start, end, source, timezone]
    inner = [f"{expr} AS {alias}" for alias, expr in dimensions]
    middle = [alias for alias, _ in dimensions] + ["count(*) AS count"]
    outer = [alias for alias, _ in dimensions] + ["count"]
    for i, (name, expr, threshold) in enumerate(metrics):
        v = f"m{i}"
        if isinstance(threshold, str):
            t = f"t{i}"
            inner.append(f"({threshold})::float8 AS {t}")
        else:
            args.append(threshold)
            t = f"${len(args)}::float8"
        inner.append(f"{expr} AS {v}")
        middle += [
            f"count(*) FILTER (WHERE {v} >= 0) AS {name}__n",
            f"count(*) FILTER (WHERE {v} IS NULL) AS {name}__missing",
            f"count(*) FILTER (WHERE {v} < 0) AS {name}__out_of_order",
            f"array_agg({v}) FILTER (WHERE {v} >= 0) AS {name}__values",
            f"avg(({v} <= {t})::int) FILTER (WHERE {v} >= 0) AS {name}__within_share",
        ]
        outer += [f"{name}__n", f"{name}__missing", f"{name}__out_of_order",
                  f"{name}__within_share",
                  (f"(SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY x)"
                   f" FROM unnest({name}__values) x) AS {name}__pct")]
    where = ["($1::text[] IS NULL OR agency = ANY($1))",
             "($2::timestamptz IS NULL OR received_at >= $2)",
             "($3::timestamptz IS NULL OR received_at < $3)",
             "($4::text IS NULL OR source = $4)",
             "$5::text IS NOT NULL"]
    for column, values in filters:
        args.append(values)
        where.append(f"{column} = ANY(${len(args)}::text[])")
    if hidden:
        args.append(list(hidden))
        where.append(f"agency <> ALL(${len(args)}::text[])")
    group = ", ".join(str(i + 1) for i in range(len(dimensions)))
    sql = (f"SELECT {', '.join(outer)} FROM ("
           f"SELECT {', '.join(middle)} FROM (SELECT {', '.join(inner) or '1'} FROM {view}"
           f" WHERE {' AND '.join(where)}) s"
           + (f" GROUP BY {group}" if dimensions else "") + ") g")
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'")
        # The planner prices the collected arrays high and would sort every row by group
        # instead of hashing ~100 groups; the per-group percentile sorts are not plan sorts.
        await conn.execute("SET LOCAL enable_sort = off")
        return list(await conn.fetch(sql, *args))


async def histogram(conn: asyncpg.Connection | asyncpg.Pool, *, view: str, expr: str, bin_s: float,
                    bins: int, agencies: list[str] | None, start: datetime | None,
                    end: datetime | None, source: str | None,
                    hidden: Sequence[str] = ()) -> list[asyncpg.Record]:
    assert view in ("analytics_incidents", "analytics_unit_responses")
    return list(await conn.fetch(
        f"""SELECT least(floor(({expr}) / $5)::int, $6 - 1) AS bin, count(*) AS n
            FROM {view}
            WHERE ($1::text[] IS NULL OR agency = ANY($1))
              AND ($2::timestamptz IS NULL OR received_at >= $2)
              AND ($3::timestamptz IS NULL OR received_at < $3)
              AND ($4::text IS NULL OR source = $4) AND ({expr}) >= 0
              AND agency <> ALL($7::text[])
            GROUP BY 1 ORDER BY 1""", agencies, start, end, source, bin_s, bins, list(hidden)))


async def dispositions(conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT code, description, active FROM disposition_codes ORDER BY code"))


SEARCH_COLUMNS = ("source", "incident_id", "number", "agency", "incident_type", "call_type_group",
                  "priority", "zone", "station", "disposition", "received_at",
                  "first_dispatched_at", "first_on_scene_at", "closed_at", "lat", "lon",
                  "call_processing_s", "total_response_s")


def search_sql(*, filters: dict[str, Any], after: tuple[datetime, int] | None,
               limit: int | None) -> tuple[str, list[Any]]:
    """The analyst search over ``analytics_incidents`` in keyset order (received_at,
    incident_id): ``after`` is the last row of the previous page; no OFFSET, no row limit for
    exports. ``filters``: agencies (scope), hidden (training agencies left out), start, end,
    source, and lists of agency, incident_type,
    priority, zone, station, disposition, unit."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [f"({arg(filters.get('agencies'))}::text[] IS NULL OR agency = ANY(${len(args)}))"]
    if filters.get("hidden"):
        where.append(f"agency <> ALL({arg(filters['hidden'])}::text[])")
    if filters.get("start") is not None:
        where.append(f"received_at >= {arg(filters['start'])}")
    if filters.get("end") is not None:
        where.append(f"received_at < {arg(filters['end'])}")
    if filters.get("source") is not None:
        where.append(f"source = {arg(filters['source'])}")
    for column in ("agency", "incident_type", "priority", "zone", "station", "disposition"):
        if filters.get(column):
            where.append(f"{column} = ANY({arg(filters[column])}::text[])")
    if filters.get("unit"):
        where.append(f"incident_id IN (SELECT incident_id FROM analytics_unit_responses"
                     f" WHERE unit_id = ANY({arg(filters['unit'])}::text[]))")
    if after is not None:
        where.append(f"(received_at, incident_id) > ({arg(after[0])}, {arg(after[1])}::bigint)")
    sql = (f"SELECT source, incident_id, number, agency, incident_type, call_type_group, priority,"
           f" zone, station, disposition, received_at, first_dispatched_at, first_on_scene_at,"
           f" closed_at, lat, lon,"
           f" date_part('epoch', first_dispatched_at - received_at) AS call_processing_s,"
           f" date_part('epoch', first_on_scene_at - received_at) AS total_response_s"
           f" FROM analytics_incidents WHERE {' AND '.join(where)}"
           f" ORDER BY received_at, incident_id")
    if limit is not None:
        sql += f" LIMIT {arg(limit)}"
    return sql, args


async def search_page(pool: asyncpg.Pool, *, filters: dict[str, Any],
                      after: tuple[datetime, int] | None, limit: int) -> list[asyncpg.Record]:
    sql, args = search_sql(filters=filters, after=after, limit=limit)
    return list(await pool.fetch(sql, *args))


async def search_stream(pool: asyncpg.Pool, *, filters: dict[str, Any], batch: int
                        ) -> AsyncIterator[list[asyncpg.Record]]:
    """Every matching row, ``batch`` at a time, from a server-side cursor in one read-only
    transaction (one consistent snapshot; memory bounded by the batch)."""
    sql, args = search_sql(filters=filters, after=None, limit=None)
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = await conn.cursor(sql, *args)
        while True:
            rows = await cursor.fetch(batch)
            if not rows:
                return
            yield rows


async def incidents_per_location(pool: asyncpg.Pool, *, agencies: list[str] | None,
                                 start: datetime | None, end: datetime | None,
                                 source: str | None, hidden: Sequence[str] = ()
                                 ) -> list[asyncpg.Record]:
    """Incidents per distinct recorded location (agencies geocode to the block or the
    intersection: a year of 200,000 calls has a few thousand locations)."""
    return list(await pool.fetch(
        """SELECT lat, lon, count(*) AS n FROM analytics_incidents
           WHERE ($1::text[] IS NULL OR agency = ANY($1))
             AND ($2::timestamptz IS NULL OR received_at >= $2)
             AND ($3::timestamptz IS NULL OR received_at < $3)
             AND ($4::text IS NULL OR source = $4) AND lat IS NOT NULL AND lon IS NOT NULL
             AND agency <> ALL($5::text[])
           GROUP BY lat, lon""", agencies, start, end, source, list(hidden)))


async def incident_intervals(pool: asyncpg.Pool, *, incident_id: int, agencies: list[str] | None
                             ) -> tuple[asyncpg.Record | None, list[asyncpg.Record]]:
    """One incident (live id, or minus an imported call's id) and its unit responses, with
    every interval of docs/analytics.md computed from the recorded timestamps."""
    head = await pool.fetchrow(
        """SELECT source, incident_id, number, agency, incident_type, priority, received_at,
                  first_dispatched_at, first_on_scene_at,
                  date_part('epoch', first_dispatched_at - received_at) AS call_processing_s,
                  date_part('epoch', first_on_scene_at - received_at) AS total_response_s
           FROM analytics_incidents
           WHERE incident_id = $1 AND ($2::text[] IS NULL OR agency = ANY($2))""",
        incident_id, agencies)
    if head is None:
        return None, []
    units = await pool.fetch(
        """SELECT unit_id, unit_type, dispatched_at, en_route_at, on_scene_at, cleared_at,
                  date_part('epoch', en_route_at - dispatched_at) AS turnout_s,
                  date_part('epoch', on_scene_at - en_route_at) AS travel_s,
                  date_part('epoch', on_scene_at - dispatched_at) AS unit_response_s,
                  date_part('epoch', cleared_at - dispatched_at) AS committed_s
           FROM analytics_unit_responses WHERE incident_id = $1
           ORDER BY dispatched_at NULLS LAST, unit_id""", incident_id)
    return head, list(units)
