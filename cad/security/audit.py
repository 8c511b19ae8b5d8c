"""The audit trail: independent verification of the hash chain, SIEM export, retention
pruning and the query behind GET /api/v1/audit.

The hash is recomputed here from the stored fields, not by the database function that wrote
it, so a replaced function cannot vouch for rows it forged.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import asyncpg
import orjson

from cad.security.witness import Witness

GENESIS_HASH = "0" * 64
PAGE_ROWS = 2000
# A link that points forward to an entry at most this many positions later is reported as a
# reordering; farther than that, as a broken link.
REORDER_LOOKAHEAD = PAGE_ROWS
MAX_PROBLEMS = 100


def _lp(value: str | None) -> str:
    if value is None:
        return "-"
    return f"{len(value.encode())}:{value}"


def format_at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def entry_hash(prev_hash: str, *, at: datetime, actor: str, action: str, target: str | None,
               outcome: str, request_id: str | None, client_addr: str | None,
               details_text: str) -> str:
    """Must equal audit_entry_hash() in migrations/0002_security.sql."""
    material = (prev_hash + _lp(format_at(at)) + _lp(actor) + _lp(action) + _lp(target)
                + _lp(outcome) + _lp(request_id) + _lp(client_addr) + _lp(details_text))
    return hashlib.sha256(material.encode()).hexdigest()


_ROWS = """
SELECT id, seq, at, actor, action, target, outcome, request_id, client_addr,
       details::text AS details_text, prev_hash, hash
