"""Server-rendered public pages and the Atom feed. Every page is complete without JavaScript
(tables and forms); the map script only adds a Leaflet map over the same data. ``layout`` is
the shell later public pages (alerts, reports, feedback) reuse: header, language switch,
navigation, main landmark, footer (docs/public.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from html import escape
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo

from incidents.public.i18n import MESSAGES
from incidents.public.views import PublicIncident

# The public area's pages, in navigation order: (path under /public/{agency}, message key).
NAV: tuple[tuple[str, str], ...] = (
    ("/map", "nav_map"),
    ("/lookup", "nav_rfs"),
    ("/alerts", "nav_alerts"),
    ("/report", "nav_report"),
    ("/feedback", "nav_feedback"),
)

STYLE = ("body{font-family:system-ui,sans-serif;margin:0;color:#111;background:#fff;"
         "line-height:1.5}header,main,footer{padding:0 1rem;max-width:60rem;margin:auto}"
         "nav a{margin-right:1rem}table{border-collapse:collapse;width:100%}"
         "th,td{border:1px solid #666;padding:.25rem .5rem;text-align:left}"
         "#map{height:22rem;margin:1rem 0}.skip{position:absolute;left:-999px}"
         ".skip:focus{left:1rem}a{color:#0645ad}")


def _href(path: str, lang: str, **query: str) -> str:
    """``path`` may carry a query already (a page's own parameters, kept by the language
    links); ``lang`` replaces any there."""
    path, _, existing = path.partition("?")
    q = {k: v for k, v in parse_qsl(existing) if k != "lang"}
    q.update({k: v for k, v in query.items() if v})
    q["lang"] = lang
    return f"{path}?{urlencode(q)}"


def layout(*, lang: str, title: str, agency: str, current: str, body: str,
           scripts: Iterable[str] = (), head: str = "") -> str:
    """One public page: ``current`` is the path of this page, with the query to keep, if any
    (for the language links)."""
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    current_mark = ' aria-current="true"'
    page_mark = ' aria-current="page"'
    langs = " ".join(
        f'<a href="{escape(_href(current, code))}" lang="{code}" hreflang="{code}"'
        f'{current_mark if code == lang else ""}>{escape(msgs["lang_name"])}</a>'
        for code, msgs in MESSAGES.items())
    nav = "".join(f'<a href="{escape(_href(base + path, lang))}"'
                  f'{page_mark if base + path == current else ""}>{escape(m[key])}</a>'
                  for path, key in NAV)
    script_tags = "".join(f'<script src="{escape(s)}" defer></script>' for s in scripts)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)} · {escape(agency)}</title><style>{STYLE}</style>{head}"
        f"{script_tags}</head><body>"
        f'<a class="skip" href="#main">{escape(m["skip"])}</a>'
        f"<header><p>{escape(m['site'])} · {escape(agency)}</p>"
        f'<nav aria-label="{escape(m["site"])}">{nav}</nav>'
        f'<p>{escape(m["languages"])}: {langs}</p></header>'
        f'<main id="main"><h1>{escape(title)}</h1>{body}</main>'
        f"<footer></footer></body></html>")


def _local(ts: datetime, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def place_label(p: PublicIncident, m: dict[str, str]) -> str:
    """The generalised place in the page's language (feeds keep the English label)."""
    if p.place.precision == "block" and p.place.street:
        return m["block"].format(n=p.place.block, street=p.place.street)
    return p.place.label


