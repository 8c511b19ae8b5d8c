"""Feedback, compliments and complaints over HTTP on the real app: a submission answered with a
reference, the status by reference (no contact data, no notes), the supervisors' queue with
assignment, the status table, outcomes and deadlines, row + event + audit in one transaction,
audited reads, agency scope, the submission limit and bad input as 4xx naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from incidents.feedback import service
from incidents.public.challenge import solve
from tests.auth import Api, make_user
from tests.incidents.feedback.conftest import (
    COMPLAINT,
    AppMaker,
    case_id,
    submit,
    submitted,
)

API = "/api/v1/feedback"
PERSONAL = (COMPLAINT["name"], COMPLAINT["email"], COMPLAINT["phone"], "Quarrington",
            "4155550199")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _same_transaction(pool: Any, feedback_id: int, event_type: str, action: str) -> None:
    """The row's latest version, the event and the audit record were written by one
    transaction (one xmin)."""
    row_x = await pool.fetchval("SELECT xmin::text FROM feedback WHERE id = $1", feedback_id)
    ev_x = await pool.fetchval(
        "SELECT xmin::text FROM event_log WHERE type = $1 AND aggregate_type = 'feedback' "
        "AND aggregate_id = $2 ORDER BY id DESC LIMIT 1", event_type, str(feedback_id))
    au_x = await pool.fetchval(
        "SELECT xmin::text FROM audit_log WHERE action = $1 AND target = $2 "
        "AND outcome = 'success' ORDER BY seq DESC LIMIT 1", action, f"feedback:{feedback_id}")
    assert row_x is not None and row_x == ev_x == au_x, (row_x, ev_x, au_x)


async def test_a_submission_is_answered_with_a_reference_and_followed_by_it(fb_api: Api) -> None:
    base = fb_api.running.base_url
    receipt = await submitted(base)
    ref = receipt["reference"]
    assert service.normalize_reference(ref) == ref and ref.startswith("FB-")
    assert set(receipt) == {"reference", "agency", "category", "status", "received_at",
                            "acknowledge_due_at", "resolve_due_at"}
    received = _t(receipt["received_at"])
    # complaints: acknowledged within 3 days, resolved within 90 (the defaults)
    assert _t(receipt["acknowledge_due_at"]) - received == timedelta(days=3)
    assert _t(receipt["resolve_due_at"]) - received == timedelta(days=90)
    assert (receipt["agency"], receipt["category"], receipt["status"]) == (
        "SFFD", "complaint", "received")
    fid = await case_id(fb_api.running.pool, ref)
    await _same_transaction(fb_api.running.pool, fid, "feedback.received", "feedback.submit")

    async with httpx.AsyncClient(base_url=base) as anon:
        # typed loosely: lower case, spaces, no dashes
        loose = ref.lower().replace("-", " ")
        r = await anon.get(f"/public/SFFD/feedback/{loose.replace(' ', '')}")
        assert r.status_code == 200, r.text
        status = r.json()
        assert status == {"reference": ref, "agency": "SFFD", "category": "complaint",
                          "subcategory": "conduct", "status": "received",
                          "received_at": status["received_at"], "acknowledged_at": None,
                          "acknowledge_due_at": status["acknowledge_due_at"],
                          "resolve_due_at": status["resolve_due_at"], "resolved_at": None,
                          "closed_at": None, "outcome": None, "response": None}
        # another agency's URL, a made-up reference: the same 404
        for path in (f"/public/SFPD/feedback/{ref}", "/public/SFFD/feedback/FB-2222-2222-2222",
                     "/public/SFFD/feedback/nonsense"):
            r = await anon.get(path)
            assert r.status_code == 404, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_supervisor_queue_from_receipt_to_closure(fb_api: Api) -> None:
    base, pool = fb_api.running.base_url, fb_api.running.pool
    sup = await fb_api.as_("supervisor")
    investigator = await fb_api.auth.user("supervisor", fresh=True)
    receipt = await submitted(base)
    fid = await case_id(pool, receipt["reference"])

    # the queue: no description, no contact data
    r = await sup.get(API)
    assert r.status_code == 200, r.text
    [row] = [c for c in r.json() if c["id"] == fid]
    assert row["status"] == "received" and row["overdue"] == []
    assert not any(p in r.text for p in PERSONAL) and "rude" not in r.text

    # the case in full: contact data, and the read is audited
    reads = "SELECT count(*) FROM audit_log WHERE action = 'feedback.read' AND target = $1"
    before = await pool.fetchval(reads, f"feedback:{fid}")
    r = await sup.get(f"{API}/{fid}")
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["contact"] == {"name": COMPLAINT["name"], "email": COMPLAINT["email"],
                               "phone": COMPLAINT["phone"], "erased_at": None}
    assert case["description"] == COMPLAINT["description"] and case["notes"] == []
    assert case["incident_id"] is None and case["unit_id"] is None   # no such incident or unit
    assert await pool.fetchval(reads, f"feedback:{fid}") == before + 1

    # nothing but an assignment or an unresolved closure leaves "received"
    r = await sup.post(f"{API}/{fid}/status", json={"status": "resolved", "outcome": "sustained"})
    assert r.status_code == 409 and r.json()["allowed"] == ["closed"], r.text
    r = await sup.post(f"{API}/{fid}/assign", json={"assignee": investigator.username,
                                                    "note": "IA: take this one"})
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["status"] == "assigned" and case["assigned_to"] == investigator.username
    assert case["acknowledged_at"] is not None and case["notes"][0]["text"] == "IA: take this one"
    await _same_transaction(pool, fid, "feedback.assigned", "feedback.assign")

    inv = httpx.AsyncClient(base_url=base, headers=investigator.headers, timeout=30)
    async with inv:
        r = await inv.post(f"{API}/{fid}/status", json={"status": "investigating"})
        assert r.status_code == 200 and r.json()["status"] == "investigating", r.text
        await _same_transaction(pool, fid, "feedback.status_changed", "feedback.status")
        r = await inv.post(f"{API}/{fid}/notes", json={"text": "Body camera reviewed: SECRET-7"})
        assert r.status_code == 201, r.text
        note_x = await pool.fetchval("SELECT xmin::text FROM feedback_notes WHERE id = $1",
                                     r.json()["id"])
        assert note_x == await pool.fetchval(
            "SELECT xmin::text FROM event_log WHERE type = 'feedback.note_added' "
            "AND aggregate_id = $1", str(fid)) == await pool.fetchval(
            "SELECT xmin::text FROM audit_log WHERE action = 'feedback.note' AND target = $1",
            f"feedback:{fid}")
        # the outcome must fit the category; resolving needs one
        for bad in ({"status": "resolved"}, {"status": "resolved", "outcome": "forwarded"},
                    {"status": "closed", "outcome": "sustained"},
                    {"status": "closed", "outcome": "forwarded"}):
            r = await inv.post(f"{API}/{fid}/status", json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["errors"][0]["field"] == "outcome"
        r = await inv.post(f"{API}/{fid}/status", json={
            "status": "resolved", "outcome": "sustained",
            "response": "Your complaint was sustained; the officer was counselled.",
            "note": "Discipline: written reprimand"})
        assert r.status_code == 200, r.text
        case = r.json()
        assert (case["status"], case["outcome"]) == ("resolved", "sustained")
        assert case["resolved_at"] is not None and len(case["notes"]) == 3

        # the submitter sees the outcome and the answer, never the notes
        async with httpx.AsyncClient(base_url=base) as anon:
            r = await anon.get(f"/public/SFFD/feedback/{receipt['reference']}")
            status = r.json()
            assert (status["status"], status["outcome"]) == ("resolved", "sustained")
            assert status["response"] == ("Your complaint was sustained; the officer was "
                                          "counselled.")
            assert "SECRET-7" not in r.text and "reprimand" not in r.text
            assert investigator.username not in r.text
            page = await anon.get(f"/public/SFFD/feedback/status?reference={receipt['reference']}")
            assert page.status_code == 200 and "Sustained" in page.text
            assert "SECRET-7" not in page.text and "reprimand" not in page.text

        r = await inv.post(f"{API}/{fid}/status", json={"status": "closed"})
        assert r.status_code == 200 and r.json()["closed_at"] is not None, r.text
        assert r.json()["outcome"] == "sustained"
        for action, body in (("status", {"status": "investigating"}),
                             ("assign", {"assignee": investigator.username})):
            r = await inv.post(f"{API}/{fid}/{action}", json=body)
            assert r.status_code == 409, (action, r.text)

    events = await pool.fetch(
        "SELECT type, data FROM event_log WHERE aggregate_type = 'feedback' "
        "AND aggregate_id = $1 ORDER BY id", str(fid))
    assert [e["type"] for e in events] == [
        "feedback.received", "feedback.assigned", "feedback.status_changed",
        "feedback.note_added", "feedback.status_changed", "feedback.status_changed"]
    # events carry no personal data (boards of the agency receive them)
    assert not any(p in str(e["data"]) for e in events for p in PERSONAL)


def test_the_status_table() -> None:
    """Every (from, to) pair: allowed exactly as TRANSITIONS says."""
    for src, allowed in service.TRANSITIONS.items():
        for dst in ("investigating", "resolved", "closed"):
            outcome = ("sustained" if dst == "resolved" else
                       None if dst == "investigating" or src == "resolved" else "withdrawn")
            if dst in allowed:
                service.check_transition(category="complaint", from_status=src, to_status=dst,
                                         outcome=outcome)
            else:
                with pytest.raises(service.Conflict):
                    service.check_transition(category="complaint", from_status=src,
                                             to_status=dst, outcome=outcome)


async def test_unresolved_closure_and_the_linked_incident(fb_api: Api) -> None:
    base, pool = fb_api.running.base_url, fb_api.running.pool
    sup = await fb_api.as_("supervisor")
    r = await sup.post("/api/v1/incidents", json={
        "agency": "SFFD", "incident_type": "MED", "location": {"lat": 37.77, "lon": -122.42}})
    assert r.status_code == 201, r.text
    incident = r.json()
    receipt = await submitted(base, {"category": "compliment",
                                     "description": "The medics were wonderful.",
                                     "incident_number": incident["number"]})
    fid = await case_id(pool, receipt["reference"])
    assert _t(receipt["resolve_due_at"]) - _t(receipt["received_at"]) == timedelta(days=14)
    case = (await sup.get(f"{API}/{fid}")).json()
    assert case["incident_id"] == incident["id"] and case["contact"] == {
        "name": None, "email": None, "phone": None, "erased_at": None}
    r = await sup.post(f"{API}/{fid}/status", json={"status": "closed", "outcome": "duplicate"})
    assert r.status_code == 200 and r.json()["outcome"] == "duplicate", r.text
    await _same_transaction(pool, fid, "feedback.status_changed", "feedback.status")


async def test_only_a_supervisor_of_the_agency_may_be_assigned(fb_api: Api) -> None:
    base, pool = fb_api.running.base_url, fb_api.running.pool
    sup = await fb_api.as_("supervisor")
    fid = await case_id(pool, (await submitted(base))["reference"])
    dispatcher = await fb_api.auth.user("dispatcher")
    other = await fb_api.auth.user("supervisor", agency="SFPD")
    admin = await fb_api.auth.user("admin")
    for who in (dispatcher.username, other.username, "nobody-at-all"):
        r = await sup.post(f"{API}/{fid}/assign", json={"assignee": who})
        assert r.status_code == 422, (who, r.text)
        assert r.json()["errors"][0]["field"] == "assignee"
    refused = await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = "
                                  "'feedback.assign' AND outcome = 'failure'")
    assert refused == 3
    r = await sup.post(f"{API}/{fid}/assign", json={"assignee": admin.username})
    assert r.status_code == 200, r.text


async def test_an_agency_nobody_works_takes_no_feedback(fb_api: Api) -> None:
    async with httpx.AsyncClient(base_url=fb_api.running.base_url) as anon:
        assert (await anon.get("/public/SFPD/feedback")).status_code == 404
        r = await submit(fb_api.running.base_url, agency="SFPD")
        assert r.status_code == 404 and "does not take feedback" in r.json()["detail"]
        await make_user(fb_api.running.pool, "supervisor", agency="SFPD")
        assert (await anon.get("/public/SFPD/feedback")).status_code == 200
        assert (await submit(fb_api.running.base_url, agency="SFPD")).status_code == 201


async def test_another_agencys_cases_are_not_found(fb_api: Api) -> None:
    base, pool = fb_api.running.base_url, fb_api.running.pool
    fid = await case_id(pool, (await submitted(base))["reference"])
    sfpd = await fb_api.as_("supervisor", agency="SFPD")
    r = await sfpd.get(API)
    assert r.status_code == 200 and all(c["id"] != fid for c in r.json())
    assert (await sfpd.get(f"{API}/overdue")).json() == []
    assert (await sfpd.get(f"{API}/stats")).json() == []
    for method, path, body in (("GET", f"{API}/{fid}", None),
                               ("POST", f"{API}/{fid}/assign", {"assignee": "anyone"}),
                               ("POST", f"{API}/{fid}/status", {"status": "investigating"}),
                               ("POST", f"{API}/{fid}/notes", {"text": "probe"})):
        r = await sfpd.request(method, path, json=body)
        assert r.status_code == 404, (path, r.text)
    dispatcher = await fb_api.as_("dispatcher")
    assert (await dispatcher.get(API)).status_code == 403
    analyst = await fb_api.as_("analyst")   # counts, not cases
    assert (await analyst.get(API)).status_code == 403
    assert (await analyst.get(f"{API}/{fid}")).status_code == 403
    r = await analyst.get(f"{API}/stats")
    assert r.status_code == 200 and [row["count"] for row in r.json()] == [1]
    async with httpx.AsyncClient(base_url=base) as anon:
        assert (await anon.get(API)).status_code == 401


async def test_overdue_cases_are_listed_until_acknowledged(feedback_app: AppMaker) -> None:
    # complaints due for acknowledgement at once (0 days), suggestions after a week
    async with feedback_app(feedback_acknowledge_days={"complaint": 0}) as api:
        base, pool = api.running.base_url, api.running.pool
        sup = await api.as_("supervisor")
        complaint = await case_id(pool, (await submitted(base))["reference"])
        suggestion = await case_id(pool, (await submitted(base, {
            "category": "suggestion", "description": "More foot patrols downtown."}))["reference"])
        r = await sup.get(f"{API}/overdue")
        assert r.status_code == 200, r.text
        assert [(c["id"], c["overdue"]) for c in r.json()] == [(complaint, ["acknowledge"])]
        queue = {c["id"]: c["overdue"] for c in (await sup.get(API)).json()}
        assert queue == {complaint: ["acknowledge"], suggestion: []}
        me = api.auth.users[0].username
        assert (await sup.post(f"{API}/{complaint}/assign", json={"assignee": me})).status_code == 200
        assert (await sup.get(f"{API}/overdue")).json() == []


async def test_resolution_deadline_and_filters(feedback_app: AppMaker) -> None:
    async with feedback_app(feedback_acknowledge_days={"other": 0},
                            feedback_resolve_days={"other": 0}) as api:
        base, pool = api.running.base_url, api.running.pool
        sup = await api.as_("supervisor")
        fid = await case_id(pool, (await submitted(base, {
            "category": "other", "description": "Where do I get a copy of a report?"}))["reference"])
        me = api.auth.users[0].username
        assert (await sup.post(f"{API}/{fid}/assign", json={"assignee": me})).status_code == 200
        [c] = (await sup.get(f"{API}/overdue")).json()
        assert (c["id"], c["overdue"]) == (fid, ["resolve"])
        assert [x["id"] for x in (await sup.get(API, params={"status": "assigned"})).json()] == [fid]
        assert (await sup.get(API, params={"status": "received"})).json() == []
        assert [x["id"] for x in (await sup.get(API, params={"assigned_to": me})).json()] == [fid]
        assert (await sup.get(API, params={"category": "complaint"})).json() == []
        r = await sup.post(f"{API}/{fid}/status", json={"status": "resolved",
                                                        "outcome": "answered"})
        assert r.status_code == 200, r.text
        assert (await sup.get(f"{API}/overdue")).json() == []


@pytest.mark.parametrize(("fields", "field"), [
    ({"category": "compliment", "subcategory": "conduct"}, "body.subcategory"),
    ({"category": "praise"}, "body.category"),
    ({"description": ""}, "body.description"),
    ({"description": "x" * 5001}, "body.description"),
    ({"email": "not-an-address"}, "body.email"),
    ({"phone": "call me"}, "body.phone"),
    ({"incident_number": "../../etc"}, "body.incident_number"),
    ({"occurred_at": "2999-01-01T10:00:00Z"}, "body.occurred_at"),
    ({"proof": {"challenge": "c1.pow.8.0.x.y", "solution": "0"}}, "body.proof"),
    ({"surprise": 1}, "body.surprise"),
])
async def test_bad_input_names_the_field(fb_api: Api, fields: dict[str, Any], field: str) -> None:
    r = await submit(fb_api.running.base_url, **fields)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in r.json()["errors"]]
    assert await fb_api.running.pool.fetchval("SELECT count(*) FROM feedback") == 0


async def test_malformed_bodies_are_4xx(fb_api: Api) -> None:
    async with httpx.AsyncClient(base_url=fb_api.running.base_url) as anon:
        for content, ctype, want in ((b"{", "application/json", 400),
                                     (b"[1]", "application/json", 422),
                                     (b"<x/>", "application/xml", 415),
                                     (b"category=%FF", "application/x-www-form-urlencoded", 400)):
            r = await anon.post("/public/SFFD/feedback", content=content,
                                headers={"content-type": ctype})
            assert r.status_code == want, (content, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_occurred_at_without_an_offset_is_the_agencys_local_time(
        feedback_app: AppMaker) -> None:
    async with feedback_app(analytics_timezone="America/Los_Angeles") as api:
        ref = (await submitted(api.running.base_url,
                               occurred_at="2026-07-04T21:30:00"))["reference"]
        at = await api.running.pool.fetchval(
            "SELECT occurred_at FROM feedback WHERE reference = $1", ref)
        assert at == datetime(2026, 7, 5, 4, 30, tzinfo=UTC)


async def test_a_challenge_is_needed_spent_once_and_budgeted_per_address(
        feedback_app: AppMaker) -> None:
    async with feedback_app(public_submit_max_pow=2) as api:
        base, pool = api.running.base_url, api.running.pool
        async with httpx.AsyncClient(base_url=base) as anon:
            # none, unsolved, for another form: refused naming the proof, nothing stored
            r = await anon.post("/public/SFFD/feedback", json=COMPLAINT)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.proof"
            token = (await anon.get("/public/SFFD/feedback/challenge")).json()["challenge"]
            report = (await anon.get("/public/SFFD/reports/challenge")).json()["challenge"]
            for bad in ({"challenge": token, "solution": "unsolved"},
                        {"challenge": report, "solution": solve(report, 8)}):
                r = await anon.post("/public/SFFD/feedback", json={**COMPLAINT, "proof": bad})
                assert r.status_code == 422, r.text
                assert r.json()["errors"][0]["field"] == "body.proof"
            assert await pool.fetchval("SELECT count(*) FROM feedback") == 0
            # a solved one works once
            good = {"challenge": token, "solution": solve(token, 8)}
            r = await anon.post("/public/SFFD/feedback", json={**COMPLAINT, "proof": good})
            assert r.status_code == 201, r.text
            r = await anon.post("/public/SFFD/feedback", json={**COMPLAINT, "proof": good})
            assert r.status_code == 422 and r.json()["reason"] == "used", r.text
            # two an hour from one address (this app's budget): the third is 429
            assert (await submit(base)).status_code == 201
            r = await submit(base)
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 3600
            assert r.headers["content-type"].startswith("application/problem+json")
            # reads are not submissions
            assert (await anon.get("/public/SFFD/feedback/stats.json")).status_code == 200
        assert await pool.fetchval("SELECT count(*) FROM feedback") == 2


async def test_a_resolved_case_can_be_reopened(fb_api: Api) -> None:
    base, pool = fb_api.running.base_url, fb_api.running.pool
    sup = await fb_api.as_("supervisor")
    fid = await case_id(pool, (await submitted(base))["reference"])
    me = fb_api.auth.users[0].username
    assert (await sup.post(f"{API}/{fid}/assign", json={"assignee": me})).status_code == 200
    r = await sup.post(f"{API}/{fid}/status", json={"status": "resolved", "outcome": "unfounded",
                                                    "response": "We found no record of it."})
    assert r.status_code == 200, r.text
    r = await sup.post(f"{API}/{fid}/status", json={
        "status": "investigating", "note": "New video from the complainant"})
    assert r.status_code == 200, r.text
    case = r.json()
    assert (case["status"], case["outcome"], case["resolved_at"]) == ("investigating", None, None)
    assert case["public_response"] == "We found no record of it."   # until a new answer
    r = await sup.post(f"{API}/{fid}/status", json={"status": "resolved", "outcome": "sustained",
                                                    "response": "The video shows it happened."})
    assert r.status_code == 200 and r.json()["outcome"] == "sustained", r.text
    events = await pool.fetch("SELECT data FROM event_log WHERE type = 'feedback.status_changed' "
                              "AND aggregate_id = $1 ORDER BY id", str(fid))
    assert [(e["data"]["from_status"], e["data"]["status"], e["data"]["outcome"])
            for e in events] == [("assigned", "resolved", "unfounded"),
                                 ("resolved", "investigating", None),
                                 ("investigating", "resolved", "sustained")]
