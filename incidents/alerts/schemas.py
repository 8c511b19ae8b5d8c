"""Wire models of community alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env",
                   "Transport", "Infra", "CBRNE", "Other"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]


class InfoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    headline: str = Field(min_length=1, max_length=160)
    description: str = Field(min_length=1, max_length=4000)
    instruction: str | None = Field(default=None, max_length=4000)


class AreaIn(BaseModel):
    """A circle around the incident's location, or a zone of the zones table."""
    model_config = ConfigDict(extra="forbid")
    radius_m: float | None = Field(default=None, gt=0, le=50_000)
    zone_id: str | None = None
    description: str | None = Field(default=None, max_length=500)


class AlertDraft(BaseModel):
    """A new alert from an incident (``incident_id``), or an update or cancellation of a
    published alert (``references``; the incident is that alert's)."""
    model_config = ConfigDict(extra="forbid")
    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"
    incident_id: int | None = None
    references: int | None = Field(default=None, description="Alert id this one updates or "
                                   "cancels (required for Update and Cancel).")
    event: str = Field(min_length=1, max_length=200)
    category: Category = "Safety"
    urgency: Urgency = "Immediate"
    severity: Severity = "Moderate"
    certainty: Certainty = "Observed"
    expires_at: datetime | None = None
    area: AreaIn | None = Field(default=None, description="Required for a new Alert; an Update "
                                "or Cancel without one keeps the referenced alert's area.")
    info: dict[str, InfoIn] = Field(description="One entry per configured language "
                                    "(setting alert_languages), keyed by language tag.")


class InfoOut(BaseModel):
    language: str
    headline: str
    description: str
    instruction: str | None = None


class AlertOut(BaseModel):
    id: int
    identifier: str
    agency: str
    incident_id: int
    msg_type: str
    references_id: int | None
    references_identifier: str | None
    state: Literal["draft", "published"]
    event: str
    category: str
    urgency: str
    severity: str
    certainty: str
    area_desc: str
    polygons: list[list[list[float]]]
    infos: list[InfoOut]
    expires_at: datetime | None
    drafted_by: str
    drafted_at: datetime
    approved_by: str | None
    sent_at: datetime | None


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agency: str = Field(min_length=1)
    channel: Literal["webhook", "email", "log"]
    target: str = Field(min_length=1, max_length=500,
                        description="Webhook URL, email address, or a label (log).")
    secret: str | None = Field(default=None, min_length=16, max_length=200,
                               description="Webhook HMAC-SHA256 key (required for webhooks).")


class SubscriptionOut(BaseModel):
    id: int
    agency: str
    channel: str
    target: str
    created_by: str
    created_at: datetime
    active: bool


class DeliveryAttempt(BaseModel):
    at: datetime
    ok: bool
    error: str | None = None


class DeliveryOut(BaseModel):
    id: int
    alert_id: int
    subscription_id: int
    channel: str
    target: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    log: list[DeliveryAttempt]


class FeedItem(BaseModel):
    id: str
    url: str
    title: str
    content_text: str
    date_published: datetime
    language: str
    cap: dict[str, object] = Field(alias="_cap", description="msgType, references, event, "
                                   "urgency, severity, certainty, area and every info block")
    model_config = ConfigDict(populate_by_name=True)


class JsonFeed(BaseModel):
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1) of published alerts."""
    version: str = "https://jsonfeed.org/version/1.1"
    title: str
    feed_url: str
    items: list[FeedItem]


