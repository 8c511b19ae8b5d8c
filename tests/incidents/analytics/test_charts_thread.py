"""Charts are drawn off the event loop, on the one chart thread, and stay byte-identical when
several are requested at once."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from incidents.analytics import charts
from tests.auth import Api
from tests.incidents.analytics.test_import_report import _row
from tests.incidents.analytics.test_report_api import _import
from tests.support import RunningApp


async def test_render_off_loop_draws_on_the_chart_thread() -> None:
    seen: list[str] = []

    def draw(**kw: object) -> bytes:
        seen.append(threading.current_thread().name)
        return charts.distribution([(0.0, 3), (60.0, 5)], metric="turnout", threshold_s=60.0,
                                   fmt="svg")

    body = await charts.render_off_loop(draw)
    assert b"<svg" in body and b"threshold 60 s" in body
    assert seen and seen[0].startswith("cad-charts")
    assert seen[0] != threading.current_thread().name


async def test_concurrent_chart_requests_render_identical_bytes(
        plain_app: RunningApp, api: Api, tmp_path: Path) -> None:
    await _import(plain_app, tmp_path, [_row("50", "E1"), _row("51", "E2")])
    analyst = await api.as_("analyst")
    params = {"metric": "total_response", "format": "svg"}
    replies = await asyncio.gather(*[analyst.get("/api/v1/analytics/charts/distribution",
                                                 params=params) for _ in range(4)],
                                   analyst.get("/api/v1/analytics/charts/p90_by_hour",
                                               params=params))
    assert all(r.status_code == 200 for r in replies)
    assert len({r.content for r in replies[:4]}) == 1
    assert b"hour of day" in replies[4].content
