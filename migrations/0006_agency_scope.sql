-- Agency scope (cad/security/scope.py): the agencies a user acts for, one or several.
-- users.agency stays: it is the user's home agency and always one of users.agencies; writing
-- only agency (older clients, scripts) still works: the trigger adds it to the list, and a
-- list written without agency names its first entry as the home agency.
ALTER TABLE users ADD COLUMN agencies text[] NOT NULL DEFAULT '{}';
UPDATE users SET agencies = ARRAY[agency] WHERE agency IS NOT NULL;

CREATE FUNCTION users_agency_in_agencies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.agency IS NOT NULL AND NOT (NEW.agency = ANY (NEW.agencies)) THEN
        NEW.agencies := array_prepend(NEW.agency, NEW.agencies);
    END IF;
    IF NEW.agency IS NULL AND cardinality(NEW.agencies) > 0 THEN
        NEW.agency := NEW.agencies[1];
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER users_agency_in_agencies BEFORE INSERT OR UPDATE OF agency, agencies ON users
    FOR EACH ROW EXECUTE FUNCTION users_agency_in_agencies();

ALTER TABLE users ADD CONSTRAINT users_agency_listed
    CHECK (agency IS NULL OR agency = ANY (agencies));
CREATE INDEX users_agencies_idx ON users USING gin (agencies);

-- Mutual aid: a unit dispatched to another agency's incident (CAD_MUTUAL_AID).
ALTER TABLE incident_units ADD COLUMN mutual_aid boolean NOT NULL DEFAULT false;
-- A field unit's incidents are found through its assignments.
CREATE INDEX incident_units_unit_idx ON incident_units (unit_id, cleared_at);
