"""The `cad` command: serve, the demo, database migrations, graph builds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import SecretStr
from rich.console import Console

from cad.settings import Settings

if TYPE_CHECKING:  # imported where used: `cad --help` stays fast
    from cad.embedded_pg import EmbeddedPostgres

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Computer-aided dispatch backend.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(db_app, name="db")
addresses_app = typer.Typer(no_args_is_help=True, help="Address points for the geocoder.")
app.add_typer(addresses_app, name="addresses")
places_app = typer.Typer(no_args_is_help=True, help="Managed places and aliases for the geocoder.")
app.add_typer(places_app, name="places")
training_app = typer.Typer(no_args_is_help=True, help="Training mode (CAD_TRAINING_AGENCIES).")
app.add_typer(training_app, name="training")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _mount_optional(module: str, attr: str, name: str, help_text: str) -> None:
    try:
        mod = __import__(module, fromlist=[attr])
    except ImportError:
        return
    sub = getattr(mod, attr, None)
    if sub is not None:
        app.add_typer(sub, name=name, help=help_text)


_mount_optional("routing.cli", "graph_app", "graph", "Road graphs: build and inspect.")
_mount_optional("cad.security.cli", "users_app", "users", "User accounts (no default passwords).")
_mount_optional("cad.security.cli", "audit_app", "audit", "The hash-chained audit trail.")
_mount_optional("incidents.analytics.cli", "import_app", "import", "Historical data imports.")
_mount_optional("incidents.analytics.cli", "report_app", "report", "Published reports.")


def _add_command(typer_module: str, typer_attr: str, module: str, attr: str, name: str) -> None:
    """A command of ``module`` under another package's command group (``cad graph calibrate``
    lives with the analytics that read history, not in routing, which imports no project
    package)."""
    try:
        group = getattr(__import__(typer_module, fromlist=[typer_attr]), typer_attr)
        command = getattr(__import__(module, fromlist=[attr]), attr)
    except ImportError:
        return
    group.command(name)(command)


_add_command("routing.cli", "graph_app", "incidents.analytics.cli", "calibrate_command", "calibrate")
_add_command("cad.cli", "app", "incidents.analytics.cli", "simulate_command", "simulate")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address (CAD_HOST)."),
    port: int | None = typer.Option(None, help="Port (CAD_PORT)."),
    workers: int | None = typer.Option(None, help="Worker processes (CAD_WORKERS)."),
) -> None:
    """Run the HTTP/websocket server. Starts an embedded PostgreSQL when CAD_DATABASE_URL is unset."""
    import uvicorn

    from cad.embedded_pg import mask_url
    from cad.logging import configure_logging

    overrides: dict[str, Any] = {k: v for k, v in {"host": host, "port": port,
                                                   "workers": workers}.items() if v is not None}
    settings = Settings(**overrides)
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    if settings.workers > 1 and not settings.redis_url:
        # Without the shared hub an AVL fix reaches only the worker whose socket received it:
        # boards on the other workers would not see the unit move, and their recommendations
        # would rank it from an old position.
        err.print(f"cad: {settings.workers} workers need CAD_REDIS_URL (Redis carries AVL "
                  "positions between workers); set it, or run one worker")
        raise typer.Exit(2)

    _refuse_a_broken_graph(settings)

    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    try:
        if url is None:
            embedded, url = _start_embedded(settings.data_dir)
            out.print(f"Data directory: {embedded.pgdata} ({embedded.backend})")
        out.print(f"Database: {mask_url(url)}")
        if settings.graph_path is None:
            from cad.wiring import NO_GRAPH_WARNING

            err.print(f"[bold red]WARNING[/]: {NO_GRAPH_WARNING}")
        _run_migrations(settings.migration_database_url or url, settings)
        # Workers build their own Settings from the environment: hand them the database
        # (and the password of the embedded cluster's server role, cad.db.server_url).
        os.environ["CAD_DATABASE_URL"] = url
        if embedded is not None and embedded.app_password and settings.db_app_password is None:
            os.environ["CAD_DB_APP_PASSWORD"] = embedded.app_password
        for key, value in overrides.items():
            os.environ[f"CAD_{key.upper()}"] = str(value)
        out.print(f"Serving on http://{settings.host}:{settings.port} "
                  f"({settings.workers} worker{'s' if settings.workers > 1 else ''})")
        sys.stdout.flush()
        # uvicorn re-raises the SIGTERM it caught after draining; make that an exit that
        # runs our clean-up (stopping the embedded cluster) instead of an abrupt death.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        uvicorn.run(
            "cad.app:create_app", factory=True, host=settings.host, port=settings.port,
            workers=settings.workers, access_log=False, log_config=None,
            ws_per_message_deflate=False, proxy_headers=True, timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()
            out.print("Embedded PostgreSQL stopped.")


@app.command()
def demo(
    shared_data: Path | None = typer.Option(  # noqa: B008 - typer declares options this way
        None, help="Folder holding road/ and calls/ (default: CAD_SHARED_DATA, else "
        "../shared/data beside the checkout)."),
    port: int | None = typer.Option(None, help="Port (CAD_PORT)."),
    fleet: int = typer.Option(6, min=0, max=50, help="Units driving with simulated MDTs."),
) -> None:
    """Serve the console with sample stations, units and the San Francisco road graph, and a
    small simulated fleet moving on the board (README: "Five minutes to a first dispatch")."""
    from cad import demo as demo_mod
    from cad.embedded_pg import mask_url
    from cad.logging import configure_logging

    base = Settings(port=port) if port else Settings()
    configure_logging(level="WARNING", fmt=base.log_format)
    shared = shared_data or Path(os.environ.get("CAD_SHARED_DATA") or demo_mod.default_shared_dir())
    try:
        graph = demo_mod.build_graph(shared, base.data_dir / "demo" / "sf.cadgraph")
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        err.print(f"cad: {exc}")
        raise typer.Exit(2) from None
    embedded: EmbeddedPostgres | None = None
    url = base.database_url
    try:
        if url is None:
            embedded, url = _start_embedded(base.data_dir)
        out.print(f"Database: {mask_url(url)}")
        _run_migrations(url, base)
        update: dict[str, object] = {"database_url": url, "graph_path": graph}
        if embedded is not None and embedded.app_password and base.db_app_password is None:
            # the server's pool logs in as cad_app, whose password only the cluster knows
            # (cad serve hands it over through CAD_DB_APP_PASSWORD)
            update["db_app_password"] = SecretStr(embedded.app_password)
        settings = base.model_copy(update=update)
        # SIGTERM (a service manager, a container stop) ends the demo as Ctrl+C does: uvicorn
        # drains, re-raises it, and the exit runs the clean-up below (as cad serve's)
        signal.signal(signal.SIGTERM, _exit_on_signal)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(demo_mod.run(settings, database_url=url, shared=shared, fleet=fleet))
    finally:
        if embedded is not None:
            embedded.stop()


def _start_embedded(data_dir: Path) -> tuple[EmbeddedPostgres, str]:
    """The embedded cluster under ``data_dir`` started (cluster, URL); a machine that cannot
    run one is a one-line error and exit 2."""
    from cad.embedded_pg import EmbeddedPostgres, EmbeddedUnavailable

    embedded = EmbeddedPostgres(data_dir / "postgres")
    try:
        return embedded, embedded.start()
    except EmbeddedUnavailable as exc:
        err.print(f"cad: cannot start the embedded PostgreSQL: {exc}")
        raise typer.Exit(2) from None


def _refuse_a_broken_graph(settings: Settings) -> None:
    """A configured graph file that is missing or fails its checks (routing.graph_check):
    one line naming the file and the problem, exit 2, before any database or worker starts
    (the workers would each raise it from their start-up, as a traceback)."""
    if settings.graph_path is None:
        return
    from routing.errors import GraphFileError
    from routing.graph import RoadGraph

    if not settings.graph_path.is_file():
        print(f"cad: CAD_GRAPH_PATH: no such file: {settings.graph_path}", file=sys.stderr)
        raise typer.Exit(2)
    try:
        RoadGraph.load(settings.graph_path)
    except GraphFileError as exc:
        print(f"cad: CAD_GRAPH_PATH: {exc}", file=sys.stderr)  # one line, never wrapped
        raise typer.Exit(2) from None


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run_migrations(url: str, settings: Settings) -> list[str]:
    from cad import db

    async def go() -> list[str]:
        conn = await db.connect(url)
        try:
            return await db.migrate(conn, settings.migrations_dir)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except db.MigrationError as exc:
        err.print(f"cad: migrations refused: {exc}")
        raise typer.Exit(3) from None


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations (uses the embedded cluster when CAD_DATABASE_URL is unset)."""
    from cad.embedded_pg import EmbeddedPostgres

    settings = Settings()
    embedded = None
    url = settings.database_url
    try:
        if url is None:
            embedded = EmbeddedPostgres(settings.data_dir / "postgres")
            url = embedded.start()
        applied = _run_migrations(settings.migration_database_url or url, settings)
        if applied:
            for name in applied:
                out.print(f"applied {name}")
        else:
            out.print("database is up to date")
    finally:
        if embedded is not None:
            embedded.stop()


