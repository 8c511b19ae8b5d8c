-- Analytics: imported call history, the managed disposition code list, and the views that
-- put live and imported responses side by side for the reports (docs/analytics.md).
--
-- Imported history lives in tables of its own, not in incidents/incident_units: those carry
-- live constraints (a unit row references the roster, at most one open assignment per unit,
-- incident types from the agency's list) that a decade of another CAD's export cannot meet,
-- and a live table's write path emits events. The views below give the reports one shape
-- for both, with `source` telling them apart.

-- Dispositions: a managed code list, not free text. An incident is closed with one of them
-- (incidents core, which owns the table), imported calls map their source's text to one
-- through the mapping file, and the analyst search filters on them.
CREATE TABLE disposition_codes (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Z0-9][A-Z0-9_]{0,31}$'),
    description text NOT NULL,
    active      boolean NOT NULL DEFAULT true
);
INSERT INTO disposition_codes (code, description) VALUES
    ('TRANSPORTED',      'Patient transported'),
    ('REFUSED',          'Patient declined transport / against medical advice'),
    ('NO_MERIT',         'No merit / nothing found'),
    ('CANCELLED',        'Cancelled'),
    ('FIRE',             'Fire department action taken'),
    ('GONE_ON_ARRIVAL',  'Gone on arrival'),
    ('UNABLE_TO_LOCATE', 'Unable to locate'),
    ('MEDICAL_EXAMINER', 'Referred to the medical examiner'),
    ('REFERRED',         'Handed to another agency'),
    ('REPORT',           'Report taken'),
    ('MERGED',           'Merged into another incident'),
    ('OTHER',            'Other (see narrative)');

CREATE TABLE historical_calls (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agency           text NOT NULL,
    mapping          text NOT NULL,        -- the column mapping the row was imported with
    call_number      text NOT NULL,        -- the natural key, with the agency
    incident_number  text,
    call_type        text NOT NULL,
    call_type_group  text,
    priority         text,                 -- the source's final priority code
    received_at      timestamptz NOT NULL CHECK (isfinite(received_at)),
    entry_at         timestamptz CHECK (isfinite(entry_at)),
    -- Derived at import from the recorded unit rows (earliest of each), never inferred.
    first_dispatched_at timestamptz,
    first_en_route_at   timestamptz,
    first_on_scene_at   timestamptz,
    disposition      text REFERENCES disposition_codes (code),  -- through the mapping
    disposition_raw  text,                 -- the source's own text, kept
    zone             text,                 -- the mapping's zone column (e.g. neighbourhood)
    station          text,                 -- first-due station area
    battalion        text,
    address          text,
    lat              double precision CHECK (lat BETWEEN -90 AND 90),
    lon              double precision CHECK (lon BETWEEN -180 AND 180),
    imported_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (agency, call_number)
);
CREATE INDEX historical_calls_received_idx ON historical_calls (received_at, id);

-- The call's dimensions are copied onto each of its unit rows (imported history never
-- changes): the unit-level reports then scan one table instead of joining 500,000 rows to
-- 200,000 calls (benchmarks/analytics_bench.py: the join was 40 % of a report's time).
CREATE TABLE historical_unit_responses (
    call_id         bigint NOT NULL REFERENCES historical_calls (id),
    agency          text NOT NULL,
    call_type       text NOT NULL,
    call_type_group text,
    priority        text,
    zone            text,
    station         text,
    received_at     timestamptz NOT NULL,
    unit_id         text NOT NULL,
    unit_type       text,
    discipline      text NOT NULL CHECK (discipline IN ('police', 'fire', 'ems')),  -- mapping
    dispatch_seq    integer,
    dispatched_at   timestamptz CHECK (isfinite(dispatched_at)),
    en_route_at     timestamptz CHECK (isfinite(en_route_at)),
    on_scene_at     timestamptz CHECK (isfinite(on_scene_at)),
    transporting_at timestamptz CHECK (isfinite(transporting_at)),
    at_hospital_at  timestamptz CHECK (isfinite(at_hospital_at)),
    cleared_at      timestamptz CHECK (isfinite(cleared_at)),
    PRIMARY KEY (call_id, unit_id)
);
CREATE INDEX historical_unit_responses_unit_idx ON historical_unit_responses (unit_id);

-- One row per incident, live or imported: the incident-level intervals' inputs.
CREATE VIEW analytics_incidents AS
SELECT 'live'::text AS source, i.id AS incident_id, i.number AS number, i.agency,
       i.incident_type, t.apco_type AS call_type_group, i.priority::text AS priority,
       i.zone_id AS zone, z.first_due_station AS station, i.disposition,
       i.received_at, i.answered_at, i.first_dispatched_at, i.first_en_route_at,
       i.first_on_scene_at, coalesce(i.closed_at, i.cleared_at) AS closed_at, i.lat, i.lon
FROM incidents i
JOIN incident_types t ON t.code = i.incident_type
LEFT JOIN zones z ON z.id = i.zone_id
WHERE i.merged_into IS NULL
UNION ALL
SELECT 'imported', -h.id, h.call_number, h.agency,
       h.call_type, h.call_type_group, h.priority,
       h.zone, h.station, h.disposition,
       h.received_at, h.entry_at, h.first_dispatched_at, h.first_en_route_at,
       h.first_on_scene_at, NULL, h.lat, h.lon
FROM historical_calls h;

-- One row per unit response, live or imported, with its incident's dimensions.
CREATE VIEW analytics_unit_responses AS
SELECT 'live'::text AS source, i.id AS incident_id, i.agency, i.incident_type,
       t.apco_type AS call_type_group, i.priority::text AS priority, i.zone_id AS zone,
       z.first_due_station AS station, i.received_at, iu.unit_id, u.unit_type, u.discipline,
       iu.dispatched_at, iu.en_route_at, iu.on_scene_at, iu.cleared_at
FROM incident_units iu
JOIN incidents i ON i.id = iu.incident_id
JOIN incident_types t ON t.code = i.incident_type
LEFT JOIN zones z ON z.id = i.zone_id
LEFT JOIN units u ON u.id = iu.unit_id
UNION ALL
SELECT 'imported', -r.call_id, r.agency, r.call_type, r.call_type_group, r.priority, r.zone,
       r.station, r.received_at, r.unit_id, r.unit_type, r.discipline,
       r.dispatched_at, r.en_route_at, r.on_scene_at, r.cleared_at
FROM historical_unit_responses r;
