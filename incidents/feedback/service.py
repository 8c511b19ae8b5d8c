"""Feedback, compliments and complaints: the public submission and status, the supervisors'
queue (assignment, status, resolution, deadlines, internal notes) and the statistics. Every
state change writes its row, its event and its audit record in one transaction (cad.uow);
every staff read of a case is audited. The status table is ``TRANSITIONS``; the outcome
codes are ``RESOLUTIONS`` and ``CLOSURES`` (docs/feedback.md)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cad.errors import Conflict, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, audit_now, unit_of_work
from incidents.feedback import repository as repo
from incidents.feedback.deps import FeedbackDeps
from incidents.feedback.schemas import (
    CATEGORIES,
    AssignIn,
    FeedbackFields,
    NoteIn,
    TransitionIn,
)
from incidents.public import repository as public_repo
from incidents.public.challenge import Spend

# Where a case may go from each status by a status change (POST .../status). Assignment is
# its own action (``ASSIGN``); everything else is refused with 409 naming what is allowed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"closed"}),                          # closed unresolved only
    "assigned": frozenset({"investigating", "resolved", "closed"}),
    "investigating": frozenset({"resolved", "closed"}),
    "resolved": frozenset({"closed", "investigating"}),         # reopened on new information
    "closed": frozenset(),
}
# Assigning (or reassigning) from each status, and the status it leaves the case in: a case
# under investigation stays under investigation when it changes hands.
ASSIGN: dict[str, str] = {"received": "assigned", "assigned": "assigned",
                          "investigating": "investigating"}
OPEN = ("received", "assigned", "investigating")

# What a resolution found, per category. For complaints the usual dispositions of police
# internal-affairs practice (e.g. the IACP's and the U.S. DOJ COPS Office's guidance):
# sustained (the act happened and broke policy), not sustained (not enough evidence either
# way), exonerated (it happened and was within policy), unfounded (it did not happen),
# policy failure (it happened within a policy that is itself wrong), informally resolved
# (mediated or explained to the complainant's satisfaction).
RESOLUTIONS: dict[str, tuple[str, ...]] = {
    "complaint": ("sustained", "not_sustained", "exonerated", "unfounded", "policy_failure",
                  "informally_resolved"),
    "compliment": ("forwarded", "acknowledged"),      # to the member and their supervisor
    "suggestion": ("adopted", "considered"),
    "other": ("answered", "referred"),
}
# Closing a case that was never resolved: why no finding was made.
CLOSURES: tuple[str, ...] = ("withdrawn", "duplicate", "outside_jurisdiction",
                             "insufficient_information")

# 12 characters of a 32-letter alphabet without 0/O, 1/I: 60 bits, so references cannot be
# guessed or enumerated (the public rate limit allows 20 tries a second per address).
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_REFERENCE = re.compile(r"^FB-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$")
# occurred_at: not before this many days, not after now plus this margin.
OCCURRED_MAX_AGE_DAYS = 3650
OCCURRED_FUTURE_MARGIN = timedelta(hours=1)


def new_reference() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"FB-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def normalize_reference(text: str) -> str | None:
    """A reference as typed (any case, spaces, missing dashes) in its canonical form, or
    None when it cannot be one."""
    raw = re.sub(r"[\s-]", "", text.upper())
    raw = raw.removeprefix("FB")
    ref = f"FB-{raw[:4]}-{raw[4:8]}-{raw[8:]}"
    return ref if len(raw) == 12 and _REFERENCE.match(ref) else None


def _occurred(value: datetime | None, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    at = value if value.tzinfo is not None else value.replace(tzinfo=tz)
    now = datetime.now(UTC)
    if at > now + OCCURRED_FUTURE_MARGIN or at < now - timedelta(days=OCCURRED_MAX_AGE_DAYS):
        raise Invalid("occurred_at must be in the past (at most ten years ago)",
                      field="body.occurred_at")
    return at


def purpose(agency: str) -> str:
    """What a feedback form's challenge is bound to (a report's token is worthless here)."""
    return f"feedback:{agency}"


async def require_agency(*, deps: FeedbackDeps, agency: str) -> None:
    """404 for an agency nobody works the queue of (a mistyped address): feedback must not
    be sent into the void."""
    if not await public_repo.has_public_reviewer(deps.pool, agency=agency):
        raise NotFound(f"agency {agency} does not take feedback online")


async def submit(*, deps: FeedbackDeps, ctx: RequestContext, agency: str,
                 body: FeedbackFields, language: str, spend: Spend, address: str | None,
                 field: str) -> dict[str, Any]:
    """A submission from the public whose challenge was checked (``spend``): the challenge
    is spent in the same transaction (single use, per-address budget: 422 / 429 naming
    ``field``); stored with its deadlines, answered with a reference."""
    if body.subcategory is not None and body.category != "complaint":
        raise Invalid("only complaints have a subcategory", field="body.subcategory")
    await require_agency(deps=deps, agency=agency)
    tz = ZoneInfo(deps.settings.analytics_timezone)
    occurred = _occurred(body.occurred_at, tz)
    ack_s = deps.settings.feedback_acknowledge_days[body.category] * 86400
    resolve_s = deps.settings.feedback_resolve_days[body.category] * 86400
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("feedback.submit", details={"agency": agency, "via": spend.kind,
                                                       "category": body.category})
        await deps.challenger.spend(uow.conn, spend, address=address, field=field)
        row = await repo.insert(uow.conn, values={
            "reference": new_reference(), "agency": agency, "category": body.category,
            "subcategory": body.subcategory, "description": body.description,
            "incident_number": body.incident_number, "unit_ref": body.unit,
            "occurred_at": occurred, "name": body.name, "email": body.email,
            "phone": body.phone, "language": body.language or language},
            acknowledge_s=ack_s, resolve_s=max(resolve_s, ack_s))
        record.target = f"feedback:{row['id']}"
        uow.emit("feedback.received", aggregate=("feedback", row["id"]), agency=agency,
                 data={"feedback_id": row["id"], "category": body.category,
                       "status": "received"})
    out = dict(row)
    del out["id"]
    return out


async def public_status(*, deps: FeedbackDeps, agency: str, reference: str) -> dict[str, Any]:
    ref = normalize_reference(reference)
    row = None if ref is None else await repo.by_reference(deps.pool, agency=agency,
                                                           reference=ref)
    if row is None:
        raise NotFound("no feedback has this reference")
    return dict(row)


async def queue(*, deps: FeedbackDeps, ctx: RequestContext, scope: Scope,
                statuses: Sequence[str] | None, category: str | None, assigned_to: str | None,
                overdue_only: bool, limit: int) -> list[dict[str, Any]]:
    """The supervisors' queue, soonest resolution deadline first (no contact data)."""
    rows = await repo.queue(deps.pool, agencies=scope.agency_list, statuses=statuses,
                            category=category, assigned_to=assigned_to,
                            overdue_only=overdue_only, limit=limit)
    await audit_now(deps.pool, ctx, "feedback.list", details={
        "rows": len(rows), "overdue_only": overdue_only})
    return [dict(r) for r in rows]


