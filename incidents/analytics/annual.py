"""The annual report: one self-contained HTML document (charts inline as SVG) and a PDF of
the same figures, from the same service functions as the HTTP reports: volumes, intervals
against the NFPA thresholds, weekly trend, monthly volume and the H3 density map."""

from __future__ import annotations

import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from cad.security.scope import Scope
from incidents.analytics import charts, service

INTERVALS = ("call_processing", "turnout", "travel", "total_response")
# NFPA 1710 / 1225 ask for 90 % of responses within the threshold.
TARGET_SHARE = 0.9


@dataclass
class AnnualReport:
    year: int
    agency: str | None
    timezone: str
    totals: dict[str, Any]          # the report with no grouping
    by_group: dict[str, Any]        # by call type group
    by_month: list[tuple[str, int]]
    weekly: dict[str, Any]          # total response by week
    hexbins: dict[str, Any]


async def gather(*, pool: asyncpg.Pool, year: int, agency: str | None, timezone: str,
                 training: Iterable[str] = ()) -> AnnualReport:
    """``training``: the training agencies (CAD_TRAINING_AGENCIES), left out unless ``agency``
    names one."""
    tz = ZoneInfo(timezone)
    start, end = datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)
    scope = Scope(agencies=None if agency is None else frozenset({agency}),
                  hidden=frozenset(training) - {agency})

    async def run(metrics: list[str], group_by: list[str]) -> dict[str, Any]:
        return await service.report(pool=pool, scope=scope, timezone=timezone, query=service.ReportQuery(
            metrics=metrics, group_by=group_by, start=start, end=end))

    totals = await run(list(INTERVALS), [])
    by_group = await run(["call_processing", "total_response"], ["call_type_group"])
    weekly = await run(["total_response"], ["week"])
    months = await pool.fetch(
        """SELECT to_char(date_trunc('month', received_at AT TIME ZONE $3), 'YYYY-MM') AS month,
                  count(*) AS n
           FROM analytics_incidents
           WHERE received_at >= $1 AND received_at < $2 AND ($4::text IS NULL OR agency = $4)
             AND agency <> ALL($5::text[])
           GROUP BY 1 ORDER BY 1""", start, end, timezone, agency, scope.hidden_for())
    hexes = await service.hexbins(pool=pool, scope=scope, resolution=8, start=start, end=end,
                                  source=None)
    return AnnualReport(year=year, agency=agency, timezone=timezone, totals=totals,
                        by_group=by_group, by_month=[(r["month"], r["n"]) for r in months],
                        weekly=weekly, hexbins=hexes)


def _fmt(value: float | None, unit: str = " s") -> str:
    return "–" if value is None else f"{value:,.0f}{unit}"


