-- Security: identities, sessions, MDT device tokens, login attempts, and the audit hash chain.

-- Advisory lock keys (project prefix 0x43AD):
--   0x43AD0001  migrations (cad.db.MIGRATION_LOCK_KEY)
--   0x43AD0002  event-log commit order (0001_foundation.sql)
--   0x43AD0003  audit-chain append (audit_append below): held from the chain-head read to COMMIT
--   0x43AD0004  admin bootstrap from the environment (cad.security.service)

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{1,63}$'),
    display_name  text,
    password_hash text NOT NULL,
    role          text NOT NULL
                  CHECK (role IN ('dispatcher', 'supervisor', 'field_unit', 'analyst', 'admin')),
    -- A field-unit identity is bound to exactly one unit; nobody else is.
    unit_id       text,
    agency        text,
    disabled      boolean NOT NULL DEFAULT false,
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    password_changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT users_unit_binding CHECK ((role = 'field_unit') = (unit_id IS NOT NULL))
);
CREATE INDEX users_role_idx ON users (role) WHERE NOT disabled;

-- One row per login. The refresh token is stored as its SHA-256 and rotated on every use;
-- presenting a superseded refresh token revokes the session (token theft).
CREATE TABLE sessions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash   text NOT NULL,
    created_at     timestamptz NOT NULL,
    last_seen_at   timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    client_addr    text,
    user_agent     text
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Long-lived credentials of a field unit's mobile data terminal. Stored as SHA-256 (the token
-- is 256 random bits, so a fast hash is enough); revocable one by one.
CREATE TABLE device_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    unit_id      text NOT NULL,
    label        text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    created_by   text NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text
);
CREATE INDEX device_tokens_user_idx ON device_tokens (user_id);

-- Every login attempt, for forensics; lockout state itself lives on users.
CREATE TABLE login_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    username    text NOT NULL,
    client_addr text,
    success     boolean NOT NULL,
    reason      text
);
CREATE INDEX login_attempts_username_idx ON login_attempts (username, at);
CREATE INDEX login_attempts_at_idx ON login_attempts (at);

