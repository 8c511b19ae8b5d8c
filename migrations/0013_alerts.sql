-- Community alerts as OASIS CAP 1.2 (incidents/alerts, docs/alerts.md): drafted by one
-- supervisor, approved by another, delivered to subscribers with a delivery log.

CREATE TABLE alerts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identifier   text NOT NULL UNIQUE,
    agency       text NOT NULL,
    incident_id  bigint NOT NULL REFERENCES incidents (id),
    msg_type     text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    references_id bigint REFERENCES alerts (id),
    state        text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'published')),
    event        text NOT NULL,
    category     text NOT NULL,
    urgency      text NOT NULL,
    severity     text NOT NULL,
    certainty    text NOT NULL,
    area_desc    text NOT NULL,
    polygons     jsonb NOT NULL,     -- [[[lat, lon], ...], ...] closed rings, CAP order
    infos        jsonb NOT NULL,     -- [{language, headline, description, instruction}]
    expires_at   timestamptz,
    drafted_by   text NOT NULL,
    drafted_at   timestamptz NOT NULL DEFAULT now(),
    approved_by  text,
    sent_at      timestamptz,
    cap_xml      text,               -- the published message, exactly as served
    CHECK (state = 'draft' OR (approved_by IS NOT NULL AND approved_by <> drafted_by
                               AND sent_at IS NOT NULL AND cap_xml IS NOT NULL)),
    CHECK ((msg_type = 'Alert') = (references_id IS NULL))
);
CREATE INDEX alerts_published_idx ON alerts (sent_at DESC) WHERE state = 'published';

CREATE TABLE alert_subscriptions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agency      text NOT NULL,
    channel     text NOT NULL,       -- webhook | email | log (incidents.alerts.channels)
    target      text NOT NULL,       -- URL, address, or a label
    secret      text,                -- webhook HMAC key
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE alert_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (id),
    subscription_id bigint NOT NULL REFERENCES alert_subscriptions (id),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz,
    log             jsonb NOT NULL DEFAULT '[]',   -- [{at, ok, error}] one per attempt
    UNIQUE (alert_id, subscription_id)
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
