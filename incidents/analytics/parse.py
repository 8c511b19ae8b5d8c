"""Reading a calls-for-service export through a column mapping: one record per call, one per
unit response, and every row that cannot be used reported with its line number and reason.
No I/O beyond the text stream it is given; no database."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from incidents.analytics.mapping import ColumnMapping

_PAREN = re.compile(r"^\(\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\)$")

CALL_TIMES = ("received_at", "entry_at")
UNIT_TIMES = ("dispatched_at", "en_route_at", "on_scene_at", "transporting_at", "at_hospital_at",
              "cleared_at")


@dataclass(frozen=True)
class BadRow:
    line: int       # the physical line of the file where the row starts (header = line 1)
    reason: str


@dataclass
class ParsedCalls:
    # call_number -> call fields (first row of the call wins; later rows must agree)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    units: list[dict[str, Any]] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    rows: int = 0
    unmapped_dispositions: dict[str, int] = field(default_factory=dict)  # text -> calls


class _Bad(Exception):
    pass


def parse_calls(lines: Iterable[str], mapping: ColumnMapping,
                progress: Callable[[int], None] | None = None) -> ParsedCalls:
    """Parse the CSV text; ``progress(n)`` is called with the number of rows read so far."""
    reader = csv.reader(lines)
    out = ParsedCalls()
    try:
        header = next(reader)
    except StopIteration:
        return out
    cols = mapping.resolve(header)
    seen_units: dict[tuple[str, str], int] = {}
    call_line: dict[str, int] = {}
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        out.rows += 1
        if progress is not None and out.rows % 500 == 0:
            progress(out.rows)
        if not row or row == [""]:
            out.rows -= 1
            continue
        if len(row) != len(header):
            out.bad.append(BadRow(line, f"{len(row)} fields, the header has {len(header)}"))
            continue
        try:
            call, unit = _row(row, cols, mapping)
        except _Bad as exc:
            out.bad.append(BadRow(line, str(exc)))
            continue
        key = (call["call_number"], unit["unit_id"])
        if key in seen_units:
            out.bad.append(BadRow(line, f"unit {key[1]} of call {key[0]} repeats line {seen_units[key]}"))
            continue
        first = out.calls.get(call["call_number"])
        if first is None:
            raw = call["disposition_raw"]
            if raw is not None and call["disposition"] is None:
                out.unmapped_dispositions[raw] = out.unmapped_dispositions.get(raw, 0) + 1
            out.calls[call["call_number"]] = call
            call_line[call["call_number"]] = line
        elif first["received_at"] != call["received_at"]:
            out.bad.append(BadRow(line, f"received_at differs from line {call_line[call['call_number']]}"
                                        " of the same call"))
            continue
        seen_units[key] = line
        unit["call_number"] = call["call_number"]
        out.units.append(unit)
    if progress is not None:
        progress(out.rows)
    return out


def _text(row: list[str], cols: dict[str, int], name: str) -> str | None:
    i = cols.get(name)
    if i is None:
        return None
    value = row[i].strip()
    return value or None


def _time(row: list[str], cols: dict[str, int], name: str, mapping: ColumnMapping) -> datetime | None:
    value = _text(row, cols, name)
    if value is None:
        return None
    try:
        naive = datetime.strptime(value, mapping.timestamp_format)
    except ValueError:
        raise _Bad(f"{name}: {value!r} does not match {mapping.timestamp_format!r}") from None
    if naive.tzinfo is not None:
        return naive
    # fold=0: an ambiguous local time at the end of DST is read as the first occurrence.
    return naive.replace(tzinfo=mapping.timezone)


def _location(row: list[str], cols: dict[str, int], mapping: ColumnMapping
              ) -> tuple[float | None, float | None]:
    if mapping.location_format == "paren_lat_lon":
        value = _text(row, cols, "location")
        if value is None:
            return None, None
        m = _PAREN.match(value)
        if not m:
            raise _Bad(f"location: {value!r} is not '(lat, lon)'")
        lat, lon = float(m.group(1)), float(m.group(2))
    else:
        a, b = _text(row, cols, "lat"), _text(row, cols, "lon")
        if a is None or b is None:
            return None, None
        try:
            lat, lon = float(a), float(b)
        except ValueError:
            raise _Bad(f"lat/lon: {a!r}, {b!r} are not numbers") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _Bad(f"location: ({lat}, {lon}) is outside the globe")
    return lat, lon


def _row(row: list[str], cols: dict[str, int], mapping: ColumnMapping
         ) -> tuple[dict[str, Any], dict[str, Any]]:
    call: dict[str, Any] = {}
    for name in ("call_number", "incident_number", "call_type", "call_type_group", "priority",
                 "zone", "station", "battalion", "address"):
        call[name] = _text(row, cols, name)
    call["disposition_raw"] = _text(row, cols, "disposition")
    call["disposition"] = (None if call["disposition_raw"] is None
                           else mapping.dispositions.get(call["disposition_raw"]))
    for name in CALL_TIMES:
        call[name] = _time(row, cols, name, mapping)
    for name in ("call_number", "call_type", "received_at"):
        if call[name] is None:
            raise _Bad(f"{name} is empty")
    call["lat"], call["lon"] = _location(row, cols, mapping)
    unit: dict[str, Any] = {"unit_id": _text(row, cols, "unit_id"),
                            "unit_type": _text(row, cols, "unit_type")}
    if unit["unit_id"] is None:
        raise _Bad("unit_id is empty")
    unit["discipline"] = mapping.unit_disciplines.get(unit["unit_type"] or "",
                                                      mapping.default_discipline)
    seq = _text(row, cols, "dispatch_seq")
    try:
        unit["dispatch_seq"] = int(seq) if seq is not None else None
    except ValueError:
        raise _Bad(f"dispatch_seq: {seq!r} is not an integer") from None
    for name in UNIT_TIMES:
        unit[name] = _time(row, cols, name, mapping)
    return call, unit
