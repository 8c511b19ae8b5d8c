"""Training mode: agencies that are training namespaces (``CAD_TRAINING_AGENCIES``).

A training agency is an agency like any other: scoping keeps its incidents, units and
positions to the users who act for it (trainees). What scoping cannot do is done with this
set: rows of a training agency are marked ``training`` when written (triggers of migration
0017 read ``training_agencies``, which ``sync`` makes equal to the setting), and every
surface that shows more than one agency leaves them out unless one is named
(``cad.security.scope.Scope.hidden``), public feeds and alerts always."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


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
