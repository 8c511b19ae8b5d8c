"""Wire models of feedback, compliments and complaints: the public submission, receipt and
status (no contact data, no internal notes), the staff queue and its actions, and the
statistics (exact for staff, small counts hidden for the public)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.common import Out, Strict

Category = Literal["compliment", "complaint", "suggestion", "other"]
CATEGORIES: tuple[str, ...] = ("compliment", "complaint", "suggestion", "other")
Subcategory = Literal["conduct", "courtesy", "use_of_force", "discrimination", "response_time",
                      "service_quality", "property", "policy", "other"]
SUBCATEGORIES: tuple[str, ...] = ("conduct", "courtesy", "use_of_force", "discrimination",
                                  "response_time", "service_quality", "property", "policy",
                                  "other")
Status = Literal["received", "assigned", "investigating", "resolved", "closed"]
Overdue = Literal["acknowledge", "resolve"]
Language = Literal["en", "es"]

Description = Annotated[str, StringConstraints(min_length=1, max_length=5000,
                                               strip_whitespace=True)]
IncidentNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
UnitRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.#-]{0,31}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$",
                                         max_length=254)]
Phone = Annotated[str, StringConstraints(pattern=r"^[+0-9][0-9 ().-]{2,31}$")]
Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._@-]{1,63}$")]
Outcome = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
PublicText = Annotated[str, StringConstraints(min_length=1, max_length=2000,
                                              strip_whitespace=True)]


class FeedbackFields(Strict):
    """A submission from the public. Everything but the category and the description is
    optional; name, email and phone are personal data (never shown publicly)."""

    category: Category
    subcategory: Subcategory | None = Field(
        default=None, description="Complaints only: what the complaint is about.")
    description: Description = Field(description="What happened, in the submitter's words.")
    incident_number: IncidentNumber | None = Field(
        default=None, description="The incident this is about, if known.")
    unit: UnitRef | None = Field(default=None, description="The unit or badge number, if known.")
    occurred_at: datetime | None = Field(
        default=None, description="When it happened; without an offset, the agency's local time.")
    name: Name | None = None
    email: Email | None = None
    phone: Phone | None = None
    language: Language | None = Field(
        default=None, description="The language to answer in (default: the page's).")


class Proof(Strict):
    challenge: str = Field(min_length=1, max_length=200,
                           description="From GET /public/{agency}/feedback/challenge.")
    solution: str = Field(min_length=1, max_length=64)


class FeedbackIn(FeedbackFields):
    """A submission by a script or a page with JavaScript: with a solved proof of work."""

    proof: Proof = Field(description="A solved proof-of-work challenge (docs/public.md, "
                                     "\"Challenges\").")


class FeedbackForm(FeedbackFields):
    """The page's form post (no JavaScript): the form token the page carried instead of a
    proof of work (valid a few seconds after the page was served, once)."""

    form_token: str = Field(min_length=1, max_length=200)
    lang: Language | None = Field(default=None, description="The page's language.")


class FeedbackReceipt(Out):
    """The answer to a submission: the reference is the only key to the status later."""

    reference: str = Field(description="Unguessable tracking reference; keep it to follow "
                                       "the status.")
    agency: str
    category: Category
    status: Status
    received_at: datetime
    acknowledge_due_at: datetime
    resolve_due_at: datetime


class FeedbackStatus(Out):
    """What the holder of a reference sees: status, dates, outcome and the answer written for
    the submitter. Never the description, contact data, assignee or internal notes."""

    reference: str
    agency: str
    category: Category
    subcategory: Subcategory | None
    status: Status
    received_at: datetime
    acknowledged_at: datetime | None
    acknowledge_due_at: datetime
    resolve_due_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    response: str | None = Field(description="The agency's answer to the submitter.")


class FeedbackSummary(Out):
    """One row of the supervisors' queue (no description, no contact data)."""

    id: int
    agency: str
    category: Category
    subcategory: Subcategory | None
    status: Status
    assigned_to: str | None
    received_at: datetime
    acknowledged_at: datetime | None
    acknowledge_due_at: datetime
    resolve_due_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    outcome: str | None
    incident_number: str | None
    unit_ref: str | None
    overdue: list[Overdue] = Field(description="Deadlines passed while still open.")
    version: int


class Contact(Out):
    """The submitter's contact. All null with ``erased_at`` null: none was given; with
    ``erased_at`` set: erased under the retention period, and cannot be recovered."""

    name: str | None
    email: str | None
    phone: str | None
    erased_at: datetime | None = Field(
        description="When the retention sweep erased the contact (CAD_CONTACT_RETENTION_DAYS "
                    "after the case was resolved or closed); null while it is kept or none "
                    "was given.")


class NoteOut(Out):
    id: int
    author: str
    text: str
    created_at: datetime


class FeedbackDetail(FeedbackSummary):
    """One case in full, for staff: every read is audited."""

    reference: str
    description: str
    occurred_at: datetime | None
    contact: Contact
    language: Language
    public_response: str | None
    incident_id: int | None = Field(description="The agency's incident with that number, "
                                                "if one exists.")
    unit_id: str | None = Field(description="The agency's unit of that id, if one exists.")
    notes: list[NoteOut]


class AssignIn(Strict):
    assignee: Username = Field(description="A supervisor or admin who acts for the agency.")
    note: PublicText | None = Field(default=None, description="Internal note (staff only).")


class TransitionIn(Strict):
    status: Literal["investigating", "resolved", "closed"]
    outcome: Outcome | None = Field(
        default=None, description="Required to resolve, and to close an unresolved case "
                                  "(docs/feedback.md lists the codes per category).")
    response: PublicText | None = Field(
        default=None, description="The answer the submitter sees with the status.")
    note: PublicText | None = Field(default=None, description="Internal note (staff only).")


class NoteIn(Strict):
    text: Description


class StaffStatsRow(Out):
    period: str = Field(description="YYYY-MM, the agency's local month of receipt.")
    category: Category
    subcategory: Subcategory | None
    outcome: str = Field(description="An outcome code, or 'pending' while undecided.")
    count: int


class OutcomeCount(Out):
    outcome: str = Field(description="An outcome code, or 'pending' while undecided.")
    count: int | None = Field(description="null when hidden (suppressed).")
    suppressed: bool


class CategoryStats(Out):
    category: Category
    received: int | None = Field(description="null when hidden (suppressed).")
    suppressed: bool
    outcomes: list[OutcomeCount]


class PeriodStats(Out):
    period: str = Field(description="YYYY-MM, the agency's local month of receipt.")
    categories: list[CategoryStats]


class PublicStats(Out):
    """Counts per month, category and outcome. A count below ``min_cell`` is hidden, and so
    is a second one where a single hidden count could be worked out from the total."""

    agency: str
    min_cell: int
    months: int
    periods: list[PeriodStats]