def _detail(row: Any, notes: Iterable[Any]) -> dict[str, Any]:
    out = dict(row)
    out["contact"] = {"name": out.pop("contact_name"), "email": out.pop("contact_email"),
                      "phone": out.pop("contact_phone"), "erased_at": out.pop("contact_erased_at")}
    out["notes"] = [dict(n) for n in notes]
    return out


async def get(*, deps: FeedbackDeps, ctx: RequestContext, scope: Scope,
              feedback_id: int) -> dict[str, Any]:
    """One case with the submitter's contact data. Every read is audited, found or not (out
    of scope is not found, and audited as a failure). A case decided longer ago than the
    contact retention (cad.retention) is still read in full; its contact fields are null and
    ``contact.erased_at`` says when they were erased."""
    async with deps.pool.acquire() as conn:
        row = await repo.get(conn, feedback_id=feedback_id, agencies=scope.agency_list)
        await audit_now(conn, ctx, "feedback.read", target=f"feedback:{feedback_id}",
                        outcome="success" if row is not None else "failure")
        if row is None:
            raise NotFound(f"feedback {feedback_id} not found")
        return _detail(row, await repo.notes(conn, feedback_id=feedback_id))


async def _locked(conn: Any, *, feedback_id: int, scope: Scope) -> Any:
    row = await repo.get(conn, feedback_id=feedback_id, agencies=scope.agency_list,
                         for_update=True)
    if row is None:
        raise NotFound(f"feedback {feedback_id} not found")
    return row


