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
            return await service.import_calls(
                pool=pool, path=file, mapping=cmap, agency=agency,
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
                                       timezone=settings.analytics_timezone)

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
