"""Property: whatever personal data is typed into an incident's free-text fields (narrative,
caller name and number, the address with its house number and apartment), none of it reaches
any public output: GeoJSON, CSV, Atom, request-for-service data by number and by day, and the
map and lookup pages. Hypothesis draws the data; each example is a real intake, narrative
entry and close through the API, then every public endpoint is read anonymously."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.auth import Api
from tests.incidents.public.conftest import PUBLIC_ENDPOINTS, STREET, publish

EXAMPLES = 20


@dataclass(frozen=True)
class Person:
    name: str
    phone: str
    dob: date
    house: int
    unit: str

    def needles(self) -> list[re.Pattern[str]]:
        digits = re.sub(r"\D", "", self.phone)
        words = [re.escape(self.name), re.escape(self.name.split()[1]),
                 re.escape(self.phone), rf"(?<!\d){digits}(?!\d)", rf"(?<!\d){digits[-7:]}(?!\d)",
                 re.escape(self.dob.isoformat()), re.escape(self.dob.strftime("%m/%d/%Y")),
                 rf"(?<![\d.]){self.house}(?!\d)", rf"\b{re.escape(self.unit)}\b"]
        return [re.compile(w, re.IGNORECASE) for w in words]


people = st.builds(
    Person,
    name=st.tuples(st.from_regex(r"Z[a-z]{4,8}", fullmatch=True),
                   st.from_regex(r"Qx[a-z]{4,8}", fullmatch=True)).map(" ".join),
    phone=st.from_regex(r"\([2-9][0-9]{2}\) [2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
    dob=st.dates(min_value=date(1930, 1, 1), max_value=date(2015, 12, 31)),
    house=st.integers(4801, 4899).filter(lambda n: n % 100 != 0),
    unit=st.from_regex(r"U[0-9]{2,4}", fullmatch=True),
)


def _run(base_url: str, headers: dict[str, str]) -> list[str]:
    leaks: list[str] = []
    staff = httpx.Client(base_url=base_url, headers=headers, timeout=30)
    anon = httpx.Client(base_url=base_url, timeout=30)

    @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
               suppress_health_check=list(HealthCheck))
    @given(caller=people, subject=people)
    def example(caller: Person, subject: Person) -> None:
        story = (f"{subject.name} DOB {subject.dob:%m/%d/%Y} ({subject.dob.isoformat()}) "
                 f"phone {subject.phone}, lives at {subject.house} {STREET} #{subject.unit}")
        r = staff.post("/api/v1/incidents", json={
            "agency": "SFFD", "incident_type": "ROBBERY",
            "location": {"address": f"{caller.house} {STREET}, APT {caller.unit}"},
            "caller": {"name": caller.name, "callback_number": caller.phone},
            "narrative": f"caller {caller.name} born {caller.dob:%m/%d/%Y}; {story}"})
        assert r.status_code == 201, r.text
        inc = r.json()
        assert inc["location_unit"] == caller.unit and str(caller.house) in inc["location_text"]
        r = staff.post(f"/api/v1/incidents/{inc['id']}/narrative", json={"text": story})
        assert r.status_code in (200, 201), r.text
        r = staff.post(f"/api/v1/incidents/{inc['id']}/close", json={"disposition": "REPORT"})
        assert r.status_code == 200, r.text
        number, day = inc["number"], inc["received_at"][:10]
        for ep in PUBLIC_ENDPOINTS:
            resp = anon.get("/public/SFFD/" + ep.format(number=number, day=day))
            assert resp.status_code == 200, (ep, resp.text)
            assert number in resp.text, ep    # the incident is published: the check has teeth
            for person in (caller, subject):
                for needle in person.needles():
                    if needle.search(resp.text):
                        leaks.append(f"{ep}: {needle.pattern} of {person}")

    try:
        example()
    finally:
        staff.close()
        anon.close()
    return leaks


async def test_no_personal_data_in_any_public_output(public_api: Api) -> None:
    sup = await public_api.as_("supervisor")
    assert (await publish(sup, "ROBBERY")).status_code == 200
    headers = await public_api.auth("supervisor")
    leaks = await asyncio.to_thread(_run, public_api.running.base_url, headers)
    assert leaks == []
    n = await public_api.running.pool.fetchval("SELECT count(*) FROM incidents")
    assert n >= EXAMPLES