@db_app.command("prune")
def db_prune(batch: int = typer.Option(20_000, min=100, help="Rows per delete transaction.")) -> None:
    """Delete AVL breadcrumbs and idempotency keys past their retention (CAD_AVL_RETENTION_DAYS,
    CAD_IDEMPOTENCY_RETENTION_S) and erase the contact data of online reports and feedback
    cases decided more than CAD_CONTACT_RETENTION_DAYS ago, as the server's hourly sweeper does."""
    from cad import db, retention
    from cad.wiring import CONTACT_ERASERS

    settings = Settings()

    async def go(pool: Any) -> retention.PruneResult:
        return await retention.prune(pool, settings, erasers=CONTACT_ERASERS, batch=batch)

    result = db.run_with_pool(go)
    if not result.ran:
        err.print("cad: another process is pruning right now; nothing done")
        raise typer.Exit(1)
    keep = (f"older than {settings.avl_retention_days} days" if settings.avl_retention_days
            else "none: CAD_AVL_RETENTION_DAYS=0 keeps them")
    out.print(f"pruned {result.unit_positions:,} AVL breadcrumbs ({keep}) and "
              f"{result.idempotency_keys:,} idempotency keys")
    days = settings.contact_retention_days
    after = (f"decided more than {days} days ago" if days
             else "none: CAD_CONTACT_RETENTION_DAYS=0 keeps them")
    out.print(f"erased the contact of {result.contacts['public_reports']:,} online reports and "
              f"{result.contacts['feedback']:,} feedback cases ({after})")


