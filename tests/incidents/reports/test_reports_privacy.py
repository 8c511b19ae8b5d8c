"""Property: whatever a reporter types as contact (name, phone, email) or into the
description, and whatever staff write as a note, none of it reaches what the public can read
about the report: the status by tracking number (JSON and page) after it was filed and after
it was decided. Hypothesis draws the data; each example is a real filing (with a proof of
work), a real decision by a supervisor and anonymous reads."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from incidents.public.challenge import solve
from tests.auth import Api
from tests.incidents.reports.conftest import AGENCY, POW_BITS, start_reports_app
from tests.support import Apps, RunningApp

EXAMPLES = 12


@dataclass(frozen=True)
class Reporter:
    name: str
    phone: str
    email: str
    note: str
    decline: bool

    def needles(self) -> list[re.Pattern[str]]:
        digits = re.sub(r"\D", "", self.phone)
        words = [re.escape(self.name), re.escape(self.name.split()[1]), re.escape(self.phone),
                 rf"(?<!\d){digits}(?!\d)", rf"(?<!\d){digits[-7:]}(?!\d)",
                 re.escape(self.email), re.escape(self.email.split("@")[0]),
                 re.escape(self.note)]
        return [re.compile(w, re.IGNORECASE) for w in words]


reporters = st.builds(
    Reporter,
    name=st.tuples(st.from_regex(r"Z[a-z]{4,8}", fullmatch=True),
                   st.from_regex(r"Qx[a-z]{4,8}", fullmatch=True)).map(" ".join),
    phone=st.from_regex(r"\([2-9][0-9]{2}\) [2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
    email=st.from_regex(r"zq[a-z]{4,10}@example\.org", fullmatch=True),
    note=st.from_regex(r"Staffnote [a-z]{6,12}", fullmatch=True),
    decline=st.booleans(),
)


@pytest.fixture
async def roomy_app(apps: Apps) -> AsyncIterator[RunningApp]:
    # every example files from 127.0.0.1: a budget that lasts the run
    async for app in start_reports_app(apps, public_submit_max_pow=1000):
        yield app


def _run(base_url: str, headers: dict[str, str]) -> list[str]:
    leaks: list[str] = []
    staff = httpx.Client(base_url=base_url, headers=headers, timeout=30)
    anon = httpx.Client(base_url=base_url, timeout=30)

    def public_reads(tracking: str) -> dict[str, str]:
        return {"status": anon.get(f"/public/{AGENCY}/reports/{tracking}").text,
                "page": anon.get(f"/public/{AGENCY}/report/status",
                                 params={"tracking": tracking}).text}

    @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))
    @given(who=reporters)
    def example(who: Reporter) -> None:
        ch = anon.get(f"/public/{AGENCY}/reports/challenge").json()
        r = anon.post(f"/public/{AGENCY}/reports", json={
            "report_type": "theft",
            "description": f"{who.name} ({who.phone}, {who.email}) lost a wallet.",
            "location": {"address": f"{who.name}'s place"},
            "contact": {"name": who.name, "phone": who.phone, "email": who.email},
            "proof": {"challenge": ch["challenge"], "solution": solve(ch["challenge"], POW_BITS)}})
        assert r.status_code == 201, r.text
        tracking = r.json()["tracking"]
        reads = public_reads(tracking)
        [item] = [x for x in staff.get("/api/v1/reports", params={"status": "received"}).json()
                  if x["tracking"] == tracking]
        decision = (staff.post(f"/api/v1/reports/{item['id']}/decline",
                               json={"public_reason": "Handled by another service.",
                                     "staff_note": who.note}) if who.decline
                    else staff.post(f"/api/v1/reports/{item['id']}/accept",
                                    json={"kind": "record", "staff_note": who.note}))
        assert decision.status_code == 200, decision.text
        after = public_reads(tracking)
        assert tracking in after["status"] and tracking in after["page"]
        for when, texts in (("filed", reads), ("decided", after)):
            for where, text in texts.items():
                for needle in who.needles():
                    if needle.search(text):
                        leaks.append(f"{when} {where}: {needle.pattern}")

    try:
        example()
    finally:
        staff.close()
        anon.close()
    return leaks


async def test_nothing_a_reporter_or_reviewer_wrote_reaches_the_public(roomy_app: RunningApp
                                                                         ) -> None:
    api = Api(roomy_app)
    try:
        headers = await api.auth("supervisor")
        leaks = await asyncio.to_thread(_run, roomy_app.base_url, headers)
    finally:
        await api.close()
    assert leaks == []
