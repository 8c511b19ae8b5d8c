"""Historical import of the SFFD calls format and the interval report, against the raw CSV
recomputed independently with pandas (both windows of /work/shared/data/calls)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pandas as pd
import pytest

from cad.settings import REPO_ROOT
from incidents.analytics import service
from incidents.analytics.mapping import load_mapping
from tests.auth import Api
from tests.support import RunningApp, require_shared

WINDOWS = ["calls/sffd_calls_2016-12-31_to_2017-01-07.csv.gz",
           "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz"]
FMT = "%m/%d/%Y %I:%M:%S %p"


def pandas_expected(path: Path) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    """Per (call type group, final priority), straight from the CSV: calls, and for
    first dispatch - received and first on scene - received the valid n, median and 90th
    percentile (linear interpolation, as percentile_cont), and the share of first on scene
    within 8 minutes among calls with a valid first on scene."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in ("Received DtTm", "Dispatch DtTm", "On Scene DtTm"):
        df[col] = pd.to_datetime(df[col].replace("", None), format=FMT)
    calls = df.groupby("Call Number").agg(
        received=("Received DtTm", "first"), group=("Call Type Group", "first"),
        priority=("Final Priority", "first"), dispatch=("Dispatch DtTm", "min"),
        on_scene=("On Scene DtTm", "min"))
    calls["group"] = calls["group"].replace("", None)
    calls["cp"] = (calls["dispatch"] - calls["received"]).dt.total_seconds()
    calls["tr"] = (calls["on_scene"] - calls["received"]).dt.total_seconds()
    out = {}
    for (group, priority), g in calls.groupby(["group", "priority"], dropna=False):
        cp = g["cp"][g["cp"] >= 0]
        tr = g["tr"][g["tr"] >= 0]
        out[(None if pd.isna(group) else group, priority)] = {
            "calls": len(g),
            "cp_n": len(cp), "cp_median": cp.median() if len(cp) else None,
            "cp_p90": cp.quantile(0.9, interpolation="linear") if len(cp) else None,
            "tr_n": len(tr), "tr_median": tr.median() if len(tr) else None,
            "tr_p90": tr.quantile(0.9, interpolation="linear") if len(tr) else None,
            "tr_within_8": (tr <= 480).mean() if len(tr) else None,
            "cp_out_of_order": int((g["cp"] < 0).sum()), "cp_missing": int(g["cp"].isna().sum()),
        }
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@pytest.mark.parametrize("window", WINDOWS)
async def test_report_equals_pandas_on_every_row(app: RunningApp, window: str) -> None:
    path = require_shared(window)
    mapping = load_mapping("sffd")
    result = await service.import_calls(pool=app.pool, path=path, mapping=mapping)
    assert result.bad == [] and result.units_added == result.rows
    expected = pandas_expected(path)
    assert result.calls_added == sum(e["calls"] for e in expected.values())

    api = Api(app)
    try:
        analyst = await api.as_("analyst", agency="SFFD")
        r = await analyst.get("/api/v1/analytics/report", params=[
            ("metric", "call_processing"), ("metric", "total_response"),
            ("group_by", "call_type_group"), ("group_by", "priority"),
            ("threshold", "total_response:480"), ("source", "imported")])
        assert r.status_code == 200, r.text
        body = r.json()
    finally:
        await api.close()
    assert "percentile_cont" in body["percentiles"]
    got = {(row["group"]["call_type_group"], row["group"]["priority"]): row for row in body["rows"]}
    assert set(got) == set(expected)
    for key, e in expected.items():
        row = got[key]
        cp, tr = row["metrics"]["call_processing"], row["metrics"]["total_response"]
        assert row["incidents"] == e["calls"], key
        assert (cp["n"], tr["n"]) == (e["cp_n"], e["tr_n"]), key
        assert cp["out_of_order"] == e["cp_out_of_order"] and cp["missing"] == e["cp_missing"], key
        assert cp["n"] + cp["missing"] + cp["out_of_order"] == e["calls"], key
        for ours, theirs in ((cp["median_s"], e["cp_median"]), (cp["p90_s"], e["cp_p90"]),
                             (tr["median_s"], e["tr_median"]), (tr["p90_s"], e["tr_p90"]),
                             (tr["within_share"], e["tr_within_8"])):
            assert _close(ours, theirs), (key, ours, theirs)