-- Revocations wake websocket gateways at commit (channel cad_security, payload JSON
-- {"kind": "session"|"device"|"user", "id": ...}); gateways also re-check periodically.
CREATE FUNCTION security_revocation_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        IF NEW.disabled AND NOT OLD.disabled THEN
            PERFORM pg_notify('cad_security', json_build_object('kind', 'user', 'id', NEW.id)::text);
        END IF;
    ELSIF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM pg_notify('cad_security', json_build_object(
            'kind', CASE TG_TABLE_NAME WHEN 'sessions' THEN 'session' ELSE 'device' END,
            'id', NEW.id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER sessions_revocation_notify AFTER UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION security_revocation_notify();
CREATE TRIGGER device_tokens_revocation_notify AFTER UPDATE ON device_tokens
    FOR EACH ROW EXECUTE FUNCTION security_revocation_notify();
CREATE TRIGGER users_revocation_notify AFTER UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION security_revocation_notify();


-- ---------------------------------------------------------------------------------------------
-- Audit hash chain.
--
-- Each entry carries its position (seq, gap-free), the previous entry's hash and its own:
--   hash = sha256_hex(prev_hash || lp(at) || lp(actor) || lp(action) || lp(target)
--                     || lp(outcome) || lp(request_id) || lp(client_addr) || lp(details::text))
-- where lp(x) = octet_length(x) || ':' || x, or '-' for NULL, and at is rendered as UTC
-- 'YYYY-MM-DDTHH24:MI:SS.US'. cad.security.audit recomputes this independently to verify.
-- Retention pruning removes a prefix of the chain and records the last pruned entry's seq and
-- hash in audit_chain_anchor, so verification starts from the first retained entry.

ALTER TABLE audit_log
    ADD COLUMN seq bigint,
    ADD COLUMN prev_hash text,
    ADD COLUMN hash text;

CREATE TABLE audit_chain_anchor (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq        bigint NOT NULL,
    hash       text NOT NULL,
    pruned     bigint NOT NULL,
    pruned_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    cutoff     timestamptz NOT NULL
);

CREATE FUNCTION audit_lp(x text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN x IS NULL THEN '-' ELSE octet_length(x)::text || ':' || x END
$$;

CREATE FUNCTION audit_entry_hash(prev text, at timestamptz, actor text, action text, target text,
                                 outcome text, request_id text, client_addr text, details jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(convert_to(
        prev
        || audit_lp(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'))
        || audit_lp(actor) || audit_lp(action) || audit_lp(target) || audit_lp(outcome)
        || audit_lp(request_id) || audit_lp(client_addr) || audit_lp(details::text),
        'UTF8')), 'hex')
$$;

-- The single append path (called by cad.uow.write_audit). In READ COMMITTED each statement of
-- this VOLATILE function takes a fresh snapshot, so the head read after the lock sees the
-- previous holder's committed entry. The lock is held to COMMIT: callers append audit last.
CREATE FUNCTION audit_append(p_actor text, p_request_id text, p_client_addr text,
                             p_actions text[], p_targets text[], p_outcomes text[],
                             p_details jsonb[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
    ts        timestamptz;
    h         text;
    i         integer;
BEGIN
    PERFORM pg_advisory_xact_lock(1135411203);  -- 0x43AD0003
    SELECT seq, hash INTO head_seq, head_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        SELECT seq, hash INTO head_seq, head_hash FROM audit_chain_anchor ORDER BY seq DESC LIMIT 1;
        IF NOT FOUND THEN
            head_seq := 0;
            head_hash := repeat('0', 64);
        END IF;
    END IF;
    ts := clock_timestamp();
    FOR i IN 1 .. coalesce(array_length(p_actions, 1), 0) LOOP
        h := audit_entry_hash(head_hash, ts, p_actor, p_actions[i], p_targets[i], p_outcomes[i],
                              p_request_id, p_client_addr, coalesce(p_details[i], '{}'::jsonb));
        head_seq := head_seq + 1;
        INSERT INTO audit_log (at, actor, action, target, outcome, request_id, client_addr,
                               details, seq, prev_hash, hash)
        VALUES (ts, p_actor, p_actions[i], p_targets[i], p_outcomes[i], p_request_id,
                p_client_addr, coalesce(p_details[i], '{}'::jsonb), head_seq, head_hash, h);
        head_hash := h;
    END LOOP;
END $$;

-- Chain the entries written before this migration, in id order.
ALTER TABLE audit_log DISABLE TRIGGER audit_log_immutable;
DO $$
DECLARE
    r record;
    prev text := repeat('0', 64);
    n bigint := 0;
    h text;
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        n := n + 1;
        h := audit_entry_hash(prev, r.at, r.actor, r.action, r.target, r.outcome, r.request_id,
                              r.client_addr, r.details);
        UPDATE audit_log SET seq = n, prev_hash = prev, hash = h WHERE id = r.id;
        prev := h;
    END LOOP;
END $$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_immutable;

ALTER TABLE audit_log
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX audit_log_seq_idx ON audit_log (seq);
CREATE INDEX audit_log_action_idx ON audit_log (action, at);

-- Append-only, except retention pruning, which sets cad.audit_retention = 'on' for its
-- transaction (cad.security.audit.prune) and records an anchor.
CREATE OR REPLACE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('cad.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION audit_chain_anchor_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain_anchor is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_chain_anchor_immutable
    BEFORE UPDATE OR DELETE ON audit_chain_anchor FOR EACH ROW
    EXECUTE FUNCTION audit_chain_anchor_immutable();
CREATE TRIGGER audit_chain_anchor_no_truncate
    BEFORE TRUNCATE ON audit_chain_anchor FOR EACH STATEMENT
    EXECUTE FUNCTION audit_chain_anchor_immutable();