def _threshold(r: dict[str, Any]) -> str:
    by = r.get("threshold_by_discipline_s")
    if r["threshold_s"] is None and by:
        return f"{by['ems']:.0f} s EMS / {by['fire']:.0f} s fire"
    return _fmt(r["threshold_s"])


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _month_chart(data: list[tuple[str, int]]) -> Figure:
    fig = Figure(figsize=(8, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.bar([m for m, _ in data], [n for _, n in data], color="#4472c4")
    ax.set_ylabel("incidents")
    ax.set_title("Incidents by month")
    ax.tick_params(axis="x", labelrotation=45)
    return fig


def _hex_map(geo: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(6, 6), dpi=100)
    ax = fig.add_subplot()
    counts = [f["properties"]["incidents"] for f in geo["features"]]
    norm = Normalize(vmin=0, vmax=max(counts) if counts else 1)
    cmap = matplotlib.colormaps["YlOrRd"]
    for f in geo["features"]:
        ring = f["geometry"]["coordinates"][0]
        ax.fill([p[0] for p in ring], [p[1] for p in ring],
                color=cmap(norm(f["properties"]["incidents"])), linewidth=0.2, edgecolor="white")
    ax.set_aspect(1.25)
    ax.set_title(f"Incident density (H3 resolution {geo['resolution']}, "
                 f"~{geo['average_cell_area_km2']:.2f} km² cells)")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="incidents")
    return fig


def _figures(rep: AnnualReport) -> list[tuple[str, Figure | bytes]]:
    points = [(row["group"]["week"], row["metrics"]["total_response"]["p90_s"])
              for row in rep.weekly["rows"]]
    threshold = service.INTERVALS["total_response"][2]
    return [
        ("Incidents by month", _month_chart(rep.by_month)),
        ("Total response, 90th percentile by week",
         charts.series(points, metric="total_response", threshold_s=threshold, fmt="svg", by="week")),
        ("Incident density", _hex_map(rep.hexbins)),
    ]


def _svg(fig: Figure) -> str:
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "cad-annual"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue().decode()
    return text[text.index("<svg"):]


def interval_rows(rep: AnnualReport) -> list[dict[str, Any]]:
    """The table of intervals against their thresholds (also what the tests read)."""
    stats = rep.totals["rows"][0]["metrics"] if rep.totals["rows"] else {}
    out = []
    for name in INTERVALS:
        s = stats.get(name)
        if s is None:
            continue
        share = s["within_share"]
        out.append({"interval": name, **s,
                    "meets_target": None if share is None else share >= TARGET_SHARE})
    return out


def render_html(rep: AnnualReport) -> str:
    who = rep.agency or "All agencies"
    totals = rep.totals["rows"][0] if rep.totals["rows"] else {"incidents": 0, "unit_responses": 0}
    rows = "".join(
        f"<tr><td>{html.escape(r['interval'].replace('_', ' '))}</td><td>{r['n']:,}</td>"
        f"<td>{r['missing']:,}</td><td>{r['out_of_order']:,}</td><td>{_fmt(r['median_s'])}</td>"
        f"<td>{_fmt(r['p90_s'])}</td><td>{_threshold(r)}</td>"
        f"<td>{_share(r['within_share'])}</td>"
        f"<td>{'yes' if r['meets_target'] else 'no' if r['meets_target'] is False else '–'}</td></tr>"
        for r in interval_rows(rep))
    groups = "".join(
        f"<tr><td>{html.escape(str(g['group']['call_type_group'] or '(none)'))}</td>"
        f"<td>{g['incidents']:,}</td>"
        f"<td>{_fmt(g['metrics']['call_processing']['p90_s'])}</td>"
        f"<td>{_fmt(g['metrics']['total_response']['p90_s'])}</td>"
        f"<td>{_share(g['metrics']['total_response']['within_share'])}</td></tr>"
        for g in rep.by_group["rows"])
    figures = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f"{fig.decode()[fig.decode().index('<svg'):] if isinstance(fig, bytes) else _svg(fig)}"
        f"</figure>" for title, fig in _figures(rep))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Annual response report {rep.year} – {html.escape(who)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
td, th {{ border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 2rem 0; }} figure svg {{ max-width: 100%; height: auto; }}
figcaption {{ font-weight: 600; margin-bottom: .5rem; }}
</style></head><body>
<h1>Annual response report {rep.year}</h1>
<p>{html.escape(who)}. Calls received 1 January to 31 December {rep.year}
({html.escape(rep.timezone)}), live and imported records.
<strong>{totals['incidents']:,}</strong> incidents,
<strong>{totals['unit_responses']:,}</strong> unit responses.</p>
<h2>Intervals against NFPA thresholds</h2>
<p>Percentiles are continuous (linear interpolation). Intervals with a missing or
out-of-order timestamp are excluded and counted. The target is {TARGET_SHARE:.0%} of responses
within the threshold (NFPA 1710, NFPA 1225).</p>
<table id="intervals"><tr><th>interval</th><th>n</th><th>missing</th><th>out of order</th>
<th>median</th><th>90th pct</th><th>threshold</th><th>within</th><th>meets 90 %</th></tr>
{rows}</table>
<h2>By call type group</h2>
<table id="groups"><tr><th>group</th><th>incidents</th><th>call processing p90</th>
<th>total response p90</th><th>total response within 8 min</th></tr>{groups}</table>
<h2>Trends and map</h2>
{figures}
</body></html>
"""


def render_pdf(rep: AnnualReport) -> bytes:
    buf = io.BytesIO()
    with PdfPages(buf, metadata={"Title": f"Annual response report {rep.year}",
                                 "CreationDate": None}) as pdf:
        page = Figure(figsize=(8.27, 11.69), dpi=100)
        page.text(0.08, 0.95, f"Annual response report {rep.year}", fontsize=18, weight="bold")
        totals = rep.totals["rows"][0] if rep.totals["rows"] else {"incidents": 0, "unit_responses": 0}
        page.text(0.08, 0.91, f"{rep.agency or 'All agencies'} · {totals['incidents']:,} incidents · "
                              f"{totals['unit_responses']:,} unit responses", fontsize=11)
        lines = [f"{'interval':18}{'n':>9}{'median':>10}{'p90':>10}{'threshold':>20}{'within':>10}"]
        for r in interval_rows(rep):
            lines.append(f"{r['interval']:18}{r['n']:>9,}{_fmt(r['median_s']):>10}"
                         f"{_fmt(r['p90_s']):>10}{_threshold(r):>20}"
                         f"{_share(r['within_share']):>10}")
        page.text(0.08, 0.85, "\n".join(lines), family="monospace", fontsize=9, va="top")
        pdf.savefig(page)
        for _title, fig in _figures(rep):
            if isinstance(fig, Figure):
                pdf.savefig(fig, bbox_inches="tight")
        weekly = Figure(figsize=(8, 4.5), dpi=100)
        ax = weekly.add_subplot()
        pts = [(str(r["group"]["week"]), r["metrics"]["total_response"]["p90_s"])
               for r in rep.weekly["rows"] if r["metrics"]["total_response"]["p90_s"] is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.axhline(service.INTERVALS["total_response"][2], color="#c00000", linestyle="--")
        ax.set_title("Total response, 90th percentile by week")
        ax.tick_params(axis="x", labelrotation=45)
        pdf.savefig(weekly, bbox_inches="tight")
    return buf.getvalue()
