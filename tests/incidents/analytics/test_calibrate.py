"""Travel-time calibration on the April 2020 SFFD window and the TIGER San Francisco graph:
factors fitted on the first week, the ETA error measured on the held-out second week."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from cad.settings import REPO_ROOT
from incidents.analytics import calibrate, service
from incidents.analytics.mapping import load_mapping
from routing.service import RoutingService
from tests.support import require_shared

WINDOW = "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz"


async def test_calibration_shrinks_the_held_out_eta_error(pool: asyncpg.Pool, database_url: str,
                                                         sf_graph_path: Path,
                                                         tmp_path: Path) -> None:
    await service.import_calls(pool=pool, path=require_shared(WINDOW), mapping=load_mapping("sffd"))
    stations = calibrate.read_stations(require_shared("calls/sffd_fire_stations.csv"))
    trips = await calibrate.load_trips(pool, agency="SFFD", timezone="America/Los_Angeles")
    # Only first-dispatched E/T units in their own station's area.
    assert len(trips) > 500
    assert all(t.travel_s > 0 and t.station in stations for t in trips[:50])
    routing = await asyncio.to_thread(RoutingService.from_file, sf_graph_path)
    result = calibrate.calibrate(routing, trips, stations, holdout_days=7)
    assert routing.unit_ids() == []          # the probe units are gone again
    assert result.train_trips > 200 and result.holdout_trips > 200
    assert result.trips_routed <= result.trips_considered == len(trips)
    before, overall, by_hour = (result.errors[k] for k in ("uncalibrated", "overall", "by_hour"))
    assert before.n == overall.n == by_hour.n == result.holdout_trips
    # The fitted factors predict the held-out week better than the graph's raw speeds.
    assert overall.median_abs_s < before.median_abs_s
    assert by_hour.median_abs_s < before.median_abs_s
    assert set(result.hour_factors) == set(range(24)) and all(f > 0 for f in
                                                               result.hour_factors.values())

    # The command prints the same comparison and writes the factors.
    out = tmp_path / "factors.json"
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT),
           "CAD_ANALYTICS_TIMEZONE": "America/Los_Angeles", "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "graph", "calibrate", "--graph",
                         str(sf_graph_path), "--stations",
                         str(require_shared("calls/sffd_fire_stations.csv")), "--out", str(out)],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "uncalibrated" in proc.stdout and "by_hour" in proc.stdout
    written = json.loads(out.read_text())
    assert written["overall_factor"] == result.overall_factor
    assert written["errors"]["by_hour"]["median_abs_s"] == by_hour.median_abs_s
