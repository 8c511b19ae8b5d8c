"""Server-side charts with matplotlib (Agg backend, no display; one ``Figure`` per call and no
pyplot state). Inputs are aggregates already computed by the database (a few dozen points);
this module only draws (~50-100 ms a chart), so the API never calls it on the event loop:
``render_off_loop`` runs a drawing function on one dedicated worker thread (charts are drawn one
at a time there; matplotlib makes no promise about concurrent drawing). Nothing here changes
rcParams per call: the one setting the charts need (a fixed SVG id salt, so the same data
renders to the same bytes) is set once at import."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import matplotlib

matplotlib.use("Agg")
# A fixed salt for the SVG element ids (random by default), process-wide and set once: setting
# it per call (rc_context) would race between threads.
matplotlib.rcParams["svg.hashsalt"] = "cad-analytics"
from matplotlib.figure import Figure

# One thread for all chart drawing: off the event loop, and one chart at a time.
_DRAWER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cad-charts")


async def render_off_loop(draw: Callable[..., bytes], /, **kwargs: Any) -> bytes:
    """Run ``draw(**kwargs)`` (``distribution`` or ``series``) on the chart thread and await the
    bytes; the event loop keeps serving other requests meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_DRAWER, lambda: draw(**kwargs))

_LABELS = {"call_processing": "Call processing", "total_response": "Total response",
           "turnout": "Turnout", "travel": "Travel", "unit_response": "Unit response",
           "committed": "Time committed"}


def _render(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    # metadata without dates: the same data renders to the same bytes.
    meta: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=meta)
    return buf.getvalue()


def distribution(hist: Sequence[tuple[float, int]], *, metric: str, threshold_s: float,
                 fmt: str) -> bytes:
    """Histogram of the valid intervals with the threshold marked."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    if hist:
        width = hist[1][0] - hist[0][0] if len(hist) > 1 else max(threshold_s / 8.0, 1.0)
        ax.bar([b for b, _ in hist], [n for _, n in hist], width=width, align="edge",
               color="#4472c4", edgecolor="white")
    ax.axvline(threshold_s, color="#c00000", linestyle="--", label=f"threshold {threshold_s:g} s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("count")
    ax.set_title(f"{_LABELS.get(metric, metric)}: distribution")
    ax.legend()
    return _render(fig, fmt)


def series(points: Sequence[tuple[Any, float | None]], *, metric: str, threshold_s: float,
           fmt: str, by: str) -> bytes:
    """90th percentile per hour of day or per week, with the threshold marked."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    xs = [str(x) for x, y in points if y is not None]
    ys = [y for _, y in points if y is not None]
    ax.plot(xs, ys, marker="o", color="#4472c4", label="90th percentile")
    ax.axhline(threshold_s, color="#c00000", linestyle="--", label=f"threshold {threshold_s:g} s")
    ax.set_xlabel("hour of day" if by == "hour_of_day" else "week")
    ax.set_ylabel("seconds")
    ax.set_title(f"{_LABELS.get(metric, metric)}: 90th percentile by "
                 f"{'hour of day' if by == 'hour_of_day' else 'week'}")
    if by == "week":
        ax.tick_params(axis="x", labelrotation=45)
    ax.legend()
    return _render(fig, fmt)