@db_app.command("prune-events")
def db_prune_events(older_than_days: int = typer.Option(
        ..., min=1, help="Delete the event log's prefix older than this many days; refused "
        "below the database's event_policy.min_retention_days (90).")) -> None:
    """Prune the event log (what reconnecting clients replay from) as the database owner:
    the server's own role may not delete events (0019_event_log_owner_prune.sql). A client
    whose last event id is older than what is left is told to resync."""
    from datetime import UTC, datetime, timedelta

    import asyncpg

    from cad import db

    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)

    async def go(pool: Any) -> int:
        n: int = await pool.fetchval("SELECT event_log_prune($1)", cutoff)
        return n

    try:
        deleted = db.run_with_pool(go, as_owner=True)
    except asyncpg.InsufficientPrivilegeError as e:
        err.print(f"cad: {e}")
        raise typer.Exit(1) from None
    out.print(f"pruned {deleted:,} events older than {cutoff:%Y-%m-%d %H:%M} UTC")


@addresses_app.command("import")
def addresses_import(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True,
        help="street,number,lat,lon or OpenAddresses CSV (.csv or .csv.gz).")],
    show_bad: int = typer.Option(20, min=0, help="Bad rows to list (all are counted)."),
) -> None:
    """Load address points (idempotent: importing the same file again changes nothing). Bad
    rows are reported by line and skipped. Running servers pick the points up at their next
    start."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cad import db
    from incidents.geocoding.importer import FormatError
    from incidents.geocoding.service import ImportResult, import_addresses

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task("reading", total=None)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description="reading" if phase == "read" else "loading",
                       completed=done, total=total or None)

        async def go(pool: Any) -> ImportResult:
            return await import_addresses(pool=pool, path=file, progress=progress)

        try:
            result = db.run_with_pool(go, apply_migrations=True)
        except FormatError as exc:
            err.print(f"cad: {exc}")
            raise typer.Exit(2) from None
    for line, reason in result.bad[:show_bad]:
        err.print(f"line {line}: {reason}")
    if result.n_bad > show_bad:
        err.print(f"... and {result.n_bad - show_bad:,} more bad rows")
    out.print(f"{file.name} ({result.format}): {result.rows_read:,} rows, {result.n_bad:,} bad, "
              f"{result.changed:,} new or moved; {result.total:,} address points in the database")
    settings = Settings()
    if settings.graph_path is not None:
        from incidents.geocoding.service import tie_report
        from routing.graph import RoadGraph

        rep = tie_report(path=file, graph=RoadGraph.load(settings.graph_path))
        out.print(f"road graph {settings.graph_path}: {rep.tied:,} of {rep.points:,} points tied to "
                  f"an edge of their street (median {rep.median_distance_m:.0f} m away)")
        if rep.untied_streets:
            out.print("not tied (street not named in the graph, or farther than 120 m): "
                      + ", ".join(f"{s} ({n})" for s, n in rep.untied_streets))


@places_app.command("import")
def places_import(
    file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True,
        help="CSV: name,lat,lon and optional id, aliases (separated by |); .csv or .csv.gz.")],
) -> None:
    """Create or change places by id (idempotent: the same file again changes nothing). Bad
    rows are reported by line and skipped; running servers pick the places up within
    CAD_GEOCODER_REFRESH_S."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cad import db
    from cad.uow import RequestContext
    from incidents.geocoding.importer import FormatError
    from incidents.geocoding.service import PlacesImport, import_places

    async def go(pool: Any) -> PlacesImport:
        ctx = RequestContext(actor="cli:places-import", source="import")
        return await import_places(pool=pool, ctx=ctx, path=file)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        bar.add_task(f"importing {file.name}", total=None)
        try:
            result = db.run_with_pool(go, apply_migrations=True)
        except FormatError as exc:
            err.print(f"cad: {exc}")
            raise typer.Exit(2) from None
    for line, reason in result.bad:
        err.print(f"line {line}: {reason}")
    out.print(f"{file.name}: {result.rows_read:,} rows, {len(result.bad):,} bad, {result.created:,} "
              f"created, {result.changed:,} changed; {result.total:,} places in the database")


