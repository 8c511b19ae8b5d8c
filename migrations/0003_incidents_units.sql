-- Units, stations, incidents, zones, response plans, recommendations, dispatch, timers.

CREATE TABLE stations (
    id      text PRIMARY KEY,
    agency  text NOT NULL,
    name    text NOT NULL,
    address text,
    lat     double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon     double precision NOT NULL CHECK (lon BETWEEN -180 AND 180)
);

-- Unit statuses follow the APCO common status codes; the allowed transitions live in
-- units/status.py (one table), the database only checks membership.
CREATE TABLE units (
    id                text PRIMARY KEY,        -- the call sign, e.g. E01, M85, 2A12
    agency            text NOT NULL,
    discipline        text NOT NULL CHECK (discipline IN ('police', 'fire', 'ems')),
    unit_type         text NOT NULL,
    capabilities      text[] NOT NULL DEFAULT '{}',
    home_station      text REFERENCES stations (id),
    staffing          integer NOT NULL DEFAULT 0 CHECK (staffing >= 0),
    status            text NOT NULL DEFAULT 'off_duty' CHECK (status IN (
        'available_in_quarters', 'available_on_radio', 'dispatched', 'en_route', 'on_scene',
        'transporting', 'at_hospital', 'out_of_service', 'off_duty')),
    status_changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_checkin_at   timestamptz,
    current_incident  bigint,
    last_lat          double precision,
    last_lon          double precision,
    last_fix_at       timestamptz,
    active            boolean NOT NULL DEFAULT true,
    version           integer NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX units_status_idx ON units (status) WHERE active;

-- Every status change, append-only, with who made it and from where. Never inferred.
CREATE TABLE unit_status_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id     text NOT NULL REFERENCES units (id),
    from_status text,
    to_status   text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    reported_at timestamptz,          -- the device's own clock, kept apart, never used for order
    incident_id bigint,
    actor       text NOT NULL,
    source      text NOT NULL CHECK (source IN ('console', 'mdt', 'system', 'api', 'import')),
    client_addr text,
    request_id  text
);
CREATE INDEX unit_status_log_unit_idx ON unit_status_log (unit_id, id);

CREATE FUNCTION cad_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER unit_status_log_append_only BEFORE UPDATE OR DELETE ON unit_status_log
    FOR EACH ROW EXECUTE FUNCTION cad_append_only();

-- Incident types: the agency's codes mapped to APCO common incident types.
CREATE TABLE incident_types (
    code             text PRIMARY KEY,
    description      text NOT NULL,
    apco_type        text NOT NULL,
    discipline       text NOT NULL CHECK (discipline IN ('police', 'fire', 'ems')),
    default_priority integer NOT NULL CHECK (default_priority BETWEEN 1 AND 5),
    duplicate_group  text NOT NULL     -- incidents of one group may be duplicates of each other
);

CREATE TABLE zones (
    id               text PRIMARY KEY,
    agency           text NOT NULL,
    kind             text NOT NULL,    -- beat, first_due, battalion, district ...
    name             text NOT NULL,
    first_due_station text REFERENCES stations (id),
    geometry         jsonb NOT NULL,   -- GeoJSON Polygon / MultiPolygon (WGS84)
    min_lat double precision NOT NULL, min_lon double precision NOT NULL,
    max_lat double precision NOT NULL, max_lon double precision NOT NULL
);

-- Incident numbers come from one sequence per agency and year (incident_no_<agency>_<year>,
-- made on first use by incidents.service). A counter row would be locked from the intake's
-- INSERT to its COMMIT and serialise every intake of the agency behind the slowest one
-- (measured: 40-200 ms convoys at 100 intakes/s); a sequence is never locked. The price: an
-- intake that fails after drawing its number leaves a gap, visible in the audit log.

CREATE TABLE incidents (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    agency          text NOT NULL,
    incident_type   text NOT NULL REFERENCES incident_types (code),
    priority        integer NOT NULL CHECK (priority BETWEEN 1 AND 5),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'dispatched', 'en_route', 'on_scene', 'cleared', 'closed')),
    lat             double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    location_text   text,
    location_source text NOT NULL,     -- latlon | address | intersection
    zone_id         text REFERENCES zones (id),
    received_at     timestamptz NOT NULL,
    answered_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    first_dispatched_at timestamptz,
    first_en_route_at   timestamptz,
    first_on_scene_at   timestamptz,
    cleared_at      timestamptz,
    closed_at       timestamptz,
    disposition     text,
    duplicate_candidates bigint[] NOT NULL DEFAULT '{}',
    merged_into     bigint REFERENCES incidents (id),
    version         integer NOT NULL DEFAULT 1,
    CHECK (answered_at IS NULL OR answered_at >= received_at)
);
CREATE INDEX incidents_open_idx ON incidents (status, received_at) WHERE status <> 'closed';

