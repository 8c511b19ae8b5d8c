"""Analytics actions: the historical import and the interval reports (definitions in
docs/analytics.md). Aggregation happens in PostgreSQL (``repository.grouped_report``); this
module chooses the whitelisted SQL for the request and shapes the answer."""

from __future__ import annotations

import base64
import binascii
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from cad.errors import Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, unit_of_work
from incidents.analytics import repository
from incidents.analytics.mapping import ColumnMapping
from incidents.analytics.parse import BadRow, parse_calls


def _seconds(a: str, b: str) -> str:
    # date_part gives float8 directly; extract() gives numeric (PostgreSQL 14+), whose
    # arithmetic cost a quarter of a report's time (benchmarks/analytics_bench.py).
    return f"date_part('epoch', {b} - {a})"


# Interval name -> (level, SQL in seconds, default threshold s). Recorded timestamps only.
INTERVALS: dict[str, tuple[str, str, float]] = {
    # NFPA 1225: call processing within 60 s for 90 % of calls.
    "call_processing": ("incident", _seconds("received_at", "first_dispatched_at"), 60.0),
    # The first unit on scene, from the call's receipt (the 8-minute figure many agencies use).
    "total_response": ("incident", _seconds("received_at", "first_on_scene_at"), 480.0),
    # NFPA 1710: turnout 80 s for fire, 60 s for EMS (TURNOUT_BY_DISCIPLINE_S), travel 240 s.
    "turnout": ("unit", _seconds("dispatched_at", "en_route_at"), 80.0),
    "travel": ("unit", _seconds("en_route_at", "on_scene_at"), 240.0),
    "unit_response": ("unit", _seconds("dispatched_at", "on_scene_at"), 320.0),
    "committed": ("unit", _seconds("dispatched_at", "cleared_at"), 3600.0),
}

_TIME_DIMENSIONS = {
    "hour_of_day": "extract(hour FROM received_at AT TIME ZONE $5)::int",
    "day_of_week": "extract(isodow FROM received_at AT TIME ZONE $5)::int",
    "week": "date_trunc('week', received_at AT TIME ZONE $5)::date",
}
# Dimension -> SQL on the view (None: the column of that name). Unit-level only: unit_type, unit.
DIMENSIONS: dict[str, str | None] = {
    "incident_type": None, "call_type_group": None, "priority": None, "zone": None,
    "station": None, "agency": None, "source": None, **_TIME_DIMENSIONS,
    "unit_type": None, "unit": "unit_id",
}
UNIT_ONLY_DIMENSIONS = frozenset({"unit_type", "unit"})
# NFPA 1710 turnout: 60 s for EMS units, 80 s for fire (and, by default, police) units; the
# default applies per unit response unless the request names one threshold for all.
TURNOUT_BY_DISCIPLINE_S = {"ems": 60.0, "fire": 80.0, "police": 80.0}
_TURNOUT_SQL = ("CASE discipline WHEN 'ems' THEN 60 ELSE 80 END")
FILTERS = ("agency", "incident_type", "call_type_group", "priority", "zone", "station",
           "unit_type")
PERCENTILE_DEFINITION = ("continuous: linear interpolation between the closest ranks "
                         "(PostgreSQL percentile_cont; pandas quantile(interpolation='linear'))")


@dataclass
class ImportResult:
    rows: int
    calls_in_file: int
    units_in_file: int
    calls_added: int
    units_added: int
    bad: list[BadRow] = field(default_factory=list)
    unmapped_dispositions: dict[str, int] = field(default_factory=dict)


