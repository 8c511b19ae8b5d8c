"""The audit trail: independent verification of the hash chain, SIEM export, retention
pruning and the query behind GET /api/v1/audit.

The hash is recomputed here from the stored fields, not by the database function that wrote
it, so a replaced function cannot vouch for rows it forged.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
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
    # edited | deleted | inserted | reordered | broken | truncated | rewritten | anchor | retention
    kind: str
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


async def verify(conn: asyncpg.Connection, witnesses: Sequence[Witness] = (), *,
                 retention_days: int | None = None) -> VerifyResult:
    """Walk the chain from the first retained entry; name every edited, deleted, inserted or
    reordered entry, and every anchor that audit_prune did not write or that cut entries
    younger than ``retention_days`` (None: the database's audit_policy). Runs in one
    REPEATABLE READ snapshot so concurrent appends don't race it.

    ``witnesses`` (chain heads recorded outside the database, cad.security.witness) catch
    what the chain alone cannot: the newest entries deleted (truncated), the tail rewritten
    with recomputed hashes (rewritten), entries witnessed after a prune's cutoff pruned."""
    result = VerifyResult()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if retention_days is None:
            retention_days = await conn.fetchval("SELECT retention_days FROM audit_policy")
        await _check_anchors(conn, result, witnesses, retention_days or 0)
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


# A witness is taken while appends may be in flight: an entry stamped (clock_timestamp) before
# the witness read can commit after it. Far longer than any transaction may run (the pool's
# command timeout is 30 s), so an entry past a witness was stamped after witness.at - this.
WITNESS_COMMIT_SLACK = timedelta(seconds=120)


async def _check_anchors(conn: asyncpg.Connection, result: VerifyResult,
                         witnesses: Sequence[Witness], retention_days: int) -> None:
    """Each anchor must be vouched for by the chained audit.prune entry audit_prune wrote with
    it (unless a later prune removed that entry), its cutoff must be at least
    ``retention_days`` before that entry, and no entry witnessed after the cutoff was pruned."""
    anchors = await conn.fetch(
        "SELECT id, seq, hash, pruned, cutoff, entry_seq FROM audit_chain_anchor ORDER BY seq, id")
    if not anchors:
        return
    entries = await conn.fetch(
        "SELECT id, seq, at, actor, action, target, outcome, request_id, client_addr, "
        "details::text AS details_text, prev_hash, hash FROM audit_log "
        "WHERE action = 'audit.prune' ORDER BY seq")
    by_through: dict[int, asyncpg.Record] = {}
    for e in entries:
        through = orjson.loads(e["details_text"]).get("through_seq")
        if isinstance(through, int) and _recompute(e) == e["hash"]:
            by_through.setdefault(through, e)
    newest = anchors[-1]["seq"]
    previous = 0
    dated = [(w, _parse_at(w.at)) for w in witnesses]
    problems = result.problems

    def add(kind: str, seq: int, detail: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(kind, seq, None, detail))

    for a in anchors:
        where = f"anchor id {a['id']} (pruned through seq {a['seq']})"
        if a["seq"] <= previous:
            add("anchor", a["seq"], f"{where} does not follow the anchor before it (seq {previous})")
        previous = max(previous, a["seq"])
        e = by_through.get(a["seq"])
        if e is None or (a["entry_seq"] is not None and e["seq"] != a["entry_seq"]):
            # Its entry comes after the cut; a later prune through that position removed it.
            # (An anchor from before entry_seq existed: any but the newest.)
            entry_pruned = (a["seq"] < a["entry_seq"] <= newest if a["entry_seq"] is not None
                            else a["seq"] < newest)
            if not entry_pruned:
                add("anchor", a["seq"],
                    f"{where} has no audit.prune entry in the chain: entries through seq "
                    f"{a['seq']} were removed outside audit_prune and the anchor forged")
            continue
        d = orjson.loads(e["details_text"])
        cutoff = _parse_at(d.get("cutoff"))
        if (d.get("anchor_hash") != a["hash"] or d.get("deleted") != a["pruned"]
                or cutoff != a["cutoff"]):
            add("anchor", a["seq"], f"{where} disagrees with the audit.prune entry seq "
                                    f"{e['seq']} that recorded it (hash, count or cutoff)")
            continue
        if a["cutoff"] > e["at"] - timedelta(days=retention_days):
            add("retention", a["seq"],
                f"{where}: the prune at seq {e['seq']} ({e['at'].isoformat()}) cut entries "
                f"up to {a['cutoff'].isoformat()}, younger than the {retention_days}-day retention")
        for w, at in dated:
            if at is not None and w.seq < a["seq"] and at - WITNESS_COMMIT_SLACK > a["cutoff"]:
                add("retention", a["seq"],
                    f"{where}: the chain ended at seq {w.seq} when witnessed at {w.at}, after "
                    f"the cutoff {a['cutoff'].isoformat()}, so entries written after the "
                    f"cutoff were pruned")
                break


def _parse_at(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


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

class RetentionRefused(ValueError):
    """The database refused the cutoff: younger than its retention floor (audit_policy)."""


async def prune(conn: asyncpg.Connection, *, retention_days: int) -> int:
    """Delete entries older than ``retention_days`` (a prefix of the chain) through the
    database's one pruning path, audit_prune (0007_db_roles.sql): it refuses a cutoff younger
    than the retention floor in audit_policy, anchors the chain at the last deleted entry and
    appends its own chained audit.prune entry. Returns the number deleted."""
    try:
        deleted: int = await conn.fetchval(
            "SELECT audit_prune(clock_timestamp() - make_interval(days => $1), $2)",
            retention_days, "retention")
    except asyncpg.InvalidParameterValueError as exc:
        raise RetentionRefused(str(exc)) from exc
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
