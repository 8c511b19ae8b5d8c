-- The public face (incidents.public): which incident types an agency publishes. No row, no
-- publication: a type is private until a supervisor enables it for that agency. Sensitive
-- types (incidents.public.service.SENSITIVE) are refused here and filtered again when read.
CREATE TABLE public_incident_types (
    agency        text NOT NULL CHECK (agency ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    incident_type text NOT NULL REFERENCES incident_types (code),
    enabled_by    text NOT NULL,
    enabled_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (agency, incident_type)
);
-- the feeds read closed incidents of one agency, newest first
CREATE INDEX incidents_public_feed_idx ON incidents (agency, closed_at) WHERE status = 'closed';