-- The caller's personal data, kept apart from the incident; reads are audited.
CREATE TABLE incident_callers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    name            text,
    callback_number text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX incident_callers_incident_idx ON incident_callers (incident_id);

CREATE TABLE incident_narrative (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id bigint NOT NULL REFERENCES incidents (id),
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    author      text NOT NULL,
    text        text NOT NULL
);
CREATE INDEX incident_narrative_incident_idx ON incident_narrative (incident_id, id);
CREATE TRIGGER incident_narrative_append_only BEFORE UPDATE OR DELETE ON incident_narrative
    FOR EACH ROW EXECUTE FUNCTION cad_append_only();

CREATE TABLE incident_links (
    incident_id bigint NOT NULL REFERENCES incidents (id),
    other_id    bigint NOT NULL REFERENCES incidents (id),
    kind        text NOT NULL CHECK (kind IN ('related', 'duplicate')),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by  text NOT NULL,
    PRIMARY KEY (incident_id, other_id),
    CHECK (incident_id <> other_id)
);

-- One row per unit per incident; per-unit timestamps are set only when reported.
CREATE TABLE incident_units (
    incident_id     bigint NOT NULL REFERENCES incidents (id),
    unit_id         text NOT NULL REFERENCES units (id),
    status          text NOT NULL,
    dispatched_at   timestamptz NOT NULL,
    en_route_at     timestamptz,
    on_scene_at     timestamptz,
    transporting_at timestamptz,
    at_hospital_at  timestamptz,
    cleared_at      timestamptz,
    recommendation_id bigint,
    PRIMARY KEY (incident_id, unit_id, dispatched_at)
);
-- The invariant "a unit is on at most one active incident", enforced by the database.
CREATE UNIQUE INDEX incident_units_one_active ON incident_units (unit_id) WHERE cleared_at IS NULL;
CREATE INDEX incident_units_incident_idx ON incident_units (incident_id);

-- Run cards: for an incident type (and optionally priority and zone), the unit types needed.
CREATE TABLE response_plans (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    incident_type text REFERENCES incident_types (code),   -- NULL: any type
    priority      integer CHECK (priority BETWEEN 1 AND 5), -- NULL: any priority
    zone_id       text REFERENCES zones (id),               -- NULL: any zone
    slots         jsonb NOT NULL,  -- [{"unit_type": "engine", "count": 2, "capabilities": []}]
    UNIQUE NULLS NOT DISTINCT (incident_type, priority, zone_id)
);

-- Which unit types may fill a slot of another type (a quint fills an engine or ladder slot).
CREATE TABLE slot_substitutions (
    slot_type text NOT NULL,
    unit_type text NOT NULL,
    PRIMARY KEY (slot_type, unit_type),
    CHECK (slot_type <> unit_type)
);

CREATE TABLE recommendations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by   text NOT NULL,
    plan_id      bigint REFERENCES response_plans (id),
    eta_method   text NOT NULL,
    picks        jsonb NOT NULL,
    shortfalls   jsonb NOT NULL,
    outcome      text CHECK (outcome IN ('accepted', 'overridden')),
    outcome_reason text,
    outcome_at   timestamptz,
    outcome_by   text,
    dispatched_units text[]
);
CREATE INDEX recommendations_incident_idx ON recommendations (incident_id, id);

-- Idempotency for retried writes (MDTs over flaky networks): the stored answer is replayed.
CREATE TABLE idempotency_keys (
    scope        text NOT NULL,    -- who (actor) and which action
    key          text NOT NULL,
    request_hash text NOT NULL,
    status_code  integer NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- A timer crossing is announced once: the row makes the event idempotent across workers.
CREATE TABLE timer_alerts (
    kind        text NOT NULL,     -- pending_overdue | unit_status_overdue
    subject     text NOT NULL,     -- incident id or unit id
    since       timestamptz NOT NULL,  -- the status start the timer measured from
    threshold_s double precision NOT NULL,
    fired_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, subject, since)
);

