"""The report pages on the public layout: the form (complete without JavaScript: a plain POST
with a form token) and the status lookup. Messages are in the public catalogue
(incidents.public.i18n)."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from cad.errors import CADError, TooManyRequests
from incidents.public.i18n import MESSAGES
from incidents.public.pages import layout
from incidents.reports.schemas import REPORT_TYPES

# Model field (first part of a validation error's location) -> the form's input.
_INPUT_OF = {"report_type": "report_type", "description": "description", "location": "address",
             "occurred_at": "occurred", "contact": "contact", "language": "lang"}
_CONTACT_INPUT = {"name": "contact_name", "phone": "contact_phone", "email": "contact_email"}
SCRIPT = "/public/static/report.js"   # solves the proof of work when scripts run
_CHALLENGE_REASONS = {"too_soon": "err_too_soon", "used": "err_used", "expired": "err_expired"}


def form_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(input name, message key) per refused field, in the form's order, once each."""
    found: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = _INPUT_OF.get(loc[0], "form") if loc else "form"
        if name == "contact":
            name = _CONTACT_INPUT.get(loc[1], "contact_name") if len(loc) > 1 else "contact_name"
        found.setdefault(name, f"err_{name}")
    order = ("report_type", "description", "address", "occurred", "contact_name",
             "contact_phone", "contact_email", "lang", "form")
    return [(n, found[n]) for n in order if n in found]


def challenge_errors(exc: CADError) -> list[tuple[str, str]]:
    """A refusal at submission (challenge, budget, place or time) as form errors."""
    if isinstance(exc, TooManyRequests):
        return [("form", "err_limit")]
    reason = exc.extra.get("reason")
    if reason is not None:
        return [("form", _CHALLENGE_REASONS.get(str(reason), "err_challenge"))]
    fields = [str(e.get("field", "")) for e in exc.extra.get("errors", [])]
    if any(f.startswith("body.location") for f in fields):
        return [("address", "err_address_area")]
    if any(f == "body.occurred_at" for f in fields):
        return [("occurred", "err_occurred")]
    return [("form", "err_generic")]


def _input(name: str, label: str, values: dict[str, str], errors: dict[str, str],
           m: dict[str, str], *, kind: str = "text", hint: str = "", maxlength: int = 200,
           required: bool = False, extra: str = "") -> str:
    described = []
    hint_html = ""
    if hint:
        hint_html = f'<br><span id="{name}-hint">{escape(hint)}</span>'
        described.append(f"{name}-hint")
    err_html = ""
    if name in errors:
        err_html = f'<br><strong id="{name}-error">{escape(m[errors[name]])}</strong>'
        described.append(f"{name}-error")
    attrs = (f' aria-describedby="{" ".join(described)}"' if described else "")
    attrs += ' aria-invalid="true"' if name in errors else ""
    attrs += " required" if required else ""
    value = escape(values.get(name, ""))
    if kind == "textarea":
        field = (f'<textarea id="{name}" name="{name}" rows="6" cols="60" '
                 f'maxlength="{maxlength}"{attrs}>{value}</textarea>')
    else:
        field = (f'<input id="{name}" name="{name}" type="{kind}" value="{value}" '
                 f'maxlength="{maxlength}"{attrs}{extra}>')
    return f'<p><label for="{name}">{escape(label)}</label>{hint_html}{err_html}<br>{field}</p>'


