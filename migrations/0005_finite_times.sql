-- Timestamps are finite. PostgreSQL stores a year-1 timestamp as -infinity and
-- 9999-12-31T23:59:59.999999 as infinity; no interval arithmetic survives either (one such
-- intake stopped every timer). Requests are checked first (cad.plausible: 422 naming the
-- field); these constraints make sure nothing else ever stores one.
--
-- Existing rows are repaired first, where a row may change:
--   incidents: an infinite received_at becomes the time the server created the incident (or
--     the answer time, if that is earlier), an infinite answered_at becomes unknown (NULL);
--     each repaired incident gets a narrative line saying what was changed and from what;
--   units: an infinite status start becomes the unit's creation time, an infinite check-in
--     or fix time becomes unknown (NULL, with the fix's position).
-- Append-only history (unit_status_log) is never rewritten: its constraints are validated
-- only when no old row breaks them, and otherwise hold for every new row (NOT VALID).

INSERT INTO incident_narrative (incident_id, author, text)
SELECT id, 'migration 0005',
       'received_at ' || received_at::text || ' / answered_at ' || coalesce(answered_at::text, '-')
       || ' could not be used (infinite); received_at set to the time the incident was created'
       || ' or answered, whichever was earlier, and an infinite answered_at cleared'
FROM incidents
WHERE NOT isfinite(received_at) OR NOT coalesce(isfinite(answered_at), true)
ORDER BY id;

UPDATE incidents SET
    received_at = CASE WHEN isfinite(received_at) THEN received_at
                       WHEN answered_at IS NOT NULL AND isfinite(answered_at)
                           THEN least(answered_at, created_at)
                       ELSE created_at END,
    answered_at = CASE WHEN isfinite(answered_at) THEN answered_at END
WHERE NOT isfinite(received_at) OR NOT coalesce(isfinite(answered_at), true);

UPDATE units SET
    status_changed_at = CASE WHEN isfinite(status_changed_at) THEN status_changed_at
                             ELSE created_at END,
    last_checkin_at = CASE WHEN isfinite(last_checkin_at) THEN last_checkin_at END,
    last_lat = CASE WHEN isfinite(last_fix_at) THEN last_lat END,
    last_lon = CASE WHEN isfinite(last_fix_at) THEN last_lon END,
    last_fix_at = CASE WHEN isfinite(last_fix_at) THEN last_fix_at END
WHERE NOT isfinite(status_changed_at) OR NOT coalesce(isfinite(last_checkin_at), true)
   OR NOT coalesce(isfinite(last_fix_at), true);

ALTER TABLE units
    ADD CONSTRAINT units_status_changed_at_finite CHECK (isfinite(status_changed_at)) NOT VALID,
    ADD CONSTRAINT units_last_checkin_at_finite CHECK (isfinite(last_checkin_at)) NOT VALID,
    ADD CONSTRAINT units_last_fix_at_finite CHECK (isfinite(last_fix_at)) NOT VALID,
    ADD CONSTRAINT units_created_at_finite CHECK (isfinite(created_at)) NOT VALID;

ALTER TABLE unit_status_log
    ADD CONSTRAINT unit_status_log_at_finite CHECK (isfinite(at)) NOT VALID,
    ADD CONSTRAINT unit_status_log_reported_at_finite CHECK (isfinite(reported_at)) NOT VALID;

ALTER TABLE incidents
    ADD CONSTRAINT incidents_received_at_finite CHECK (isfinite(received_at)) NOT VALID,
    ADD CONSTRAINT incidents_answered_at_finite CHECK (isfinite(answered_at)) NOT VALID,
    ADD CONSTRAINT incidents_created_at_finite CHECK (isfinite(created_at)) NOT VALID,
    ADD CONSTRAINT incidents_first_dispatched_at_finite CHECK (isfinite(first_dispatched_at)) NOT VALID,
    ADD CONSTRAINT incidents_first_en_route_at_finite CHECK (isfinite(first_en_route_at)) NOT VALID,
    ADD CONSTRAINT incidents_first_on_scene_at_finite CHECK (isfinite(first_on_scene_at)) NOT VALID,
    ADD CONSTRAINT incidents_cleared_at_finite CHECK (isfinite(cleared_at)) NOT VALID,
    ADD CONSTRAINT incidents_closed_at_finite CHECK (isfinite(closed_at)) NOT VALID;

ALTER TABLE incident_callers
    ADD CONSTRAINT incident_callers_created_at_finite CHECK (isfinite(created_at)) NOT VALID;

ALTER TABLE incident_narrative
    ADD CONSTRAINT incident_narrative_at_finite CHECK (isfinite(at)) NOT VALID;

ALTER TABLE incident_links
    ADD CONSTRAINT incident_links_created_at_finite CHECK (isfinite(created_at)) NOT VALID;

ALTER TABLE incident_units
    ADD CONSTRAINT incident_units_dispatched_at_finite CHECK (isfinite(dispatched_at)) NOT VALID,
    ADD CONSTRAINT incident_units_en_route_at_finite CHECK (isfinite(en_route_at)) NOT VALID,
    ADD CONSTRAINT incident_units_on_scene_at_finite CHECK (isfinite(on_scene_at)) NOT VALID,
    ADD CONSTRAINT incident_units_transporting_at_finite CHECK (isfinite(transporting_at)) NOT VALID,
    ADD CONSTRAINT incident_units_at_hospital_at_finite CHECK (isfinite(at_hospital_at)) NOT VALID,
    ADD CONSTRAINT incident_units_cleared_at_finite CHECK (isfinite(cleared_at)) NOT VALID;

ALTER TABLE recommendations
    ADD CONSTRAINT recommendations_created_at_finite CHECK (isfinite(created_at)) NOT VALID,
    ADD CONSTRAINT recommendations_outcome_at_finite CHECK (isfinite(outcome_at)) NOT VALID;

ALTER TABLE timer_alerts
    ADD CONSTRAINT timer_alerts_since_finite CHECK (isfinite(since)) NOT VALID,
    ADD CONSTRAINT timer_alerts_fired_at_finite CHECK (isfinite(fired_at)) NOT VALID;

-- Validate every constraint added above that the existing rows satisfy (all of them, unless
-- an append-only table holds an infinite value from before); a constraint left NOT VALID
-- still refuses every new or changed row, and is named in a warning.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT con.conrelid::regclass AS tbl, con.conname
        FROM pg_constraint con
        WHERE con.contype = 'c' AND NOT con.convalidated AND con.conname LIKE '%\_finite'
          AND con.connamespace = current_schema()::regnamespace
        ORDER BY 1, 2
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', c.tbl, c.conname);
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'constraint % on % is left NOT VALID: old rows hold infinite times '
                          '(new rows are checked)', c.conname, c.tbl;
        END;
    END LOOP;
END $$;
