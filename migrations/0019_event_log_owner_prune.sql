-- The event log the server cannot erase (issue #11's follow-up, session 5).
--
-- event_log is what a reconnecting board or MDT replays what it missed from; it was guarded
-- by a trigger that let any session delete after `SET cad.event_retention = 'on'`, and the
-- server's role (cad_app) held DELETE on it. Now:
--   * cad_app may only SELECT and INSERT event_log (cad_secure_schema below);
--   * the trigger lets a DELETE through only for ids at or below the transaction-local bound
--     that event_log_prune sets (the old switch is gone);
--   * event_log_prune(cutoff) is the one pruning path: it deletes a prefix of the log (every
--     event up to the newest one older than the cutoff, so a client behind it is told to
--     resync, never given a log with holes), refuses a cutoff younger than
--     event_policy.min_retention_days, and is not executable by cad_app: pruning is an
--     operator's act, run as the owner (`cad db prune-events`).

CREATE TABLE event_policy (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    min_retention_days integer NOT NULL CHECK (min_retention_days >= 1)
);
INSERT INTO event_policy (min_retention_days) VALUES (90);

CREATE OR REPLACE FUNCTION event_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    through text := current_setting('cad.event_prune_through', true);
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(through, '') <> '' AND OLD.id <= through::bigint THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'event_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION event_log_prune(p_cutoff timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    keep_days integer;
    last_id bigint;
    n bigint;
BEGIN
    SELECT min_retention_days INTO STRICT keep_days FROM event_policy;
    IF p_cutoff > now() - make_interval(days => keep_days) THEN
        RAISE EXCEPTION 'event_log_prune: cutoff % is younger than the retention of % days',
            p_cutoff, keep_days USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT max(id) INTO last_id FROM event_log WHERE occurred_at < p_cutoff;
    IF last_id IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM set_config('cad.event_prune_through', last_id::text, true);
    DELETE FROM event_log WHERE id <= last_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('cad.event_prune_through', '', true);
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION event_log_prune(timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION cad_secure_schema() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    -- The server reads these; it never writes them directly.
    read_only CONSTANT text[] := ARRAY['audit_log', 'audit_chain_anchor', 'audit_policy',
                                       'schema_migrations', 'event_policy'];
    -- The server appends and reads; it never changes or deletes a row (0019).
    append_only CONSTANT text[] := ARRAY['event_log'];
    definer CONSTANT text[] := ARRAY['audit_append', 'audit_prune', 'cad_create_sequence'];
BEGIN
    FOR r IN SELECT c.oid::regclass AS obj, c.relkind FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace
                AND c.relkind IN ('r', 'p', 'v', 'm')
                AND c.relowner <> 'cad_owner'::regrole
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                AND d.objid = c.oid AND d.deptype = 'e') LOOP
        EXECUTE format('ALTER %s %s OWNER TO cad_owner',
                       CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      ELSE 'TABLE' END, r.obj);
    END LOOP;
    -- Sequences a table owns moved with it; the rest (incident numbers) move here.
    FOR r IN SELECT c.oid::regclass AS obj FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'S'
                AND c.relowner <> 'cad_owner'::regrole LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO cad_owner', r.obj);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND p.proowner <> 'cad_owner'::regrole
                AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                AND d.objid = p.oid AND d.deptype = 'e') LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO cad_owner', r.fn);
    END LOOP;

    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO cad_owner', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO cad_app', current_schema());
    FOR r IN SELECT c.oid::regclass AS obj, c.relname FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace
                AND c.relkind IN ('r', 'p', 'v', 'm') LOOP
        EXECUTE format('REVOKE ALL ON %s FROM cad_app', r.obj);
        IF r.relname = ANY (read_only) THEN
            EXECUTE format('GRANT SELECT ON %s TO cad_app', r.obj);
        ELSIF r.relname = ANY (append_only) THEN
            EXECUTE format('GRANT SELECT, INSERT ON %s TO cad_app', r.obj);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO cad_app', r.obj);
        END IF;
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS obj, t.relname AS owner_table FROM pg_class c
              LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                   AND d.deptype IN ('a', 'i')
              LEFT JOIN pg_class t ON t.oid = d.refobjid
              WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'S' LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM cad_app', r.obj);
        IF r.owner_table IS NULL OR NOT (r.owner_table = ANY (read_only)) THEN
            EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %s TO cad_app', r.obj);
        END IF;
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn, p.proname FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
                AND (p.prosecdef OR p.proname = 'cad_secure_schema') LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', r.fn);
        IF r.proname = ANY (definer) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO cad_app', r.fn);
        END IF;
        -- A SECURITY DEFINER function resolves names in this schema only.
        IF r.proname = ANY (definer) THEN
            EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                           r.fn, current_schema());
        END IF;
    END LOOP;
END $$;

SELECT cad_secure_schema();
