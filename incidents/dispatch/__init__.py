"""Dispatch workflows: recommendation, assignment, unit progress on incidents, timers and the
board. They bind units to incidents, so they are the one place that depends on both
``incidents`` and ``units`` (which know nothing of each other); see docs/architecture.md."""
