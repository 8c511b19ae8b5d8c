-- Database roles: an owner that owns every object, and the server's login role, which owns
-- nothing and can only append to the audit trail (docs/security.md, "Database roles").
--
--   cad_owner  NOLOGIN. Owns every table, sequence and function of the schema; the SECURITY
--              DEFINER functions below (audit_append, audit_prune, cad_create_sequence) run
--              as it. Migrations run as a superuser or as a member of cad_owner.
--   cad_app    LOGIN. The server's pool. DML on the operational tables; on the audit trail
--              SELECT only (appends go through audit_append, pruning through audit_prune);
--              it cannot alter or disable a trigger (not an owner), cannot set
--              session_replication_role (not a superuser) and cannot write an anchor.
--
-- Roles are cluster-wide and this migration runs once per database (the test suite clones a
-- migrated template per test, several deployments may share a cluster): creation tolerates
-- the roles existing already, including a concurrent migration of another database creating
-- them at the same instant.

DO $$
DECLARE
    wanted text;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['cad_owner', 'cad_app'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted) THEN
            BEGIN
                IF wanted = 'cad_owner' THEN
                    CREATE ROLE cad_owner NOLOGIN;
                ELSE
                    CREATE ROLE cad_app LOGIN;
                END IF;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it first
            END;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cad_app'
                AND (rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb))
       OR pg_has_role('cad_app', 'cad_owner', 'MEMBER') THEN
        RAISE EXCEPTION 'role cad_app must not be a superuser, create roles or databases, '
                        'bypass row security or be a member of cad_owner';
    END IF;
    -- A non-superuser migrator (an external server) must be a member of cad_owner to hand
    -- it the objects it creates.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'cad_owner', 'MEMBER') THEN
        EXECUTE format('GRANT cad_owner TO %I', current_user);
    END IF;
END $$;

-- The retention floor, owned by cad_owner and read-only to the server: audit_prune refuses
-- any cutoff younger than this many days. Changed by the owner only (README).
CREATE TABLE audit_policy (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention_days integer NOT NULL CHECK (retention_days >= 1)
);
INSERT INTO audit_policy (retention_days) VALUES (365);

-- Each anchor names the chained audit.prune entry that its prune wrote (NULL for anchors
-- written before this migration); verify checks one against the other.
ALTER TABLE audit_chain_anchor ADD COLUMN entry_seq bigint;

-- Append-only, except a prefix deleted by audit_prune: the retention GUC any session could
-- set is gone; deleting needs the transaction-local bound audit_prune sets, rows at or below
-- it only, by the table's owner (the server's role has no DELETE privilege at all).
CREATE OR REPLACE FUNCTION audit_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    through text := current_setting('cad.audit_prune_through', true);
BEGIN
    -- Nested: OLD exists only for a row-level DELETE (this also serves the TRUNCATE trigger).
    IF TG_OP = 'DELETE' AND coalesce(through, '') <> '' THEN
        IF OLD.seq <= through::bigint AND current_user =
           (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

-- The one pruning path. Refuses a cutoff younger than audit_policy.retention_days, deletes
-- the prefix of the chain older than the cutoff, anchors the chain at the last deleted entry
-- and appends its own chained entry (audit.prune) that the anchor points to.
CREATE FUNCTION audit_prune(p_cutoff timestamptz, p_actor text DEFAULT 'retention')
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
    keep_days integer;
    earliest  timestamptz;
    last_seq  bigint;
    last_hash text;
    deleted   bigint;
    head      bigint;
BEGIN
    SELECT retention_days INTO STRICT keep_days FROM audit_policy;
    earliest := clock_timestamp() - make_interval(days => keep_days);
    IF p_cutoff IS NULL OR p_cutoff > earliest THEN
        RAISE EXCEPTION 'audit_prune: cutoff % is younger than the retention of % days (at most %)',
            p_cutoff, keep_days, earliest USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(1135411203);  -- 0x43AD0003, the append lock: the head stays put
    SELECT seq, hash INTO last_seq, last_hash FROM audit_log
     WHERE seq = (SELECT max(seq) FROM audit_log WHERE at < p_cutoff);
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    PERFORM set_config('cad.audit_prune_through', last_seq::text, true);
    DELETE FROM audit_log WHERE seq <= last_seq;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('cad.audit_prune_through', '', true);
    SELECT coalesce(max(seq), last_seq) INTO head FROM audit_log;
    INSERT INTO audit_chain_anchor (seq, hash, pruned, cutoff, entry_seq)
    VALUES (last_seq, last_hash, deleted, p_cutoff, head + 1);
    PERFORM audit_append(p_actor, NULL, NULL, ARRAY['audit.prune'], ARRAY['audit_log'],
        ARRAY['success'], ARRAY[jsonb_build_object(
            'deleted', deleted, 'through_seq', last_seq, 'anchor_hash', last_hash,
            'cutoff', to_char(p_cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'retention_days', keep_days)]);
    RETURN deleted;
END $$;

-- Incident-number sequences are made per agency and year at intake; the server may not
-- create objects, so it asks the owner for one (a name of that one shape only).
CREATE FUNCTION cad_create_sequence(p_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF p_name !~ '^incident_no_[a-z0-9_]{1,40}_[0-9]{4}$' THEN
        RAISE EXCEPTION 'not an incident-number sequence name: %', p_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', p_name);
    EXCEPTION WHEN unique_violation OR duplicate_table THEN
        NULL;  -- another worker made it at the same instant: IF NOT EXISTS is not atomic
    END;
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %I TO cad_app', p_name);
END $$;

-- Ownership and grants of the whole schema, re-applied by the migration runner after every
-- batch of migrations (cad.db.migrate), so tables later migrations add are owned by
-- cad_owner and usable by cad_app without each migration repeating it. A later migration
-- that needs other grants replaces this function.
CREATE FUNCTION cad_secure_schema() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    -- The server reads these; it never writes them directly.
    read_only CONSTANT text[] := ARRAY['audit_log', 'audit_chain_anchor', 'audit_policy',
                                       'schema_migrations'];
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

-- The append path runs as the owner: the server appends without any INSERT privilege, and
-- only with the seq, prev_hash and hash the function computes.
ALTER FUNCTION audit_append(text, text, text, text[], text[], text[], jsonb[]) SECURITY DEFINER;

SELECT cad_secure_schema();
