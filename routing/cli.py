"""`cad graph ...` commands (mounted by cad.cli as ``graph``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from routing.speeds import TIGER_TIME_FACTOR, parse_speed_overrides

graph_app = typer.Typer(help="Road graph: build and inspect the routing graph file.",
                        no_args_is_help=True, pretty_exceptions_enable=False)
console = Console(stderr=True)


@graph_app.command("build")
def build(
    source: Annotated[Path | None, typer.Argument(
        help="Road data: .osm, .osm.bz2, .osm.pbf, TIGER/Line roads .zip, or DIMACS .gr[.gz]")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Graph file to write (*.cadgraph)")] = Path(
        "graph.cadgraph"),
    place: Annotated[str | None, typer.Option(
        "--place", help="Download this place with osmnx instead of reading a file (needs internet)")] = None,
    coords: Annotated[Path | None, typer.Option(
        "--coords", help="DIMACS .co[.gz] coordinates file (with a .gr source)")] = None,
    speed: Annotated[list[str] | None, typer.Option(
        "--speed", help="Response speed override CLASS=KMH (OSM highway or TIGER MTFCC); repeatable")] = None,
    tiger_time_factor: Annotated[float, typer.Option(
        min=0.1, help="Multiply TIGER travel times. The default is measured: SFFD units took "
        "1.8x the posted-speed time (docs/routing.md); 1 = posted speeds")] = TIGER_TIME_FACTOR,
    dimacs_time_unit_s: Annotated[float, typer.Option(
        help="Seconds per DIMACS weight unit")] = 0.1,
    no_ch: Annotated[bool, typer.Option(
        "--no-ch", help="Skip contraction-hierarchy preprocessing (queries fall back to Dijkstra)")] = False,
    ch_threads: Annotated[int | None, typer.Option(
        min=1, help="Contract in rounds of independent nodes on this many threads (same "
        "hierarchy whatever the number; default: one node at a time)")] = None,
) -> None:
    """Build the drivable graph (largest strongly connected component) and its
    contraction hierarchy into one file."""
    from routing.ch import build_hierarchy, compile_ch_kernels
    from routing.loaders import load_any, load_place
    from routing.snap import build_snap_index

    if (source is None) == (place is None):
        raise typer.BadParameter("give either SOURCE or --place")
    try:
        speeds = parse_speed_overrides(speed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    t0 = time.perf_counter()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        load_task = progress.add_task("loading", total=None)

        def stage(msg: str) -> None:
            progress.update(load_task, description=msg)

        if place is not None:
            graph = load_place(place, speeds_kmh=speeds, progress=stage)
        else:
            assert source is not None
            graph = load_any(source, coords=coords, speeds_kmh=speeds,
                             tiger_time_factor=tiger_time_factor,
                             dimacs_time_unit_s=dimacs_time_unit_s, progress=stage)
        progress.update(load_task, description=f"loaded: {graph.summary()}", total=1, completed=1)
        if not no_ch:
            compile_task = progress.add_task(
                "compiling routing kernels (first run only; cached afterwards)", total=None)
            t_compile = time.perf_counter()
            compile_ch_kernels(rounds=ch_threads is not None)
            t_compile = time.perf_counter() - t_compile
            progress.update(compile_task, total=1, completed=1,
                            description=f"routing kernels ready in {t_compile:.1f} s")
            ch_task = progress.add_task("contracting", total=graph.n_nodes)

            def on_ch(done: int, total: int) -> None:
                progress.update(ch_task, completed=done)

            hierarchy = build_hierarchy(graph, progress=on_ch, threads=ch_threads)
            graph = graph.with_hierarchy(hierarchy)
        # the snapping grid goes into the file too: workers map it instead of building it
        graph = graph.with_snap_index(build_snap_index(graph))
        save_task = progress.add_task(f"writing {out}", total=None)
        graph.save(out)
        progress.update(save_task, total=1, completed=1)
    if not no_ch:
        console.print(f"kernel compile (one-time, cached): {t_compile:.1f} s")
        console.print(f"preprocessing (contraction hierarchy): {hierarchy.preprocess_s:.1f} s")
    console.print(f"[green]wrote[/green] {out}: {graph.summary()} in "
                  f"{time.perf_counter() - t0:.1f} s")


@graph_app.command("info")
def info(path: Annotated[Path, typer.Argument(help="Graph file")]) -> None:
    """Print a graph file's summary and load time (checks the file whole: arrays and
    checksum). A file that cannot be used gives one line naming the problem, exit code 1."""
    import warnings

    from routing.errors import GraphFileError, GraphFormatWarning
    from routing.graph import RoadGraph

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GraphFormatWarning)
            g = RoadGraph.load(path)
    except GraphFileError as exc:
        # one line, no traceback, and not wrapped at the terminal width
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    dt = time.perf_counter() - t0
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    console.print(f"{path}: {g.summary()}; loaded in {dt * 1000:.0f} ms",
                  soft_wrap=True)
    console.print(f"source: {g.meta.get('source')} ({g.meta.get('source_kind')}); "
                  f"classes: {', '.join(g.class_names)}", soft_wrap=True)
    if "time_factor" in g.meta:
        console.print(f"time_factor: {g.meta['time_factor']} (travel times x this; TIGER "
                      f"default {TIGER_TIME_FACTOR}, measured against SFFD travel)")


if __name__ == "__main__":
    graph_app()
