"""Equity (an interval per neighbourhood side by side with the whole city) and incident
density on the H3 grid, on the April 2020 SFFD window, checked against the raw CSV."""

from __future__ import annotations

from collections import Counter

import h3
import pandas as pd

from incidents.analytics import service
from incidents.analytics.mapping import load_mapping
from tests.auth import Api
from tests.support import RunningApp, require_shared

WINDOW = "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz"
FMT = "%m/%d/%Y %I:%M:%S %p"


def _calls() -> pd.DataFrame:
    df = pd.read_csv(require_shared(WINDOW), dtype=str, keep_default_na=False)
    for col in ("Received DtTm", "On Scene DtTm"):
        df[col] = pd.to_datetime(df[col].replace("", None), format=FMT)
    calls = df.groupby("Call Number").agg(
        received=("Received DtTm", "first"), on_scene=("On Scene DtTm", "min"),
        zone=("Neighborhooods - Analysis Boundaries", "first"), location=("Location", "first"))
    calls["tr"] = (calls["on_scene"] - calls["received"]).dt.total_seconds()
    return calls


async def test_equity_side_by_side_and_hexbins(plain_app: RunningApp, api: Api) -> None:
    await service.import_calls(pool=plain_app.pool, path=require_shared(WINDOW),
                               mapping=load_mapping("sffd"))
    calls = _calls()
    analyst = await api.as_("analyst")

    r = await analyst.get("/api/v1/analytics/equity", params={"metric": "total_response",
                                                              "by": "zone"})
    assert r.status_code == 200, r.text
    body = r.json()
    valid = calls[calls["tr"] >= 0]
    assert body["overall"]["n"] == len(valid)
    assert abs(body["overall"]["p90_s"] - valid["tr"].quantile(0.9)) < 1e-6
    areas = {a["area"]: a for a in body["areas"]}
    expected = valid.groupby("zone")["tr"]
    assert set(areas) == set(expected.groups)
    for zone, values in expected:
        a = areas[zone]
        assert a["n"] == len(values)
        assert abs(a["p90_s"] - values.quantile(0.9)) < 1e-6, zone
        assert abs(a["p90_minus_overall_s"] - (a["p90_s"] - body["overall"]["p90_s"])) < 1e-9
    p90s = [a["p90_s"] for a in body["areas"]]
    assert p90s == sorted(p90s, reverse=True)

    r = await analyst.get("/api/v1/analytics/hexbins", params={"resolution": 8})
    assert r.status_code == 200, r.text
    geo = r.json()
    assert geo["type"] == "FeatureCollection" and geo["resolution"] == 8
    want: Counter[str] = Counter()
    for loc in calls["location"]:
        lat, lon = (float(x) for x in loc.strip("()").split(","))
        want[h3.latlng_to_cell(lat, lon, 8)] += 1
    got = {f["properties"]["h3"]: f["properties"]["incidents"] for f in geo["features"]}
    assert got == dict(want) and sum(got.values()) == len(calls)
    densest = geo["features"][0]
    assert densest["properties"]["incidents"] == max(want.values())
    ring = densest["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 7          # a closed hexagon
    lon, lat = ring[0]
    assert 37.6 < lat < 37.9 and -122.6 < lon < -122.3     # GeoJSON order: lon, lat

    r = await analyst.get("/api/v1/analytics/hexbins", params={"resolution": 14})
    assert r.status_code == 422 and "resolution" in r.text
    r = await analyst.get("/api/v1/analytics/equity", params={"by": "colour"})
    assert r.status_code == 422 and "by" in r.text
    other = await api.as_("analyst", agency="DCFD")
    assert (await other.get("/api/v1/analytics/hexbins")).json()["features"] == []
