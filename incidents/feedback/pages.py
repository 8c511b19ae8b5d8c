"""The public feedback pages on the public face's shell (``incidents.public.pages.layout``):
the form (a plain HTML form POST: no script needed), the receipt with the reference, the
status by reference (a plain GET form) and the monthly counts with small counts hidden."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from incidents.feedback.schemas import CATEGORIES, SUBCATEGORIES
from incidents.public.i18n import MESSAGES
from incidents.public.pages import layout

# The form's fields, in order, with their input attributes (the server validates again).
_TEXT_FIELDS = (
    ("incident_number", "fb_incident", 'maxlength="32" autocomplete="off"'),
    ("unit", "fb_unit", 'maxlength="32" autocomplete="off"'),
    ("occurred_at", "fb_when", 'type="datetime-local"'),
)
_CONTACT_FIELDS = (
    ("name", "fb_name", 'maxlength="200" autocomplete="name"'),
    ("email", "fb_email", 'type="email" maxlength="254" autocomplete="email"'),
    ("phone", "fb_phone", 'type="tel" maxlength="32" autocomplete="tel"'),
)


def _local(ts: datetime | None, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M") if ts is not None else "—"


def _field(name: str, label: str, attrs: str, values: Mapping[str, str],
           errors: Mapping[str, str]) -> str:
    err_id = f"{name}-error"
    invalid = (f' aria-invalid="true" aria-describedby="{err_id}"' if name in errors else "")
    err = (f'<span id="{err_id}" class="err">{escape(errors[name])}</span>'
           if name in errors else "")
    return (f'<p><label for="{name}">{escape(label)}</label><br><input id="{name}" '
            f'name="{name}" value="{escape(values.get(name, ""))}" {attrs}{invalid}>{err}</p>')


def form_page(*, lang: str, agency: str, values: Mapping[str, str],
              errors: Mapping[str, str], challenge_html: str,
              stats: dict[str, Any] | None) -> str:
    """The feedback form (with the answers given and what was wrong, after a refused post),
    the status lookup and the monthly counts."""
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}/feedback"
    summary = ""
    if errors:
        items = "".join(f'<li><a href="#{escape(k if k in _ALL_FIELDS else "description")}">'
                        f"{escape(v)}</a></li>" for k, v in errors.items())
        summary = (f'<div role="alert"><p>{escape(m["fb_errors"])}</p><ul>{items}</ul></div>')
    chosen = values.get("category", "")
    radios = "".join(
        f'<label><input type="radio" name="category" value="{c}" required'
        f'{" checked" if c == chosen else ""}> {escape(m["fb_" + c])}</label><br>'
        for c in CATEGORIES)
    sub = values.get("subcategory", "")
    options = f'<option value="">{escape(m["fb_sub_none"])}</option>' + "".join(
        f'<option value="{s}"{" selected" if s == sub else ""}>{escape(m["fb_sub_" + s])}'
        "</option>" for s in SUBCATEGORIES)
    desc_invalid = (' aria-invalid="true" aria-describedby="description-error"'
                    if "description" in errors else "")
    desc_err = (f'<span id="description-error" class="err">{escape(errors["description"])}'
                "</span>" if "description" in errors else "")
    form = (
        f'<form method="post" action="{base}"><input type="hidden" name="lang" value="{lang}">'
        f'<fieldset><legend>{escape(m["fb_category"])}</legend>{radios}</fieldset>'
        f'<p><label for="subcategory">{escape(m["fb_subcategory"])}</label><br>'
        f'<select id="subcategory" name="subcategory">{options}</select></p>'
        f'<p><label for="description">{escape(m["fb_description"])}</label><br>'
        f'<textarea id="description" name="description" rows="6" cols="60" maxlength="5000" '
        f'required{desc_invalid}>{escape(values.get("description", ""))}</textarea>{desc_err}</p>'
        + "".join(_field(n, m[k], a, values, errors) for n, k, a in _TEXT_FIELDS)
        + f'<fieldset><legend>{escape(m["fb_contact"])}</legend>'
        + "".join(_field(n, m[k], a, values, errors) for n, k, a in _CONTACT_FIELDS)
        + f"</fieldset>{challenge_html}"
        f'<p><button type="submit">{escape(m["fb_send"])}</button></p></form>')
    lookup = status_form(lang=lang, agency=agency, reference="")
    body = (f"<p>{escape(m['fb_intro'])}</p><p>{escape(m['fb_privacy'])}</p>{summary}{form}"
            f"<h2>{escape(m['fb_status_title'])}</h2>{lookup}"
            f"{stats_section(lang=lang, stats=stats) if stats is not None else ''}")
    return layout(lang=lang, title=m["fb_title"], agency=agency, current=base, body=body,
                  head="<style>.err{color:#a00000;margin-left:.5rem}fieldset{margin:1rem 0}"
                       "</style>")


_ALL_FIELDS = {"category", "subcategory", "description", "incident_number", "unit",
               "occurred_at", "name", "email", "phone"}


def status_form(*, lang: str, agency: str, reference: str) -> str:
    m = MESSAGES[lang]
    return (f'<form method="get" action="/public/{quote(agency)}/feedback/status">'
            f'<input type="hidden" name="lang" value="{lang}"><p><label for="reference">'
            f'{escape(m["fb_reference"])}</label> <input id="reference" name="reference" '
            f'value="{escape(reference)}" maxlength="32" autocomplete="off"> '
            f'<button type="submit">{escape(m["fb_status_find"])}</button></p></form>')


def receipt_page(*, lang: str, agency: str, receipt: dict[str, Any], tz: ZoneInfo) -> str:
    m = MESSAGES[lang]
    ref = receipt["reference"]
    status_href = (f"/public/{quote(agency)}/feedback/status?reference={quote(ref)}"
                   f"&amp;lang={lang}")
    body = (f'<p role="status">{escape(m["fb_thanks"])}</p>'
            f'<p>{escape(m["fb_reference"])}: <strong id="reference">{escape(ref)}</strong></p>'
            f"<p>{escape(m['fb_keep'])}</p>"
            f"<p>{escape(m['fb_ack_by'])} {_local(receipt['acknowledge_due_at'], tz)} "
            f"{escape(m['fb_resolve_by'])} {_local(receipt['resolve_due_at'], tz)}.</p>"
            f'<p><a href="{status_href}">{escape(m["fb_status_title"])}</a></p>')
    return layout(lang=lang, title=m["fb_title"], agency=agency,
                  current=f"/public/{quote(agency)}/feedback", body=body)


def status_page(*, lang: str, agency: str, reference: str, found: dict[str, Any] | None,
                tz: ZoneInfo) -> str:
    m = MESSAGES[lang]
    result = ""
    if reference and found is None:
        result = f'<p role="status">{escape(m["fb_status_not_found"])}</p>'
    elif found is not None:
        closed = found["closed_at"]
        rows = [("fb_reference", found["reference"]),
                ("fb_col_category", m["fb_" + found["category"]]),
                ("fb_status", m["fb_st_" + found["status"]]),
                ("fb_received", _local(found["received_at"], tz)),
                ("fb_acknowledged", _local(found["acknowledged_at"], tz)),
                ("fb_resolved", _local(found["resolved_at"], tz))]
        if closed is not None:
            rows.append(("fb_closed", _local(closed, tz)))
        if found["outcome"]:
            rows.append(("fb_outcome", m.get("oc_" + found["outcome"], found["outcome"])))
        if found["response"]:
            rows.append(("fb_response", found["response"]))
        result = ('<table id="status"><tbody>' + "".join(
            f'<tr><th scope="row">{escape(m[k])}</th><td>{escape(v)}</td></tr>' for k, v in rows)
            + "</tbody></table>")
    body = status_form(lang=lang, agency=agency, reference=reference) + result
    return layout(lang=lang, title=m["fb_status_title"], agency=agency,
                  current=f"/public/{quote(agency)}/feedback/status", body=body)


def stats_section(*, lang: str, stats: dict[str, Any]) -> str:
    """The public counts as a table: one row per month and category."""
    m = MESSAGES[lang]
    k = stats["min_cell"]
    title = f"<h2>{escape(m['fb_stats_title'])}</h2><p>{escape(m['fb_stats_intro'].format(k=k))}</p>"
    rows = []
    for period in stats["periods"]:
        for c in period["categories"]:
            received = (m["fb_fewer"].format(k=k) if c["received"] is None
                        else str(c["received"]))
            parts = []
            if c["received"] is not None:
                for o in c["outcomes"]:
                    if o["count"] == 0:
                        continue
                    shown = m["fb_hidden"] if o["count"] is None else str(o["count"])
                    parts.append(f"{m.get('oc_' + o['outcome'], o['outcome'])}: {shown}")
            rows.append(f"<tr><td>{escape(period['period'])}</td>"
                        f"<td>{escape(m['fb_' + c['category']])}</td><td>{escape(received)}</td>"
                        f"<td>{escape('; '.join(parts))}</td></tr>")
    if not rows:
        return title + f"<p>{escape(m['fb_no_stats'])}</p>"
    head = "".join(f'<th scope="col">{escape(m[h])}</th>' for h in
                   ("fb_month", "fb_col_category", "fb_col_received", "fb_col_outcomes"))
    return (title + f'<table id="feedback-stats"><caption>{escape(m["fb_stats_title"])}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
