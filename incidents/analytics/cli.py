"""`cad import calls FILE`: load a historical calls-for-service export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import_app = typer.Typer(no_args_is_help=True, help="Historical data imports.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@import_app.command("calls")
def import_calls_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                         help="CSV (or .csv.gz) export.")],
    mapping: str = typer.Option("sffd", "--mapping", "-m",
                                help="Built-in mapping name or a TOML mapping file."),
    agency: str | None = typer.Option(None, help="Agency the calls belong to (default: the "
                                                 "mapping's [source] agency)."),
    show_bad: int = typer.Option(50, min=0, help="How many bad rows to list (all are counted)."),
) -> None:
    """Import calls (one row per unit response) through a column mapping. Idempotent: calls
    and unit responses already imported are skipped. Imported rows emit no live events."""
    from cad import db
    from cad.errors import Invalid
    from incidents.analytics import service
    from incidents.analytics.mapping import MappingError, load_mapping

    try:
        cmap = load_mapping(mapping)
    except MappingError as exc:
        err.print(f"cad: {exc}")
        raise typer.Exit(2) from None
    with service.read_text(file) as text:
        total = max(sum(1 for _ in text) - 1, 0)

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=out,
                  transient=False) as bar:
        task = bar.add_task(f"reading {file.name}", total=total)

        async def go(pool: Any) -> service.ImportResult:
            import getpass

            from cad.uow import RequestContext

            return await service.import_calls(
                pool=pool, path=file, mapping=cmap, agency=agency,
                ctx=RequestContext(actor=f"cli:{getpass.getuser()}", source="import"),
                progress=lambda n: bar.update(task, completed=n))

        try:
            result = db.run_with_pool(go, apply_migrations=True)
        except (MappingError, Invalid) as exc:
            err.print(f"cad: {exc}")
            raise typer.Exit(2) from None
        bar.update(task, completed=total, description=f"imported {file.name}")
    out.print(f"{result.rows:,} rows: {result.calls_in_file:,} calls, {result.units_in_file:,} unit "
              f"responses; added {result.calls_added:,} calls and {result.units_added:,} unit "
              f"responses (the rest were there already); {len(result.bad):,} bad rows skipped")
    for raw, calls in sorted(result.unmapped_dispositions.items()):
        out.print(f"  disposition {raw!r} ({calls:,} calls) is not in the mapping: kept as text, "
                  "no code")
    for bad in result.bad[:show_bad]:
        out.print(f"  line {bad.line}: {bad.reason}")
    if len(result.bad) > show_bad:
        out.print(f"  ... and {len(result.bad) - show_bad:,} more")


report_app = typer.Typer(no_args_is_help=True, help="Published reports.")


@report_app.command("annual")
def annual_report_command(
    year: Annotated[int, typer.Option("--year", min=1990, max=2100, help="Calendar year.")],
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False,
                                          help="Folder for the HTML and PDF.")] = Path("."),
    agency: Annotated[str | None, typer.Option(help="One agency (default: all).")] = None,
    pdf: Annotated[bool, typer.Option(help="Also write the PDF.")] = True,
) -> None:
    """Write the year's report: volumes, intervals against NFPA thresholds, trends and the
    density map, as annual-YEAR.html (self-contained) and annual-YEAR.pdf."""
    from cad import db
    from cad.settings import Settings
    from incidents.analytics import annual

    settings = Settings()
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task(f"annual report {year}", total=3 if pdf else 2)

        async def go(pool: Any) -> annual.AnnualReport:
            return await annual.gather(pool=pool, year=year, agency=agency,
                                       timezone=settings.analytics_timezone,
                                       training=settings.training_agencies)

        rep = db.run_with_pool(go)
        bar.update(task, advance=1, description="figures computed")
        out_dir.mkdir(parents=True, exist_ok=True)
        html_path = out_dir / f"annual-{year}.html"
        html_path.write_text(annual.render_html(rep), encoding="utf-8")
        bar.update(task, advance=1, description="HTML written")
        written = [html_path]
        if pdf:
            pdf_path = out_dir / f"annual-{year}.pdf"
            pdf_path.write_bytes(annual.render_pdf(rep))
            written.append(pdf_path)
            bar.update(task, advance=1, description="PDF written")
    for path in written:
        out.print(f"wrote {path}")


def calibrate_command(
    stations: Annotated[Path, typer.Option(exists=True, dir_okay=False, help=(
        "Stations CSV (station,address,lat,lon), e.g. ../shared/data/calls/sffd_fire_stations.csv"))],
    graph: Annotated[Path | None, typer.Option(help="Road graph (default: CAD_GRAPH_PATH).")] = None,
    agency: Annotated[str | None, typer.Option(help="One agency's history (default: all).")] = None,
    holdout_days: Annotated[float, typer.Option(min=1, help="The last days, held out.")] = 7.0,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the factors as JSON.")] = None,
    write_graph: Annotated[Path | None, typer.Option(help=(
        "Write a graph with the travel times scaled by the fitted road-class factors (its "
        "hierarchy rebuilt); use it as CAD_GRAPH_PATH with CAD_ETA_HOUR_FACTORS set to the "
        "class_hour_multipliers of --out."))] = None,
) -> None:
    """Fit speed factors per hour of day and per road class and hour from imported history
    (recorded travel vs the graph's ETA for the same trip) and report the ETA error on a
    held-out week."""
    import json

    from cad import db
    from cad.settings import Settings
    from incidents.analytics import calibrate
    from routing.service import RoutingService

    settings = Settings()
    path = graph or settings.graph_path
    if path is None:
        err.print("cad: give --graph or set CAD_GRAPH_PATH")
        raise typer.Exit(2)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
        task = bar.add_task("loading the road graph", total=4 if write_graph else 3)
        routing = RoutingService.from_file(path)
        bar.update(task, advance=1, description="reading trips")

        async def go(pool: Any) -> list[calibrate.Trip]:
            return await calibrate.load_trips(pool, agency=agency, timezone=settings.analytics_timezone)

        trips = db.run_with_pool(go)
        bar.update(task, advance=1, description=f"routing {len(trips):,} trips")
        try:
            result = calibrate.calibrate(routing, trips, calibrate.read_stations(stations),
                                         holdout_days=holdout_days)
        except ValueError as exc:
            err.print(f"cad: {exc}")
            raise typer.Exit(1) from None
        bar.update(task, advance=1, description="fitted")
        if write_graph is not None:
            from routing.calibration import with_class_factors
            from routing.ch import build_hierarchy

            bar.update(task, description="writing the calibrated graph (hierarchy rebuilt)")
            scaled = with_class_factors(routing.graph, result.class_factors)
            scaled.with_hierarchy(build_hierarchy(scaled)).save(write_graph)
            bar.update(task, advance=1, description="calibrated graph written")
    out.print(f"{result.trips_routed:,} trips routed of {result.trips_considered:,}; fitted on "
              f"{result.train_trips:,}, held out {result.holdout_trips:,} "
              f"(from {result.holdout_from:%Y-%m-%d %H:%M})")
    out.print(f"{'ETA on held-out trips':24}{'median |error| s':>18}{'p90 |error| s':>15}")
    for name, e in result.errors.items():
        out.print(f"{name:24}{e.median_abs_s:>18.1f}{e.p90_abs_s:>15.1f}")
    out.print(f"overall factor {result.overall_factor} (CAD_ETA_CALIBRATION_FACTOR applies it to "
              "every route)")
    out.print("road-class factors " + ", ".join(f"{c} {f}" for c, f in
                                                sorted(result.class_factors.items())))
    if out_file is not None:
        out_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        out.print(f"wrote {out_file}")
    if write_graph is not None:
        out.print(f"wrote {write_graph} (travel times x the road-class factors)")


def simulate_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Calls export.")],
    url: Annotated[str, typer.Option(help="The running server.")] = "http://127.0.0.1:8000",
    username: Annotated[str, typer.Option(envvar="CAD_SIM_USERNAME",
                                          help="A supervisor or admin account.")] = "",
    password: Annotated[str, typer.Option(envvar="CAD_SIM_PASSWORD", help="Its password.")] = "",
    speedup: Annotated[float, typer.Option(min=0, help=(
        "Historical seconds per wall second; 0 = as fast as the server answers."))] = 60.0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N calls.")] = None,
    mapping: Annotated[str, typer.Option("--mapping", "-m")] = "sffd",
    agency: Annotated[str | None, typer.Option(help="Default: the mapping's.")] = None,
    stations: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help=(
        "Stations CSV: create the stations and the file's engines, trucks and medics first."))
    ] = None,
    drive: Annotated[bool, typer.Option(help=(
        "Units drive their routed paths: 1 Hz positions over each unit's MDT websocket until "
        "on scene (needs an admin account, which creates one field-unit account per unit, and "
        "a server with a road graph and an AVL budget of at least the speed-up in fixes per "
        "unit-second, CAD_AVL_FIX_RATE_PER_S)."))] = False,
    incident_type: Annotated[str | None, typer.Option(help=(
        "Create every call with this incident type (default: the mapping's [incident_types] "
        "for each call type)."))] = None,
    training: Annotated[bool, typer.Option(help=(
        "Replay into a training agency (CAD_TRAINING_AGENCIES; --agency, or the server's "
        "only one): trainees' consoles see the calls, nobody else's. Its stations and units "
        "are copied from the real agency's roster (the mapping's agency) as TR-<id>."))] = False,
    force: Annotated[bool, typer.Option(help=(
        "Replay into a real agency anyway (its dispatchers' boards will show the calls)."))
    ] = False,
) -> None:
    """Replay a historical calls file against a running server through its public API:
    create (with the mapped incident type), recommend, dispatch, en route, on scene after
    the ETA, available again; then compare the recommendations with history. Replays go
    into a training agency (--training, or --agency naming one) unless --force."""
    import asyncio
    import json

    import httpx

    from incidents.analytics import calibrate, simulate
    from incidents.analytics.mapping import MappingError, load_mapping

    try:
        cmap = load_mapping(mapping)
    except MappingError as exc:
        err.print(f"cad: {exc}")
        raise typer.Exit(2) from None
    calls = simulate.load_calls(file, cmap, limit=limit)

    async def go() -> simulate.SimReport:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            r = await client.post("/api/v1/auth/login",
                                  json={"username": username, "password": password})
            if r.status_code != 200:
                err.print(f"cad: login refused ({r.status_code})")
                raise typer.Exit(2)
            client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
            try:
                who, is_training = await simulate.training_target(
                    client, agency=agency, default=cmap.agency, training=training, force=force)
            except simulate.TargetRefused as exc:
                err.print(f"cad: {exc}")
                raise typer.Exit(2) from None
            prefix = simulate.TRAINING_PREFIX if is_training else ""
            if stations is not None:
                made = await simulate.setup_roster(
                    client, agency=who, stations=calibrate.read_stations(stations),
                    units=simulate.roster_from_calls(file, cmap),
                    medics=simulate.medics_from_calls(file, cmap), prefix=prefix)
                out.print(f"roster: {made} units created")
            elif is_training:
                made = await simulate.copy_roster(client, source=cmap.agency, target=who)
                out.print(f"training agency {who}: {made} units copied from {cmap.agency}")
            with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=out) as bar:
                task = bar.add_task(f"replaying at {speedup:g}x", total=len(calls))
                driver = (simulate.Driver(client, ws_url=url.replace("http", "ws", 1))
                          if drive else None)
                return await simulate.replay(client, calls, agency=who, speedup=speedup,
                                             incident_type=incident_type, driver=driver,
                                             progress=lambda n: bar.update(task, completed=n),
                                             unit_prefix=prefix)

    report = asyncio.run(go())
    summary = report.summary()
    out.print(json.dumps(summary, indent=2))
    for e in report.errors[:20]:
        out.print(f"  {e}")