def read_text(path: Path) -> io.TextIOBase:
    """The file as text; ``.gz`` is decompressed on the fly."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


async def import_calls(*, pool: asyncpg.Pool, path: Path, mapping: ColumnMapping,
                       agency: str | None = None, ctx: RequestContext | None = None,
                       progress: Callable[[int], None] | None = None) -> ImportResult:
    """Import a calls-for-service export: every call and unit response not there yet, in one
    transaction with its audit record (who imported which file, what was added); bad rows
    are reported and skipped. No events, no NOTIFY."""
    ctx = ctx or RequestContext(actor="system:import", source="import")
    agency = agency or mapping.agency
    if not agency:
        raise Invalid("no agency: pass one or set [source] agency in the mapping", field="agency")
    with read_text(path) as text:
        parsed = parse_calls(text, mapping, progress)
    codes = {r["code"] for r in await repository.dispositions(pool)}
    unknown = sorted(set(mapping.dispositions.values()) - codes)
    if unknown:
        raise Invalid(f"the mapping names disposition codes not in the managed list: "
                      f"{', '.join(unknown)}", field="mapping")
    async with unit_of_work(pool, ctx) as uow:
        record = uow.audit("history.import", target=f"agency:{agency}", details={
            "file": path.name, "mapping": mapping.name, "rows": parsed.rows,
            "bad_rows": len(parsed.bad)})
        calls_added, units_added = await repository.import_history(
            uow.conn, agency=agency, mapping=mapping.name, calls=list(parsed.calls.values()),
            units=parsed.units)
        record.details.update(calls_added=calls_added, units_added=units_added)
    return ImportResult(rows=parsed.rows, calls_in_file=len(parsed.calls),
                        units_in_file=len(parsed.units), calls_added=calls_added,
                        units_added=units_added, bad=parsed.bad,
                        unmapped_dispositions=parsed.unmapped_dispositions)


@dataclass(frozen=True)
class ReportQuery:
    metrics: Sequence[str]
    group_by: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    source: str | None = None        # live | imported | None = both
    thresholds: dict[str, float] = field(default_factory=dict)
    filters: dict[str, list[str]] = field(default_factory=dict)


def validate_report(query: ReportQuery) -> None:
    if not query.metrics:
        raise Invalid("name at least one metric", field="metric")
    for m in query.metrics:
        if m not in INTERVALS:
            raise Invalid(f"unknown metric {m!r}; one of {', '.join(INTERVALS)}", field="metric")
    for g in query.group_by:
        if g not in DIMENSIONS:
            raise Invalid(f"unknown dimension {g!r}; one of {', '.join(DIMENSIONS)}", field="group_by")
    if len(set(query.group_by)) != len(query.group_by):
        raise Invalid("a dimension is named twice", field="group_by")
    incident_metrics = [m for m in query.metrics if INTERVALS[m][0] == "incident"]
    unit_dims = [g for g in query.group_by if g in UNIT_ONLY_DIMENSIONS]
    unit_filters = [f for f in query.filters if f in UNIT_ONLY_DIMENSIONS]
    if incident_metrics and (unit_dims or unit_filters):
        raise Invalid(f"{', '.join(incident_metrics)} are per incident and cannot be split by "
                      f"{', '.join(unit_dims + unit_filters)}", field="group_by")
    for m, t in query.thresholds.items():
        if m not in INTERVALS:
            raise Invalid(f"threshold for unknown metric {m!r}", field="threshold")
        if not (0 <= t < 86_400 * 7):
            raise Invalid("a threshold is between 0 s and a week", field="threshold")
    if query.start and query.end and query.end <= query.start:
        raise Invalid("'to' must be after 'from'", field="to")
    if query.source not in (None, "live", "imported"):
        raise Invalid("source is live or imported", field="source")


async def report(*, pool: asyncpg.Pool, scope: Scope, query: ReportQuery,
                 timezone: str) -> dict[str, Any]:
    """The grouped interval report: one query per level (incident, unit), merged by group."""
    validate_report(query)
    dims = [(g, DIMENSIONS[g] or g) for g in query.group_by]
    by_group: dict[tuple[Any, ...], dict[str, Any]] = {}
    for level, view in (("incident", "analytics_incidents"), ("unit", "analytics_unit_responses")):
        metrics: list[tuple[str, str, float | str]] = [
            (m, INTERVALS[m][1], _threshold(m, query)) for m in query.metrics
            if INTERVALS[m][0] == level]
        if not metrics:
            continue
        rows = await repository.grouped_report(
            pool, view=view, dimensions=dims, metrics=metrics, agencies=scope.agency_list,
            start=query.start, end=query.end, source=query.source, timezone=timezone,
            filters=[(f, v) for f, v in sorted(query.filters.items())],
            hidden=scope.hidden_for(query.filters.get("agency")))
        for r in rows:
            key = tuple(r[g] for g in query.group_by)
            entry = by_group.setdefault(key, {
                "group": {g: _plain(r[g]) for g in query.group_by},
                "incidents": None, "unit_responses": None, "metrics": {}})
            entry["incidents" if level == "incident" else "unit_responses"] = r["count"]
            for name, _expr, threshold in metrics:
                entry["metrics"][name] = {
                    "n": r[f"{name}__n"], "missing": r[f"{name}__missing"],
                    "out_of_order": r[f"{name}__out_of_order"],
                    "median_s": _pct(r[f"{name}__pct"], 0), "p90_s": _pct(r[f"{name}__pct"], 1),
                    "threshold_s": None if isinstance(threshold, str) else threshold,
                    "threshold_by_discipline_s": (dict(TURNOUT_BY_DISCIPLINE_S)
                                                  if isinstance(threshold, str) else None),
                    "within_share": (None if r[f"{name}__within_share"] is None
                                     else float(r[f"{name}__within_share"])),
                }
    rows_out = [by_group[k] for k in sorted(by_group, key=_sort_key)]
    return {"metrics": list(query.metrics), "group_by": list(query.group_by),
            "start": _plain(query.start), "end": _plain(query.end), "source": query.source,
            "timezone": timezone, "percentiles": PERCENTILE_DEFINITION, "rows": rows_out}


def _threshold(metric: str, query: ReportQuery) -> float | str:
    """The request's threshold, else the default: one number, or for turnout the
    per-discipline SQL."""
    if metric in query.thresholds:
        return query.thresholds[metric]
    if metric == "turnout":
        return _TURNOUT_SQL
    return INTERVALS[metric][2]


def _pct(values: list[float] | None, i: int) -> float | None:
    return None if values is None else values[i]


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, str(v)) for v in key)


REPORT_STATS = ("n", "missing", "out_of_order", "median_s", "p90_s", "threshold_s", "within_share")


def report_csv_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Header and one flat row per group: dimensions, counts, then metric__stat columns."""
    header = [*result["group_by"], "incidents", "unit_responses"]
    header += [f"{m}__{s}" for m in result["metrics"] for s in REPORT_STATS]
    out: list[list[Any]] = [header]
    for row in result["rows"]:
        line = [row["group"][g] for g in result["group_by"]] + [row["incidents"], row["unit_responses"]]
        for m in result["metrics"]:
            stats = row["metrics"].get(m, {})
            line += [stats.get(s) for s in REPORT_STATS]
        out.append(line)
    return out