FROM audit_log WHERE (seq, id) > ($1, $2) ORDER BY seq, id LIMIT $3
"""


@dataclass
class Problem:
    kind: str  # edited | deleted | inserted | reordered | broken | truncated | rewritten
    seq: int
    id: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "id": self.id, "detail": self.detail}


@dataclass
class VerifyResult:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str = GENESIS_HASH
    anchor_seq: int = 0
    witnesses_checked: int = 0
    witnessed_through: int | None = None  # the newest witnessed position (cad.security.witness)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_seq": self.first_seq,
                "last_seq": self.last_seq, "head_hash": self.head_hash,
                "anchor_seq": self.anchor_seq, "witnesses_checked": self.witnesses_checked,
                "witnessed_through": self.witnessed_through,
                "problems": [p.as_dict() for p in self.problems]}


async def _anchor(conn: asyncpg.Connection) -> tuple[int, str]:
    row = await conn.fetchrow("SELECT seq, hash FROM audit_chain_anchor ORDER BY seq DESC LIMIT 1")
    return (row["seq"], row["hash"]) if row else (0, GENESIS_HASH)


async def _rows(conn: asyncpg.Connection, after_seq: int) -> AsyncIterator[asyncpg.Record]:
    """Entries after ``after_seq`` in chain order, paged by (seq, id) so that a duplicated
    position (an inserted entry) is seen too."""
    seq, id_ = after_seq, 2**62  # strictly after after_seq
    while True:
        rows = await conn.fetch(_ROWS, seq, id_, PAGE_ROWS)
        for r in rows:
            yield r
        if len(rows) < PAGE_ROWS:
            return
        seq, id_ = rows[-1]["seq"], rows[-1]["id"]


def _recompute(r: asyncpg.Record) -> str:
    return entry_hash(r["prev_hash"], at=r["at"], actor=r["actor"], action=r["action"],
                      target=r["target"], outcome=r["outcome"], request_id=r["request_id"],
                      client_addr=r["client_addr"], details_text=r["details_text"])


async def verify(conn: asyncpg.Connection, witnesses: Sequence[Witness] = ()) -> VerifyResult:
    """Walk the chain from the first retained entry; name every edited, deleted, inserted or
    reordered entry. Runs in one REPEATABLE READ snapshot so concurrent appends don't race it.

    ``witnesses`` (chain heads recorded outside the database, cad.security.witness) catch
    what the chain alone cannot: the newest entries deleted (truncated) or the tail rewritten
    with recomputed hashes (rewritten)."""
    result = VerifyResult()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        anchor_seq, anchor_hash = await _anchor(conn)
        result.anchor_seq = anchor_seq
        state = _State(anchor_seq=anchor_seq, anchor_hash=anchor_hash)
        rows: list[asyncpg.Record] = []
        async for r in _rows(conn, anchor_seq):
            rows.append(r)
            if len(rows) >= 2 * REORDER_LOOKAHEAD:
                _check(rows[:REORDER_LOOKAHEAD], rows[REORDER_LOOKAHEAD:], result, state)
                rows = rows[REORDER_LOOKAHEAD:]
        _check(rows, [], result, state)
        if witnesses:
            await _check_witnesses(conn, witnesses, result, anchor_hash)
    return result


async def _check_witnesses(conn: asyncpg.Connection, witnesses: Sequence[Witness],
                           result: VerifyResult, anchor_hash: str) -> None:
    result.witnesses_checked = len(witnesses)
    result.witnessed_through = max(w.seq for w in witnesses)
    retained = [w.seq for w in witnesses if w.seq > result.anchor_seq]
    stored = {r["seq"]: r["hash"] for r in await conn.fetch(
        "SELECT DISTINCT ON (seq) seq, hash FROM audit_log WHERE seq = ANY($1::bigint[]) "
        "ORDER BY seq, id", retained)}
    head = result.last_seq if result.last_seq is not None else result.anchor_seq
    beyond = [w for w in witnesses if w.seq > head]
    problems = result.problems
    if beyond:
        w = max(beyond, key=lambda x: x.seq)
        problems.append(Problem(
            "truncated", w.seq, None,
            f"entries through seq {w.seq} were witnessed{_when(w)} but the chain now ends at "
            f"seq {head}: the newest {w.seq - head} or more entries were deleted"))
    for w in witnesses:
        if len(problems) >= MAX_PROBLEMS or w.seq > head:
            continue
        if w.seq < result.anchor_seq:
            continue  # pruned under the retention policy
        have = anchor_hash if w.seq == result.anchor_seq else stored.get(w.seq)
        if have is None:
            continue  # a gap inside the chain: the walk has named it
        if have != w.hash:
            problems.append(Problem(
                "rewritten", w.seq, None,
                f"entry seq {w.seq} had hash {w.hash[:16]}...{_when(w)}, now {have[:16]}...: the "
                f"chain from there on was rewritten with recomputed hashes"))


def _when(w: Witness) -> str:
    return f" at {w.at}" if w.at else ""


@dataclass
class _State:
    anchor_seq: int
    anchor_hash: str
    prev: asyncpg.Record | None = None
    prev_prev_hash: str | None = None   # stored hash of the entry before prev
    skip_links_until: int = -1          # positions whose broken link a reorder explains


def _check(rows: list[asyncpg.Record], lookahead: list[asyncpg.Record], result: VerifyResult,
           state: _State) -> None:
    window = rows + lookahead
    later: dict[str, int] = {}
    for i, r in enumerate(window):
        later.setdefault(r["hash"], i)
    problems = result.problems
    for i, r in enumerate(rows):
        position = result.entries
        result.entries += 1
        if result.first_seq is None:
            result.first_seq = r["seq"]
        prev = state.prev
        expected_prev = prev["hash"] if prev is not None else state.anchor_hash
        expected_seq = prev["seq"] + 1 if prev is not None else state.anchor_seq + 1
        content_ok = _recompute(r) == r["hash"]
        link_ok = r["prev_hash"] == expected_prev

        def add(kind: str, detail: str, row: asyncpg.Record = r) -> None:
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem(kind, row["seq"], row["id"], detail))

        if prev is not None and r["seq"] == prev["seq"]:
            add("inserted", f"entry id {r['id']} claims position {r['seq']}, which entry id "
                            f"{prev['id']} holds")
            continue  # the chain goes on from the genuine entry
        if not content_ok:
            add("edited", f"entry seq {r['seq']} (id {r['id']}) no longer matches its hash")
        elif not link_ok and position > state.skip_links_until:
            if prev is not None and r["prev_hash"] == state.prev_prev_hash:
                add("inserted", f"entry seq {prev['seq']} (id {prev['id']}) is not part of the "
                                f"chain: the entry after it links to the one before it", prev)
            elif later.get(r["prev_hash"], -1) > i:
                j = later[r["prev_hash"]]
                add("reordered", f"entry seq {r['seq']} (id {r['id']}) was written after entry "
                                 f"id {window[j]['id']}, which now sits at seq "
                                 f"{window[j]['seq']}")
                state.skip_links_until = position + (j - i) + 1
            elif r["seq"] > expected_seq:
                missing = (f"{expected_seq}" if r["seq"] == expected_seq + 1
                           else f"{expected_seq}..{r['seq'] - 1}")
                add("deleted", f"entries seq {missing} are missing before seq {r['seq']} "
                               f"(id {r['id']})")
            else:
                add("deleted", f"the entry before seq {r['seq']} (id {r['id']}) was removed or "
                               f"replaced: its link points to an entry that is not in the log")
        elif link_ok and r["seq"] != expected_seq:
            add("broken", f"seq jumps from {expected_seq - 1} to {r['seq']} although the "
                          f"hashes link")
        state.prev_prev_hash = prev["hash"] if prev is not None else None
        state.prev = r
        result.last_seq = r["seq"]
        result.head_hash = r["hash"]


# --- export ----------------------------------------------------------------------------------

def entry_dict(r: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    details = r["details"] if "details" in r else orjson.loads(r["details_text"])
    return {"seq": r["seq"], "id": r["id"], "at": r["at"].astimezone(UTC).isoformat(),
            "actor": r["actor"], "action": r["action"], "target": r["target"],
            "outcome": r["outcome"], "request_id": r["request_id"],
            "client_addr": r["client_addr"], "details": details,
            "prev_hash": r["prev_hash"], "hash": r["hash"]}


async def export(conn: asyncpg.Connection, out: TextIO, *, after_seq: int = 0,
                 since: datetime | None = None) -> int:
    """Write entries as JSON lines (one object per entry, chain fields included so the SIEM can
    re-verify and anchor the head). Returns the number written."""
    n = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for r in _rows(conn, after_seq):
            if since is not None and r["at"] < since:
                continue
            out.write(orjson.dumps(entry_dict(r)).decode() + "\n")
            n += 1
    return n


# --- retention -------------------------------------------------------------------------------

async def prune(conn: asyncpg.Connection, *, retention_days: int,
                now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Delete entries older than the retention period (a prefix of the chain) and anchor the
    chain at the last deleted entry. The pruning is itself audited."""
    from cad.uow import RequestContext, audit_now

    cutoff = now() - timedelta(days=retention_days)
    async with conn.transaction():
        # Same lock as appends: the chain head cannot move while it is cut.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK_KEY)
        last = await conn.fetchrow(
            "SELECT seq, hash FROM audit_log WHERE seq = "
            "(SELECT max(seq) FROM audit_log WHERE at < $1)", cutoff)
        if last is None:
            return 0
        await conn.execute("SET LOCAL cad.audit_retention = 'on'")
        status = await conn.execute("DELETE FROM audit_log WHERE seq <= $1", last["seq"])
        await conn.execute("SET LOCAL cad.audit_retention = 'off'")
        deleted = int(status.split()[-1])
        await conn.execute(
            "INSERT INTO audit_chain_anchor (seq, hash, pruned, cutoff) VALUES ($1, $2, $3, $4)",
            last["seq"], last["hash"], deleted, cutoff)
        await audit_now(conn, RequestContext.system("retention"), "audit.prune",
                        details={"deleted": deleted, "through_seq": last["seq"],
                                 "cutoff": cutoff.isoformat(), "anchor_hash": last["hash"]})
    return deleted


