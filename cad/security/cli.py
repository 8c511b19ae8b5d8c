"""`cad users ...` and `cad audit ...` (registered by cad.cli)."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cad.db import run_with_pool
from cad.settings import Settings

users_app = typer.Typer(no_args_is_help=True, help="User accounts (no default passwords).")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit trail.")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

PASSWORD_ENV = "CAD_NEW_USER_PASSWORD"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        err.print(f"cad: no password: use --password-stdin, {PASSWORD_ENV}, or a terminal")
        raise typer.Exit(2)
    if not password:
        err.print("cad: the password is empty")
        raise typer.Exit(2)
    return password


@users_app.command("create")
def users_create(
    username: str = typer.Argument(..., help="Login name (a-z, 0-9, . _ @ -)."),
    role: str = typer.Option(..., "--role", help="dispatcher | supervisor | field_unit | analyst | admin"),
    unit: str | None = typer.Option(None, "--unit", help="The unit a field_unit user is bound to."),
    agency: list[str] | None = typer.Option(  # noqa: B008 - a list option, as typer declares it
        None, "--agency", help="An agency the user acts for; repeat for several. A field_unit "
        "user without one takes its unit's."),
    display_name: str | None = typer.Option(None, "--name"),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password from the first line of stdin."),
) -> None:
    """Create a user. The password is prompted for (or read from stdin / CAD_NEW_USER_PASSWORD);
    there is never a default."""
    from cad.errors import CADError
    from cad.security import service
    from cad.security.runtime import SecurityRuntime
    from cad.security.scope import Scope
    from cad.uow import RequestContext

    password = _read_password(password_stdin)
    settings = Settings()

    async def go(pool: Any) -> dict[str, Any]:
        rt = SecurityRuntime.build(settings)
        actor = os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"
        ctx = RequestContext(actor=f"cli:{actor}", source="system")
        return await service.create_user(rt=rt, pool=pool, ctx=ctx, username=username, password=password,
                                         role=role, unit_id=unit, agencies=agency or None,
                                         display_name=display_name, scope=Scope.ALL)

    try:
        user = run_with_pool(go, apply_migrations=True)
    except CADError as exc:
        err.print(f"cad: {exc.detail}")
        raise typer.Exit(1) from None
    out.print(f"created {user['role']} {user['username']} ({user['id']})")


@audit_app.command("verify")
def audit_verify(
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    witness_file: Annotated[list[Path] | None, typer.Option(
        "--witness", help="Chain heads recorded outside the database (JSON lines of seq and "
                          "hash, as the server writes them, or from the SIEM); repeatable. "
                          "Default: CAD_AUDIT_WITNESS_PATH, when it exists.")] = None,
) -> None:
    """Recompute the hash chain and check the witnessed chain heads; exit 1 and name each
    edited, deleted, inserted, reordered, truncated or rewritten entry if it does not hold."""
    import orjson

    from cad.security import audit, witness

    settings = Settings()
    witnesses: list[witness.Witness] = []
    for path in witness_file or []:
        if not path.exists():
            err.print(f"cad: witness file {path} does not exist")
            raise typer.Exit(2)
        witnesses += witness.read(path)
    if witness_file is None:
        witnesses = witness.read_configured(settings)

    async def go(pool: Any) -> audit.VerifyResult:
        async with pool.acquire() as conn:
            return await audit.verify(conn, witnesses, retention_days=settings.audit_retention_days)

    result = run_with_pool(go)
    if json_out:
        # Straight to stdout: rich folds long lines at the terminal width (80 when piped).
        sys.stdout.write(orjson.dumps(result.as_dict()).decode() + "\n")
    elif result.ok:
        out.print(f"audit chain OK: {result.entries} entries, seq {result.first_seq}.."
                  f"{result.last_seq} (pruned through seq {result.anchor_seq}), head "
                  f"{result.head_hash}; {result.witnesses_checked} witnessed heads match"
                  + (f" (newest seq {result.witnessed_through})" if result.witnessed_through else ""))
    else:
        out.print(f"audit chain BROKEN: {len(result.problems)} problem(s) in "
                  f"{result.entries} entries")
        for p in result.problems:
            out.print(f"  {p.kind:9} seq {p.seq} id {p.id}: {p.detail}")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File (default: stdout).")] = None,
    after_seq: int = typer.Option(0, "--after-seq", help="Only entries after this position "
                                                          "(incremental shipping)."),
    since: Annotated[datetime | None, typer.Option(
        "--since", help="Only entries at or after (ISO).")] = None,
) -> None:
    """Write the audit trail as JSON lines for a SIEM, chain hashes included."""
    from cad.security import audit

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            if output is None:
                return await audit.export(conn, sys.stdout, after_seq=after_seq, since=since)
            with output.open("w") as fh:
                return await audit.export(conn, fh, after_seq=after_seq, since=since)

    n = run_with_pool(go)
    err.print(f"exported {n} audit entries")


@audit_app.command("prune")
def audit_prune(days: int | None = typer.Option(
        None, "--days", help="Retention in days (default CAD_AUDIT_RETENTION_DAYS).")) -> None:
    """Delete entries older than the retention period, keeping the chain verifiable (the
    database refuses a period shorter than its own floor, `cad audit retention`)."""
    from cad.security import audit

    retention = days or Settings().audit_retention_days

    async def go(pool: Any) -> int:
        async with pool.acquire() as conn:
            return await audit.prune(conn, retention_days=retention)

    try:
        deleted = run_with_pool(go)
    except audit.RetentionRefused as exc:
        err.print(f"cad: the database refused the prune: {exc}")
        raise typer.Exit(1) from None
    out.print(f"pruned {deleted} audit entries older than {retention} days")


@audit_app.command("retention")
def audit_retention(days: int | None = typer.Option(
        None, "--days", min=1, help="Set the floor (owner only: run with the owner's URL).")) -> None:
    """Show, or set, the retention floor the database enforces on pruning (audit_policy):
    audit_prune refuses any cutoff younger than this many days. Runs as the migration URL's
    user (CAD_MIGRATION_DATABASE_URL, else CAD_DATABASE_URL): the server's role cannot."""
    import asyncio

    import asyncpg

    from cad import db
    from cad.embedded_pg import EmbeddedPostgres

    settings = Settings()
    embedded = None
    url = settings.migration_database_url or settings.database_url
    if url is None:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        url = embedded.start()

    async def go(owner_url: str) -> int:
        conn = await db.connect(owner_url)
        try:
            await db.migrate(conn, settings.migrations_dir)
            if days is not None:
                async with conn.transaction():
                    await conn.execute("UPDATE audit_policy SET retention_days = $1", days)
                    await _record_floor_change(conn, days)
            floor: int = await conn.fetchval("SELECT retention_days FROM audit_policy")
            return floor
        finally:
            await conn.close()

    try:
        floor = asyncio.run(go(url))
    except asyncpg.InsufficientPrivilegeError as exc:
        err.print(f"cad: {exc}: set the floor with the owner's URL (CAD_MIGRATION_DATABASE_URL)")
        raise typer.Exit(1) from None
    finally:
        if embedded is not None:
            embedded.stop()
    out.print(f"audit retention floor: {floor} days")


async def _record_floor_change(conn: Any, days: int) -> None:
    """The change of the floor is itself a chained entry."""
    from cad.uow import RequestContext, audit_now

    actor = os.environ.get("SUDO_USER") or os.environ.get("USER") or "cli"
    await audit_now(conn, RequestContext(actor=f"cli:{actor}", source="system"),
                    "audit.retention", target="audit_policy", details={"retention_days": days})