async def histogram(*, pool: asyncpg.Pool, scope: Scope, query: ReportQuery, timezone: str
                    ) -> list[tuple[float, int]]:
    """(bin start s, count) of one metric's valid intervals: bins of an eighth of the
    threshold up to four thresholds; the last bin holds everything longer."""
    validate_report(query)
    metric = query.metrics[0]
    level, expr, default = INTERVALS[metric]
    threshold = query.thresholds.get(metric, default)
    bin_s = max(threshold / 8.0, 1.0)
    rows = await repository.histogram(
        pool, view="analytics_incidents" if level == "incident" else "analytics_unit_responses",
        expr=expr, bin_s=bin_s, bins=32, agencies=scope.agency_list, start=query.start,
        end=query.end, source=query.source, hidden=scope.hidden_for(query.filters.get("agency")))
    return [(r["bin"] * bin_s, r["n"]) for r in rows]


async def list_dispositions(*, pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await repository.dispositions(pool)]


# --- analyst search and export ---------------------------------------------------------------
SEARCH_PAGE_MAX = 1000
EXPORT_BATCH_ROWS = 5000


@dataclass(frozen=True)
class SearchQuery:
    start: datetime | None = None
    end: datetime | None = None
    source: str | None = None
    incident_type: list[str] = field(default_factory=list)
    priority: list[str] = field(default_factory=list)
    zone: list[str] = field(default_factory=list)
    station: list[str] = field(default_factory=list)
    disposition: list[str] = field(default_factory=list)
    unit: list[str] = field(default_factory=list)
    agency: list[str] = field(default_factory=list)


