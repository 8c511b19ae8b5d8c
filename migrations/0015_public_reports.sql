-- Public forms' challenges (incidents.public.challenge) and online non-emergency reports
-- (incidents.reports). Owners: public_challenge_uses by incidents/public/repository.py,
-- public_reports by incidents/reports/repository.py.

-- A challenge token once spent (single use), and the per-address budget it counts against.
-- address is an HMAC of the client address under the server's challenge key: no IP address
-- is stored. A row is kept until its token has expired and its window has passed.
CREATE TABLE public_challenge_uses (
    digest     bytea PRIMARY KEY CHECK (length(digest) = 32),    -- SHA-256 of the token
    kind       text NOT NULL CHECK (kind IN ('pow', 'form')),
    purpose    text NOT NULL CHECK (length(purpose) <= 64),
    address    bytea NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    keep_until timestamptz NOT NULL
);
CREATE INDEX public_challenge_uses_budget_idx ON public_challenge_uses (address, purpose, kind, used_at);
CREATE INDEX public_challenge_uses_keep_idx ON public_challenge_uses (keep_until);

-- A report filed by the public. tracking is random (not guessable, not sequential); the
-- contact columns are personal data: never in public output, every staff read audited.
-- public_reason is what the reporter sees; staff_note never leaves staff endpoints.
CREATE TABLE public_reports (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tracking       text NOT NULL UNIQUE CHECK (tracking ~ '^R-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$'),
    agency         text NOT NULL CHECK (agency ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    report_type    text NOT NULL,
    description    text NOT NULL CHECK (length(description) BETWEEN 1 AND 4000),
    location_text  text CHECK (length(location_text) <= 200),
    lat            double precision CHECK (lat BETWEEN -90 AND 90),
    lon            double precision CHECK (lon BETWEEN -180 AND 180),
    occurred_at    timestamptz,
    language       text NOT NULL DEFAULT 'en',
    contact_name   text CHECK (length(contact_name) <= 100),
    contact_phone  text CHECK (length(contact_phone) <= 32),
    contact_email  text CHECK (length(contact_email) <= 254),
    via            text NOT NULL CHECK (via IN ('pow', 'form')),
    status         text NOT NULL DEFAULT 'received'
                   CHECK (status IN ('received', 'accepted', 'declined')),
    submitted_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_at     timestamptz,
    decided_by     text,
    accepted_as    text CHECK (accepted_as IN ('incident', 'record')),
    incident_id    bigint REFERENCES incidents (id),
    public_reason  text CHECK (length(public_reason) <= 500),
    staff_note     text CHECK (length(staff_note) <= 2000),
    CHECK ((status = 'received') = (decided_at IS NULL)),
    CHECK (status <> 'declined' OR public_reason IS NOT NULL),
    CHECK ((status = 'accepted') = (accepted_as IS NOT NULL)),
    CHECK ((accepted_as = 'incident') = (incident_id IS NOT NULL))
);
-- the review queue: one agency's reports waiting, oldest first
CREATE INDEX public_reports_queue_idx ON public_reports (agency, status, submitted_at);
