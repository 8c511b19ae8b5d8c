"""Analyst search over imported (and live) incidents: keyset paging without a row limit,
filters, dispositions from the managed code list, and the streamed CSV / Parquet exports."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq

from incidents.analytics import service
from incidents.analytics.mapping import load_mapping
from tests.auth import Api
from tests.support import RunningApp, require_shared

WINDOW = "calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz"


def _raw_calls() -> dict[str, dict[str, set[str] | str]]:
    with gzip.open(require_shared(WINDOW), "rt", newline="") as f:
        calls: dict[str, dict[str, set[str] | str]] = {}
        for row in csv.DictReader(f):
            c = calls.setdefault(row["Call Number"], {"units": set(),
                                                      "disposition": row["Call Final Disposition"]})
            c["units"].add(row["Unit ID"])  # type: ignore[union-attr]
    return calls


async def _all_numbers(client: Any, params: dict[str, str]) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        r = await client.get("/api/v1/analytics/incidents", params={
            **params, "limit": 1000, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        out += [i["number"] for i in r.json()["items"]]
        after = r.json()["next"]
        if after is None:
            return out


async def test_keyset_paging_filters_and_exports(plain_app: RunningApp, api: Api) -> None:
    result = await service.import_calls(pool=plain_app.pool, path=require_shared(WINDOW),
                                        mapping=load_mapping("sffd"))
    assert result.unmapped_dispositions == {}
    raw = _raw_calls()
    analyst = await api.as_("analyst")

    # Every call exactly once, in (received_at, id) order, across pages; no row limit.
    seen: list[tuple[datetime, int]] = []
    numbers: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 500, **({"after": after} if after else {})}
        r = await analyst.get("/api/v1/analytics/incidents", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += [(datetime.fromisoformat(i["received_at"]), i["incident_id"]) for i in page["items"]]
        numbers += [i["number"] for i in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert pages == 8 and len(numbers) == len(raw) == 3560
    assert set(numbers) == set(raw)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)

    # Filters: a disposition code of the managed list, a unit, a date range.
    transported = {n for n, c in raw.items() if c["disposition"] in ("Code 2 Transport",
                                                                      "Code 3 Transport")}
    assert set(await _all_numbers(analyst, {"disposition": "TRANSPORTED"})) == transported
    e39 = {n for n, c in raw.items() if "E39" in c["units"]}  # type: ignore[operator]
    assert set(await _all_numbers(analyst, {"unit": "E39"})) == e39 and e39
    r = await analyst.get("/api/v1/analytics/incidents", params={
        "from": "2017-01-01T00:00:00-08:00", "to": "2017-01-02T00:00:00-08:00", "limit": 1000})
    day = r.json()["items"]
    assert day and all("2017-01-01T08:00:00+00:00" <= i["received_at"] < "2017-01-02T08:00:00+00:00"
                       for i in day)

    # CSV export: streamed (chunked, no length), the same calls in the same order.
    async with analyst.stream("GET", "/api/v1/analytics/incidents.csv") as resp:
        assert resp.status_code == 200
        assert "content-length" not in resp.headers
        body = b"".join([chunk async for chunk in resp.aiter_bytes()])
    table = list(csv.DictReader(io.StringIO(body.decode())))
    assert [t["number"] for t in table] == numbers
    first = table[0]
    assert float(first["call_processing_s"]) >= 0 and first["source"] == "imported"

    # Parquet export: the same rows, typed.
    r = await analyst.get("/api/v1/analytics/incidents.parquet", params={"disposition": "TRANSPORTED"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    pt = pq.read_table(io.BytesIO(r.content))
    assert set(pt.column("number").to_pylist()) == transported
    assert str(pt.schema.field("received_at").type) == "timestamp[us, tz=UTC]"


async def test_scope_and_bad_input(plain_app: RunningApp, api: Api) -> None:
    await service.import_calls(pool=plain_app.pool, path=require_shared(WINDOW),
                               mapping=load_mapping("sffd"))
    other = await api.as_("analyst", agency="DCFD")
    r = await other.get("/api/v1/analytics/incidents")
    assert r.json() == {"items": [], "next": None}
    r = await other.get("/api/v1/analytics/incidents.csv")
    assert r.text.count("\n") == 1   # the header only
    analyst = await api.as_("analyst")
    for params, field in (({"disposition": "Code 2 Transport"}, "disposition"),
                          ({"after": "not-a-cursor"}, "after"),
                          ({"limit": 0}, "limit"), ({"limit": 5000}, "limit"),
                          ({"from": "2017-01-02T00:00:00Z", "to": "2017-01-01T00:00:00Z"}, "to")):
        r = await analyst.get("/api/v1/analytics/incidents", params=params)
        assert r.status_code == 422 and field in r.text, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await analyst.get("/api/v1/analytics/incidents.csv", params={"disposition": "NOPE"})
    assert r.status_code == 422 and "disposition" in r.text
    dispatcher = await api.as_("dispatcher")
    assert (await dispatcher.get("/api/v1/analytics/incidents")).status_code == 403
