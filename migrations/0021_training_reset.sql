-- Resetting a training agency (README "Training mode", cad/training.py): `cad training reset
-- AGENCY` and POST /api/v1/training/reset delete an exercise so the next one starts clean.
--
-- What goes: every row written for the agency while it was a training one -- incidents and
-- units carrying the training mark (0017), what hangs off them (callers, narrative, links,
-- assignments, recommendations, community alerts and their deliveries, timer alerts, status
-- log, AVL breadcrumbs), the agency's events carrying the mark, and the public reports and
-- feedback it received since it became a training agency (training_agencies.since). What
-- stays: the audit trail (never deleted; the reset writes its own record), rows of every other
-- agency, and rows of this agency written before it was a training one (no mark: real data).
--
-- The roster (units, stations) stays by default: units go back to available in quarters at
-- their stations, with no position, incident or check-in, and their status log holds the one
-- change the reset made. p_wipe_roster deletes the training units too, and the agency's
-- stations nothing else refers to. Zones, response plans and alert subscriptions are set-up
-- and stay either way.
--
-- The server's role (cad_app) may not delete events (0019) and the status log and narrative
-- are append-only: training_reset runs as the owner (SECURITY DEFINER, granted to cad_app
-- through cad_secure_schema below) and lets the append-only guards pass rows of the agency it
-- names, for its own transaction only (cad.training_reset), after checking the agency is a
-- training one. The guards themselves check it again for every row, so a session setting the
-- switch by hand can reach no real agency's rows, and cad_app still cannot delete events.