INSERT INTO incident_types (code, description, apco_type, discipline, default_priority, duplicate_group) VALUES
    ('MED',     'Medical emergency',               'MEDICAL',        'ems',    2, 'medical'),
    ('CARDIAC', 'Cardiac / respiratory arrest',    'MEDICAL',        'ems',    1, 'medical'),
    ('STRUCT',  'Structure fire',                  'FIRE-STRUCTURE', 'fire',   1, 'fire'),
    ('VEHFIRE', 'Vehicle fire',                    'FIRE-VEHICLE',   'fire',   2, 'fire'),
    ('ALARM',   'Fire alarm',                      'ALARM-FIRE',     'fire',   3, 'fire'),
    ('OUTSIDE', 'Outside / vegetation fire',       'FIRE-OTHER',     'fire',   2, 'fire'),
    ('TC',      'Traffic collision',               'TRAFFIC-ACCIDENT', 'fire', 2, 'traffic'),
    ('TCI',     'Traffic collision with injuries', 'TRAFFIC-ACCIDENT', 'ems',  1, 'traffic'),
    ('RESCUE',  'Technical rescue',                'RESCUE',         'fire',   1, 'rescue'),
    ('HAZMAT',  'Hazardous materials',             'HAZMAT',         'fire',   1, 'hazmat'),
    ('GAS',     'Gas leak',                        'HAZMAT',         'fire',   2, 'hazmat'),
    ('ROBBERY', 'Robbery in progress',             'ROBBERY',        'police', 1, 'crime'),
    ('BURG',    'Burglary',                        'BURGLARY',       'police', 3, 'crime'),
    ('ASSAULT', 'Assault',                         'ASSAULT',        'police', 2, 'crime'),
    ('DISTURB', 'Disturbance',                     'DISTURBANCE',    'police', 3, 'crime'),
    ('WELFARE', 'Welfare check',                   'WELFARE-CHECK',  'police', 4, 'welfare'),
    ('OTHER',   'Other / citizen assist',          'OTHER',          'fire',   4, 'other');

INSERT INTO slot_substitutions (slot_type, unit_type) VALUES
    ('engine', 'quint'), ('ladder', 'quint'), ('truck', 'quint'), ('truck', 'ladder'),
    ('ladder', 'truck'), ('medic_bls', 'medic_als'), ('patrol', 'supervisor');

INSERT INTO response_plans (name, incident_type, priority, zone_id, slots) VALUES
    ('Default: one nearest unit', NULL, NULL, NULL, '[{"unit_type": "engine", "count": 1}]'),
    ('Medical', 'MED', NULL, NULL, '[{"unit_type": "medic_als", "count": 1}]'),
    ('Cardiac arrest', 'CARDIAC', NULL, NULL,
     '[{"unit_type": "engine", "count": 1}, {"unit_type": "medic_als", "count": 1}]'),
    ('Structure fire (first alarm)', 'STRUCT', NULL, NULL,
     '[{"unit_type": "engine", "count": 3}, {"unit_type": "ladder", "count": 2}, {"unit_type": "battalion_chief", "count": 1}, {"unit_type": "medic_als", "count": 1}]'),
    ('Vehicle fire', 'VEHFIRE', NULL, NULL, '[{"unit_type": "engine", "count": 1}]'),
    ('Fire alarm', 'ALARM', NULL, NULL,
     '[{"unit_type": "engine", "count": 1}, {"unit_type": "ladder", "count": 1}]'),
    ('Traffic collision', 'TC', NULL, NULL, '[{"unit_type": "engine", "count": 1}]'),
    ('Traffic collision with injuries', 'TCI', NULL, NULL,
     '[{"unit_type": "engine", "count": 1}, {"unit_type": "medic_als", "count": 1}]'),
    ('Robbery', 'ROBBERY', NULL, NULL, '[{"unit_type": "patrol", "count": 2}]'),
    ('Burglary', 'BURG', NULL, NULL, '[{"unit_type": "patrol", "count": 1}]'),
    ('Assault', 'ASSAULT', NULL, NULL, '[{"unit_type": "patrol", "count": 2}]'),
    ('Disturbance', 'DISTURB', NULL, NULL, '[{"unit_type": "patrol", "count": 1}]'),
    ('Welfare check', 'WELFARE', NULL, NULL, '[{"unit_type": "patrol", "count": 1}]');