async def assign(*, deps: FeedbackDeps, ctx: RequestContext, scope: Scope, feedback_id: int,
                 body: AssignIn) -> dict[str, Any]:
    """Assign a case to a supervisor of its agency (or an admin); the first assignment
    acknowledges it."""
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("feedback.assign", target=f"feedback:{feedback_id}",
                  details={"assignee": body.assignee})
        row = await _locked(uow.conn, feedback_id=feedback_id, scope=scope)
        to_status = ASSIGN.get(row["status"])
        if to_status is None:
            raise Conflict(f"a {row['status']} case cannot be assigned",
                           extra={"case_status": row["status"]})
        if not await repo.assignee_may_take(uow.conn, username=body.assignee,
                                            agency=row["agency"]):
            raise Invalid(f"{body.assignee} is not an enabled supervisor of {row['agency']} "
                          "nor an admin", field="assignee")
        if not await repo.assign(uow.conn, feedback_id=feedback_id, from_status=row["status"],
                                 to_status=to_status, assignee=body.assignee):
            raise Conflict("the case changed meanwhile")
        if body.note is not None:
            await repo.add_note(uow.conn, feedback_id=feedback_id, author=ctx.actor,
                                text=body.note)
        uow.emit("feedback.assigned", aggregate=("feedback", feedback_id), agency=row["agency"],
                 data={"feedback_id": feedback_id, "assigned_to": body.assignee,
                       "status": to_status})
        return _detail(await repo.get(uow.conn, feedback_id=feedback_id, agencies=None),
                       await repo.notes(uow.conn, feedback_id=feedback_id))


def check_transition(*, category: str, from_status: str, to_status: str,
                     outcome: str | None) -> None:
    """The status table and the outcome rules, in one place (raises Conflict / Invalid)."""
    if to_status not in TRANSITIONS[from_status]:
        raise Conflict(f"a {from_status} case cannot become {to_status}",
                       extra={"case_status": from_status,
                              "allowed": sorted(TRANSITIONS[from_status])})
    if to_status == "resolved":
        if outcome not in RESOLUTIONS[category]:
            raise Invalid(f"resolving a {category} needs an outcome of "
                          f"{list(RESOLUTIONS[category])}", field="outcome")
    elif to_status == "closed" and from_status != "resolved":
        if outcome not in CLOSURES:
            raise Invalid(f"closing an unresolved case needs an outcome of {list(CLOSURES)}",
                          field="outcome")
    elif outcome is not None:
        raise Invalid(f"no outcome is given when a case becomes {to_status}", field="outcome")


async def change_status(*, deps: FeedbackDeps, ctx: RequestContext, scope: Scope,
                        feedback_id: int, body: TransitionIn) -> dict[str, Any]:
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("feedback.status", target=f"feedback:{feedback_id}",
                  details={"status": body.status, "outcome": body.outcome})
        row = await _locked(uow.conn, feedback_id=feedback_id, scope=scope)
        check_transition(category=row["category"], from_status=row["status"],
                         to_status=body.status, outcome=body.outcome)
        if not await repo.transition(uow.conn, feedback_id=feedback_id,
                                     from_status=row["status"], to_status=body.status,
                                     outcome=body.outcome, response=body.response):
            raise Conflict("the case changed meanwhile")
        if body.note is not None:
            await repo.add_note(uow.conn, feedback_id=feedback_id, author=ctx.actor,
                                text=body.note)
        after = await repo.get(uow.conn, feedback_id=feedback_id, agencies=None)
        assert after is not None  # locked above, in this transaction
        uow.emit("feedback.status_changed", aggregate=("feedback", feedback_id),
                 agency=row["agency"],
                 data={"feedback_id": feedback_id, "from_status": row["status"],
                       "status": body.status, "outcome": after["outcome"]})
        return _detail(after, await repo.notes(uow.conn, feedback_id=feedback_id))