CREATE OR REPLACE FUNCTION event_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    through text := current_setting('cad.event_prune_through', true);
    resetting text := current_setting('cad.training_reset', true);
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF coalesce(through, '') <> '' AND OLD.id <= through::bigint THEN
            RETURN OLD;
        END IF;
        -- A training reset: the named training agency's own training events, nothing else.
        IF coalesce(resetting, '') <> '' AND OLD.agency = resetting AND OLD.training
           AND cad_is_training(resetting) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'event_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION cad_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resetting text := current_setting('cad.training_reset', true);
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(resetting, '') <> '' AND cad_is_training(resetting) THEN
        -- Nested: OLD has only the columns of the table the trigger fired on.
        IF TG_TABLE_NAME = 'unit_status_log' THEN
            IF EXISTS (SELECT 1 FROM units u WHERE u.id = OLD.unit_id AND u.agency = resetting
                       AND u.training) THEN
                RETURN OLD;
            END IF;
        ELSIF TG_TABLE_NAME = 'incident_narrative' THEN
            IF EXISTS (SELECT 1 FROM incidents i WHERE i.id = OLD.incident_id
                       AND i.agency = resetting AND i.training) THEN
                RETURN OLD;
            END IF;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Returns {"counts": {table: rows}, "incident_ids": [...], "unit_ids": [...] (the agency's
-- training units, reset or deleted), "released_unit_ids": [...] (other training agencies'
-- units that were on its incidents through mutual aid, now available on radio)}.
CREATE FUNCTION training_reset(p_agency text, p_wipe_roster boolean, p_actor text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    since_at timestamptz;
    inc bigint[];
    inc_text text[];
    unt text[];
    released text[];
    counts jsonb := '{}'::jsonb;
    n bigint;
    prefix text;
    r record;
BEGIN
    SELECT t.since INTO since_at FROM training_agencies t WHERE t.agency = p_agency;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'training_reset: % is not a training agency', p_agency
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- One reset of an agency at a time (0x43AD0004: the project's training-reset locks).
    PERFORM pg_advisory_xact_lock(1135411204, hashtext(p_agency));

    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO inc
      FROM incidents WHERE agency = p_agency AND training;
    inc_text := ARRAY(SELECT unnest(inc)::text);
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO unt
      FROM units WHERE agency = p_agency AND training;
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO released
      FROM units WHERE current_incident = ANY (inc) AND NOT (id = ANY (unt));

    PERFORM set_config('cad.training_reset', p_agency, true);

    DELETE FROM alert_deliveries WHERE alert_id IN (SELECT id FROM alerts WHERE incident_id = ANY (inc));
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('alert_deliveries', n);
    DELETE FROM alerts WHERE incident_id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('alerts', n);
    DELETE FROM public_reports WHERE incident_id = ANY (inc)
        OR (agency = p_agency AND submitted_at >= since_at);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('public_reports', n);
    DELETE FROM feedback_notes WHERE feedback_id IN (
        SELECT id FROM feedback WHERE agency = p_agency AND received_at >= since_at);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('feedback_notes', n);
    DELETE FROM feedback WHERE agency = p_agency AND received_at >= since_at;
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('feedback', n);
    DELETE FROM recommendations WHERE incident_id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('recommendations', n);
    -- The agency's units leave any incident they serve (another training agency's, on mutual
    -- aid), and every unit leaves the agency's incidents.
    DELETE FROM incident_units WHERE incident_id = ANY (inc) OR unit_id = ANY (unt);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('incident_units', n);
    DELETE FROM incident_links WHERE incident_id = ANY (inc) OR other_id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('incident_links', n);
    DELETE FROM incident_callers WHERE incident_id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('incident_callers', n);
    DELETE FROM incident_narrative WHERE incident_id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('incident_narrative', n);
    DELETE FROM timer_alerts WHERE (kind = 'pending_overdue' AND subject = ANY (inc_text))
        OR (kind = 'unit_status_overdue' AND subject = ANY (unt));
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('timer_alerts', n);

    -- Other agencies' units that were on these incidents: free again, the change logged.
    INSERT INTO unit_status_log (unit_id, from_status, to_status, actor, source)
        SELECT id, status, 'available_on_radio', p_actor, 'system' FROM units
         WHERE id = ANY (released) AND status <> 'available_on_radio';
    UPDATE units SET status = 'available_on_radio', status_changed_at = clock_timestamp(),
                     current_incident = NULL, version = version + 1
     WHERE id = ANY (released);

    UPDATE units SET current_incident = NULL WHERE id = ANY (unt);  -- no FK, but say it
    DELETE FROM incidents WHERE id = ANY (inc);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('incidents', n);

    DELETE FROM unit_status_log WHERE unit_id = ANY (unt);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('unit_status_log', n);
    DELETE FROM unit_positions WHERE unit_id = ANY (unt);
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('unit_positions', n);

    IF p_wipe_roster THEN
        DELETE FROM units WHERE id = ANY (unt);
        GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('units_deleted', n);
        DELETE FROM stations s WHERE s.agency = p_agency
           AND NOT EXISTS (SELECT 1 FROM units u WHERE u.home_station = s.id)
           AND NOT EXISTS (SELECT 1 FROM zones z WHERE z.first_due_station = s.id);
        GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('stations_deleted', n);
    ELSE
        -- The fleet as at the start of a shift: in quarters (an active unit), nothing else
        -- remembered. The locator places a unit without a fix at its station.
        INSERT INTO unit_status_log (unit_id, from_status, to_status, actor, source)
            SELECT id, status, 'available_in_quarters', p_actor, 'system' FROM units
             WHERE id = ANY (unt) AND active AND status <> 'available_in_quarters';
        UPDATE units SET status = CASE WHEN active THEN 'available_in_quarters' ELSE status END,
                         status_changed_at = clock_timestamp(), current_incident = NULL,
                         last_checkin_at = NULL, last_lat = NULL, last_lon = NULL,
                         last_fix_at = NULL, version = version + 1
         WHERE id = ANY (unt);
        GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('units_reset', n);
    END IF;

    DELETE FROM event_log WHERE agency = p_agency AND training;
    GET DIAGNOSTICS n = ROW_COUNT; counts := counts || jsonb_build_object('events', n);

    -- Incident numbers start again at 1 when no incident of the agency is left (its numbers
    -- are AGENCY-YEAR-n; a sequence serves the agencies whose names fold to one name, so
    -- every one of those must have none left).
    prefix := 'incident_no_' || replace(lower(p_agency), '-', '_') || '_';
    n := 0;
    IF NOT EXISTS (SELECT 1 FROM incidents
                    WHERE replace(lower(agency), '-', '_') = replace(lower(p_agency), '-', '_')) THEN
        FOR r IN SELECT c.oid::regclass AS seq FROM pg_class c
                  WHERE c.relkind = 'S' AND c.relnamespace = current_schema()::regnamespace
                    AND left(c.relname, length(prefix)) = prefix
                    AND substr(c.relname, length(prefix) + 1) ~ '^[0-9]{4}$' LOOP
            PERFORM setval(r.seq, 1, false);
            n := n + 1;
        END LOOP;
    END IF;
    counts := counts || jsonb_build_object('number_sequences_restarted', n);

    PERFORM set_config('cad.training_reset', '', true);
    RETURN jsonb_build_object('counts', counts, 'incident_ids', to_jsonb(inc),
                              'unit_ids', to_jsonb(unt), 'released_unit_ids', to_jsonb(released));
END $$;
REVOKE ALL ON FUNCTION training_reset(text, boolean, text) FROM PUBLIC;
ALTER FUNCTION training_reset(text, boolean, text) SECURITY DEFINER;

-- As 0019's, with training_reset among the SECURITY DEFINER functions cad_app may call.
CREATE OR REPLACE FUNCTION cad_secure_schema() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    -- The server reads these; it never writes them directly.
    read_only CONSTANT text[] := ARRAY['audit_log', 'audit_chain_anchor', 'audit_policy',
                                       'schema_migrations', 'event_policy'];
    -- The server appends and reads; it never changes or deletes a row (0019).
    append_only CONSTANT text[] := ARRAY['event_log'];
    definer CONSTANT text[] := ARRAY['audit_append', 'audit_prune', 'cad_create_sequence',
                                     'training_reset'];
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
