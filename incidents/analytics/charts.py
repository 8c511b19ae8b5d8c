"""Server-side charts with matplotlib (Agg backend, no display; one ``Figure`` per call and no
pyplot state). Rendered on the event loop's thread: ``rc_context`` changes process-wide
rcParams, so charts are not drawn from worker threads. Inputs are aggregates already computed
by the database (a few dozen points); this module only draws (~50-100 ms a chart)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure

_LABELS = {"call_processing": "Call processing", "total_response": "Total response",
           "turnout": "Turnout", "travel": "Travel", "unit_response": "Unit response",
           "committed": "Time committed"}


def _render(fig: Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    # metadata without dates: the same data renders to the same bytes.
    meta: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    # A fixed salt for the SVG element ids (random by default).
    with matplotlib.rc_context({"svg.hashsalt": "cad-analytics"}):
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