async def add_note(*, deps: FeedbackDeps, ctx: RequestContext, scope: Scope, feedback_id: int,
                   body: NoteIn) -> dict[str, Any]:
    """An internal note (never shown to the submitter)."""
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("feedback.note", target=f"feedback:{feedback_id}")
        row = await _locked(uow.conn, feedback_id=feedback_id, scope=scope)
        note = await repo.add_note(uow.conn, feedback_id=feedback_id, author=ctx.actor,
                                   text=body.text)
        record.details = {"note_id": note["id"]}
        uow.emit("feedback.note_added", aggregate=("feedback", feedback_id),
                 agency=row["agency"], data={"feedback_id": feedback_id, "note_id": note["id"]})
    return dict(note)


# --- statistics ------------------------------------------------------------------------------

def _since(months: int, tz: ZoneInfo) -> datetime:
    """The start of the local month ``months - 1`` months before this one."""
    now = datetime.now(tz)
    index = now.year * 12 + now.month - 1 - (months - 1)
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=tz)


async def staff_stats(*, deps: FeedbackDeps, scope: Scope, months: int) -> list[dict[str, Any]]:
    """Exact counts per month, category, subcategory and outcome (the caller's agencies)."""
    tz = deps.settings.analytics_timezone
    rows = await repo.counts(deps.pool, agencies=scope.agency_list,
                             since=_since(months, ZoneInfo(tz)), tz=tz)
    return [dict(r) for r in rows]


def outcome_codes(category: str) -> tuple[str, ...]:
    """Every outcome a case of ``category`` can have, 'pending' first: the public grid."""
    return ("pending", *RESOLUTIONS[category], *CLOSURES)


def suppress(outcomes: Mapping[str, int], *, min_cell: int) -> tuple[int | None, dict[str, int | None]]:
    """One category's month for the public: (total or None, outcome -> count or None).

    Counts from 1 to ``min_cell - 1`` are hidden (a small count can point at a person: the
    one complaint about the night shift of a small town). Where exactly one count is hidden
    the total would give it away by subtraction, so the smallest other count is hidden too;
    a total below ``min_cell`` hides everything. Zero is shown: it says nothing of anyone, and
    every outcome of the category is listed (``outcome_codes``), so a listed outcome does not
    itself say that a case had it."""
    total = sum(outcomes.values())
    if total < min_cell:
        return None, {k: None for k in outcomes}
    shown: dict[str, int | None] = {k: (None if 0 < n < min_cell else n)
                                    for k, n in outcomes.items()}
    hidden = [k for k, v in shown.items() if v is None]
    if len(hidden) == 1:
        others = sorted((n, k) for k, n in outcomes.items() if k not in hidden and n > 0)
        shown[others[0][1]] = None
    return total, shown


async def public_stats(*, deps: FeedbackDeps, agency: str, months: int) -> dict[str, Any]:
    """Counts per month, category and outcome with small counts hidden (``suppress``).
    Subcategories stay with staff: they split the counts into cells too small to show."""
    tz = deps.settings.analytics_timezone
    rows = await repo.counts(deps.pool, agencies=[agency], since=_since(months, ZoneInfo(tz)),
                             tz=tz)
    cells: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        outcomes = cells.setdefault(r["period"], {}).setdefault(r["category"], {})
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + r["count"]
    min_cell = deps.settings.feedback_min_cell
    periods = []
    for period in sorted(cells, reverse=True):
        categories = []
        for category in CATEGORIES:
            if category not in cells[period]:
                continue
            grid = {k: 0 for k in outcome_codes(category)}
            grid.update(cells[period][category])
            total, shown = suppress(grid, min_cell=min_cell)
            categories.append({
                "category": category, "received": total, "suppressed": total is None,
                "outcomes": [{"outcome": k, "count": v, "suppressed": v is None}
                             for k, v in shown.items()]})
        periods.append({"period": period, "categories": categories})
    return {"agency": agency, "min_cell": min_cell, "months": months, "periods": periods}
