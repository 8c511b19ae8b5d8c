"""A feedback case after the retention sweep (cad.retention) erased its contact: the case is
read in full as before (200, audited), its contact fields are null and ``contact.erased_at``
says when; open cases keep their contact however old they are."""

from __future__ import annotations

from datetime import datetime

import httpx

from cad import retention
from cad.wiring import CONTACT_ERASERS
from incidents.feedback.schemas import FeedbackDetail
from tests.auth import Api
from tests.incidents.feedback.conftest import COMPLAINT, AppMaker, case_id, submitted

API = "/api/v1/feedback"
PERSONAL = {"name": COMPLAINT["name"], "email": COMPLAINT["email"], "phone": COMPLAINT["phone"]}


async def test_an_erased_contact_reads_as_erased_and_the_case_stays(
        feedback_app: AppMaker) -> None:
    # no sweeper task: the test runs the sweep itself, when the data is in place
    async with feedback_app(retention_sweep_interval_s=0) as api:
        base, pool = api.running.base_url, api.running.pool
        sup = await api.as_("supervisor")
        me = (await sup.get("/api/v1/auth/me")).json()["username"]
        closed, resolved, still_open = [
            await case_id(pool, (await submitted(base))["reference"]) for _ in range(3)]
        for fid in (closed, resolved, still_open):
            r = await sup.post(f"{API}/{fid}/assign", json={"assignee": me})
            assert r.status_code == 200, r.text
        for fid in (closed, resolved):
            r = await sup.post(f"{API}/{fid}/status",
                               json={"status": "resolved", "outcome": "not_sustained"})
            assert r.status_code == 200, r.text
        r = await sup.post(f"{API}/{closed}/status", json={"status": "closed"})
        assert r.status_code == 200, r.text
        # the closed case was decided 400 days ago; the resolved one 30 days ago; the open
        # one came in 400 days ago and is still being investigated
        await pool.execute(
            "UPDATE feedback SET received_at = received_at - interval '400 days',"
            " resolved_at = resolved_at - interval '400 days',"
            " closed_at = closed_at - interval '400 days' WHERE id = ANY($1)",
            [closed, still_open])
        await pool.execute("UPDATE feedback SET resolved_at = resolved_at - interval '30 days'"
                           " WHERE id = $1", resolved)
        before = (await sup.get(f"{API}/{closed}")).json()
        assert before["contact"] == {**PERSONAL, "erased_at": None}

        result = await retention.prune(pool, api.running.settings, erasers=CONTACT_ERASERS)
        assert result.contacts == {"public_reports": 0, "feedback": 1}

        reads = "SELECT count(*) FROM audit_log WHERE action = 'feedback.read' AND target = $1"
        count = await pool.fetchval(reads, f"feedback:{closed}")
        r = await sup.get(f"{API}/{closed}")
        assert r.status_code == 200, r.text
        after = r.json()
        FeedbackDetail.model_validate(after)
        assert await pool.fetchval(reads, f"feedback:{closed}") == count + 1
        contact = after.pop("contact")
        erased_at = datetime.fromisoformat(contact.pop("erased_at"))
        assert contact == {"name": None, "email": None, "phone": None}
        assert erased_at == await pool.fetchval(
            "SELECT contact_erased_at FROM feedback WHERE id = $1", closed)
        before.pop("contact")
        assert after == before   # description, outcome, notes: all still there
        # (the description names the neighbour: free text is the case, not its contact)
        assert COMPLAINT["email"] not in r.text and COMPLAINT["phone"] not in r.text

        for fid in (resolved, still_open):
            case = (await sup.get(f"{API}/{fid}")).json()
            assert case["contact"] == {**PERSONAL, "erased_at": None}

        # the submitter's reference still shows the status
        ref = await pool.fetchval("SELECT reference FROM feedback WHERE id = $1", closed)
        async with httpx.AsyncClient(base_url=base, timeout=30) as anon:
            s = await anon.get(f"/public/SFFD/feedback/{ref}")
        assert s.status_code == 200 and s.json()["status"] == "closed"


async def test_the_case_response_documents_erasure(fb_api: Api) -> None:
    async with httpx.AsyncClient(base_url=fb_api.running.base_url, timeout=30) as c:
        spec = (await c.get("/openapi.json")).json()
    op = spec["paths"]["/api/v1/feedback/{feedback_id}"]["get"]
    assert "erased_at" in op["description"]
    contact = spec["components"]["schemas"]["Contact"]
    assert "erased_at" in contact["required"]
    assert "CAD_CONTACT_RETENTION_DAYS" in contact["properties"]["erased_at"]["description"]
