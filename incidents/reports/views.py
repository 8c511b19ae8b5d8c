"""Rows of ``public_reports`` as wire shapes: one for staff (no contact), one for the public
(status and public reason only)."""

from __future__ import annotations

from typing import Any

import asyncpg

STAFF_FIELDS = ("id", "tracking", "agency", "report_type", "description", "location_text", "lat",
                "lon", "occurred_at", "language", "has_contact", "via", "status",
                "submitted_at", "decided_at", "decided_by", "accepted_as", "incident_id",
                "public_reason", "staff_note", "contact_erased_at")
PUBLIC_FIELDS = ("tracking", "report_type", "status", "submitted_at", "decided_at",
                 "public_reason")


def report_view(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in STAFF_FIELDS}


def status_view(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in PUBLIC_FIELDS}


def event_data(row: asyncpg.Record) -> dict[str, Any]:
    """Event payloads: no description, contact or note (the board shows that a report came
    in or was decided; staff open it through the API)."""
    return {"report_id": row["id"], "tracking": row["tracking"], "report_type": row["report_type"],
            "status": row["status"], "accepted_as": row["accepted_as"],
            "incident_id": row["incident_id"]}