AUDIT_CHAIN_LOCK_KEY = 0x43AD_0003


# --- query -----------------------------------------------------------------------------------

async def query(conn: asyncpg.Connection, *, actor: str | None, action: str | None,
                target: str | None, outcome: str | None, since: datetime | None,
                until: datetime | None, after_seq: int, limit: int,
                agencies: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Entries matching the filters. ``agencies`` (a caller's scope; None = every entry):
    only entries whose actor is a user acting for one of them; the system's own entries and
    those of other agencies' users are not shown."""
    rows = await conn.fetch(
        "SELECT id, seq, at, actor, action, target, outcome, request_id, client_addr, details, "
        "prev_hash, hash FROM audit_log "
        "WHERE seq > $1 AND ($2::text IS NULL OR actor = $2) "
        "AND ($3::text IS NULL OR action = $3 OR action LIKE $3 || '.%') "
        "AND ($4::text IS NULL OR target = $4) AND ($5::text IS NULL OR outcome = $5) "
        "AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7) "
        "AND ($9::text[] IS NULL OR actor IN (SELECT username FROM users WHERE agencies && $9)) "
        "ORDER BY seq LIMIT $8",
        after_seq, actor, action, target, outcome, since, until, limit, agencies)
    return [entry_dict(r) for r in rows]
