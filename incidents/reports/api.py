"""Online reports over HTTP.

Public (no authentication by design; PUBLIC in cad/security/policy.py, rate-limited per
client address by the security middleware, and each submission spends a challenge):
``GET /public/{agency}/reports/challenge``, ``POST /public/{agency}/reports`` (JSON, with a
proof of work), ``GET /public/{agency}/reports/{tracking}`` (status and public reason only),
and the pages ``/public/{agency}/report`` (form; POST is the no-JavaScript path with a form
token) and ``/public/{agency}/report/status``.

Staff: ``/api/v1/reports...`` — the queue and a report for dispatchers, supervisors and
admins; decisions and the reporter's contact (every read audited) for supervisors and admins;
always within the caller's agencies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from cad.errors import CADError, Invalid, NotFound, PayloadTooLarge
from cad.security import Context, CurrentScope
from cad.security.middleware import client_addr
from cad.uow import RequestContext
from incidents.public import i18n
from incidents.public.api import PAGE_CSP, AgencyPath
from incidents.public.challenge import ChallengeOut
from incidents.reports import pages, service
from incidents.reports.deps import ReportsDep
from incidents.reports.schemas import (
    AcceptIn,
    ContactOut,
    DeclineIn,
    ReportFields,
    ReportIn,
    ReportOut,
    ReportStatus,
    Status,
)

TrackingPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9 -]{1,24}$",
                                   description="The tracking number (R-XXXX-XXXX-XXXX).")]
ReportId = Annotated[int, Path(ge=1, le=2**62)]
Lang = Annotated[str | None, Query(pattern=r"^[a-z]{2}$", description="Page language (en, es).")]
AcceptLanguage = Annotated[str | None, Header(max_length=500)]
# A report form is a few kB; anything much larger is not one.
FORM_MAX_BYTES = 20_000
FORM_FIELDS = ("lang", "form_token", "pow_challenge", "pow_solution", "report_type",
               "description", "address", "occurred", "contact_name", "contact_phone",
               "contact_email")
STATIC_DIR = FsPath(__file__).parent / "static"

router = APIRouter(tags=["reports"])


def _now() -> datetime:
    return datetime.now(UTC)


def _context(request: Request, agency: str) -> RequestContext:
    return service.public_context(request_id=request.scope.get("state", {}).get("request_id"),
                                  client_addr=client_addr(request.scope), agency=agency)


@router.get("/public/{agency}/reports/challenge", response_model=ChallengeOut,
            summary="A proof-of-work challenge for filing a report (public)")
async def report_challenge(agency: AgencyPath, deps: ReportsDep,
                           response: Response) -> dict[str, Any]:
    response.headers["cache-control"] = "no-store"
    return deps.challenger.pow_challenge(purpose=service.purpose(agency), now=_now())


@router.post("/public/{agency}/reports", status_code=201, response_model=ReportStatus,
             summary="File a non-emergency report (public; with a solved challenge)",
             description="Answers the tracking number. A challenge is single use; per client "
                         "address and agency a budget of submissions per window applies (429).")
async def file_report(agency: AgencyPath, body: ReportIn, deps: ReportsDep, request: Request,
                      response: Response) -> dict[str, Any]:
    spend = deps.challenger.check(token=body.proof.challenge, solution=body.proof.solution,
                                  purpose=service.purpose(agency), now=_now(),
                                  field="body.proof", expect="pow")
    out = await service.submit(deps=deps, ctx=_context(request, agency), agency=agency,
                               body=body, spend=spend, address=client_addr(request.scope),
                               field="body.proof")
    response.headers["location"] = f"/public/{quote(agency)}/reports/{out['tracking']}"
    return out


@router.get("/public/{agency}/reports/{tracking}", response_model=ReportStatus,
            summary="A report's status by tracking number (public; never staff notes)")
async def report_status(agency: AgencyPath, tracking: TrackingPath,
                        deps: ReportsDep) -> dict[str, Any]:
    return await service.status(deps=deps, agency=agency, tracking=tracking)


# --- pages ---------------------------------------------------------------------------------
def _html(body: str, lang: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status_code,
                        headers={"content-security-policy": PAGE_CSP, "content-language": lang,
                                 "vary": "accept-language", "cache-control": "no-store"})


@router.get("/public/{agency}/report", response_class=HTMLResponse, include_in_schema=False)
async def report_page(agency: AgencyPath, deps: ReportsDep, lang: Lang = None,
                      accept_language: AcceptLanguage = None) -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    await service.require_agency(deps=deps, agency=agency)
    token = deps.challenger.issue(kind="form", purpose=service.purpose(agency), now=_now())
    return _html(pages.report_page(lang=chosen, agency=agency, token=token, values={},
                                   errors=[]), chosen)


def _form_fields(raw: dict[str, str], tz: ZoneInfo) -> dict[str, Any]:
    """The form's fields as a ReportFields body (empty inputs are absent)."""
    def text(name: str) -> str | None:
        value = raw.get(name, "").strip()
        return value or None

    occurred: Any = text("occurred")
    if occurred is not None:
        try:   # <input type="datetime-local">: the agency's local time
            occurred = datetime.fromisoformat(occurred).replace(tzinfo=tz)
        except ValueError:
            pass   # left as text: validation names the field
    contact = {k: text(f"contact_{k}") for k in ("name", "phone", "email")}
    return {"report_type": text("report_type"), "description": text("description"),
            "location": {"address": text("address")}, "occurred_at": occurred,
            "contact": {k: v for k, v in contact.items() if v} or None,
            "language": raw.get("lang") if raw.get("lang") in i18n.MESSAGES else "en"}


