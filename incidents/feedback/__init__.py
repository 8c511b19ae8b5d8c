"""Feedback, compliments and complaints from the public: a submission optionally linked to
an incident number or a unit, answered with a tracking reference; the supervisors' queue
with assignment, status, resolution and deadlines; counts per category and outcome, public
in aggregate with small counts hidden (docs/feedback.md)."""
