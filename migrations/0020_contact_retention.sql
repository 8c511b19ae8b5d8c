-- Retention of the public's contact data (cad.retention, CAD_CONTACT_RETENTION_DAYS): an
-- online report's or a feedback case's contact columns are set to NULL once the case has been
-- decided longer than the agency keeps them; the case itself stays. contact_erased_at says
-- when, so a staff read tells "erased" from "none given" (docs/public.md, docs/feedback.md).

ALTER TABLE public_reports ADD COLUMN contact_erased_at timestamptz;
ALTER TABLE public_reports ADD CONSTRAINT public_reports_erased_contact_check
    CHECK (contact_erased_at IS NULL OR (contact_name IS NULL AND contact_phone IS NULL
                                         AND contact_email IS NULL));
ALTER TABLE feedback ADD COLUMN contact_erased_at timestamptz;
ALTER TABLE feedback ADD CONSTRAINT feedback_erased_contact_check
    CHECK (contact_erased_at IS NULL OR (contact_name IS NULL AND contact_phone IS NULL
                                         AND contact_email IS NULL));

-- What the sweep looks for: decided rows that still hold contact data, by decision time. A row
-- leaves the index when its contact is erased (or was never given), so the sweep reads only
-- what it will change.
CREATE INDEX public_reports_contact_due_idx ON public_reports (decided_at)
    WHERE decided_at IS NOT NULL
      AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL);
-- A feedback case is decided when resolved (resolved_at) or closed (closed_at, which a
-- resolved case also gets when it is closed afterwards: the later of the two counts).
CREATE INDEX feedback_contact_due_idx ON feedback ((coalesce(closed_at, resolved_at)))
    WHERE status IN ('resolved', 'closed')
      AND (contact_name IS NOT NULL OR contact_phone IS NOT NULL OR contact_email IS NOT NULL);
