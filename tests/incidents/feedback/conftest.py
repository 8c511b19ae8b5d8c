"""Feedback tests run on the real app with a cheap proof of work (``fb_api``, or
``feedback_app(**settings)`` for deadlines and budgets of their own); the public side is an
anonymous client that solves the challenge like any script would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from incidents.public.challenge import solve
from tests.auth import Api, make_user
from tests.dispatch_fixtures import make_settings
from tests.support import running_app

COMPLAINT: dict[str, Any] = {
    "category": "complaint", "subcategory": "conduct",
    "description": "The officer at the corner was rude to my neighbour Ximena Quarrington.",
    "incident_number": "SFFD-26-000001", "unit": "E07",
    "name": "Ximena Quarrington", "email": "ximena.q@example.org", "phone": "+1 415 555 0199"}
# A cheap proof of work (256 hashes on average) and no wait for form tokens: the challenge's
# own tests (tests/incidents/public/test_challenge.py) cover difficulty and delay.
SETTINGS: dict[str, Any] = {"public_pow_bits": 8, "public_form_min_delay_s": 0.0}


async def proof(client: httpx.AsyncClient, agency: str = "SFFD") -> dict[str, str]:
    r = await client.get(f"/public/{agency}/feedback/challenge")
    assert r.status_code == 200, r.text
    challenge = r.json()
    return {"challenge": challenge["challenge"],
            "solution": solve(challenge["challenge"], challenge["difficulty_bits"])}


async def submit(base_url: str, body: dict[str, Any] | None = None, *, agency: str = "SFFD",
                 **fields: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as anon:
        return await anon.post(f"/public/{agency}/feedback", json={
            **(body if body is not None else COMPLAINT), "proof": await proof(anon, agency),
            **fields})


async def submitted(base_url: str, body: dict[str, Any] | None = None, **fields: Any
                    ) -> dict[str, Any]:
    r = await submit(base_url, body, **fields)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def case_id(pool: Any, reference: str) -> int:
    return int(await pool.fetchval("SELECT id FROM feedback WHERE reference = $1", reference))


AppMaker = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def feedback_app(database_url: str, tmp_path: Path) -> AppMaker:
    """``async with feedback_app(**settings) as api:`` the real app with SETTINGS and those."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(database_url, tmp_path, **{**SETTINGS, **overrides})
        async with running_app(settings) as app:
            # an agency takes feedback only when someone works its queue
            await make_user(app.pool, "supervisor", agency="SFFD")
            api = Api(app)
            try:
                yield api
            finally:
                await api.close()

    return start


@pytest.fixture
async def fb_api(feedback_app: AppMaker) -> AsyncIterator[Api]:
    async with feedback_app() as api:
        yield api
