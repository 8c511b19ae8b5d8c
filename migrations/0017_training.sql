-- Training mode (docs/analytics.md, "Training mode"): agencies that are training namespaces,
-- and the mark their incidents, units and events carry.

-- The agencies of CAD_TRAINING_AGENCIES, written by every server as it starts and by the
-- `cad` commands (cad/training.py): the setting is the truth, this table lets SQL see it.
CREATE TABLE training_agencies (
    agency   text PRIMARY KEY,
    since    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION cad_is_training(a text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT a IS NOT NULL AND EXISTS (SELECT 1 FROM training_agencies t WHERE t.agency = a)
$$;

-- The mark is taken when the row is written (and when a unit moves to another agency), so a
-- training incident stays one in every later report even if the setting changes.
ALTER TABLE incidents ADD COLUMN training boolean NOT NULL DEFAULT false;
ALTER TABLE units ADD COLUMN training boolean NOT NULL DEFAULT false;
ALTER TABLE event_log ADD COLUMN training boolean NOT NULL DEFAULT false;

CREATE FUNCTION cad_mark_training() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.training := cad_is_training(NEW.agency);
    RETURN NEW;
END $$;

CREATE TRIGGER incidents_training BEFORE INSERT OR UPDATE OF agency ON incidents
    FOR EACH ROW EXECUTE FUNCTION cad_mark_training();
CREATE TRIGGER units_training BEFORE INSERT OR UPDATE OF agency ON units
    FOR EACH ROW EXECUTE FUNCTION cad_mark_training();
CREATE TRIGGER event_log_training BEFORE INSERT ON event_log
    FOR EACH ROW EXECUTE FUNCTION cad_mark_training();

-- Audit details of an action that touched a training agency (an event of one, or an actor
-- whose home agency is one) get "training": true before they are hashed into the chain.
CREATE FUNCTION cad_training_marks(details jsonb[], agencies text[]) RETURNS jsonb[]
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN EXISTS (SELECT 1 FROM training_agencies t WHERE t.agency = ANY (agencies))
                THEN ARRAY(SELECT d || '{"training": true}'::jsonb
                           FROM unnest(details) WITH ORDINALITY AS u(d, n) ORDER BY n)
                ELSE details END
$$;
