"""Online reports: filed by the public (with a challenge spent in the same transaction), looked
up by tracking number, reviewed by staff (accepted as an incident through the incident
service, or as a record; declined with a reason). Every state change commits its row, its
event and its audit record together."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
from fastapi.encoders import jsonable_encoder

from cad.errors import Conflict, Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, UnitOfWork, audit_now, unit_of_work
from incidents import service as incidents_service
from incidents.public import repository as public_repo
from incidents.public.challenge import Spend
from incidents.reports import repository as repo
from incidents.reports.deps import ReportsDeps
from incidents.reports.schemas import AcceptIn, DeclineIn, ReportFields
from incidents.reports.views import event_data, report_view, status_view
from incidents.schemas import IncidentCreate, LocationIn

# Crockford's base32: no I, L, O, U (read aloud and typed without confusion).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TRACKING_DRAWS = 5


def purpose(agency: str) -> str:
    """What a report's challenge is bound to."""
    return f"report:{agency}"


def new_tracking() -> str:
    """60 random bits, grouped: R-XXXX-XXXX-XXXX. Not derived from anything, not sequential."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(12))
    return f"R-{chars[:4]}-{chars[4:8]}-{chars[8:]}"


def normalise_tracking(text: str) -> str:
    """What a person typed, as stored: case, spaces and dashes ignored, O->0, I/L->1."""
    raw = "".join(c for c in text.upper() if c.isalnum())
    raw = raw.translate(str.maketrans("OIL", "011"))
    if raw.startswith("R") and len(raw) == 13:
        raw = raw[1:]
    if len(raw) != 12:
        return text.strip().upper()
    return f"R-{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def public_context(*, request_id: str | None, client_addr: str | None,
                   agency: str) -> RequestContext:
    return RequestContext(actor="public", request_id=request_id, client_addr=client_addr,
                          source="api", agency=agency)


def _where(deps: ReportsDeps, *, agency: str, body: ReportFields, field: str
           ) -> tuple[str | None, float | None, float | None]:
    """(text, lat, lon): coordinates are checked against the agency's area; an address alone
    is geocoded when the geocoder is sure of it, else kept as text for the reviewer."""
    loc = body.location
    if loc.lat is not None and loc.lon is not None:
        deps.incidents.plausible.check_place(agency=agency, lat=loc.lat, lon=loc.lon,
                                             fields=[f"{field}.lat", f"{field}.lon"])
        return loc.address, loc.lat, loc.lon
    assert loc.address is not None
    try:
        found = incidents_service.resolve_location(
            deps=deps.incidents, loc=LocationIn(address=loc.address), field=field)
    except Invalid:
        return loc.address, None, None
    if deps.incidents.plausible.area.refusal(agency=agency, lat=found.lat, lon=found.lon):
        return loc.address, None, None
    return loc.address, found.lat, found.lon


async def require_agency(*, deps: ReportsDeps, agency: str) -> None:
    """404 for an agency nobody reviews (a typo in the address): a report must not be filed
    into the void."""
    if not await public_repo.has_public_reviewer(deps.pool, agency=agency):
        raise NotFound(f"agency {agency} does not take online reports")


async def submit(*, deps: ReportsDeps, ctx: RequestContext, agency: str, body: ReportFields,
                 spend: Spend, address: str | None, field: str) -> dict[str, Any]:
    """File a report whose challenge was checked (``spend``); the challenge is spent in the
    same transaction (single use, per-address budget). Returns the public status view."""
    await require_agency(deps=deps, agency=agency)
    deps.incidents.plausible.check_time(body.occurred_at, field="body.occurred_at")
    text, lat, lon = _where(deps, agency=agency, body=body, field="body.location")
    contact = body.contact.model_dump() if body.contact else {}
    async with unit_of_work(deps.pool, ctx) as uow:
        record = uow.audit("report.submit", details={"agency": agency, "via": spend.kind})
        await deps.challenger.spend(uow.conn, spend, address=address, field=field)
        row = None
        for _ in range(TRACKING_DRAWS):
            row = await repo.insert_report(
                uow.conn, tracking=new_tracking(), agency=agency, report_type=body.report_type,
                description=body.description, location_text=text, lat=lat, lon=lon,
                occurred_at=body.occurred_at, language=body.language, contact=contact,
                via=spend.kind)
            if row is not None:
                break
        if row is None:   # five collisions in 2**60: something else is wrong
            raise Conflict("no free tracking number; try again")
        record.target = f"report:{row['id']}"
        record.details["tracking"] = row["tracking"]
        uow.emit("report.received", aggregate=("report", row["id"]), agency=agency,
                 data=event_data(row))
    return status_view(row)


async def status(*, deps: ReportsDeps, agency: str, tracking: str) -> dict[str, Any]:
    row = await repo.public_status(deps.pool, agency=agency, tracking=normalise_tracking(tracking))
    if row is None:
        raise NotFound("no report has this tracking number")
    return dict(row)


# --- staff ---------------------------------------------------------------------------------
async def list_reports(*, deps: ReportsDeps, scope: Scope, status: str | None,
                       agency: str | None, limit: int) -> list[dict[str, Any]]:
    agencies = scope.narrowed([agency] if agency else None)
    rows = await repo.list_reports(deps.pool, agencies=agencies, status=status, limit=limit)
    return [report_view(r) for r in rows]


async def get_report(*, deps: ReportsDeps, scope: Scope, report_id: int) -> dict[str, Any]:
    row = await repo.get_report(deps.pool, report_id=report_id, agencies=scope.agency_list)
    if row is None:
        raise NotFound(f"report {report_id} does not exist")
    return report_view(row)


async def get_contact(*, deps: ReportsDeps, ctx: RequestContext, scope: Scope,
                      report_id: int) -> dict[str, Any]:
    """The reporter's personal data. Every read is audited, found or not. Once the retention
    sweep erased it, the fields are null and ``erased_at`` says when (200: the report is
    still there; only its contact is gone)."""
    async with deps.pool.acquire() as conn:
        row = await repo.contact(conn, report_id=report_id, agencies=scope.agency_list)
        await audit_now(conn, ctx, "report.contact.read", target=f"report:{report_id}",
                        outcome="success" if row is not None else "failure")
    if row is None:
        raise NotFound(f"report {report_id} does not exist")
    return {"report_id": report_id, "name": row["contact_name"], "phone": row["contact_phone"],
            "email": row["contact_email"], "erased_at": row["contact_erased_at"]}


async def _waiting(deps: ReportsDeps, scope: Scope, report_id: int) -> asyncpg.Record:
    row = await repo.get_report(deps.pool, report_id=report_id, agencies=scope.agency_list)
    if row is None:
        raise NotFound(f"report {report_id} does not exist")
    if row["status"] != "received":
        raise Conflict(f"report {report_id} was already {row['status']}",
                       extra={"current": jsonable_encoder(report_view(row))})
    return row


async def _decide(uow: UnitOfWork, *, report: asyncpg.Record, status: str,
                  accepted_as: str | None, incident_id: int | None, public_reason: str | None,
                  staff_note: str | None) -> asyncpg.Record:
    record = uow.audit(f"report.{'accept' if status == 'accepted' else 'decline'}",
                       target=f"report:{report['id']}",
                       details={"accepted_as": accepted_as, "incident_id": incident_id})
    row = await repo.decide(uow.conn, report_id=report["id"], status=status,
                            decided_by=uow.ctx.actor, accepted_as=accepted_as,
                            incident_id=incident_id, public_reason=public_reason,
                            staff_note=staff_note)
    if row is None:
        record.outcome = "failure"
        raise Conflict(f"report {report['id']} was decided meanwhile")
    uow.emit("report.accepted" if status == "accepted" else "report.declined",
             aggregate=("report", row["id"]), agency=row["agency"], data=event_data(row))
    return row


async def accept(*, deps: ReportsDeps, ctx: RequestContext, scope: Scope, report_id: int,
                 body: AcceptIn) -> dict[str, Any]:
    """As a record: the report's row, event and audit. As an incident: intake through the
    incident service, whose transaction also decides the report (both or neither commit)."""
    report = await _waiting(deps, scope, report_id)
    scope.require(report["agency"], field="path.report_id")
    if body.kind == "record":
        async with unit_of_work(deps.pool, ctx) as uow:
            row = await _decide(uow, report=report, status="accepted", accepted_as="record",
                                incident_id=None, public_reason=body.public_reason,
                                staff_note=body.staff_note)
        return report_view(row)
    if body.location is not None:
        location = body.location
    elif report["lat"] is not None and report["lon"] is not None:
        location = LocationIn(lat=report["lat"], lon=report["lon"])
    else:
        raise Invalid("the report has no coordinates: give the incident's location",
                      field="body.location")
    assert body.incident_type is not None
    narrative = (f"Online report {report['tracking']} ({report['report_type']}"
                 f"{', at ' + report['location_text'] if report['location_text'] else ''}): "
                 f"{report['description']}")[:4000]
    intake = IncidentCreate(agency=report["agency"], incident_type=body.incident_type,
                            priority=body.priority, location=location,
                            received_at=report["submitted_at"], narrative=narrative)
    decided: list[asyncpg.Record] = []

    async def within(uow: UnitOfWork, incident: dict[str, Any]) -> None:
        decided.append(await _decide(uow, report=report, status="accepted",
                                     accepted_as="incident", incident_id=incident["id"],
                                     public_reason=body.public_reason,
                                     staff_note=body.staff_note))

    await incidents_service.create_incident(deps=deps.incidents, ctx=ctx, scope=scope,
                                            body=intake, within=within)
    return report_view(decided[-1])


async def decline(*, deps: ReportsDeps, ctx: RequestContext, scope: Scope, report_id: int,
                  body: DeclineIn) -> dict[str, Any]:
    report = await _waiting(deps, scope, report_id)
    async with unit_of_work(deps.pool, ctx) as uow:
        row = await _decide(uow, report=report, status="declined", accepted_as=None,
                            incident_id=None, public_reason=body.public_reason,
                            staff_note=body.staff_note)
    return report_view(row)
