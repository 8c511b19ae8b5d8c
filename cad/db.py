"""Connection pool and the migration runner."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson
import structlog

from cad import training

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
        pending = check_history(available, await applied_migrations(conn))
        if not pending:
            # Nothing to do: not even the ledger's CREATE ... IF NOT EXISTS, which the
            # server's own role (no CREATE on the schema) is refused.
            return []
        await conn.execute(_LEDGER)
        done: list[str] = []
        for m in pending:
            async with conn.transaction():
                try:
                    await conn.execute(m.sql)
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise MigrationError(
                        f"migration {m.name} needs the schema's owner ({exc}): run migrations "
                        f"as a superuser or a member of cad_owner (CAD_MIGRATION_DATABASE_URL, "
                        f"docs/security.md), not as the server's role") from exc
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum,
                )
            log.info("migration_applied", migration=m.name)
            done.append(m.name)
        if await conn.fetchval("SELECT to_regprocedure('cad_secure_schema()') IS NOT NULL"):
            # Objects the batch added: owned by cad_owner, granted to cad_app (0007_db_roles.sql).
            await conn.execute("SELECT cad_secure_schema()")
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def pending_migrations(conn: asyncpg.Connection,
                             directory: Traversable | None = None) -> list[str]:
    return [m.name for m in check_history(load_migrations(directory), await applied_migrations(conn))]


APP_ROLE = "cad_app"  # the server's login role (migrations/0007_db_roles.sql)


def as_role(url: str, role: str, password: str | None) -> str:
    """``url`` logging in as ``role`` (with ``password``, else none): same server, database
    and query parameters such as a Unix-socket ``host``."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def server_url(url: str, *, use_app_role: bool, app_password: str | None) -> str:
    """The URL the server's pool connects with: ``url`` as cad_app, a role that owns nothing
    (so that nothing the server runs can alter a trigger, write an anchor or delete audit
    entries); ``url`` itself when it names cad_app already or ``use_app_role`` is off."""
    if not use_app_role or urlsplit(url).username == APP_ROLE:
        return url
    return as_role(url, APP_ROLE, app_password)


async def role_report(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, object]:
    """Who the connection is and whether it could erase the audit trail."""
    row = await conn.fetchrow(
        "SELECT current_user AS role, r.rolsuper AS superuser, "
        "coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false) AS owns_audit_log "
        "FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass('audit_log') "
        "WHERE r.rolname = current_user")
    return dict(row) if row else {}


class SchemaBehind(Exception):
    """The database lacks migrations this version ships (run_with_pool)."""

    def __init__(self, pending: list[str]) -> None:
        super().__init__(f"the database lacks {len(pending)} migration(s) of this version "
                         f"({', '.join(pending)}): run `cad db migrate` first")
        self.pending = pending


def run_with_pool(fn: Callable[[asyncpg.Pool], Awaitable[T]], *, apply_migrations: bool = False,
                  as_owner: bool = False) -> T:
    """For CLI commands: run ``fn(pool)`` against CAD_DATABASE_URL, or the embedded cluster
    (started and stopped around it) when that is unset, as the server's role (server_url), or
    with ``as_owner`` as the migration URL's user (operator acts the server may not do);
    ``apply_migrations`` first, as the migration URL's user."""
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
            conn = await connect(settings.migration_database_url or url)
            try:
                await migrate(conn, settings.migrations_dir)
            finally:
                await conn.close()
        password = (settings.db_app_password.get_secret_value() if settings.db_app_password
                    else embedded.app_password if embedded is not None else None)
        pool_url = (settings.migration_database_url or url) if as_owner else server_url(
            url, use_app_role=settings.db_use_app_role, app_password=password)
        pool = await create_pool(pool_url, min_size=1, max_size=2)
        try:
            if not apply_migrations:
                # A command of a newer version on a database an older one left (an upgrade
                # whose `cad db migrate` has not run yet) would fail midway on a missing
                # column or function; say so first, naming what is missing.
                async with pool.acquire() as conn:
                    pending = await pending_migrations(conn, settings.migrations_dir)
                if pending:
                    raise SchemaBehind(pending)
            await training.sync(pool, settings.training_agencies)
            return await fn(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(go())
    except SchemaBehind as exc:
        print(f"cad: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    finally:
        if embedded is not None:
            embedded.stop()
