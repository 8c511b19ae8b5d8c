"""Column mappings for historical imports: which column of another CAD's export fills which
field, how its timestamps and locations are written. A mapping is a TOML file
(``incidents/analytics/mappings/sffd.toml`` is shipped and documented); agencies copy it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CALL_FIELDS = ("call_number", "incident_number", "call_type", "call_type_group", "priority",
               "received_at", "entry_at", "disposition", "zone", "station", "battalion",
               "address", "location", "lat", "lon")
UNIT_FIELDS = ("unit_id", "unit_type", "dispatch_seq", "dispatched_at", "en_route_at",
               "on_scene_at", "transporting_at", "at_hospital_at", "cleared_at")
REQUIRED = ("call_number", "call_type", "received_at", "unit_id")
LOCATION_FORMATS = ("paren_lat_lon", "lat_lon_columns")
DISCIPLINES = ("police", "fire", "ems")


class MappingError(ValueError):
    """The mapping file, or the file's header against it, cannot be used."""


@dataclass(frozen=True)
class ColumnMapping:
    name: str
    agency: str
    timezone: ZoneInfo
    timestamp_format: str
    location_format: str
    # field -> candidate column names, first present wins
    columns: dict[str, tuple[str, ...]]
    # the source's disposition text -> managed code
    dispositions: dict[str, str]
    # unit type -> police | fire | ems, and the discipline of the types not listed
    unit_disciplines: dict[str, str]
    default_discipline: str
    # the source's call type -> an incident type code (table incident_types), for replay
    incident_types: dict[str, str] = field(default_factory=dict)
    default_incident_type: str = "OTHER"

    def incident_type(self, call_type: str | None) -> str:
        """The incident type a replayed call of ``call_type`` is created with."""
        return self.incident_types.get(call_type or "", self.default_incident_type)

    def resolve(self, header: list[str]) -> dict[str, int]:
        """field -> column index in this file; a required field with no column is an error."""
        index = {name: i for i, name in enumerate(header)}
        found: dict[str, int] = {}
        for fld, candidates in self.columns.items():
            for col in candidates:
                if col in index:
                    found[fld] = index[col]
                    break
        missing = [f for f in REQUIRED if f not in found]
        if missing:
            wanted = ", ".join(f"{f} ({' | '.join(self.columns.get(f, ()))})" for f in missing)
            raise MappingError(f"the header lacks the columns for: {wanted}")
        return found


def builtin_mappings() -> list[str]:
    root = resources.files("incidents.analytics") / "mappings"
    return sorted(p.name.removesuffix(".toml") for p in root.iterdir() if p.name.endswith(".toml"))


def load_mapping(spec: str | Path) -> ColumnMapping:
    """A built-in mapping by name (``sffd``) or a TOML file by path."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise MappingError(f"cannot read mapping {path}: {exc}") from None
    else:
        res = resources.files("incidents.analytics") / "mappings" / f"{spec}.toml"
        if not res.is_file():
            raise MappingError(f"no built-in mapping {spec!r} (have: {', '.join(builtin_mappings())})")
        raw = tomllib.loads(res.read_text())
    return parse_mapping(raw)


def parse_mapping(raw: dict[str, object]) -> ColumnMapping:
    source = raw.get("source")
    if not isinstance(source, dict):
        raise MappingError("mapping: [source] table is missing")
    try:
        tz = ZoneInfo(str(source.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(f"mapping: unknown timezone {source.get('timezone')!r}") from None
    location_format = str(source.get("location_format", "paren_lat_lon"))
    if location_format not in LOCATION_FORMATS:
        raise MappingError(f"mapping: location_format must be one of {LOCATION_FORMATS}")
    columns: dict[str, tuple[str, ...]] = {}
    for section, allowed in (("call", CALL_FIELDS), ("unit", UNIT_FIELDS)):
        table = raw.get(section)
        if not isinstance(table, dict):
            raise MappingError(f"mapping: [{section}] table is missing")
        for fld, value in table.items():
            if fld not in allowed:
                raise MappingError(f"mapping: unknown field {section}.{fld}")
            if isinstance(value, str):
                columns[fld] = (value,)
            elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                columns[fld] = tuple(value)
            else:
                raise MappingError(f"mapping: {section}.{fld} must be a column name or a list of them")
    missing = [f for f in REQUIRED if f not in columns]
    if missing:
        raise MappingError(f"mapping: required fields not mapped: {', '.join(missing)}")
    dispositions = raw.get("dispositions", {})
    if not isinstance(dispositions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in dispositions.items()):
        raise MappingError("mapping: [dispositions] maps source text to a code")
    disciplines = raw.get("unit_disciplines", {})
    default_discipline = str(source.get("default_discipline", "fire"))
    if (not isinstance(disciplines, dict)
            or not all(v in DISCIPLINES for v in [*disciplines.values(), default_discipline])):
        raise MappingError(f"mapping: disciplines are one of {', '.join(DISCIPLINES)}")
    incident_types = raw.get("incident_types", {})
    if not isinstance(incident_types, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in incident_types.items()):
        raise MappingError("mapping: [incident_types] maps a call type to an incident type code")
    return ColumnMapping(name=str(source.get("name", "custom")),
                         agency=str(source.get("agency", "")), timezone=tz,
                         timestamp_format=str(source.get("timestamp_format", "%Y-%m-%dT%H:%M:%S")),
                         location_format=location_format, columns=columns,
                         dispositions=dict(dispositions), unit_disciplines=dict(disciplines),
                         default_discipline=default_discipline,
                         incident_types=dict(incident_types),
                         default_incident_type=str(source.get("default_incident_type", "OTHER")))