async def test_import_is_idempotent_marked_and_emits_no_live_events(app: RunningApp) -> None:
    path = require_shared(WINDOWS[0])
    mapping = load_mapping("sffd")
    events_before = await app.pool.fetchval("SELECT count(*) FROM event_log")
    listener = await asyncpg.connect(app.settings.database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("cad_events", lambda *a: heard.put_nowait(a[3]))
    try:
        first = await service.import_calls(pool=app.pool, path=path, mapping=mapping)
        second = await service.import_calls(pool=app.pool, path=path, mapping=mapping)
        # The first notification the listener gets is this sentinel: the imports sent none.
        await app.pool.execute("SELECT pg_notify('cad_events', 'sentinel')")
        assert await asyncio.wait_for(heard.get(), 10) == "sentinel"
    finally:
        await listener.close()
    assert (first.calls_added, first.units_added) == (3560, 7704)
    assert (second.calls_added, second.units_added) == (0, 0)
    assert await app.pool.fetchval("SELECT count(*) FROM event_log") == events_before
    counts = await app.pool.fetchrow(
        "SELECT count(*) FILTER (WHERE source = 'imported') AS imported,"
        " count(*) FILTER (WHERE source = 'live') AS live FROM analytics_unit_responses")
    assert dict(counts) == {"imported": 7704, "live": 0}
    # Each import is audited, with what it added (the second: nothing).
    audits = await app.pool.fetch("SELECT actor, target, outcome, details FROM audit_log "
                                  "WHERE action = 'history.import' ORDER BY seq")
    assert [(a["actor"], a["target"], a["outcome"]) for a in audits] == [
        ("system:import", "agency:SFFD", "success")] * 2
    details = [a["details"] if isinstance(a["details"], dict) else json.loads(a["details"])
               for a in audits]
    assert [(d["calls_added"], d["units_added"], d["rows"]) for d in details] == [
        (3560, 7704, 7704), (0, 0, 7704)]


HEADER = ("Call Number,Unit ID,Incident Number,Call Type,Call Date,Watch Date,Received DtTm,"
          "Entry DtTm,Dispatch DtTm,Response DtTm,On Scene DtTm,Transport DtTm,Hospital DtTm,"
          "Call Final Disposition,Available DtTm,Address,City,Zipcode of Incident,Battalion,"
          "Station Area,Box,Original Priority,Priority,Final Priority,ALS Unit,Call Type Group,"
          "Number of Alarms,Unit Type,Unit sequence in call dispatch,Fire Prevention District,"
          "Supervisor District,Neighborhood  District,Location,RowID")


def _row(call: str, unit: str, received: str = "01/01/2017 10:00:00 AM",
         dispatch: str = "01/01/2017 10:01:00 AM", on_scene: str = "01/01/2017 10:06:00 AM",
         location: str = '"(37.75, -122.45)"', unit_type: str = "ENGINE") -> str:
    return (f"{call},{unit},1,Medical Incident,01/01/2017,01/01/2017,{received},,{dispatch},"
            f"01/01/2017 10:01:30 AM,{on_scene},,,Code 2 Transport,01/01/2017 10:40:00 AM,"
            f"0 Block of X ST,San Francisco,94110,B06,32,5633,3,3,3,true,Non Life-threatening,1,"
            f"{unit_type},1,6,9,Mission,{location},{call}-{unit}")


async def test_cli_reports_bad_rows_with_line_and_reason_and_skips_them(
        app: RunningApp, tmp_path: Path) -> None:
    lines = [HEADER,
             _row("1", "E1"),                                     # line 2: good
             _row("1", "M1", dispatch="31/31/2017 10:01:00 AM"),  # line 3: bad timestamp
             _row("2", "E2", location='"(north, west)"'),         # line 4: bad location
             _row("1", "E1"),                                     # line 5: repeats line 2
             _row("", "E3"),                                      # line 6: no call number
             _row("3", "E3", received="01/01/2017 11:00:00 AM"),  # line 7: good
             _row("3", "T3", received="01/01/2017 11:05:00 AM"),  # line 8: received differs
             "4,E4,short row"]                                    # line 9: too few fields
    csv_path = tmp_path / "calls.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "CAD_DATABASE_URL": app.settings.database_url or "",
           "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "import", "calls", str(csv_path)],
        check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "added 2 calls and 2 unit responses" in out and "6 bad rows skipped" in out, out
    assert "line 3: dispatched_at: '31/31/2017 10:01:00 AM' does not match" in out, out
    assert "line 4: location: '(north, west)' is not '(lat, lon)'" in out, out
    assert "line 5: unit E1 of call 1 repeats line 2" in out, out
    assert "line 6: call_number is empty" in out, out
    assert "line 8: received_at differs from line 7 of the same call" in out, out
    assert "line 9: 3 fields, the header has 34" in out, out
    rows = await app.pool.fetch("SELECT h.call_number, r.unit_id FROM historical_unit_responses r "
                                "JOIN historical_calls h ON h.id = r.call_id ORDER BY 1, 2")
    assert [tuple(r) for r in rows] == [("1", "E1"), ("3", "E3")]