@router.post("/public/{agency}/report", response_class=HTMLResponse, include_in_schema=False)
async def report_form_post(agency: AgencyPath, request: Request, deps: ReportsDep) -> Response:
    """The page's form, urlencoded: with a proof of work when report.js ran, else with the
    form token (no JavaScript). Success: 303 to the status page; refused: the form again with
    the reasons and the reporter's text kept."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Invalid("send the form as application/x-www-form-urlencoded",
                      field="header.content-type")
    raw_body = await request.body()
    if len(raw_body) > FORM_MAX_BYTES:
        raise PayloadTooLarge(f"a report form is at most {FORM_MAX_BYTES} bytes")
    try:
        parsed = parse_qs(raw_body.decode("utf-8"), keep_blank_values=True, max_num_fields=40)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form is not valid UTF-8 urlencoded text", field="body") from None
    raw = {k: v[0].replace("\x00", "") for k, v in parsed.items() if k in FORM_FIELDS}
    lang = raw.get("lang") if raw.get("lang") in i18n.MESSAGES else i18n.choose(
        None, request.headers.get("accept-language"))
    assert lang is not None
    tz = ZoneInfo(deps.settings.analytics_timezone)
    errors: list[tuple[str, str]] = []   # (field, reason key)
    status_code = 422
    try:
        body = ReportFields.model_validate(_form_fields(raw, tz))
    except ValidationError as exc:
        errors = pages.form_errors(exc)
    if not errors:
        try:
            if raw.get("pow_solution"):   # solved by report.js: a proof of work
                spend = deps.challenger.check(
                    token=raw.get("pow_challenge", ""), solution=raw["pow_solution"],
                    purpose=service.purpose(agency), now=_now(), field="pow_solution",
                    expect="pow")
            else:
                spend = deps.challenger.check(
                    token=raw.get("form_token", ""), solution=None,
                    purpose=service.purpose(agency), now=_now(), field="form_token",
                    expect="form")
            out = await service.submit(deps=deps, ctx=_context(request, agency), agency=agency,
                                       body=body, spend=spend,
                                       address=client_addr(request.scope), field=spend.kind)
        except CADError as exc:
            status_code = exc.status
            errors = pages.challenge_errors(exc)
        else:
            query = urlencode({"tracking": out["tracking"], "lang": lang, "filed": "1"})
            return RedirectResponse(f"/public/{quote(agency)}/report/status?{query}",
                                    status_code=303)
    token = deps.challenger.issue(kind="form", purpose=service.purpose(agency), now=_now())
    return _html(pages.report_page(lang=lang, agency=agency, token=token, values=raw,
                                   errors=errors), lang, status_code)


@router.get("/public/{agency}/report/status", response_class=HTMLResponse,
            include_in_schema=False)
async def report_status_page(agency: AgencyPath, deps: ReportsDep, lang: Lang = None,
                             accept_language: AcceptLanguage = None,
                             tracking: Annotated[str | None, Query(
                                 pattern=r"^[A-Za-z0-9 -]{0,24}$")] = None,
                             filed: Annotated[bool, Query()] = False) -> HTMLResponse:
    chosen = i18n.choose(lang, accept_language)
    found = None
    if tracking:
        try:
            found = await service.status(deps=deps, agency=agency, tracking=tracking)
        except NotFound:
            found = None
    return _html(pages.status_page(lang=chosen, agency=agency, tracking=tracking, found=found,
                                   filed=filed, tz=ZoneInfo(deps.settings.analytics_timezone)),
                 chosen)


@router.get("/public/static/report.js", response_class=Response, include_in_schema=False)
async def report_script() -> Response:
    return Response((STATIC_DIR / "report.js").read_text(), media_type="text/javascript",
                    headers={"cache-control": "public, max-age=3600"})


# --- staff ---------------------------------------------------------------------------------
@router.get("/api/v1/reports", response_model=list[ReportOut],
            summary="Online reports (the review queue: status=received, oldest first)")
async def list_reports(deps: ReportsDep, scope: CurrentScope,
                       status: Annotated[Status | None, Query()] = None,
                       agency: Annotated[str | None, Query(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,15}$")]
                       = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict[str, Any]]:
    return await service.list_reports(deps=deps, scope=scope, status=status, agency=agency,
                                      limit=limit)


@router.get("/api/v1/reports/{report_id}", response_model=ReportOut, summary="One report")
async def get_report(report_id: ReportId, deps: ReportsDep, scope: CurrentScope) -> dict[str, Any]:
    return await service.get_report(deps=deps, scope=scope, report_id=report_id)


@router.get("/api/v1/reports/{report_id}/contact", response_model=ContactOut,
            summary="The reporter's contact (personal data: every read is audited)",
            description="After CAD_CONTACT_RETENTION_DAYS from the decision the contact is "
                        "erased: still 200, with null fields and `erased_at` set (null fields "
                        "and a null `erased_at`: the reporter left none).")
async def get_contact(report_id: ReportId, deps: ReportsDep, ctx: Context,
                      scope: CurrentScope) -> dict[str, Any]:
    return await service.get_contact(deps=deps, ctx=ctx, scope=scope, report_id=report_id)


@router.post("/api/v1/reports/{report_id}/accept", response_model=ReportOut,
             summary="Accept a report: as an incident (through intake) or as a record")
async def accept_report(report_id: ReportId, body: AcceptIn, deps: ReportsDep, ctx: Context,
                        scope: CurrentScope) -> dict[str, Any]:
    return await service.accept(deps=deps, ctx=ctx, scope=scope, report_id=report_id, body=body)


@router.post("/api/v1/reports/{report_id}/decline", response_model=ReportOut,
             summary="Decline a report with a reason the reporter sees")
async def decline_report(report_id: ReportId, body: DeclineIn, deps: ReportsDep, ctx: Context,
                         scope: CurrentScope) -> dict[str, Any]:
    return await service.decline(deps=deps, ctx=ctx, scope=scope, report_id=report_id, body=body)
