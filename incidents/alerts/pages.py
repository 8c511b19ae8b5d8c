"""The public page of community alerts in force (``/public/{agency}/alerts``): server-rendered,
complete without JavaScript, in the public area's shell (``incidents.public.pages.layout``) and
languages. Each alert is shown in the reader's language when it carries an ``info`` block in
it (CAP: one block per language), else in its first block, marked with that block's language."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from incidents.public.i18n import MESSAGES
from incidents.public.pages import layout

# An alert stands out from the page's text by a bar, not by colour alone (its heading says it).
STYLE = (".alert{border-left:.4rem solid #a40000;padding:.1rem 1rem;margin:1rem 0;"
         "background:#fff5f5}.alert dt{font-weight:bold}")


def info_for(infos: Sequence[dict[str, Any]], lang: str) -> dict[str, Any]:
    """The info block in ``lang`` (by primary subtag: "es" takes "es-US"), else the first."""
    for info in infos:
        if str(info["language"]).lower().split("-")[0] == lang:
            return dict(info)
    return dict(infos[0])


def _local(ts: datetime, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _alert(a: dict[str, Any], *, lang: str, m: dict[str, str], tz: ZoneInfo,
           message_url: str) -> str:
    info = info_for(a["infos"], lang)
    primary = str(info["language"]).split("-")[0].lower()
    lang_attr = f' lang="{escape(primary)}"' if primary != lang else ""
    heading = escape(info["headline"])
    if a["msg_type"] == "Update":
        heading = f"{escape(m['alert_update'])}: {heading}"
    expires = (_local(a["expires_at"], tz) if a["expires_at"] is not None else m["alert_never"])
    rows = (("alert_area", a["area_desc"]),
            ("alert_severity", m.get(f"sev_{a['severity']}", a["severity"])),
            ("alert_urgency", m.get(f"urg_{a['urgency']}", a["urgency"])),
            ("alert_sent", _local(a["sent_at"], tz)),
            ("alert_expires", expires))
    facts = "".join(f"<dt>{escape(m[k])}</dt><dd>{escape(str(v))}</dd>" for k, v in rows)
    instruction = (f"<h3>{escape(m['alert_instruction'])}</h3><p>{escape(info['instruction'])}</p>"
                   if info.get("instruction") else "")
    cap_href = escape(message_url.format(identifier=quote(a["identifier"])))
    return (f'<article class="alert" aria-labelledby="a-{a["id"]}"{lang_attr}>'
            f'<h2 id="a-{a["id"]}">{heading}</h2><p>{escape(info["description"])}</p>'
            f"{instruction}<dl>{facts}</dl>"
            f'<p><a href="{cap_href}" type="application/cap+xml">{escape(m["alert_cap"])}</a></p>'
            "</article>")


def alerts_page(*, lang: str, agency: str, alerts: Sequence[dict[str, Any]], atom_url: str,
                json_url: str, message_url: str, tz: ZoneInfo) -> str:
    m = MESSAGES[lang]
    base = f"/public/{quote(agency)}"
    listing = ("".join(_alert(a, lang=lang, m=m, tz=tz, message_url=message_url) for a in alerts)
               if alerts else f'<p role="status">{escape(m["alerts_none"])}</p>')
    feeds = (f'<h2>{escape(m["alert_feeds"])}</h2><p><a href="{escape(atom_url)}">Atom</a> · '
             f'<a href="{escape(json_url)}">JSON Feed</a></p>')
    body = f"<p>{escape(m['alerts_intro'])}</p>{listing}{feeds}"
    return layout(lang=lang, title=m["alerts_title"], agency=agency, current=f"{base}/alerts",
                  body=body, head=f'<style>{STYLE}</style><link rel="alternate" '
                  f'type="application/atom+xml" href="{escape(atom_url)}">')
