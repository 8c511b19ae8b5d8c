"""Training mode: agencies that are training namespaces (``CAD_TRAINING_AGENCIES``).

A training agency is an agency like any other: scoping keeps its incidents, units and
positions to the users who act for it (trainees). What scoping cannot do is done with this
set: rows of a training agency are marked ``training`` when written (triggers of migration
0017 read ``training_agencies``, which ``sync`` makes equal to the setting), and every
surface that shows more than one agency leaves them out unless one is named
(``cad.security.scope.Scope.hidden``), public feeds and alerts always.

``reset`` deletes a training agency's exercise (``cad training reset``, POST
/api/v1/training/reset): the SQL function of migration 0021 does the deleting, in the
transaction that also records it in the audit trail and tells every worker and board through
a ``training.reset`` event (README, "Training mode")."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import asyncpg

from cad.errors import Invalid
from cad.uow import RequestContext, retry_transient, unit_of_work


async def sync(pool_or_conn: asyncpg.Pool | asyncpg.Connection, agencies: Iterable[str]) -> None:
    """Make ``training_agencies`` the configured set (at each server start and ``cad``
    command that opens the database). Rows already written keep the mark they got."""
    wanted = sorted(set(agencies))
    if not wanted and not await pool_or_conn.fetchval(
            "SELECT to_regclass('training_agencies') IS NOT NULL"):
        return  # a database not migrated yet, and nothing to record
    await pool_or_conn.execute(
        """WITH gone AS (DELETE FROM training_agencies WHERE agency <> ALL($1::text[]))
           INSERT INTO training_agencies (agency) SELECT unnest($1::text[])
           ON CONFLICT (agency) DO NOTHING""", wanted)


# --- reset: deleting an exercise ---------------------------------------------------------------

ROSTER_KEEP = "keep"
ROSTER_WIPE = "wipe"


@dataclass(frozen=True)
class ResetResult:
    agency: str
    roster: Literal["kept", "wiped"]
    counts: dict[str, int]     # rows deleted (or units reset) per table
    unit_ids: list[str]        # the agency's units, reset or deleted, and units released
    incident_ids: list[int]    # the incidents deleted
    event_id: int | None       # the training.reset event


async def refusal(conn: asyncpg.Connection, *, agency: str, configured: Iterable[str]) -> str | None:
    """Why ``agency`` may not be reset (None: it may): it must be a training agency both in
    this process's setting and in the database (``training_agencies``, which the SQL function
    checks again)."""
    listed = sorted(set(configured))
    setting = f"CAD_TRAINING_AGENCIES: {', '.join(listed) if listed else 'none'}"
    if agency in listed and await conn.fetchval("SELECT cad_is_training($1)", agency):
        return None
    if agency in listed:
        return (f"{agency} is in CAD_TRAINING_AGENCIES but not recorded as a training agency in "
                "this database (training_agencies): start the servers with the same setting")
    known = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM units WHERE agency = $1)
               OR EXISTS (SELECT 1 FROM stations WHERE agency = $1)
               OR EXISTS (SELECT 1 FROM incidents WHERE agency = $1)
               OR EXISTS (SELECT 1 FROM users WHERE $1 = ANY (agencies))""", agency)
    if not known:
        return (f"no agency {agency}: nothing belongs to it and it is not a training agency "
                f"({setting})")
    return (f"{agency} is not a training agency ({setting}): a reset deletes training "
            "exercises only")


@retry_transient
async def reset(*, pool: asyncpg.Pool, ctx: RequestContext, agency: str,
                configured: Iterable[str], roster: str = ROSTER_KEEP,
                field: str = "agency") -> ResetResult:
    """Delete the exercise of training agency ``agency`` in one transaction (the SQL function
    ``training_reset``, migrations/0021_training_reset.sql, says what goes and what stays),
    with its audit record and a ``training.reset`` event in the same transaction. The audit
    trail is never deleted; a refused reset is recorded too (outcome failure). ``field`` is
    the request field a refusal names."""
    if roster not in (ROSTER_KEEP, ROSTER_WIPE):
        raise Invalid(f"roster must be {ROSTER_KEEP} or {ROSTER_WIPE}", field="roster")
    wipe = roster == ROSTER_WIPE
    done: Literal["kept", "wiped"] = "wiped" if wipe else "kept"
    async with unit_of_work(pool, ctx) as uow:
        record = uow.audit("training.reset", target=f"agency:{agency}",
                           details={"agency": agency, "roster": done})
        why = await refusal(uow.conn, agency=agency, configured=configured)
        if why is not None:
            raise Invalid(why, field=field)
        raw = await uow.conn.fetchval("SELECT training_reset($1, $2, $3)", agency, wipe, ctx.actor)
        out = raw if isinstance(raw, dict) else json.loads(raw)
        counts = {k: int(v) for k, v in sorted(out["counts"].items())}
        record.details["counts"] = counts
        unit_ids = sorted({*out["unit_ids"], *out["released_unit_ids"]})
        incident_ids = [int(i) for i in out["incident_ids"]]
        uow.emit("training.reset", aggregate=("training", agency), agency=agency, data={
            "agency": agency, "roster": done, "unit_ids": unit_ids,
            "incident_ids": incident_ids, "counts": counts})
    return ResetResult(agency=agency, roster=done, counts=counts,
                       unit_ids=unit_ids, incident_ids=incident_ids,
                       event_id=uow.event_ids[0] if uow.event_ids else None)
