"""Retention of the public's contact data (cad.retention, CAD_CONTACT_RETENTION_DAYS): the
sweep erases the contact of online reports and feedback cases decided longer ago than the
period, in batches, stamps when, audits once per sweep, and never touches a case still open
or decided recently. Staff reads after erasure: tests/incidents/reports/test_contact_erasure.py
and tests/incidents/feedback/test_feedback_retention.py."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from cad import retention
from cad.settings import Settings
from cad.wiring import CONTACT_ERASERS
from incidents.feedback.service import new_reference
from incidents.reports.service import new_tracking
from tests.support import running_app

DAYS = 365  # the default
PAST = timedelta(days=DAYS, minutes=5)      # decided just past the period
INSIDE = timedelta(days=DAYS, minutes=-5)   # decided just inside it
CONTACT = ("Odalys Brimblecombe", "+1 415 555 0142", "odalys.b@example.org")


async def _report(pool: asyncpg.Pool, *, status: str, decided_ago: timedelta | None,
                  contact: tuple[str | None, str | None, str | None] = CONTACT) -> int:
    now = datetime.now(UTC)
    decided = None if decided_ago is None else now - decided_ago
    submitted = (decided or now) - timedelta(days=2)
    rid: int = await pool.fetchval(
        "INSERT INTO public_reports (tracking, agency, report_type, description, language,"
        " contact_name, contact_phone, contact_email, via, status, submitted_at, decided_at,"
        " decided_by, accepted_as, public_reason)"
        " VALUES ($1, 'SFFD', 'theft', 'A bicycle was taken.', 'en', $2, $3, $4, 'pow', $5, $6,"
        " $7, $8, $9, $10) RETURNING id",
        new_tracking(), *contact, status, submitted, decided,
        None if status == "received" else "sup", "record" if status == "accepted" else None,
        "not a police matter" if status == "declined" else None)
    return rid


async def _case(pool: asyncpg.Pool, *, status: str, resolved_ago: timedelta | None = None,
                closed_ago: timedelta | None = None, received_ago: timedelta = timedelta(days=900),
                contact: tuple[str | None, str | None, str | None] = CONTACT) -> int:
    now = datetime.now(UTC)
    received = now - received_ago
    fid: int = await pool.fetchval(
        "INSERT INTO feedback (reference, agency, category, description, contact_name,"
        " contact_phone, contact_email, language, status, assigned_to, acknowledge_due_at,"
        " resolve_due_at, outcome, received_at, resolved_at, closed_at)"
        " VALUES ($1, 'SFFD', 'complaint', 'Rude at the counter.', $2, $3, $4, 'en', $5, $6,"
        " $7, $7, $8, $7, $9, $10) RETURNING id",
        new_reference(), *contact, status, None if status == "received" else "sup", received,
        "unfounded" if status in ("resolved", "closed") else None,
        None if resolved_ago is None else now - resolved_ago,
        None if closed_ago is None else now - closed_ago)
    return fid


async def _seed(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    """Cases of every kind; ``due`` are the ones a 365-day sweep erases."""
    reports = {
        "accepted_long_ago": await _report(pool, status="accepted", decided_ago=timedelta(days=800)),
        "declined_just_past": await _report(pool, status="declined", decided_ago=PAST),
        "accepted_2_past": await _report(pool, status="accepted", decided_ago=PAST),
        "declined_just_inside": await _report(pool, status="declined", decided_ago=INSIDE),
        "accepted_recently": await _report(pool, status="accepted", decided_ago=timedelta(days=10)),
        # filed years ago and never decided: an undecided case keeps its contact
        "never_decided": await _report(pool, status="received", decided_ago=None),
        # a phone number only: any contact column counts
        "phone_only_past": await _report(pool, status="declined", decided_ago=PAST,
                                         contact=(None, "415 555 0100", None)),
        # no contact given: nothing to erase, and not stamped as erased
        "no_contact_past": await _report(pool, status="declined", decided_ago=PAST,
                                         contact=(None, None, None)),
    }
    cases = {
        "closed_long_ago": await _case(pool, status="closed", closed_ago=timedelta(days=700)),
        "resolved_just_past": await _case(pool, status="resolved", resolved_ago=PAST),
        "resolved_just_inside": await _case(pool, status="resolved", resolved_ago=INSIDE),
        # resolved long ago but closed recently: decided at the closure
        "closed_recently_after_resolution": await _case(
            pool, status="closed", resolved_ago=timedelta(days=800), closed_ago=timedelta(days=3)),
        "resolved_then_closed_past": await _case(
            pool, status="closed", resolved_ago=timedelta(days=900), closed_ago=PAST),
        # open for years (overdue): never touched
        "investigating_for_years": await _case(pool, status="investigating"),
        "received_for_years": await _case(pool, status="received"),
        "no_contact_closed_past": await _case(pool, status="closed", closed_ago=PAST,
                                              contact=(None, None, None)),
    }
    return {"reports": reports, "feedback": cases}


REPORTS_DUE = {"accepted_long_ago", "declined_just_past", "accepted_2_past", "phone_only_past"}
FEEDBACK_DUE = {"closed_long_ago", "resolved_just_past", "resolved_then_closed_past"}


async def _state(pool: asyncpg.Pool, table: str, ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT id, contact_name, contact_phone, contact_email, contact_erased_at, description,"
        f" status FROM {table} WHERE id = ANY($1)", list(ids.values()))
    by_id = {r["id"]: dict(r) for r in rows}
    return {name: by_id[i] for name, i in ids.items()}


def _erased(state: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, r in state.items() if r["contact_erased_at"] is not None}


async def _erase_audits(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT actor, target, outcome, details FROM audit_log WHERE action = 'contact.erase'"
        " ORDER BY seq"))


async def test_contact_of_cases_decided_long_ago_is_erased_and_nothing_else(pool, settings):
    seeded = await _seed(pool)
    kept_columns = ("SELECT id, agency, status, description, decided_at FROM public_reports"
                    " ORDER BY id")
    before = [dict(r) for r in await pool.fetch(kept_columns)]
    started = datetime.now(UTC)
    # batches of 2: the sweep loops until a batch comes back short
    result = await retention.prune(pool, settings, erasers=CONTACT_ERASERS, batch=2)
    assert result.contacts == {"public_reports": 4, "feedback": 3}

    reports = await _state(pool, "public_reports", seeded["reports"])
    assert _erased(reports) == REPORTS_DUE
    for name, row in reports.items():
        contact = (row["contact_name"], row["contact_phone"], row["contact_email"])
        if name in REPORTS_DUE:
            assert contact == (None, None, None), name
            assert started - timedelta(seconds=5) <= row["contact_erased_at"] <= datetime.now(UTC)
        elif name != "no_contact_past":
            assert contact == CONTACT, name

    # the reports themselves stay as they were
    assert [dict(r) for r in await pool.fetch(kept_columns)] == before

    cases = await _state(pool, "feedback", seeded["feedback"])
    assert _erased(cases) == FEEDBACK_DUE
    for name, row in cases.items():
        contact = (row["contact_name"], row["contact_phone"], row["contact_email"])
        if name in FEEDBACK_DUE:
            assert contact == (None, None, None), name
        elif name != "no_contact_closed_past":
            assert contact == CONTACT, name
        assert row["description"] == "Rude at the counter."

    # one audit record for the sweep, by the system, with the counts
    [audit] = await _erase_audits(pool)
    assert (audit["actor"], audit["target"], audit["outcome"]) == (
        "system:retention", None, "success")
    assert audit["details"] == {"public_reports": 4, "feedback": 3,
                                            "retention_days": DAYS}

    # idempotent: a second sweep finds nothing, and writes no audit record
    again = await retention.prune(pool, settings, erasers=CONTACT_ERASERS, batch=2)
    assert again == retention.PruneResult(ran=True, contacts={"public_reports": 0, "feedback": 0})
    assert _erased(await _state(pool, "public_reports", seeded["reports"])) == REPORTS_DUE
    assert len(await _erase_audits(pool)) == 1


async def test_zero_keeps_contact_data_for_ever_and_a_shorter_period_erases_more(pool, settings):
    seeded = await _seed(pool)
    forever = settings.model_copy(update={"contact_retention_days": 0})
    result = await retention.prune(pool, forever, erasers=CONTACT_ERASERS)
    assert (result.ran, result.contacts) == (True, {"public_reports": 0, "feedback": 0})
    assert _erased(await _state(pool, "public_reports", seeded["reports"])) == set()
    assert _erased(await _state(pool, "feedback", seeded["feedback"])) == set()
    assert await _erase_audits(pool) == []

    week = settings.model_copy(update={"contact_retention_days": 7})
    result = await retention.prune(pool, week, erasers=CONTACT_ERASERS)
    assert result.contacts == {"public_reports": 6, "feedback": 4}
    assert _erased(await _state(pool, "public_reports", seeded["reports"])) == REPORTS_DUE | {
        "declined_just_inside", "accepted_recently"}
    # closed 3 days ago is inside a week still; the open cases stay open with their contact
    assert _erased(await _state(pool, "feedback", seeded["feedback"])) == FEEDBACK_DUE | {
        "resolved_just_inside"}
    [audit] = await _erase_audits(pool)
    assert audit["details"]["retention_days"] == 7


async def test_no_erasure_while_another_worker_sweeps(pool, settings):
    seeded = await _seed(pool)
    async with pool.acquire() as other:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", retention.SWEEP_LOCK)
        try:
            result = await retention.prune(pool, settings, erasers=CONTACT_ERASERS)
            assert result == retention.PruneResult(ran=False)
        finally:
            await other.execute("SELECT pg_advisory_unlock($1)", retention.SWEEP_LOCK)
    assert _erased(await _state(pool, "public_reports", seeded["reports"])) == set()
    result = await retention.prune(pool, settings, erasers=CONTACT_ERASERS)
    assert result.contacts == {"public_reports": 4, "feedback": 3}


async def test_the_sweeper_logs_the_erasures(pool, settings):
    await _seed(pool)
    stop = asyncio.Event()
    stop.set()  # one round, then return
    with capture_logs() as logs:
        await asyncio.wait_for(
            retention.run_sweeper(pool, settings, stop, erasers=CONTACT_ERASERS), timeout=30)
    [line] = [x for x in logs if x["event"] == "retention_pruned"]
    assert line["contacts_erased"] == {"public_reports": 4, "feedback": 3}


async def test_the_server_sweeps_contacts_at_start(pool, settings):
    seeded = await _seed(pool)
    async with running_app(settings):
        pass  # the sweeper's first round runs at start; stopping waits for it
    assert _erased(await _state(pool, "public_reports", seeded["reports"])) == REPORTS_DUE
    assert _erased(await _state(pool, "feedback", seeded["feedback"])) == FEEDBACK_DUE
    [audit] = await _erase_audits(pool)
    assert audit["details"] == {"public_reports": 4, "feedback": 3, "retention_days": DAYS}


async def test_cli_prune_reports_the_erasures(pool, database_url):
    await _seed(pool)
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_LOG_FORMAT": "json"}
    env.pop("CAD_CONTACT_RETENTION_DAYS", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cad", "db", "prune", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    assert ("erased the contact of 4 online reports and 3 feedback cases (decided more than "
            "365 days ago)") in " ".join(stdout.decode().split())
    assert len(await _erase_audits(pool)) == 1


@pytest.mark.parametrize("value", ["-1", "-365", "36501"])
def test_a_retention_out_of_range_is_refused_naming_the_variable(
        value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAD_CONTACT_RETENTION_DAYS", value)
    with pytest.raises(ValidationError, match=(
            rf"CAD_CONTACT_RETENTION_DAYS is days from 1 to 36500, or 0 to keep contact data "
            rf"for ever; got {value}")):
        Settings()


def test_retention_days_default_and_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAD_CONTACT_RETENTION_DAYS", raising=False)
    assert Settings().contact_retention_days == 365
    monkeypatch.setenv("CAD_CONTACT_RETENTION_DAYS", "0")
    assert Settings().contact_retention_days == 0


async def test_cad_refuses_to_start_with_a_negative_retention(database_url):
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "CAD_CONTACT_RETENTION_DAYS": "-30"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cad", "db", "prune", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode != 0
    assert "CAD_CONTACT_RETENTION_DAYS is days from 1 to 36500" in stderr.decode()
