"""Reading an address-point file: the shared format (``street,number,lat,lon``) or
OpenAddresses CSV (``LON,LAT,NUMBER,STREET,UNIT,...``), plain or gzipped. Every bad row is
reported by its line number and never stops the good ones."""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from incidents.geocoding.normalize import normalize_street

_NUMBER = re.compile(r"^\s*(\d+)\s*([A-Za-z]?)\s*(?:[-/]\s*\S+)?\s*$")
MAX_BAD_REPORTED = 1000  # every bad row is counted; the first this many are listed


@dataclass(frozen=True)
class AddressRow:
    street: str
    street_label: str
    number: int
    number_suffix: str
    unit: str
    lat: float
    lon: float
    source: str

    def as_tuple(self) -> tuple[str, str, int, str, str, float, float, str]:
        return (self.street, self.street_label, self.number, self.number_suffix, self.unit,
                self.lat, self.lon, self.source)


@dataclass
class ParseResult:
    format: str
    rows: list[AddressRow] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)   # (line, reason)
    n_bad: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.n_bad += 1
        if len(self.bad) < MAX_BAD_REPORTED:
            self.bad.append((line, reason))


class FormatError(ValueError):
    """The file is neither format (its header names the columns it lacks)."""


_FORMATS: dict[str, dict[str, str | None]] = {
    "shared": {"street": "street", "number": "number", "lat": "lat", "lon": "lon", "unit": None},
    "openaddresses": {"street": "STREET", "number": "NUMBER", "lat": "LAT", "lon": "LON",
                      "unit": "UNIT"},
}


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def parse_file(path: Path, *, progress: Callable[[int], None] | None = None) -> ParseResult:
    """Every row of ``path``; ``progress(rows)`` is called every 10,000 rows."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise FormatError(f"{path} is empty") from None
        return _parse(reader, [h.strip() for h in header], source=path.name, progress=progress)


def _parse(reader: Iterator[list[str]], header: list[str], *, source: str,
           progress: Callable[[int], None] | None) -> ParseResult:
    fmt = next((name for name, cols in _FORMATS.items()
                if all(c in header for c in cols.values() if c is not None)), None)
    if fmt is None:
        raise FormatError(f"header {','.join(header)!r} is neither street,number,lat,lon nor "
                          "OpenAddresses LON,LAT,NUMBER,STREET,UNIT,...")
    cols = _FORMATS[fmt]
    pos = {k: header.index(v) for k, v in cols.items() if v is not None}
    width = len(header)
    out = ParseResult(fmt)
    line = 1
    for line, rec in enumerate(reader, start=2):
        if progress is not None and line % 10_000 == 0:
            progress(line - 1)
        if not rec or (len(rec) == 1 and not rec[0].strip()):
            continue
        if len(rec) < width:
            out.reject(line, f"{len(rec)} fields, the header has {width}")
            continue
        label = " ".join(rec[pos["street"]].split())
        street = normalize_street(label)
        if not street:
            out.reject(line, "street is empty")
            continue
        m = _NUMBER.match(rec[pos["number"]])
        if m is None:
            out.reject(line, f"number {rec[pos['number']]!r} is not a house number")
            continue
        try:
            lat, lon = float(rec[pos["lat"]]), float(rec[pos["lon"]])
        except ValueError:
            out.reject(line, "lat/lon are not numbers")
            continue
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90
                and -180 <= lon <= 180) or (lat == 0 and lon == 0):
            out.reject(line, f"lat/lon {lat},{lon} out of range")
            continue
        unit = " ".join(rec[pos["unit"]].upper().split()) if "unit" in pos else ""
        out.rows.append(AddressRow(street, label, int(m.group(1)), m.group(2).upper(), unit,
                                   lat, lon, source))
    if progress is not None:
        progress(line - 1)
    return out


@dataclass(frozen=True)
class PlaceRow:
    id: str
    name: str
    aliases: list[str]
    lat: float
    lon: float


@dataclass
class PlacesParse:
    rows: list[PlaceRow] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)   # (line, reason)


def parse_places(path: Path) -> PlacesParse:
    """A places file: CSV with ``name,lat,lon`` and optional ``id`` (else made from the name)
    and ``aliases`` (separated by ``|``). Each row is checked as the HTTP API checks a place;
    a bad one is reported by its line, the good ones load; a later row of the same id wins."""
    from pydantic import TypeAdapter, ValidationError

    from incidents.geocoding.schemas import PlaceId, PlaceIn

    place_in = TypeAdapter(PlaceIn)
    place_id = TypeAdapter(PlaceId)
    out = PlacesParse()
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        missing = {"name", "lat", "lon"} - set(reader.fieldnames or [])
        if missing:
            raise FormatError(f"{path.name}: a places file needs the columns name, lat, lon "
                              f"(missing: {', '.join(sorted(missing))})")
        for line, rec in enumerate(reader, start=2):
            name = " ".join((rec.get("name") or "").split())
            raw_id = (rec.get("id") or "").strip() or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            aliases = [a.strip() for a in (rec.get("aliases") or "").split("|") if a.strip()]
            try:
                pid = place_id.validate_python(raw_id)
                p = place_in.validate_python({"name": name, "aliases": aliases,
                                              "lat": rec.get("lat"), "lon": rec.get("lon")},
                                             strict=False)
            except ValidationError as exc:
                e = exc.errors()[0]
                where = ".".join(str(x) for x in e["loc"]) or "id"
                out.bad.append((line, f"{where}: {e['msg']}"))
                continue
            out.rows.append(PlaceRow(pid, p.name, list(p.aliases), p.lat, p.lon))
    return out
