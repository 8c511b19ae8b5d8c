"""Feedback over HTTP. Public (no authentication by design, listed PUBLIC in
cad/security/policy.py and rate-limited per client address; each submission also spends a
public forms' challenge, incidents.public.challenge): the submission (JSON with a proof of
work, or the page's HTML form with its form token), the status by reference, the monthly
counts and the pages. Staff (supervisors, admins; their agencies only; analysts read the
counts): the queue, overdue cases, a case in full (audited), assignment, status changes,
notes, exact counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError

from cad.errors import CADError, NotFound
from cad.security import Context, CurrentScope
from cad.security.middleware import client_addr
from cad.uow import RequestContext
from incidents.feedback import pages, service
from incidents.feedback.deps import FeedbackDep, FeedbackDeps
from incidents.feedback.schemas import (
    AssignIn,
    Category,
    FeedbackDetail,
    FeedbackForm,
    FeedbackIn,
    FeedbackReceipt,
    FeedbackStatus,
    FeedbackSummary,
    NoteIn,
    NoteOut,
    PublicStats,
    StaffStatsRow,
    Status,
    TransitionIn,
    Username,
)
from incidents.public import i18n
from incidents.public.api import PAGE_CSP, AgencyPath
from incidents.public.challenge import ChallengeOut

ReferencePath = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,32}$",
                                    description="The tracking reference (FB-XXXX-XXXX-XXXX).")]
FeedbackId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$", description="Page language (en, es).")]
AcceptLanguage = Annotated[str | None, Header(max_length=500)]
Months = Annotated[int, Query(ge=1, le=36, description="This month and the months before it.")]

FORM_MEDIA = "application/x-www-form-urlencoded"
# The form carries a dozen fields; more is not a browser.
MAX_FORM_FIELDS = 30
STATS_CACHE = "public, max-age=300"
M = TypeVar("M", bound=BaseModel)



def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place: a ``#/$defs/...`` reference
    would point into the OpenAPI document's root, where there is none."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**walk(defs[ref.removeprefix("#/$defs/")]), **rest}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out


# The body is read by hand (JSON or the page's form), so the OpenAPI document is told here.
SUBMIT_OPENAPI: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": _inline(FeedbackIn.model_json_schema())},
    FORM_MEDIA: {"schema": _inline(FeedbackForm.model_json_schema())}}}}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "Received. JSON, except for the page's form post (Accept: text/html), "
                         "answered with the receipt page.",
          "content": {"text/html": {"schema": {"type": "string"}}}},
    415: {"description": "Neither JSON nor a form post."}}

router = APIRouter(tags=["feedback"])


class UnsupportedMedia(CADError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


def _now() -> datetime:
    return datetime.now(UTC)


def _page(html: str, lang: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status_code,
                        headers={"content-security-policy": PAGE_CSP, "content-language": lang,
                                 "vary": "accept-language", "cache-control": "no-store"})


def _public_context(request: Request, agency: str) -> RequestContext:
    state = request.scope.get("state") or {}
    return RequestContext(actor="public", request_id=state.get("request_id"),
                          client_addr=client_addr(request.scope), source="public",
                          agency=agency)


async def _read_submission(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as fields, and whether it came from a form (blank form fields are absent)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if media == FORM_MEDIA:
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=MAX_FORM_FIELDS, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise CADError("the form is not UTF-8 url-encoded fields") from None
        return {k: v[-1] for k, v in fields.items() if v[-1].strip()}, True
    if media in ("application/json", ""):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": "JSON decode error"}]) from None
        if not isinstance(data, dict):
            raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",),
                                           "msg": "the body must be a JSON object"}])
        return data, False
    raise UnsupportedMedia(f"send application/json or {FORM_MEDIA}, not {media}")


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_url=False,
                                                          include_context=False)]) from None


@router.get("/public/{agency}/feedback/challenge", response_model=ChallengeOut,
            summary="A proof-of-work challenge for sending feedback (public)")
async def feedback_challenge(agency: AgencyPath, deps: FeedbackDep,
                             response: Response) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return deps.challenger.pow_challenge(purpose=service.purpose(agency), now=_now())


@router.post("/public/{agency}/feedback", status_code=201, response_model=FeedbackReceipt,
             summary="Send feedback, a compliment or a complaint (public; with a solved "
                     "challenge)",
             description="JSON with a solved proof of work (GET .../feedback/challenge), or "
                         "the page's form post with its form token. A challenge is single "
                         "use; per client address a budget of submissions per window applies "
                         "(429).",
             openapi_extra=SUBMIT_OPENAPI, responses=SUBMIT_RESPONSES)
async def submit_feedback(agency: AgencyPath, request: Request, deps: FeedbackDep,
                          accept_language: AcceptLanguage = None) -> Any:
    data, from_form = await _read_submission(request)
    if from_form:
        return await _submit_form(agency, request, deps, data, accept_language)
    body = _validate(FeedbackIn, data)
    spend = deps.challenger.check(token=body.proof.challenge, solution=body.proof.solution,
                                  purpose=service.purpose(agency), now=_now(),
                                  field="body.proof", expect="pow")
    return await service.submit(deps=deps, ctx=_public_context(request, agency), agency=agency,
                                body=body, language=i18n.choose(None, accept_language),
                                spend=spend, address=client_addr(request.scope),
                                field="body.proof")


async def _submit_form(agency: str, request: Request, deps: FeedbackDeps,
                       data: dict[str, Any], accept_language: str | None) -> Any:
    """The page's form post. A browser (Accept: text/html) gets the receipt page, or the
    form again with what was wrong and its answers kept; anything else gets JSON as above."""
    html = "text/html" in request.headers.get("accept", "")
    lang = i18n.choose(str(data.get("lang", "")) or None, accept_language)
    errors: dict[str, str] = {}
    status = 422
    try:
        form = _validate(FeedbackForm, data)
        spend = deps.challenger.check(token=form.form_token, solution=None,
                                      purpose=service.purpose(agency), now=_now(),
                                      field="body.form_token", expect="form")
        receipt = await service.submit(deps=deps, ctx=_public_context(request, agency),
                                       agency=agency, body=form, language=lang, spend=spend,
                                       address=client_addr(request.scope),
                                       field="body.form_token")
    except RequestValidationError as exc:
        if not html:
            raise
        errors = pages.validation_errors(exc.errors())
    except CADError as exc:
        if not html:
            raise
        status = exc.status
        errors = pages.refusal_errors(exc)
    else:
        if not html:
            return receipt
        tz = ZoneInfo(deps.settings.analytics_timezone)
        return _page(pages.receipt_page(lang=lang, agency=agency, receipt=receipt, tz=tz),
                     lang, 201)
    token = deps.challenger.issue(kind="form", purpose=service.purpose(agency), now=_now())
    values = {k: str(v) for k, v in data.items() if k not in ("form_token", "lang")}
    return _page(pages.form_page(lang=lang, agency=agency, values=values, errors=errors,
                                 form_token=token, stats=None), lang, status)


@router.get("/public/{agency}/feedback/stats.json", response_model=PublicStats,
            summary="Feedback received per month, category and outcome (public; small counts "
                    "hidden)")
async def public_stats(agency: AgencyPath, deps: FeedbackDep, response: Response,
                       months: Months = 12) -> dict[str, Any]:
    response.headers["cache-control"] = STATS_CACHE
    return await service.public_stats(deps=deps, agency=agency, months=months)


@router.get("/public/{agency}/feedback/status", response_class=HTMLResponse,
            include_in_schema=False)
async def status_page(agency: AgencyPath, deps: FeedbackDep, lang: Lang = None,
                      accept_language: AcceptLanguage = None,
                      reference: Annotated[str, Query(max_length=40)] = "") -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    found = None
    if reference.strip():
        try:
            found = await service.public_status(deps=deps, agency=agency, reference=reference)
        except NotFound:
            found = None
    html = pages.status_page(lang=chosen, agency=agency, reference=reference.strip(),
                             found=found, tz=ZoneInfo(deps.settings.analytics_timezone))
    return _page(html, chosen)


@router.get("/public/{agency}/feedback/{reference}", response_model=FeedbackStatus,
            summary="The status of one submission, by its reference (public)")
async def public_status(agency: AgencyPath, reference: ReferencePath,
                        deps: FeedbackDep) -> dict[str, Any]:
    return await service.public_status(deps=deps, agency=agency, reference=reference)


@router.get("/public/{agency}/feedback", response_class=HTMLResponse, include_in_schema=False)
async def feedback_page(agency: AgencyPath, deps: FeedbackDep, lang: Lang = None,
                        accept_language: AcceptLanguage = None) -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    await service.require_agency(deps=deps, agency=agency)
    stats = await service.public_stats(deps=deps, agency=agency, months=12)
    token = deps.challenger.issue(kind="form", purpose=service.purpose(agency), now=_now())
    html = pages.form_page(lang=chosen, agency=agency, values={}, errors={}, form_token=token,
                           stats=stats)
    return _page(html, chosen)


# --- staff: the supervisors' queue -----------------------------------------------------------
@router.get("/api/v1/feedback", response_model=list[FeedbackSummary],
            summary="The feedback queue, soonest resolution deadline first (no contact data)")
async def list_feedback(deps: FeedbackDep, ctx: Context, scope: CurrentScope,
                        status: Annotated[list[Status] | None, Query()] = None,
                        category: Category | None = None,
                        assigned_to: Username | None = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[dict[str, Any]]:
    return await service.queue(deps=deps, ctx=ctx, scope=scope, statuses=status,
                               category=category, assigned_to=assigned_to, overdue_only=False,
                               limit=limit)


@router.get("/api/v1/feedback/overdue", response_model=list[FeedbackSummary],
            summary="Open cases past their acknowledgement or resolution deadline")
async def overdue_feedback(deps: FeedbackDep, ctx: Context, scope: CurrentScope,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 200
                           ) -> list[dict[str, Any]]:
    return await service.queue(deps=deps, ctx=ctx, scope=scope, statuses=None, category=None,
                               assigned_to=None, overdue_only=True, limit=limit)


@router.get("/api/v1/feedback/stats", response_model=list[StaffStatsRow],
            summary="Exact counts per month, category, subcategory and outcome")
async def staff_stats(deps: FeedbackDep, scope: CurrentScope,
                      months: Months = 12) -> list[dict[str, Any]]:
    return await service.staff_stats(deps=deps, scope=scope, months=months)


@router.get("/api/v1/feedback/{feedback_id}", response_model=FeedbackDetail,
            summary="One case in full, with the submitter's contact data (every read audited)",
            description="After CAD_CONTACT_RETENTION_DAYS from its resolution or closure the "
                        "case's contact is erased: still 200, the case in full, with null "
                        "contact fields and `contact.erased_at` set.")
async def get_feedback(feedback_id: FeedbackId, deps: FeedbackDep, ctx: Context,
                       scope: CurrentScope) -> dict[str, Any]:
    return await service.get(deps=deps, ctx=ctx, scope=scope, feedback_id=feedback_id)


@router.post("/api/v1/feedback/{feedback_id}/assign", response_model=FeedbackDetail,
             summary="Assign a case to a supervisor of its agency (acknowledges it)")
async def assign_feedback(feedback_id: FeedbackId, body: AssignIn, deps: FeedbackDep,
                          ctx: Context, scope: CurrentScope) -> dict[str, Any]:
    return await service.assign(deps=deps, ctx=ctx, scope=scope, feedback_id=feedback_id,
                                body=body)


@router.post("/api/v1/feedback/{feedback_id}/status", response_model=FeedbackDetail,
             summary="Move a case on: investigating, resolved (with an outcome) or closed")
async def change_feedback_status(feedback_id: FeedbackId, body: TransitionIn, deps: FeedbackDep,
                                 ctx: Context, scope: CurrentScope) -> dict[str, Any]:
    return await service.change_status(deps=deps, ctx=ctx, scope=scope,
                                       feedback_id=feedback_id, body=body)


@router.post("/api/v1/feedback/{feedback_id}/notes", status_code=201, response_model=NoteOut,
             summary="Add an internal note (never shown to the submitter)")
async def add_feedback_note(feedback_id: FeedbackId, body: NoteIn, deps: FeedbackDep,
                            ctx: Context, scope: CurrentScope) -> dict[str, Any]:
    return await service.add_note(deps=deps, ctx=ctx, scope=scope, feedback_id=feedback_id,
                                  body=body)
