-- Address points an agency brings (`cad addresses import`), the managed places table, and
-- the precision of an incident's location (incidents.geocoding).
CREATE TABLE address_points (
    id            bigserial PRIMARY KEY,
    street        text NOT NULL,              -- normalised (incidents.geocoding.normalize)
    street_label  text NOT NULL,              -- as the file writes it
    number        integer NOT NULL CHECK (number >= 0),
    number_suffix text NOT NULL DEFAULT '',   -- 12A
    unit          text NOT NULL DEFAULT '',   -- kept, but a unit never moves the point
    lat           double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon           double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    source        text NOT NULL,              -- the file it came from
    imported_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (street, number, number_suffix, unit)
);
-- each worker asks every few seconds whether the table changed (max(imported_at))
CREATE INDEX address_points_imported_idx ON address_points (imported_at);

CREATE TABLE places (
    id         text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    aliases    text[] NOT NULL DEFAULT '{}',
    lat        double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon        double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- address_point | interpolated | block | intersection | street | place | coordinates
ALTER TABLE incidents ADD COLUMN location_precision text;
-- apartment, suite ...: with the incident, never part of the point
ALTER TABLE incidents ADD COLUMN location_unit text;
-- where the address meets its street's edge, on its side: the routing target
ALTER TABLE incidents ADD COLUMN access_lat double precision;
ALTER TABLE incidents ADD COLUMN access_lon double precision;
