"""`cad report annual`: the HTML and PDF written for a year, their figures equal to the
HTTP report's over the same year."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from cad.settings import REPO_ROOT
from incidents.analytics import service
from incidents.analytics.mapping import load_mapping
from tests.auth import Api
from tests.support import RunningApp, require_shared

WINDOW = "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz"


async def test_annual_report_html_and_pdf(plain_app: RunningApp, api: Api, tmp_path: Path) -> None:
    await service.import_calls(pool=plain_app.pool, path=require_shared(WINDOW),
                               mapping=load_mapping("sffd"))
    env = {**os.environ, "CAD_DATABASE_URL": plain_app.settings.database_url or "",
           "PYTHONPATH": str(REPO_ROOT), "CAD_ANALYTICS_TIMEZONE": "America/Los_Angeles",
           "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "report", "annual", "--year", "2020",
                         "--out", str(tmp_path), "--agency", "SFFD"],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "annual-2020.html").read_text()
    pdf = (tmp_path / "annual-2020.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    assert html.count("<svg") == 3

    analyst = await api.as_("analyst")
    r = await analyst.get("/api/v1/analytics/report", params=[
        ("metric", "call_processing"), ("metric", "total_response"), ("metric", "travel"),
        ("from", "2020-01-01T00:00:00-08:00"), ("to", "2021-01-01T00:00:00-08:00")])
    totals = r.json()["rows"][0]
    assert f"<strong>{totals['incidents']:,}</strong> incidents" in html
    assert f"<strong>{totals['unit_responses']:,}</strong> unit responses" in html
    tr = totals["metrics"]["total_response"]
    row = re.search(r"<tr><td>total response</td>(.*?)</tr>", html)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert cells[0] == f"{tr['n']:,}" and cells[4] == f"{tr['p90_s']:,.0f} s"
    assert cells[6] == f"{100 * tr['within_share']:.1f} %"
    assert cells[7] == ("yes" if tr["within_share"] >= 0.9 else "no")
    # Another year has nothing.
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "report", "annual", "--year", "2019",
                         "--out", str(tmp_path), "--no-pdf"],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "<strong>0</strong> incidents" in (tmp_path / "annual-2019.html").read_text()
