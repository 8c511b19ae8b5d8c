"""The public face's actions and reads. Every read goes through the repository's one
publication gate; every row is made public by ``incidents.public.views`` (generalised place,
no narrative, no caller). Managing which types are published is the only write."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cad.errors import Invalid, NotFound
from cad.security.scope import Scope
from cad.uow import RequestContext, unit_of_work
from incidents.deps import IncidentsDeps
from incidents.public import repository as repo
from incidents.public.views import PublicIncident, public_incident

# Types that are never published, whatever a supervisor asks: sexual assault, domestic,
# juvenile, medical and welfare calls (and their usual neighbours: child abuse, suicide,
# overdose, mental health). Matched case-insensitively against the type's code, description
# and APCO type; EMS types are medical and never published either.
SENSITIVE = (r"sex|rape|domestic|juvenile|juv\b|child|minor|medical|welfare|suicid|overdose"
             r"|mental|abuse|assault-sexual|dv\b|missing")
_SENSITIVE_RE = re.compile(SENSITIVE, re.IGNORECASE)

MAX_FEED_ROWS = 2000
MAX_DAY_ROWS = 2000


def is_sensitive(*, code: str, description: str, apco_type: str, discipline: str) -> bool:
    return discipline == "ems" or bool(_SENSITIVE_RE.search(f"{code} {description} {apco_type}"))


async def feed(*, deps: IncidentsDeps, agency: str, days: int) -> list[PublicIncident]:
    """Published incidents of ``agency`` closed within the last ``days``, newest first."""
    since = datetime.now().astimezone() - timedelta(days=days)
    rows = await repo.published_incidents(deps.pool, agency=agency,
                                          delay_s=deps.settings.public_delay_s,
                                          sensitive=SENSITIVE, since=since, limit=MAX_FEED_ROWS)
    return await _public(rows, deps)


async def _public(rows: Sequence[Any], deps: IncidentsDeps) -> list[PublicIncident]:
    """Generalise the places in a thread: a full feed is thousands of reverse geocodes, which
    must not hold the event loop (the same worker serves dispatchers)."""
    geocoder = deps.geocoder.current
    if len(rows) <= 20:
        return [public_incident(r, geocoder) for r in rows]
    return await asyncio.to_thread(lambda: [public_incident(r, geocoder) for r in rows])


async def request_for_service(*, deps: IncidentsDeps, agency: str, number: str) -> PublicIncident:
    row = await repo.published_by_number(deps.pool, agency=agency,
                                         delay_s=deps.settings.public_delay_s,
                                         sensitive=SENSITIVE, number=number)
    if row is None:
        # Unpublished and unknown look alike: whether an incident exists is not disclosed.
        raise NotFound("no public request for service has this number")
    return public_incident(row, deps.geocoder.current)


async def requests_of_day(*, deps: IncidentsDeps, agency: str, day: date) -> list[PublicIncident]:
    """Published requests received on ``day`` in the agency's local time
    (``CAD_ANALYTICS_TIMEZONE``)."""
    tz = ZoneInfo(deps.settings.analytics_timezone)
    try:
        start = datetime(day.year, day.month, day.day, tzinfo=tz)
        end = start + timedelta(days=1)
    except (OverflowError, ValueError):
        raise Invalid("date is out of range", field="query.date") from None
    rows = await repo.published_received_between(
        deps.pool, agency=agency, delay_s=deps.settings.public_delay_s, sensitive=SENSITIVE,
        start=start, end=end, limit=MAX_DAY_ROWS)
    return await _public(rows, deps)


async def list_publication(*, deps: IncidentsDeps, scope: Scope) -> list[dict[str, Any]]:
    rows = await repo.publication_types(deps.pool, agencies=scope.agency_list)
    return [dict(r) for r in rows]


async def set_publication(*, deps: IncidentsDeps, ctx: RequestContext, scope: Scope, agency: str,
                          code: str, published: bool) -> dict[str, Any]:
    """Enable (or withdraw) publication of one incident type for one agency. Sensitive types
    are refused (422); the row, its event and its audit record commit together."""
    scope.require(agency, field="path.agency")
    async with unit_of_work(deps.pool, ctx) as uow:
        uow.audit("publication.enable" if published else "publication.disable",
                  target=f"publication:{agency}:{code}")
        t = await repo.incident_type(uow.conn, code=code)
        if t is None:
            raise NotFound(f"no incident type {code}")
        if published and is_sensitive(code=t["code"], description=t["description"],
                                       apco_type=t["apco_type"], discipline=t["discipline"]):
            raise Invalid(f"incident type {code} is sensitive and is never published",
                          field="path.code")
        if published:
            row = dict(await repo.enable_type(uow.conn, agency=agency, code=code, by=ctx.actor))
        else:
            await repo.disable_type(uow.conn, agency=agency, code=code)
            row = {"agency": agency, "incident_type": code, "enabled_by": None, "enabled_at": None}
        uow.emit("publication.changed", aggregate=("publication", f"{agency}:{code}"),
                 data={"agency": agency, "incident_type": code, "published": published},
                 agency=agency)
    row["published"] = published
    return row