@training_app.command("reset")
def training_reset(
    agency: Annotated[str, typer.Argument(help="A training agency (CAD_TRAINING_AGENCIES).")],
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    wipe_roster: bool = typer.Option(
        False, "--wipe-roster", help="Delete the training units and the agency's stations too "
        "(default: keep them, units back to available in quarters at their stations)."),
) -> None:
    """Delete a training agency's exercise in one transaction: incidents and what hangs off
    them, units' status log and breadcrumbs, its training events, public reports and feedback
    received as a training agency. The audit trail is kept and records the reset; running
    servers forget the agency's positions and its boards get a training.reset event. Any
    agency that is not a training agency is refused and nothing is deleted."""
    from cad import db, training
    from cad.errors import CADError
    from cad.uow import RequestContext

    settings = Settings()
    roster = training.ROSTER_WIPE if wipe_roster else training.ROSTER_KEEP
    if not yes:
        what = ("its incidents, events, units and stations" if wipe_roster
                else "its incidents and events (units return to quarters)")
        if not sys.stdin.isatty():
            err.print("cad: refusing to reset without --yes (no terminal to confirm on)")
            raise typer.Exit(2)
        typer.confirm(f"Delete the training exercise of {agency}: {what}?", abort=True)
    ctx = RequestContext(actor=f"cli:training-reset:{_os_user()}", source="system")

    async def go(pool: Any) -> training.ResetResult:
        return await training.reset(pool=pool, ctx=ctx, agency=agency,
                                    configured=settings.training_agencies, roster=roster)

    try:
        result = db.run_with_pool(go)
    except CADError as exc:
        err.print(f"cad: {exc.detail}")
        raise typer.Exit(2) from None
    counts = ", ".join(f"{table} {n:,}" for table, n in result.counts.items() if n)
    out.print(f"reset {result.agency} (roster {result.roster}): {counts or 'nothing to delete'}")


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "unknown"


def main() -> None:
    app()


if __name__ == "__main__":
    main()
