-- AVL breadcrumbs: every accepted position fix, written in batches (COPY) by ws_gateway.avl.
-- Kept apart from the event log: positions are frequent and ephemeral for the boards; this
-- table is what analysts replay a unit's track from (GET /api/v1/units/{unit_id}/track).
-- No foreign key to units: breadcrumbs are written without waiting on unit rows, and a
-- decommissioned unit's track stays readable.
CREATE TABLE unit_positions (
    unit_id     text NOT NULL,
    fix_time    timestamptz NOT NULL,           -- when the device took the fix
    received_at timestamptz NOT NULL,           -- when the gateway accepted it
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    heading_deg real CHECK (heading_deg BETWEEN 0 AND 360),
    speed_mps   real CHECK (speed_mps >= 0),
    accuracy_m  real CHECK (accuracy_m >= 0)
);
CREATE INDEX unit_positions_unit_time_idx ON unit_positions (unit_id, fix_time);
-- Retention sweeps delete by age across all units.
CREATE INDEX unit_positions_received_brin ON unit_positions USING brin (received_at);
