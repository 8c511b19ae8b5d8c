"""Connection pool and the migration runner."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TypeVar

import asyncpg
import orjson
import structlog

log = structlog.get_logger("cad.db")
T = TypeVar("T")

# Held while migrating so that several workers starting at once migrate exactly once.
# Advisory lock keys of the project (prefix 0x43AD; tests/cad/test_retention.py checks they
# are distinct): 0001 migrations (here), 0002 event-log commit order (0001_foundation.sql),
# 0003 audit-chain append (0002_security.sql), 0004 admin bootstrap (cad.security.service),
# 0005 retention sweep (cad.retention).
MIGRATION_LOCK_KEY = 0x43AD_0001
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def shipped_migrations() -> Traversable:
    """The migrations shipped as package data of ``cad`` (``cad/migrations``, in a checkout a
    symlink to the top-level ``migrations/``): found the same way from a source tree, an
    editable install and an installed wheel, whatever the working directory."""
    return files("cad").joinpath("migrations")


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """``directory``: a folder (``Path``) or package resource; None = the shipped ones."""
    source = shipped_migrations() if directory is None else directory
    if not source.is_dir():
        raise MigrationError(f"migrations directory {source} does not exist")
    found: list[Migration] = []
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        m = _MIGRATION_NAME.match(entry.name)
        if not m:
            raise MigrationError(f"migration file {entry.name} must be named NNNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, format="text",
        )


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


async def _release(conn: asyncpg.Connection) -> None:
    """On return to the pool. The default (RESET ALL, UNLISTEN *, CLOSE ALL, unlock all) costs
    a round trip per checkout, measured as ~10% of the dispatch benchmark's server time;
    pooled sessions here carry no state (locks and settings are transaction-scoped, LISTEN
    runs on dedicated connections), so only an abandoned transaction needs undoing."""
    if getattr(conn, "_listeners", None):  # a LISTEN on a pooled connection (fallback paths)
        await conn.reset()
    elif conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 20,
                      command_timeout: float = 30.0) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection,
        command_timeout=command_timeout, reset=_release,
    )
    assert pool is not None
    return pool


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, tuple[str, str]]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


def check_history(available: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    """Refuse edited or unknown applied migrations; return the pending ones in order."""
    by_version = {m.version: m for m in available}
    for version, (name, checksum) in sorted(applied.items()):
        m = by_version.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {name} which this code does not know: "
                f"it is newer than this code, or a migration file was removed"
            )
        if m.checksum != checksum:
            raise MigrationError(
                f"migration {name} was edited after it was applied "
                f"(database checksum {checksum[:12]}, file checksum {m.checksum[:12]}): "
                f"restore the original file and add a new migration instead"
            )
    return [m for m in available if m.version not in applied]


async def migrate(conn: asyncpg.Connection, directory: Traversable | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction. Returns the names applied."""
    available = load_migrations(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_LEDGER)
        pending = check_history(available, await applied_migrations(conn))
        done: list[str] = []
        for m in pending:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            log.info("migration_applied", migration=m.name)
            done.append(m.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(conn: asyncpg.Connection,
                             directory: Traversable | None = None) -> list[str]:
    return [m.name for m in check_history(load_migrations(directory), await applied_migrations(conn))]


def run_with_pool(fn: Callable[[asyncpg.Pool], Awaitable[T]], *, apply_migrations: bool = False) -> T:
    """For CLI commands: run ``fn(pool)`` against CAD_DATABASE_URL, or the embedded cluster
    (started and stopped around it) when that is unset; ``apply_migrations`` first."""
    from cad.embedded_pg import EmbeddedPostgres
    from cad.settings import Settings

    settings = Settings()
    embedded = None
    url = settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        url = embedded.start()

    async def go() -> T:
        if apply_migrations:
            conn = await connect(url)
            try:
                await migrate(conn, settings.migrations_dir)
            finally:
                await conn.close()
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            return await fn(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    finally:
        if embedded is not None:
            embedded.stop()