def _table(rows: list[PublicIncident], m: dict[str, str], tz: ZoneInfo, *,
           caption: str, table_id: str = "") -> str:
    if not rows:
        return f"<p>{escape(m['none'])}</p>"
    head = "".join(f'<th scope="col">{escape(m[k])}</th>' for k in
                   ("col_number", "col_type", "col_received", "col_location", "col_response"))
    body = "".join(
        f'<tr data-lat="{p.place.lat:.5f}" data-lon="{p.place.lon:.5f}">'
        f"<td>{escape(p.number)}</td><td>{escape(p.type_description)}</td>"
        f"<td>{_local(p.received_at, tz)}</td><td>{escape(place_label(p, m))}</td>"
        f"<td>{escape(m['yes'] if p.response_initiated else m['no'])}</td></tr>" for p in rows)
    ident = f' id="{table_id}"' if table_id else ""
    return (f"<table{ident}><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def map_page(*, lang: str, agency: str, rows: list[PublicIncident], delay: str, tz: ZoneInfo,
             page: int, has_next: bool) -> str:
    """One page of the crime map: ``rows`` (at most MAP_PAGE_ROWS, newest first) as a table
    whose rows carry their published point; map.js draws the map from that table."""
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    downloads = " · ".join(f'<a href="{base}/incidents.{ext}">{ext.upper()}</a>'
                           for ext in ("geojson", "csv", "atom"))
    pager = []
    if page > 1:
        pager.append(f'<a href="{escape(_href(base + "/map", lang, page=str(page - 1)))}" '
                     f'rel="prev">{escape(m["newer"])}</a>')
    if has_next:
        pager.append(f'<a href="{escape(_href(base + "/map", lang, page=str(page + 1)))}" '
                     f'rel="next">{escape(m["older"])}</a>')
    nav = (f'<nav aria-label="{escape(m["pages"])}"><p>{" ".join(pager)}</p></nav>'
           if pager else "")
    body = (f"<p>{escape(m['map_intro'].format(delay=delay))}</p>"
            f'<div id="map" hidden role="region" aria-label="{escape(m["map_label"])}"></div>'
            f"{_table(rows, m, tz, caption=m['map_title'], table_id='incidents')}{nav}"
            f"<p>{escape(m['downloads'])}: {downloads}</p>")
    return layout(lang=lang, title=m["map_title"], agency=agency, current=f"{base}/map",
                  body=body, head='<link rel="stylesheet" href="/console/vendor/leaflet/leaflet.css">'
                  f'<link rel="alternate" type="application/atom+xml" href="{base}/incidents.atom">',
                  scripts=("/console/vendor/leaflet/leaflet.js", "/public/static/map.js"))


def lookup_page(*, lang: str, agency: str, number: str | None, found: PublicIncident | None,
                day: date | None, day_rows: list[PublicIncident] | None, tz: ZoneInfo) -> str:
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    form = (f'<form method="get" action="{base}/lookup"><input type="hidden" name="lang" '
            f'value="{lang}"><p><label for="number">{escape(m["rfs_number"])}</label> '
            f'<input id="number" name="number" value="{escape(number or "")}" maxlength="32"></p>'
            f'<p><label for="date">{escape(m["rfs_date"])}</label> <input id="date" name="date" '
            f'type="date" value="{day.isoformat() if day else ""}"></p>'
            f'<p><button type="submit">{escape(m["rfs_find"])}</button></p></form>')
    result = ""
    if number:
        result += (_table([found], m, tz, caption=m["rfs_number"] + " " + number) if found
                   else f'<p role="status">{escape(m["rfs_not_found"])}</p>')
    if day is not None and day_rows is not None:
        caption = m["rfs_day"].format(day=day.isoformat())
        result += f"<h2>{escape(caption)}</h2>" + _table(day_rows, m, tz, caption=caption)
    body = f"<p>{escape(m['rfs_intro'])}</p>{form}{result}"
    return layout(lang=lang, title=m["rfs_title"], agency=agency, current=f"{base}/lookup",
                  body=body)


def atom(*, agency: str, base_url: str, rows: list[PublicIncident]) -> str:
    """An Atom 1.0 feed (RFC 4287): one entry per published incident."""
    updated = max((p.closed_at for p in rows), default=datetime(2000, 1, 1, tzinfo=UTC))
    feed_id = f"{base_url}/public/{quote(agency)}/incidents.atom"
    entries = "".join(
        f"<entry><id>{escape(feed_id)}#{escape(p.number)}</id>"
        f"<title>{escape(p.type_description)} · {escape(p.place.label or p.number)}</title>"
        f"<updated>{p.closed_at.isoformat()}</updated><published>{p.received_at.isoformat()}"
        f"</published><summary>{escape(p.number)}: {escape(p.type_description)}"
        f"{', ' + escape(p.place.label) if p.place.label else ''}</summary>"
        f'<georss:point xmlns:georss="http://www.georss.org/georss">{p.place.lat:.5f} '
        f"{p.place.lon:.5f}</georss:point></entry>" for p in rows)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<id>{escape(feed_id)}</id><title>{escape(agency)} incidents</title>"
            f"<updated>{updated.isoformat()}</updated><author><name>{escape(agency)}</name>"
            f'</author><link rel="self" href="{escape(feed_id)}"/>{entries}</feed>')
