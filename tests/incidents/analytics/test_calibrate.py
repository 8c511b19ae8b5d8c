"""Travel-time calibration on the April 2020 SFFD window and the TIGER San Francisco graph:
factors fitted on the first week, the ETA error measured on the held-out second week.

The mechanism is tested on a graph of posted speeds (``--tiger-time-factor 1``), whose ETAs
run far too fast; the graph `cad graph build` makes by default already carries the measured
SFFD factor (routing.speeds.TIGER_TIME_FACTOR), so calibrating it finds a factor near 1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from cad.settings import REPO_ROOT
from incidents.analytics import calibrate, service
from incidents.analytics.mapping import load_mapping
from routing.service import RoutingService
from tests.support import require_shared

WINDOW = "calls/sffd_calls_2020-04-07_to_2020-04-20.csv.gz"


@pytest.fixture(scope="module")
def sf_posted_graph_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TIGER San Francisco graph at posted speeds (no travel-time factor)."""
    src = require_shared("road/tl_2017_06075_roads.zip")
    out = tmp_path_factory.mktemp("posted") / "sf-posted.cadgraph"
    subprocess.run([sys.executable, "-m", "cad", "graph", "build", str(src), "--out", str(out),
                    "--tiger-time-factor", "1"], check=True, capture_output=True, timeout=300)
    return out


async def test_calibration_shrinks_the_held_out_eta_error(
        pool: asyncpg.Pool, database_url: str, sf_posted_graph_path: Path, sf_graph_path: Path,
        tmp_path: Path) -> None:
    await service.import_calls(pool=pool, path=require_shared(WINDOW), mapping=load_mapping("sffd"))
    stations = calibrate.read_stations(require_shared("calls/sffd_fire_stations.csv"))
    trips = await calibrate.load_trips(pool, agency="SFFD", timezone="America/Los_Angeles")
    # Only first-dispatched E/T units in their own station's area.
    assert len(trips) > 500
    assert all(t.travel_s > 0 and t.station in stations for t in trips[:50])
    routing = await asyncio.to_thread(RoutingService.from_file, sf_posted_graph_path)
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
    assert 1.5 < result.overall_factor < 2.5   # posted speeds: about twice too fast
    # Per road class and hour: fitted on the class times the routing service reports.
    by_class, by_class_hour = result.errors["by_class"], result.errors["by_class_hour"]
    assert by_class.n == by_class_hour.n == result.holdout_trips
    assert by_class.median_abs_s < before.median_abs_s
    assert by_class_hour.median_abs_s < before.median_abs_s
    assert len(result.class_factors) >= 2 and all(f > 0 for f in result.class_factors.values())
    assert sum(result.class_time_share.values()) == pytest.approx(1.0, abs=1e-3)
    assert set(result.class_hour_multipliers) == set(range(24))
    print("calibration on the posted-speed graph:", json.dumps(result.as_json(), indent=1))

    # The default build already carries the measured factor: little left to calibrate.
    default = calibrate.calibrate(await asyncio.to_thread(RoutingService.from_file, sf_graph_path),
                                  trips, stations, holdout_days=7)
    assert 0.8 < default.overall_factor < 1.4
    assert default.errors["uncalibrated"].median_abs_s < before.median_abs_s

    # The command prints the same comparison and writes the factors.
    out = tmp_path / "factors.json"
    env = {**os.environ, "CAD_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT),
           "CAD_ANALYTICS_TIMEZONE": "America/Los_Angeles", "COLUMNS": "200"}
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cad", "graph", "calibrate", "--graph",
                         str(sf_posted_graph_path), "--stations",
                         str(require_shared("calls/sffd_fire_stations.csv")), "--out", str(out),
                         "--write-graph", str(tmp_path / "calibrated.cadgraph")],
        check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "uncalibrated" in proc.stdout and "by_hour" in proc.stdout
    written = json.loads(out.read_text())
    assert written["overall_factor"] == result.overall_factor
    assert written["errors"]["by_hour"]["median_abs_s"] == by_hour.median_abs_s
    assert written["class_factors"] == result.class_factors
    # The calibrated graph carries the class factors in its times: routing on it with the hour
    # multipliers predicts the held-out week as well as the fit did.
    from routing.graph import RoadGraph
    calibrated = await asyncio.to_thread(RoadGraph.load, tmp_path / "calibrated.cadgraph")
    assert calibrated.hierarchy is not None
    assert {c: calibrated.meta["class_time_factors"][c] for c in result.class_factors} == \
        pytest.approx(result.class_factors)
    again = calibrate.calibrate(RoutingService(calibrated), trips, stations, holdout_days=7)
    assert 0.85 < again.overall_factor < 1.15
    assert again.errors["uncalibrated"].median_abs_s < before.median_abs_s
    # The graph's times are the class fit's predictions, up to rounding to deciseconds.
    assert abs(again.errors["uncalibrated"].median_abs_s - by_class.median_abs_s) <= 1.0
    print("the calibrated graph, uncalibrated again:", again.errors["uncalibrated"])


async def test_recommendations_use_the_calibrated_factor_of_the_hour(database_url: str,
                                                                    tmp_path: Path) -> None:
    """The same recommendation under CAD_ETA_HOUR_FACTORS (every hour 2.5) and without
    (factor 1): the ETA scales with the calibrated factor."""
    from tests.auth import Api
    from tests.dispatch_fixtures import create_incident, create_unit, make_settings
    from tests.support import running_app

    etas = []
    for n, factors in enumerate(({}, {h: 2.5 for h in range(24)})):
        settings = make_settings(database_url, tmp_path / str(n), eta_hour_factors=factors,
                                 analytics_timezone="America/Los_Angeles")
        async with running_app(settings) as app:
            api = Api(app)
            try:
                sup, disp = await api.as_("supervisor"), await api.as_("dispatcher")
                if n == 0:
                    r = await sup.put("/api/v1/stations/S1", json={
                        "id": "S1", "agency": "SFFD", "name": "One", "lat": 37.77, "lon": -122.42})
                    assert r.status_code == 200, r.text
                    await create_unit(sup, "E01", station="S1")
                inc = await create_incident(disp, 37.78, -122.41, "VEHFIRE")
                r = await disp.post(f"/api/v1/incidents/{inc['id']}/recommendation")
                assert r.status_code == 201, r.text
                etas.append(r.json()["picks"][0]["eta_s"])
            finally:
                await api.close()
    assert etas[0] > 0 and abs(etas[1] - 2.5 * etas[0]) < 0.01 * etas[1]
