-- Feedback, compliments and complaints from the public (incidents/feedback, docs/feedback.md).
-- One row per submission; the submitter holds its unguessable reference. Contact data is
-- personal data: never in public output, staff reads audited. Deadlines are fixed when the
-- row is made (from CAD_FEEDBACK_*_DAYS), so changing the configuration moves no promise
-- already given.
CREATE TABLE feedback (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference          text NOT NULL UNIQUE,
    agency             text NOT NULL CHECK (agency ~ '^[A-Z0-9][A-Z0-9_-]{0,15}$'),
    category           text NOT NULL
                       CHECK (category IN ('compliment', 'complaint', 'suggestion', 'other')),
    subcategory        text CHECK (subcategory IS NULL OR category = 'complaint'),
    description        text NOT NULL CHECK (length(description) BETWEEN 1 AND 5000),
    incident_number    text,          -- as the public typed it; matched for staff only
    unit_ref           text,          -- unit or badge as the public typed it
    occurred_at        timestamptz,
    contact_name       text,
    contact_email      text,
    contact_phone      text,
    language           text NOT NULL,
    status             text NOT NULL DEFAULT 'received'
                       CHECK (status IN ('received', 'assigned', 'investigating', 'resolved',
                                         'closed')),
    assigned_to        text,
    assigned_at        timestamptz,
    acknowledged_at    timestamptz,
    acknowledge_due_at timestamptz NOT NULL,
    resolve_due_at     timestamptz NOT NULL,
    outcome            text,
    public_response    text CHECK (length(public_response) <= 2000),
    received_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolved_at        timestamptz,
    closed_at          timestamptz,
    version            integer NOT NULL DEFAULT 1,
    CHECK ((status IN ('resolved', 'closed')) = (outcome IS NOT NULL)),
    CHECK (status IN ('received', 'closed') OR assigned_to IS NOT NULL)
);
-- the supervisors' queue and the overdue listing: open rows of one agency by deadline
CREATE INDEX feedback_queue_idx ON feedback (agency, status, resolve_due_at);
-- counts per month (staff and public statistics)
CREATE INDEX feedback_received_idx ON feedback (agency, received_at);

-- Internal notes: staff only, never shown to the submitter.
CREATE TABLE feedback_notes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    feedback_id bigint NOT NULL REFERENCES feedback (id),
    author      text NOT NULL,
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 5000),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feedback_notes_feedback_idx ON feedback_notes (feedback_id, id);
