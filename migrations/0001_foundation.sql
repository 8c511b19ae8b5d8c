-- Foundation: the commit-ordered event log and the append-only audit log.

-- Every state change appends here, in the same transaction as the change.
-- Ids are assigned in COMMIT order: a BEFORE STATEMENT trigger takes a transaction-level
-- advisory lock before any id is drawn, and the lock is released only after the commit is
-- visible. A reader tailing "id > cursor" therefore never sees id N+1 before id N has
-- committed, and never skips an event that commits later. Writers keep the lock short
-- by appending their events last (cad.uow does).
CREATE TABLE event_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    type           text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    agency         text,
    actor          text,
    request_id     text,
    data           jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX event_log_aggregate_idx ON event_log (aggregate_type, aggregate_id, id);
CREATE INDEX event_log_occurred_idx ON event_log (occurred_at);

CREATE FUNCTION event_log_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- 0x43AD0002: the project's event-log sequencing lock.
    PERFORM pg_advisory_xact_lock(1135411202);
    RETURN NULL;
END $$;

CREATE TRIGGER event_log_commit_order
    BEFORE INSERT ON event_log FOR EACH STATEMENT EXECUTE FUNCTION event_log_commit_order();

-- Wake tailers (websocket gateway) at commit; NOTIFY is delivered only if the transaction commits.
CREATE FUNCTION event_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cad_events', '');
    RETURN NULL;
END $$;

CREATE TRIGGER event_log_notify
    AFTER INSERT ON event_log FOR EACH STATEMENT EXECUTE FUNCTION event_log_notify();

CREATE FUNCTION event_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Retention pruning of old events sets cad.event_retention = 'on' for its transaction.
    IF TG_OP = 'DELETE' AND current_setting('cad.event_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'event_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER event_log_immutable
    BEFORE UPDATE OR DELETE ON event_log FOR EACH ROW EXECUTE FUNCTION event_log_immutable();


-- Who did what to what, when, from where, and how it ended. Append-only.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    request_id  text,
    client_addr text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at);
CREATE INDEX audit_log_target_idx ON audit_log (target, at);

CREATE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_immutable
    BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_immutable();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_immutable();
CREATE TRIGGER event_log_no_truncate
    BEFORE TRUNCATE ON event_log FOR EACH STATEMENT EXECUTE FUNCTION event_log_immutable();
