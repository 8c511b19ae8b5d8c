"""Witnesses of the audit chain head, kept outside the database.

The hash chain shows any edit, insertion, reordering or gap *inside* the retained trail, but
an attacker with database rights who deletes the newest entries (or rewrites the tail and
recomputes every hash after some point) leaves a shorter chain that is still valid. So every
``audit_witness_interval_s`` a worker records the chain head (seq, hash) where the database
cannot reach it:

- a structured log line ``audit_head`` (log shipping puts it in the SIEM, another trust
  domain); and
- one JSON line appended to ``audit_witness_path`` (default ``<data_dir>/audit-witness.jsonl``;
  point it at a write-once or remote mount to make it worth more than the log).

``cad audit verify`` (and GET /api/v1/audit/verify) then check each witness against the
chain: a witnessed position beyond the current head is a truncation, a witnessed position
whose hash changed is a rewrite. Entries written after the newest witness are not covered:
the window is the interval (60 s by default).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog

from cad.settings import Settings

log = structlog.get_logger("cad.security.witness")


@dataclass(frozen=True)
class Witness:
    seq: int
    hash: str
    at: str | None = None


def configured_path(settings: Settings) -> Path:
    return settings.audit_witness_path or settings.data_dir / "audit-witness.jsonl"


def read_configured(settings: Settings) -> list[Witness]:
    path = configured_path(settings)
    return read(path) if path.exists() else []


async def chain_head(conn: asyncpg.Connection | asyncpg.Pool) -> Witness | None:
    row = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    return Witness(row["seq"], row["hash"]) if row else None


def append(path: Path, w: Witness) -> None:
    """One line, appended with O_APPEND (atomic for a line this short, so workers sharing the
    file do not interleave) and fsynced: a witness that is not durable witnesses nothing."""
    line = orjson.dumps({"seq": w.seq, "hash": w.hash, "at": w.at}) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> list[Witness]:
    """Every witness in the file, one per position (the last written wins: they agree unless
    the chain was rewritten between two witnesses, which verify reports either way). A line
    that does not parse (a torn write at a crash) is skipped."""
    by_seq: dict[int, Witness] = {}
    with path.open("rb") as fh:
        for line in fh:
            try:
                d: Any = orjson.loads(line)
                w = Witness(int(d["seq"]), str(d["hash"]), d.get("at"))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            by_seq[w.seq] = w
    return [by_seq[s] for s in sorted(by_seq)]


async def witness_once(pool: asyncpg.Pool, path: Path, last: Witness | None) -> Witness | None:
    """Record the head if it moved since ``last``; returns the head."""
    head = await chain_head(pool)
    if head is None:
        return None
    if last is not None and (head.seq, head.hash) == (last.seq, last.hash):
        return last
    head = Witness(head.seq, head.hash, datetime.now(UTC).isoformat())
    await asyncio.to_thread(append, path, head)
    log.info("audit_head", seq=head.seq, hash=head.hash)
    return head


async def run(pool: asyncpg.Pool, path: Path, interval_s: float) -> None:
    last: Witness | None = None
    while True:
        try:
            last = await witness_once(pool, path, last)
        except asyncio.CancelledError:
            raise
        except Exception:  # retried next round
            log.exception("audit_witness_failed")
        await asyncio.sleep(interval_s)