def report_page(*, lang: str, agency: str, token: str, values: dict[str, str],
                errors: list[tuple[str, str]]) -> str:
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    by_field = dict(errors)
    summary = ""
    if errors:
        items = "".join(
            f'<li><a href="#{name if name != "form" else "send"}">{escape(m[key])}</a></li>'
            for name, key in errors)
        summary = (f'<div role="alert" id="errors"><h2>{escape(m["report_errors"])}</h2>'
                   f"<ul>{items}</ul></div>")
    chosen = values.get("report_type", "")
    options = f'<option value="">{escape(m["report_choose"])}</option>' + "".join(
        f'<option value="{t}"{" selected" if t == chosen else ""}>{escape(m["rt_" + t])}</option>'
        for t in REPORT_TYPES)
    type_err = (f'<br><strong id="report_type-error">{escape(m[by_field["report_type"]])}</strong>'
                if "report_type" in by_field else "")
    type_attrs = (' aria-describedby="report_type-error" aria-invalid="true"'
                  if "report_type" in by_field else "")
    form = (
        f'<form method="post" action="{base}/report" accept-charset="utf-8" id="report-form" '
        f'data-challenge="{base}/reports/challenge">'
        f'<input type="hidden" name="lang" value="{lang}">'
        f'<input type="hidden" name="form_token" value="{escape(token)}">'
        '<input type="hidden" name="pow_challenge" value="">'
        '<input type="hidden" name="pow_solution" value="">'
        f'<p><label for="report_type">{escape(m["report_type"])}</label>{type_err}<br>'
        f'<select id="report_type" name="report_type" required{type_attrs}>{options}</select></p>'
        + _input("description", m["report_description"], values, by_field, m, kind="textarea",
                 hint=m["report_description_hint"], maxlength=4000, required=True)
        + _input("address", m["report_address"], values, by_field, m,
                 hint=m["report_address_hint"], required=True)
        + _input("occurred", m["report_occurred"], values, by_field, m, kind="datetime-local",
                 maxlength=20)
        + f'<fieldset><legend>{escape(m["report_contact"])}</legend>'
        f'<p id="contact-hint">{escape(m["report_contact_hint"])}</p>'
        + _input("contact_name", m["report_contact_name"], values, by_field, m, maxlength=100,
                 extra=' autocomplete="name"')
        + _input("contact_phone", m["report_contact_phone"], values, by_field, m, kind="tel",
                 maxlength=32, extra=' autocomplete="tel"')
        + _input("contact_email", m["report_contact_email"], values, by_field, m, kind="email",
                 maxlength=254, extra=' autocomplete="email"')
        + f'</fieldset><p><button type="submit" id="send">{escape(m["report_send"])}</button></p>'
        f'<p id="report-working" role="status" hidden>{escape(m["report_working"])}</p>'
        "</form>")
    lookup = (f'<h2>{escape(m["status_title"])}</h2>'
              f'<form method="get" action="{base}/report/status">'
              f'<input type="hidden" name="lang" value="{lang}">'
              f'<p><label for="tracking">{escape(m["status_tracking"])}</label><br>'
              f'<input id="tracking" name="tracking" maxlength="24" autocomplete="off"></p>'
              f'<p><button type="submit">{escape(m["status_find"])}</button></p></form>')
    body = (f'<p><strong>{escape(m["report_emergency"])}</strong></p>'
            f'<p>{escape(m["report_intro"])}</p>{summary}{form}{lookup}')
    return layout(lang=lang, title=m["report_title"], agency=agency, current=f"{base}/report",
                  body=body, scripts=(SCRIPT,))


def _local(ts: datetime | None, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M") if ts is not None else "—"


def status_page(*, lang: str, agency: str, tracking: str | None, found: dict[str, Any] | None,
                filed: bool, tz: ZoneInfo) -> str:
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    result = ""
    if found is not None:
        if filed:
            result += (f'<p role="status"><strong>'
                       f'{escape(m["status_filed"].format(tracking=found["tracking"]))}'
                       "</strong></p>")
        rows = [(m["status_tracking"], found["tracking"]),
                (m["report_type"], m.get("rt_" + found["report_type"], found["report_type"])),
                (m["status_status"], m["st_" + found["status"]]),
                (m["status_submitted"], _local(found["submitted_at"], tz)),
                (m["status_decided"], _local(found["decided_at"], tz)),
                (m["status_reason"], found["public_reason"] or "—")]
        result += ("<table><caption>" + escape(m["status_caption"]) + "</caption><tbody>"
                   + "".join(f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>'
                             for k, v in rows) + "</tbody></table>")
    elif tracking:
        result = f'<p role="status">{escape(m["status_not_found"])}</p>'
    form = (f'<form method="get" action="{base}/report/status">'
            f'<input type="hidden" name="lang" value="{lang}">'
            f'<p><label for="tracking">{escape(m["status_tracking"])}</label><br>'
            f'<input id="tracking" name="tracking" maxlength="24" autocomplete="off" '
            f'value="{escape(tracking or "")}"></p>'
            f'<p><button type="submit">{escape(m["status_find"])}</button></p></form>')
    body = f'<p>{escape(m["status_intro"])}</p>{result}{form}'
    here = f"{base}/report/status" + (f"?{urlencode({'tracking': tracking})}" if tracking else "")
    return layout(lang=lang, title=m["status_title"], agency=agency, current=here, body=body)