def encode_cursor(received_at: datetime, incident_id: int) -> str:
    raw = json.dumps([received_at.isoformat(), incident_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, incident_id = json.loads(raw)
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None or not isinstance(incident_id, int):
            raise ValueError
        return parsed, incident_id
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise Invalid("not a cursor this search returned", field="after") from None


async def _search_filters(pool: asyncpg.Pool, scope: Scope, query: SearchQuery) -> dict[str, Any]:
    if query.start and query.end and query.end <= query.start:
        raise Invalid("'to' must be after 'from'", field="to")
    if query.disposition:
        codes = {r["code"] for r in await repository.dispositions(pool)}
        unknown = sorted(set(query.disposition) - codes)
        if unknown:
            raise Invalid(f"not in the disposition code list: {', '.join(unknown)}",
                          field="disposition")
    return {"agencies": scope.agency_list, "hidden": scope.hidden_for(query.agency),
            "agency": query.agency, "start": query.start, "end": query.end,
            "source": query.source, "incident_type": query.incident_type,
            "priority": query.priority, "zone": query.zone, "station": query.station,
            "disposition": query.disposition, "unit": query.unit}


def _search_row(r: asyncpg.Record) -> dict[str, Any]:
    return {k: _plain(r[k]) for k in repository.SEARCH_COLUMNS}


async def search(*, pool: asyncpg.Pool, scope: Scope, query: SearchQuery, after: str | None,
                 limit: int) -> dict[str, Any]:
    """One page in (received_at, id) order and the cursor of the next (None at the end)."""
    filters = await _search_filters(pool, scope, query)
    rows = await repository.search_page(pool, filters=filters,
                                        after=decode_cursor(after) if after else None,
                                        limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["received_at"], rows[-1]["incident_id"]) if more else None
    return {"items": [_search_row(r) for r in rows], "next": nxt}


async def export_csv(*, pool: asyncpg.Pool, scope: Scope, query: SearchQuery
                     ) -> AsyncIterator[bytes]:
    """Every matching incident as CSV, produced batch by batch while the client reads."""
    filters = await _search_filters(pool, scope, query)

    async def chunks() -> AsyncIterator[bytes]:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(repository.SEARCH_COLUMNS)
        async for rows in repository.search_stream(pool, filters=filters, batch=EXPORT_BATCH_ROWS):
            writer.writerows([_plain(r[k]) for k in repository.SEARCH_COLUMNS] for r in rows)
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue().encode()

    return chunks()


async def export_parquet(*, pool: asyncpg.Pool, scope: Scope, query: SearchQuery
                         ) -> AsyncIterator[bytes]:
    """Every matching incident as Parquet: one row group per batch, written out as it is made."""
    from incidents.analytics import parquet

    filters = await _search_filters(pool, scope, query)

    async def chunks() -> AsyncIterator[bytes]:
        writer = parquet.StreamingWriter()
        async for rows in repository.search_stream(pool, filters=filters, batch=EXPORT_BATCH_ROWS):
            yield writer.write([{k: r[k] for k in repository.SEARCH_COLUMNS} for r in rows])
        yield writer.close()

    return chunks()


# --- equity and hotspots -------------------------------------------------------------------------
async def equity(*, pool: asyncpg.Pool, scope: Scope, metric: str, by: str,
                 start: datetime | None, end: datetime | None, source: str | None,
                 thresholds: dict[str, float], timezone: str) -> dict[str, Any]:
    """One interval's percentiles per zone (or station) side by side with the whole area's,
    slowest 90th percentile first."""
    if by not in ("zone", "station"):
        raise Invalid("by is zone or station", field="by")
    base = ReportQuery(metrics=[metric], start=start, end=end, source=source, thresholds=thresholds)
    overall = await report(pool=pool, scope=scope, query=base, timezone=timezone)
    per_area = await report(pool=pool, scope=scope, timezone=timezone, query=ReportQuery(
        metrics=[metric], group_by=[by], start=start, end=end, source=source,
        thresholds=thresholds))
    whole = overall["rows"][0]["metrics"][metric] if overall["rows"] else None
    areas = []
    for row in per_area["rows"]:
        stats = row["metrics"][metric]
        areas.append({"area": row["group"][by], **stats,
                      "p90_minus_overall_s": (None if whole is None or whole["p90_s"] is None
                                              or stats["p90_s"] is None
                                              else stats["p90_s"] - whole["p90_s"])})
    areas.sort(key=lambda a: (a["p90_s"] is None, -(a["p90_s"] or 0.0), str(a["area"])))
    return {"metric": metric, "by": by, "start": _plain(start), "end": _plain(end),
            "source": source, "percentiles": PERCENTILE_DEFINITION, "overall": whole,
            "areas": areas}


async def hexbins(*, pool: asyncpg.Pool, scope: Scope, resolution: int, start: datetime | None,
                  end: datetime | None, source: str | None) -> dict[str, Any]:
    from incidents.analytics.hexbins import MAX_RESOLUTION, MIN_RESOLUTION, hexbin_geojson

    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise Invalid(f"resolution is {MIN_RESOLUTION}..{MAX_RESOLUTION}", field="resolution")
    if start and end and end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    rows = await repository.incidents_per_location(pool, agencies=scope.agency_list, start=start,
                                                   end=end, source=source,
                                                   hidden=scope.hidden_for())
    return hexbin_geojson(((r["lat"], r["lon"], r["n"]) for r in rows), resolution=resolution)


def _checked(value: float | None) -> tuple[float | None, str | None]:
    """(interval, None) when valid; (None, why) when a timestamp is missing or out of order."""
    if value is None:
        return None, "missing"
    if value < 0:
        return None, "out_of_order"
    return value, None


async def incident_intervals(*, pool: asyncpg.Pool, scope: Scope, incident_id: int
                             ) -> dict[str, Any]:
    """The intervals of one incident and of each of its units; an invalid interval is null
    with the reason beside it (never clamped). The first-arriving unit is flagged."""
    head, units = await repository.incident_intervals(pool, incident_id=incident_id,
                                                      agencies=scope.agency_list)
    if head is None:
        raise NotFound(f"incident {incident_id} does not exist")
    intervals: dict[str, Any] = {}
    for name in ("call_processing", "total_response"):
        intervals[name] = dict(zip(("seconds", "excluded"), _checked(head[f"{name}_s"]), strict=True))
    first_on_scene = head["first_on_scene_at"]
    unit_rows = []
    for u in units:
        row: dict[str, Any] = {k: _plain(u[k]) for k in ("unit_id", "unit_type", "dispatched_at",
                                                         "en_route_at", "on_scene_at", "cleared_at")}
        row["first_arriving"] = first_on_scene is not None and u["on_scene_at"] == first_on_scene
        row["intervals"] = {name: dict(zip(("seconds", "excluded"), _checked(u[f"{name}_s"]),
                                           strict=True))
                            for name in ("turnout", "travel", "unit_response", "committed")}
        unit_rows.append(row)
    return {"source": head["source"], "incident_id": head["incident_id"], "number": head["number"],
            "agency": head["agency"], "incident_type": head["incident_type"],
            "priority": head["priority"], "received_at": _plain(head["received_at"]),
            "intervals": intervals, "units": unit_rows}
