"""Idempotent writes: a retried request with the same Idempotency-Key gets the first answer.

The key row is inserted in the same transaction as the change it guards. A concurrent
retry blocks on the key's unique index until the first attempt commits (and then replays
its stored answer) or rolls back (and then runs itself). A key reused with a different
request body is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from cad.errors import Invalid

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: Any


def request_hash(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not (1 <= len(key) <= MAX_KEY_LENGTH) or not key.isprintable():
        raise Invalid(f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable characters",
                      field=f"header.{IDEMPOTENCY_HEADER}")
    return key


async def claim(conn: asyncpg.Connection, *, scope: str, key: str, req_hash: str) -> StoredAnswer | None:
    """None: this request runs (call :func:`record` before commit). Else: the stored answer."""
    inserted = await conn.fetchval(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response) "
        "VALUES ($1, $2, $3, 0, 'null'::jsonb) ON CONFLICT DO NOTHING RETURNING 1",
        scope, key, req_hash)
    if inserted:
        return None
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = $1 AND key = $2",
        scope, key)
    assert row is not None
    if row["request_hash"] != req_hash:
        raise Invalid(f"{IDEMPOTENCY_HEADER} {key!r} was already used for a different request",
                      field=f"header.{IDEMPOTENCY_HEADER}")
    return StoredAnswer(row["status_code"], row["response"])


async def record(conn: asyncpg.Connection, *, scope: str, key: str, status_code: int, body: Any) -> None:
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE scope = $1 AND key = $2",
        scope, key, status_code, body)


async def prune(conn: asyncpg.Connection, *, older_than_s: float) -> int:
    result = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < clock_timestamp() - make_interval(secs => $1)",
        older_than_s)
    return int(result.split()[-1])
