"""A reporter's contact after the retention sweep (cad.retention) erased it: staff reading it
get 200 with null fields and ``erased_at`` set (not an answer that looks like "no contact
given"), the read is still audited, and the report itself is unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from cad import retention
from cad.wiring import CONTACT_ERASERS
from incidents.reports.schemas import ContactOut, ReportOut
from tests.auth import Api
from tests.incidents.reports.conftest import AGENCY, file_report, start_reports_app
from tests.support import Apps

CONTACT = {"name": "Quentin Marblewood", "phone": "415-555-0199",
           "email": "quentin.marblewood@example.org"}


@pytest.fixture
async def api(apps: Apps) -> AsyncIterator[Api]:
    # no sweeper task: the test runs the sweep itself, when the data is in place
    async for app in start_reports_app(apps, retention_sweep_interval_s=0):
        yield apps.api(app)


async def _filed(api: Api, **overrides: Any) -> int:
    async with httpx.AsyncClient(base_url=api.running.base_url, timeout=30) as c:
        r = await file_report(c, **overrides)
    assert r.status_code == 201, r.text
    rid: int = await api.running.pool.fetchval(
        "SELECT id FROM public_reports WHERE tracking = $1", r.json()["tracking"])
    return rid


async def test_an_erased_contact_reads_as_erased_and_the_read_is_audited(api: Api) -> None:
    pool = api.running.pool
    sup = await api.as_("supervisor")
    old = await _filed(api, contact=CONTACT)
    recent = await _filed(api, contact=CONTACT)
    none_given = await _filed(api)
    waiting = await _filed(api, contact=CONTACT)
    for rid in (old, none_given):
        r = await sup.post(f"/api/v1/reports/{rid}/decline", json={"public_reason": "not ours"})
        assert r.status_code == 200, r.text
    r = await sup.post(f"/api/v1/reports/{recent}/accept", json={"kind": "record"})
    assert r.status_code == 200, r.text
    # decided 400 days ago (and the undecided one filed then)
    await pool.execute("UPDATE public_reports SET decided_at = decided_at - interval '400 days',"
                       " submitted_at = submitted_at - interval '400 days'"
                       " WHERE id = ANY($1)", [old, none_given])
    await pool.execute("UPDATE public_reports SET submitted_at = submitted_at - interval"
                       " '400 days' WHERE id = $1", waiting)
    before = (await sup.get(f"/api/v1/reports/{old}")).json()
    assert before["has_contact"] is True and before["contact_erased_at"] is None

    result = await retention.prune(pool, api.running.settings, erasers=CONTACT_ERASERS)
    assert result.contacts == {"public_reports": 1, "feedback": 0}

    r = await sup.get(f"/api/v1/reports/{old}/contact")
    assert r.status_code == 200, r.text
    body = r.json()
    ContactOut.model_validate(body)
    erased_at = datetime.fromisoformat(body.pop("erased_at"))
    assert body == {"report_id": old, "name": None, "phone": None, "email": None}
    db_erased = await pool.fetchval(
        "SELECT contact_erased_at FROM public_reports WHERE id = $1", old)
    assert erased_at == db_erased
    # the read of an erased contact is a read of personal data like any other: audited
    reads = await pool.fetch(
        "SELECT outcome FROM audit_log WHERE action = 'report.contact.read' AND target = $1",
        f"report:{old}")
    assert [a["outcome"] for a in reads] == ["success"]

    # the report itself: unchanged but for the contact
    after = (await sup.get(f"/api/v1/reports/{old}")).json()
    ReportOut.model_validate(after)
    assert after.pop("has_contact") is False
    assert datetime.fromisoformat(after.pop("contact_erased_at")) == erased_at
    before.pop("has_contact"), before.pop("contact_erased_at")
    assert after == before

    # decided recently, undecided, none given: as before, and "none given" is not "erased"
    for rid in (recent, waiting):
        r = await sup.get(f"/api/v1/reports/{rid}/contact")
        assert r.json() == {"report_id": rid, **CONTACT, "erased_at": None}
    r = await sup.get(f"/api/v1/reports/{none_given}/contact")
    assert r.json() == {"report_id": none_given, "name": None, "phone": None, "email": None,
                        "erased_at": None}
    listed = {x["id"]: x for x in (await sup.get("/api/v1/reports")).json()}
    assert listed[old]["contact_erased_at"] is not None
    assert [listed[i]["contact_erased_at"] for i in (recent, none_given, waiting)] == [None] * 3

    # the public status by tracking number still answers
    tracking = await pool.fetchval("SELECT tracking FROM public_reports WHERE id = $1", old)
    async with httpx.AsyncClient(base_url=api.running.base_url, timeout=30) as c:
        s = await c.get(f"/public/{AGENCY}/reports/{tracking}")
    assert s.status_code == 200 and s.json()["status"] == "declined"


async def test_the_contact_response_documents_erasure(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.running.base_url, timeout=30) as c:
        spec = (await c.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/reports/{report_id}/contact"]["get"]
    assert "erased_at" in op["description"]
    schemas = spec["components"]["schemas"]

    def response_schema(path: str) -> dict[str, Any]:
        ref = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"]["$ref"]
        out: dict[str, Any] = schemas[ref.rsplit("/", 1)[1]]
        return out

    contact = response_schema("/api/v1/reports/{report_id}/contact")
    assert "erased_at" in contact["required"]
    assert "CAD_CONTACT_RETENTION_DAYS" in contact["properties"]["erased_at"]["description"]
    report = response_schema("/api/v1/reports/{report_id}")
    assert "contact_erased_at" in report["required"]
