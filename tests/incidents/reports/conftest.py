"""A running app for online reports: the public tests' app (one invented street of address
points, tests/incidents/public/conftest.py) with a known challenge key, so a test can mint a
form token as the server would have issued it some seconds ago, and a low proof-of-work
difficulty (the work is the client's; the checks are the same at any difficulty)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from incidents.public.challenge import Challenger, solve
from tests.auth import Api, make_user
from tests.incidents.public.conftest import STREET, start_public_app
from tests.support import Apps, RunningApp

CHALLENGE_SECRET = "reports-tests-challenge-key-" + "c" * 16
POW_BITS = 8
FORM_MIN_DELAY_S = 5.0
MAX_FORM = 3
MAX_POW = 6
AGENCY = "SFFD"
TRACKING = re.compile(r"^R-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
SETTINGS: dict[str, Any] = {
    "public_challenge_secret": CHALLENGE_SECRET, "public_pow_bits": POW_BITS,
    "public_form_min_delay_s": FORM_MIN_DELAY_S, "public_submit_max_form": MAX_FORM,
    "public_submit_max_pow": MAX_POW}


def challenger() -> Challenger:
    return Challenger(key=CHALLENGE_SECRET.encode(), pow_bits=POW_BITS,
                      form_min_delay_s=FORM_MIN_DELAY_S)


def aged_form_token(agency: str = AGENCY, *, age_s: float = 10.0) -> str:
    """A form token as the server issued it ``age_s`` ago (a person took that long)."""
    return challenger().issue(kind="form", purpose=f"report:{agency}",
                              now=datetime.now(UTC) - timedelta(seconds=age_s))


async def start_reports_app(apps: Apps, **overrides: Any) -> AsyncIterator[RunningApp]:
    """The app, with a supervisor of AGENCY (an agency takes reports only with a reviewer);
    it runs until the test ends (``apps``)."""
    app = await start_public_app(apps, **{**SETTINGS, **overrides})
    await make_user(app.pool, "supervisor", agency=AGENCY)
    yield app


@pytest.fixture
async def reports_app(apps: Apps) -> AsyncIterator[RunningApp]:
    async for app in start_reports_app(apps):
        yield app


@pytest.fixture
async def reports_api(reports_app: RunningApp) -> AsyncIterator[Api]:
    a = Api(reports_app)
    yield a
    await a.close()


def report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "report_type": "theft", "description": "My bicycle was taken from the rack overnight.",
        "location": {"address": f"4817 {STREET}"}}
    body.update(overrides)
    return body


async def proof(client: httpx.AsyncClient, agency: str = AGENCY) -> dict[str, str]:
    r = await client.get(f"/public/{agency}/reports/challenge")
    assert r.status_code == 200, r.text
    ch = r.json()
    assert ch["difficulty_bits"] == POW_BITS
    return {"challenge": ch["challenge"], "solution": solve(ch["challenge"], POW_BITS)}


async def file_report(client: httpx.AsyncClient, agency: str = AGENCY,
                      **overrides: Any) -> httpx.Response:
    body = report_body(**overrides)
    body.setdefault("proof", await proof(client, agency))
    return await client.post(f"/public/{agency}/reports", json=body)
