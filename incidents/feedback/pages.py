"""The public feedback pages on the public face's shell (``incidents.public.pages.layout``):
the form (a plain HTML form POST: no script needed), the receipt with the reference, the
status by reference (a plain GET form) and the monthly counts with small counts hidden."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from cad.errors import CADError, TooManyRequests
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


# The form's inputs, in order: a refused field is named by its input.
FIELDS = ("category", "subcategory", "description", "incident_number", "unit", "occurred_at",
          "name", "email", "phone")
# A refused challenge (incidents.public.challenge's ``reason``) as a message of the form.
_REASONS = {"too_soon": "fb_err_too_soon", "used": "fb_err_used", "expired": "fb_err_expired"}


def validation_errors(errors: Sequence[Any]) -> dict[str, str]:
    """Input name -> message key, once per input, for the fields a validation refused."""
    out: dict[str, str] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())][1:]   # after "body"
        name = loc[0] if loc and loc[0] in FIELDS else "form"
        out.setdefault(name, f"fb_err_{name}")
    return out


def refusal_errors(exc: CADError) -> dict[str, str]:
    """A refusal at submission (the challenge, the address's budget, a field the service
    checks) as input name -> message key."""
    if isinstance(exc, TooManyRequests):
        return {"form": "fb_err_limit"}
    reason = exc.extra.get("reason")
    if reason is not None:
        return {"form": _REASONS.get(str(reason), "fb_err_challenge")}
    fields = [str(e.get("field", "")).removeprefix("body.") for e in exc.extra.get("errors", [])]
    named = [f for f in fields if f in FIELDS]
    return {named[0]: f"fb_err_{named[0]}"} if named else {"form": "fb_err_form"}


def _error(name: str, errors: Mapping[str, str], m: Mapping[str, str]) -> str:
    if name not in errors:
        return ""
    return f'<br><strong id="{name}-error" class="err">{escape(m[errors[name]])}</strong>'


def _invalid(name: str, errors: Mapping[str, str]) -> str:
    return f' aria-invalid="true" aria-describedby="{name}-error"' if name in errors else ""


def _field(name: str, label: str, attrs: str, values: Mapping[str, str],
           errors: Mapping[str, str], m: Mapping[str, str]) -> str:
    return (f'<p><label for="{name}">{escape(label)}</label>{_error(name, errors, m)}<br>'
            f'<input id="{name}" name="{name}" value="{escape(values.get(name, ""))}" '
            f"{attrs}{_invalid(name, errors)}></p>")


def form_page(*, lang: str, agency: str, values: Mapping[str, str],
              errors: Mapping[str, str], form_token: str,
              stats: dict[str, Any] | None) -> str:
    """The feedback form (with the answers given and what was wrong, after a refused post),
    the status lookup and the monthly counts. ``form_token``: the challenge of the path
    without JavaScript (incidents.public.challenge), carried in a hidden input."""
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}/feedback"
    summary = ""
    if errors:
        items = "".join(
            f'<li><a href="#{escape(k if k in FIELDS else "category-legend")}">'
            f"{escape(m[v])}</a></li>" for k, v in errors.items())
        summary = f'<div role="alert"><p>{escape(m["fb_errors"])}</p><ul>{items}</ul></div>'
    chosen = values.get("category", "")
    radios = "".join(
        f'<label><input type="radio" name="category" value="{c}" required'
        f'{" checked" if c == chosen else ""}> {escape(m["fb_" + c])}</label><br>'
        for c in CATEGORIES)
    sub = values.get("subcategory", "")
    options = f'<option value="">{escape(m["fb_sub_none"])}</option>' + "".join(
        f'<option value="{s}"{" selected" if s == sub else ""}>{escape(m["fb_sub_" + s])}'
        "</option>" for s in SUBCATEGORIES)
    form = (
        f'<form method="post" action="{base}"><input type="hidden" name="lang" value="{lang}">'
        f'<input type="hidden" name="form_token" value="{escape(form_token)}">'
        f'<fieldset><legend id="category-legend">{escape(m["fb_category"])}</legend>'
        f'{_error("category", errors, m)}{radios}</fieldset>'
        f'<p><label for="subcategory">{escape(m["fb_subcategory"])}</label>'
        f'{_error("subcategory", errors, m)}<br><select id="subcategory" name="subcategory"'
        f'{_invalid("subcategory", errors)}>{options}</select></p>'
        f'<p><label for="description">{escape(m["fb_description"])}</label>'
        f'{_error("description", errors, m)}<br><textarea id="description" name="description" '
        f'rows="6" cols="60" maxlength="5000" required{_invalid("description", errors)}>'
        f'{escape(values.get("description", ""))}</textarea></p>'
        + "".join(_field(n, m[k], a, values, errors, m) for n, k, a in _TEXT_FIELDS)
        + f'<fieldset><legend>{escape(m["fb_contact"])}</legend>'
        + "".join(_field(n, m[k], a, values, errors, m) for n, k, a in _CONTACT_FIELDS)
        + "</fieldset>"
        f'<p><button type="submit">{escape(m["fb_send"])}</button></p></form>')
    lookup = status_form(lang=lang, agency=agency, reference="")
    body = (f"<p>{escape(m['fb_intro'])}</p><p>{escape(m['fb_privacy'])}</p>{summary}{form}"
            f"<h2>{escape(m['fb_status_title'])}</h2>{lookup}"
            f"{stats_section(lang=lang, stats=stats) if stats is not None else ''}")
    return layout(lang=lang, title=m["fb_title"], agency=agency, current=base, body=body,
                  head="<style>fieldset{margin:1rem 0}.err{color:#a00000}</style>")


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
    current = f"/public/{quote(agency)}/feedback/status"
    if reference:
        current += "?" + urlencode({"reference": reference})
    return layout(lang=lang, title=m["fb_status_title"], agency=agency, current=current,
                  body=body)


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
